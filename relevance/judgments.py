"""Relevance judgments in, from the formats relevance engineers have at hand.

- CSV with a header: a query id (``query_id``/``qid``) and/or the query text
  (``query``/``query_text``), a product (``product_id``/``doc_id``/``docid``) and a grade
  (``grade``/``relevance``/``rating``/``judgment``). Quepid's CSV export has the text,
  ``Doc ID`` and ``Rating`` columns; its query text doubles as the query id.
- TREC qrels: ``qid iteration product_id grade`` separated by whitespace, no header.

Gains are ``grade - grade_offset`` (Home Depot grades run 1-3, so its offset is 1).
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from relevance.errors import CatalogError
from relevance.trec import read_queries

QUERY_ID = ("query_id", "qid")
QUERY_TEXT = ("query", "query_text")
PRODUCT = ("product_id", "doc_id", "docid")
GRADE = ("grade", "relevance", "rating", "judgment")


@dataclass
class JudgmentSet:
    gains: dict[str, dict[str, float]]  # query id -> product id -> gain
    queries: dict[str, str] = field(default_factory=dict)  # query id -> text

    def scorable(self) -> list[str]:
        """Query ids with judgments and a text to run."""
        return [qid for qid in self.gains if qid in self.queries]


def read_judgments(path: Path, *, queries_path: Path | None = None, grade_offset: float = 0.0) -> JudgmentSet:
    try:
        with path.open(encoding="utf-8") as handle:
            first = handle.readline()
    except OSError as exc:
        raise CatalogError(f"cannot read {path}: {exc}", field="judgments") from exc
    if "," not in first and len(first.split()) == 4:
        judged, texts = _read_qrels(path, grade_offset), {}
    else:
        judged, texts = _read_csv(path, grade_offset)
    if queries_path is not None:
        texts.update(read_queries(queries_path))
    if not judged:
        raise CatalogError(f"{path} holds no judgment", field="judgments")
    return JudgmentSet(judged, texts)


def _gain(raw: str, offset: float, where: str) -> float:
    try:
        gain = float(raw) - offset
    except ValueError as exc:
        raise CatalogError(f"{where}: grade {raw!r} is not a number", field="judgments") from exc
    if gain < 0:
        raise CatalogError(f"{where}: grade {raw} is below the grade offset {offset}", field="judgments")
    return gain


def _read_qrels(path: Path, offset: float) -> dict[str, dict[str, float]]:
    judged: dict[str, dict[str, float]] = defaultdict(dict)
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 4:
                raise CatalogError(f"{path}:{number}: a qrels line has 4 fields, got {len(parts)}", field="judgments")
            judged[parts[0]][parts[2]] = _gain(parts[3], offset, f"{path}:{number}")
    return dict(judged)


def _column(names: dict[str, str], choices: tuple[str, ...]) -> str | None:
    return next((names[c] for c in choices if c in names), None)


def _read_csv(path: Path, offset: float) -> tuple[dict[str, dict[str, float]], dict[str, str]]:
    judged: dict[str, dict[str, float]] = defaultdict(dict)
    texts: dict[str, str] = {}
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        names = {name.strip().lower().replace(" ", "_"): name for name in reader.fieldnames or []}
        query_id, query_text = _column(names, QUERY_ID), _column(names, QUERY_TEXT)
        product, grade = _column(names, PRODUCT), _column(names, GRADE)
        if not (query_id or query_text) or not product or not grade:
            raise CatalogError(
                f"{path}: need a query id or query text, a product id and a grade column; got {reader.fieldnames}",
                field="judgments",
            )
        for number, row in enumerate(reader, start=2):
            if not (row.get(grade) or "").strip():
                continue  # an unrated row (Quepid exports them)
            qid = (row[query_id] if query_id else row[query_text]).strip()
            if query_text:
                texts[qid] = row[query_text]
            judged[qid][row[product].strip()] = _gain(row[grade], offset, f"{path}:{number}")
    return dict(judged), texts
