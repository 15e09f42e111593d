"""Judgments from CSV, TREC qrels and Quepid's CSV export all read into the same gains."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from relevance.cli import main
from relevance.errors import CatalogError
from relevance.judgments import read_judgments


def test_csv_with_ids_and_a_queries_file(tmp_path: Path) -> None:
    judgments = tmp_path / "j.csv"
    judgments.write_text("query_id,product_id,relevance\n7,p1,3\n7,p2,1\n8,p3,2.33\n")
    queries = tmp_path / "q.csv"
    queries.write_text("query_id,query\n7,cordless drill\n8,claw hammer\n")
    judged = read_judgments(judgments, queries_path=queries, grade_offset=1)
    assert judged.gains == {"7": {"p1": 2.0, "p2": 0.0}, "8": {"p3": pytest.approx(1.33)}}
    assert judged.queries["7"] == "cordless drill" and judged.scorable() == ["7", "8"]


def test_trec_qrels(tmp_path: Path) -> None:
    qrels = tmp_path / "run.qrels"
    qrels.write_text("7 0 p1 3\n7 0 p2 0\n\n8 Q0 p3 1\n")
    judged = read_judgments(qrels)
    assert judged.gains == {"7": {"p1": 3.0, "p2": 0.0}, "8": {"p3": 1.0}}
    assert judged.scorable() == [], "qrels carry no query text"


def test_quepid_export_uses_the_query_text_as_id_and_skips_unrated_rows(tmp_path: Path) -> None:
    export = tmp_path / "quepid.csv"
    export.write_text(
        "Team Name,Judge Name,Case Name,Query Text,Doc ID,Rating\n"
        "t,ann,c,velvet chair,f1,3\nt,ann,c,velvet chair,f2,\nt,ann,c,linen sofa,f2,1\n"
    )
    judged = read_judgments(export)
    assert judged.gains == {"velvet chair": {"f1": 3.0}, "linen sofa": {"f2": 1.0}}
    assert judged.queries == {"velvet chair": "velvet chair", "linen sofa": "linen sofa"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("query_id,product_id\n1,p1\n", "grade column"),
        ("query_id,product_id,grade\n1,p1,high\n", "not a number"),
        ("query_id,product_id,grade\n1,p1,0\n", "below the grade offset"),
        ("1 0 p1\n", None),
    ],
)
def test_bad_judgments_name_the_problem(tmp_path: Path, content: str, message: str | None) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(CatalogError) as error:
        read_judgments(path, grade_offset=1 if "offset" in (message or "") else 0)
    if message:
        assert message in error.value.detail


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("query_id,product_id,grade\n1,p1,2\n1,p2,nan\n", ":3: grade 'nan' is not a finite number"),
        ("query_id,product_id,grade\n1,p1,inf\n", ":2: grade 'inf' is not a finite number"),
        ("1 0 p1 -Infinity\n", ":1: grade '-Infinity' is not a finite number"),
        ("query_id,product_id,grade\n1,p1,1e308\n", ":2: grade 1e308 is too high"),  # 2^gain overflows ERR
        ("query_id,product_id,grade\n1,p1,1\n1,p2,0\n1,p1,0\n", ":4: product 'p1' of query '1' is graded again, differently (line 2)"),
        ("query_id,product_id,grade\n1,,1\n", ":2: empty product id"),
        ("query_id,product_id,grade\n ,p1,1\n", ":2: empty query id"),
        ("query_id,query,product_id,grade\n1, ,p1,1\n", ":2: blank query text"),
        ("grade,product_id,query_id\n1\n", ":2: row has 1 cell(s), the header 3"),  # was a traceback
        ("query_id,product_id,grade\n1,p1,1,extra\n", ":2: row has 4 cell(s), the header 3"),
        ("q1 0 p1 2 extra\n", ":1: looks like TREC qrels, but has 5 fields; a qrels line has 4"),
        (
            "query_id,query,product_id,grade\nq1,velvet recliner,p1,3\nq1,velvet recliner ,p2,0\nq1,desk lamp,p3,1\n",
            ":4: query 'q1' has the text 'desk lamp' here and 'velvet recliner' at line 2",
        ),
    ],
)  # fmt: skip
def test_bad_lines_are_named_by_file_and_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(CatalogError) as error:
        read_judgments(path)
    assert error.value.detail.startswith(str(path)) and message in error.value.detail


def test_blank_lines_before_a_csv_header_are_skipped_and_lines_still_counted(tmp_path: Path) -> None:
    path = tmp_path / "j.csv"
    path.write_text("\n \nquery_id,product_id,grade\n1,p1,2\n1,p2,x\n")
    with pytest.raises(CatalogError, match=r"j\.csv:5: grade 'x' is not a number"):
        read_judgments(path)
    path.write_text("\n\r\nquery_id,product_id,grade\n1,p1,2\n1,p2,0\n")
    assert read_judgments(path).gains == {"1": {"p1": 2.0, "p2": 0.0}}


def test_an_identical_repeat_passes(tmp_path: Path) -> None:
    path = tmp_path / "j.csv"
    path.write_text("query_id,product_id,grade\n1,p1,2\n1,p2,0\n1,p1,2\n")
    assert read_judgments(path).gains == {"1": {"p1": 2.0, "p2": 0.0}}


def test_a_nan_or_infinite_grade_offset_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.csv"
    path.write_text("query_id,product_id,grade\n1,p1,2\n")
    for offset in (float("nan"), float("-inf")):
        with pytest.raises(CatalogError, match="not a finite number"):
            read_judgments(path, grade_offset=offset)


def test_utf8_with_a_byte_order_mark_is_read_and_other_encodings_are_named(tmp_path: Path) -> None:
    bom = tmp_path / "excel.csv"
    bom.write_text("query_id,product_id,grade\n1,p1,2\n", encoding="utf-8-sig")  # as Excel saves CSV
    assert read_judgments(bom).gains == {"1": {"p1": 2.0}}
    latin = tmp_path / "latin1.csv"
    latin.write_bytes("query_id,product_id,grade\n1,p1,2\n1,café,1\n".encode("latin-1"))
    with pytest.raises(CatalogError, match=rf"^{latin}:3: not UTF-8"):
        read_judgments(latin)


# ------------------------------------------------------------------------ CLI (no index needed: refused up front)
def test_cli_refuses_a_nan_grade_offset(tmp_path: Path) -> None:
    judgments = tmp_path / "j.csv"
    judgments.write_text("query_id,query,product_id,grade\n1,drill,p1,2\n1,drill,p2,1\n")
    for command in ("evaluate", "train"):
        result = CliRunner().invoke(
            main, ["--data-dir", str(tmp_path), command, "--judgments", str(judgments), "--grade-offset", "nan"]
        )
        assert result.exit_code == 2 and "'nan' is not a finite number" in result.output, result.output


def test_cli_evaluate_says_why_no_query_can_be_scored(tmp_path: Path) -> None:
    qrels = tmp_path / "qrels.txt"
    qrels.write_text("1 0 p1 2\n1 0 p2 2\n2 0 p3 1\n2 0 p4 0\n")  # query 1: one grade for all; 2: no text
    queries = tmp_path / "q.csv"
    queries.write_text("query_id,query\n1,cordless drill\n3,claw hammer\n")
    result = CliRunner().invoke(
        main, ["--data-dir", str(tmp_path), "evaluate", "--judgments", str(qrels), "--queries", str(queries)]
    )
    assert result.exit_code == 1
    assert (
        "no judged query can be scored: 2 of 2 judged queries: 1 with one grade for all judged products"
        in result.output
    )
    assert f"1 with no query text in {queries}" in result.output
