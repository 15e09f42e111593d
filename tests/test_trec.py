from __future__ import annotations

import io
import itertools
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from relevance.cli import main
from relevance.errors import CatalogError
from relevance.fusion import FusedHit
from relevance.trec import read_candidates, read_queries, write_run


def hit(pid: str, score: float) -> FusedHit:
    return FusedHit(pid, score, None, None, None, None)


def test_run_lines_have_six_columns_and_strictly_falling_scores() -> None:
    out = io.StringIO()
    write_run(
        out,
        "q1",
        [hit("a", 0.5), hit("b", 0.5), hit("c", 0.2), hit("d", float("-inf")), hit("e", float("-inf"))],
        "tag",
    )
    rows = [line.split() for line in out.getvalue().splitlines()]
    assert [r[:4] for r in rows] == [["q1", "Q0", pid, str(rank)] for rank, pid in enumerate("abcde", start=1)]
    assert all(r[5] == "tag" for r in rows)
    scores = [float(r[4]) for r in rows]
    assert all(a > b for a, b in itertools.pairwise(scores))


def test_reading_queries_and_candidates(tmp_path: Path) -> None:
    queries = tmp_path / "q.csv"
    queries.write_text('query_id,query\n1,cordless drill\n2,"paint, white"\n')
    assert read_queries(queries) == [("1", "cordless drill"), ("2", "paint, white")]
    candidates = tmp_path / "c.csv"
    candidates.write_text("query_id,product_id\n1,a\n2,b\n1,c\n")
    assert read_candidates(candidates) == {"1": ["a", "c"], "2": ["b"]}
    bad = tmp_path / "bad.csv"
    bad.write_text("id,text\n1,x\n")
    with pytest.raises(CatalogError, match="query_id"):
        read_queries(bad)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("query_id,query\n1\n", ":2: row has 1 cell(s), the header 2"),  # was a traceback
        ("query_id,query\n1,drill\n2, \n", ":3: query '2' has a blank text"),
        ("query_id,query\n,drill\n", ":2: empty query id"),
        ("query_id,query\n1,drill\n2,hammer\n1,wall shelf\n", ":4: query id '1' was already given at line 2"),
        ("query_id,query\n1,drill\n1,drill\n", ":3: query id '1' was already given at line 2"),
    ],
)
def test_bad_query_lines_are_named(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "q.csv"
    path.write_text(content)
    with pytest.raises(CatalogError) as error:
        read_queries(path)
    assert error.value.detail.startswith(str(path)) and message in error.value.detail


def test_ids_that_would_break_a_run_line_are_refused(tmp_path: Path) -> None:
    queries = tmp_path / "q.csv"
    queries.write_text("query_id,query\nq 1,drill\n")
    assert read_queries(queries) == [("q 1", "drill")], "fine where no run is written"
    with pytest.raises(CatalogError, match=r":2: query id 'q 1' contains whitespace"):
        read_queries(queries, run_ids=True)
    candidates = tmp_path / "c.csv"
    for rows, message in [
        ("1,a\n1,\n", ":3: empty product id"),
        ("1,a b\n", ":2: product id 'a b' contains whitespace"),
        ("1\n", ":2: row has 1 cell(s)"),
    ]:
        candidates.write_text("query_id,product_id\n" + rows)
        with pytest.raises(CatalogError) as error:
            read_candidates(candidates)
        assert message in error.value.detail


# ------------------------------------------------------------------------ CLI (no index: fails before any query runs)
def _rank(tmp_path: Path, queries: str, *options: str) -> tuple[Result, Path]:
    path = tmp_path / "q.csv"
    path.write_text(queries)
    out = tmp_path / "run.txt"
    out.write_text("the previous run\n")
    result = CliRunner().invoke(
        main, ["--data-dir", str(tmp_path), "rank", "--queries", str(path), "--out", str(out), *options]
    )
    return result, out


def test_rank_refuses_repeated_query_ids_and_a_tag_with_spaces(tmp_path: Path) -> None:
    result, out = _rank(tmp_path, "query_id,query\n1,drill\n1,hammer\n")
    assert result.exit_code == 1 and "q.csv:3: query id '1' was already given at line 2" in result.output
    result, out = _rank(tmp_path, "query_id,query\n1,drill\n", "--tag", "my tag")
    assert result.exit_code == 2 and "--tag" in result.output and "one word" in result.output
    assert out.read_text() == "the previous run\n"


def test_a_failed_rank_leaves_the_previous_run_file_alone(tmp_path: Path) -> None:
    result, out = _rank(tmp_path, "query_id,query\n1,drill\n")  # nothing indexed: the first query fails
    assert result.exit_code == 1 and "no index is served" in result.output
    assert out.read_text() == "the previous run\n"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".run.txt")) == [], "no temporary left"


def test_rank_creates_the_directory_of_out(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    queries = tmp_path / "q.csv"
    queries.write_text("query_id,query\n1,drill\n")
    result = CliRunner().invoke(
        main, ["--data-dir", str(tmp_path), "rank", "--queries", str(queries), "--out", str(blocker / "run.txt")]
    )
    assert result.exit_code == 2 and "--out" in result.output and "cannot create the directory" in result.output
