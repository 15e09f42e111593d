"""Query and candidate files in, TREC run files out (the `rank` command's formats)."""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TextIO

from relevance.errors import CatalogError
from relevance.fusion import FusedHit


def read_queries(path: Path) -> list[tuple[str, str]]:
    """``query_id,query`` rows, in file order."""
    rows = _read_csv(path, ("query_id", "query"))
    return [(row["query_id"].strip(), row["query"]) for row in rows]


def read_candidates(path: Path) -> dict[str, list[str]]:
    """``query_id,product_id`` rows grouped by query, order kept."""
    grouped: dict[str, list[str]] = defaultdict(list)
    for row in _read_csv(path, ("query_id", "product_id")):
        grouped[row["query_id"].strip()].append(row["product_id"].strip())
    return dict(grouped)


def _read_csv(path: Path, columns: Sequence[str]) -> list[dict[str, str]]:
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in columns if c not in (reader.fieldnames or [])]
            if missing:
                raise CatalogError(f"{path} lacks the column(s) {missing}; expected header {','.join(columns)}")
            return list(reader)
    except OSError as exc:
        raise CatalogError(f"cannot read {path}: {exc}") from exc


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
