"""Query and candidate files in, TREC run files out (the `rank` command's formats).

A bad line is an error naming file and line."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TextIO

from relevance.errors import CatalogError
from relevance.fusion import FusedHit
from relevance.input_files import csv_reader, csv_rows


def check_id(value: str, what: str, where: str, *, run_id: bool = False) -> str:
    """``value`` stripped; an empty id, or (``run_id``) one with whitespace that would break a run line, is an error."""
    value = value.strip()
    if not value:
        raise CatalogError(f"{where}: empty {what}")
    if run_id and any(c.isspace() for c in value):
        raise CatalogError(f"{where}: {what} {value!r} contains whitespace, which splits a TREC run line")
    return value


def read_queries(path: Path, *, run_ids: bool = False) -> list[tuple[str, str]]:
    """``query_id,query`` rows, in file order.

    Args:
        run_ids: the ids go into a TREC run, so they may not contain whitespace.

    Raises:
        CatalogError: naming the line of an empty or repeated query id, or a blank query.
    """
    seen: dict[str, int] = {}
    queries = []
    for line, row in _read_csv(path, ("query_id", "query")):
        where = f"{path}:{line}"
        qid = check_id(row["query_id"], "query id", where, run_id=run_ids)
        if not row["query"].strip():
            raise CatalogError(f"{where}: query {qid!r} has a blank text")
        if qid in seen:
            raise CatalogError(f"{where}: query id {qid!r} was already given at line {seen[qid]}")
        seen[qid] = line
        queries.append((qid, row["query"]))
    return queries


def read_candidates(path: Path) -> dict[str, list[str]]:
    """``query_id,product_id`` rows grouped by query, order kept (ids go into a TREC run: no whitespace)."""
    grouped: dict[str, list[str]] = defaultdict(list)
    for line, row in _read_csv(path, ("query_id", "product_id")):
        where = f"{path}:{line}"
        qid = check_id(row["query_id"], "query id", where, run_id=True)
        grouped[qid].append(check_id(row["product_id"], "product id", where, run_id=True))
    return dict(grouped)


def _read_csv(path: Path, columns: Sequence[str]) -> Iterator[tuple[int, dict[str, str]]]:
    reader = csv_reader(path)
    missing = [c for c in columns if c not in (reader.fieldnames or [])]
    if missing:
        raise CatalogError(f"{path} lacks the column(s) {missing}; expected header {','.join(columns)}")
    return csv_rows(path, reader)


def write_run(handle: TextIO, query_id: str, hits: Iterable[FusedHit], tag: str) -> None:
    """Write ``qid Q0 product_id rank score tag`` lines.

    trec_eval orders by score, not rank, so scores are made strictly decreasing
    (unscored tail candidates included) to keep the order we ranked.
    """
    previous: float | None = None
    for rank, hit in enumerate(hits, start=1):
        score = hit.ranking_score
        if previous is not None and not score < previous:
            score = previous - 1e-4
        if score == float("-inf"):
            score = (previous if previous is not None else 0.0) - 1e-4
        previous = score
        handle.write(f"{query_id} Q0 {hit.product_id} {rank} {score:.6f} {tag}\n")
