from __future__ import annotations

import io
import itertools
from pathlib import Path

import pytest

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
