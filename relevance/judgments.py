"""Relevance judgments in, from the formats relevance engineers have at hand.

- CSV with a header: a query id (``query_id``/``qid``) and/or the query text
  (``query``/``query_text``), a product (``product_id``/``doc_id``/``docid``) and a grade
  (``grade``/``relevance``/``rating``/``judgment``). Quepid's CSV export has the text,
  ``Doc ID`` and ``Rating`` columns; its query text doubles as the query id.
- TREC qrels: ``qid iteration product_id grade`` separated by whitespace, no header.

Gains are ``grade - grade_offset`` (Home Depot grades run 1-3, so its offset is 1).
Files are UTF-8 (a byte-order mark is dropped). A bad line is an error naming it:
a grade that is not a finite number, a gain below 0 or above ``MAX_GAIN``, an empty
query or product id, a blank query text, or a second, different grade for the same
query and product, or a second, different text for the same query id (an identical
repeat is harmless and passes).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from relevance.errors import CatalogError
from relevance.input_files import csv_reader, csv_rows, read_text
from relevance.trec import check_id, read_queries

QUERY_ID = ("query_id", "qid")
QUERY_TEXT = ("query", "query_text")
PRODUCT = ("product_id", "doc_id", "docid")
GRADE = ("grade", "relevance", "rating", "judgment")
# Real scales are 0-4 or so. ERR and NDCG take 2^gain, which overflows a float from
# 1024 on, so an absurd grade (a typo, a price in the grade column) is refused.
MAX_GAIN = 100.0


@dataclass
class JudgmentSet:
    gains: dict[str, dict[str, float]]  # query id -> product id -> gain
    queries: dict[str, str] = field(default_factory=dict)  # query id -> text

    def scorable(self) -> list[str]:
        """Query ids with judgments and a text to run."""
        return [qid for qid in self.gains if qid in self.queries]


def read_judgments(path: Path, *, queries_path: Path | None = None, grade_offset: float = 0.0) -> JudgmentSet:
    """Judgments from a CSV, TREC qrels or Quepid CSV file, with query texts from ``queries_path``.

    Raises:
        CatalogError: the file cannot be read or holds no judgment, or a line is bad
            (``file:line: ...``); the grade offset is not a finite number.
    """
    if not math.isfinite(grade_offset):
        raise CatalogError(f"grade offset {grade_offset} is not a finite number", field="grade_offset")
    text = read_text(path, "judgments")
    first = next((line for line in text.splitlines() if line.strip()), "")
    judged = _Judged(path, grade_offset)
    if _looks_like_qrels(first):
        _read_qrels(text, judged)
    else:
        _read_csv(judged)
    if queries_path is not None:
        judged.texts.update(read_queries(queries_path))
    if not judged.gains:
        raise CatalogError(f"{path} holds no judgment", field="judgments")
    return JudgmentSet(dict(judged.gains), judged.texts)


def _looks_like_qrels(first: str) -> bool:
    # Whitespace-separated fields and none a CSV column name (a TSV header goes the CSV way
    # and gets the CSV error), so a qrels line with a field too many or too few is reported as such.
    fields = {f.lower() for f in first.split()}
    return "," not in first and len(fields) >= 3 and not fields & {*QUERY_ID, *QUERY_TEXT, *PRODUCT, *GRADE}


class _Judged:
    """Gains as they are read, with the line each came from (to name both lines of a conflict)."""

    def __init__(self, path: Path, offset: float) -> None:
        self.path, self.offset = path, offset
        self.gains: dict[str, dict[str, float]] = defaultdict(dict)
        self.texts: dict[str, str] = {}
        self.lines: dict[tuple[str, str], int] = {}
        self.text_lines: dict[str, int] = {}

    def add(self, line: int, qid: str, product: str, grade: str) -> None:
        where = f"{self.path}:{line}"
        qid = check_id(qid, "query id", where)
        product = check_id(product, "product id", where)
        gain = self._gain(grade.strip(), where)
        previous = self.gains[qid].get(product)
        if previous is not None and previous != gain:
            raise CatalogError(
                f"{where}: product {product!r} of query {qid!r} is graded again, differently"
                f" (line {self.lines[qid, product]})",
                field="judgments",
            )
        self.gains[qid][product] = gain
        self.lines.setdefault((qid, product), line)

    def add_text(self, line: int, qid: str, text: str) -> None:
        """The query's text from a judgment row; another row of the query must give the same text."""
        where = f"{self.path}:{line}"
        if not text.strip():
            raise CatalogError(f"{where}: blank query text", field="judgments")
        previous = self.texts.get(qid)
        if previous is not None and previous.strip() != text.strip():
            raise CatalogError(
                f"{where}: query {qid!r} has the text {text.strip()!r} here and {previous.strip()!r}"
                f" at line {self.text_lines[qid]}",
                field="judgments",
            )
        self.texts.setdefault(qid, text)
        self.text_lines.setdefault(qid, line)

    def _gain(self, raw: str, where: str) -> float:
        try:
            grade = float(raw)
        except ValueError as exc:
            raise CatalogError(f"{where}: grade {raw!r} is not a number", field="judgments") from exc
        if not math.isfinite(grade):
            raise CatalogError(f"{where}: grade {raw!r} is not a finite number", field="judgments")
        gain = grade - self.offset
        if gain < 0:
            raise CatalogError(f"{where}: grade {raw} is below the grade offset {self.offset}", field="judgments")
        if gain > MAX_GAIN:
            raise CatalogError(
                f"{where}: grade {raw} is too high: a gain (grade - grade offset) is at most {MAX_GAIN:g}",
                field="judgments",
            )
        return gain


def _read_qrels(text: str, judged: _Judged) -> None:
    for number, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 4:
            raise CatalogError(
                f"{judged.path}:{number}: looks like TREC qrels, but has {len(parts)} fields;"
                " a qrels line has 4: query_id iteration product_id grade",
                field="judgments",
            )
        judged.add(number, parts[0], parts[2], parts[3])


def _column(names: dict[str, str], choices: tuple[str, ...]) -> str | None:
    return next((names[c] for c in choices if c in names), None)


def _read_csv(judged: _Judged) -> None:
    path = judged.path
    reader = csv_reader(path, "judgments")
    names = {name.strip().lower().replace(" ", "_"): name for name in reader.fieldnames or []}
    query_id, query_text = _column(names, QUERY_ID), _column(names, QUERY_TEXT)
    product, grade = _column(names, PRODUCT), _column(names, GRADE)
    if not (query_id or query_text) or not product or not grade:
        raise CatalogError(
            f"{path}: need a query id or query text, a product id and a grade column; got {reader.fieldnames}",
            field="judgments",
        )
    for number, row in csv_rows(path, reader, "judgments"):
        if not row[grade].strip():
            continue  # an unrated row (Quepid exports them)
        qid = row[query_id] if query_id else row[query_text]
        judged.add(number, qid, row[product], row[grade])
        if query_text:
            judged.add_text(number, qid.strip(), row[query_text])
