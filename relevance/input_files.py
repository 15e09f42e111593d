"""Reading the relevance engineer's text files (queries, candidates, judgments): UTF-8
with or without a byte-order mark, CSV rows checked against their header, and every
problem an error naming the file and line."""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterator
from pathlib import Path

from relevance.errors import CatalogError


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
    """A DictReader over the file's text (see ``read_text``); pass it to ``csv_rows``.

    The header is the first line that is not blank (an export may begin with one), and
    line numbers still count from the file's first line.
    """
    reader = csv.DictReader(io.StringIO(read_text(path, field), newline=""))
    try:
        header = next((row for row in reader.reader if any(cell.strip() for cell in row)), None)
    except csv.Error as exc:
        raise CatalogError(f"{path}:{reader.line_num}: {exc}", field=field) from exc
    reader.fieldnames = header or []
    return reader


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
