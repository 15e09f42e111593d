"""Judgments from CSV, TREC qrels and Quepid's CSV export all read into the same gains."""

from __future__ import annotations

from pathlib import Path

import pytest

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
