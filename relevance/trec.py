"""Query and candidate files in, TREC run files out (the `rank` command's formats), and the
UTF-8 and CSV reading that judgments share: a bad line is an error naming file and line."""

from __future__ import annotations

import codecs
import csv
import io
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TextIO

from relevance.errors import CatalogError
from relevance.fusion import FusedHit


def read_text(path: Path, field: str | None = None) -> str:
    """The whole file as UTF-8, without the byte-order mark Excel and many exports write.

    Raises:
        CatalogError: the file cannot be read, or is not UTF-8 (naming the line).
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CatalogError(f"cannot read {path}: {exc.strerror or exc}", field=field) from exc
    body = data.removeprefix(codecs.BOM_UTF8)
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = body[: exc.start].count(b"\n") + 1
        raise CatalogError(f"{path}:{line}: not UTF-8 text (byte {body[exc.start]:#x})", field=field) from exc


def csv_reader(path: Path, field: str | None = None) -> csv.DictReader:
    """A DictReader over the file's text (see ``read_text``); pass it to ``csv_rows``."""
    return csv.DictReader(io.StringIO(read_text(path, field), newline=""))


def csv_rows(path: Path, reader: csv.DictReader, field: str | None = None) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) for each row; a row whose cell count differs from the header's is an error.

    The line number is where the row ends (a quoted cell may span lines).
    """
    try:
        for row in reader:
            # DictReader fills a short row with None and puts extra cells under the key None.
            if None in row or None in row.values():
                cells = sum(v is not None for k, v in row.items() if k is not None) + len(row.get(None) or [])
                header = len(reader.fieldnames or [])
                raise CatalogError(
                    f"{path}:{reader.line_num}: row has {cells} cell(s), the header {header}", field=field
                )
            yield reader.line_num, row
    except csv.Error as exc:
        raise CatalogError(f"{path}:{reader.line_num}: {exc}", field=field) from exc


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
