"""Read a catalog file (JSONL, CSV or Parquet), validate every row, dead-letter bad ones.

The job never stops on a bad row: it is written to the dead-letter file with its
line number and the reason, and the summary keeps ``read = indexed + rejected + duplicates``.
"""

from __future__ import annotations

import codecs
import csv
import json
import math
import re
import reprlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from indexer.product import Product
from relevance.errors import CatalogError

FORMATS = ("jsonl", "csv", "parquet")
# csv's default cell limit (128 KiB) would stop the whole job on one long description.
CSV_FIELD_LIMIT = 16 * 1024 * 1024
# Text files are read with errors="surrogateescape": an invalid byte 0xNN arrives as U+DCNN,
# so its row can be dead-lettered instead of indexed with U+FFFD in place of a letter.
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_LINE_BREAK = re.compile(r"[\r\n]")
# Dead-letter reasons quote a bad value's start and end only: the row itself is in the record.
_REASON_REPR = reprlib.Repr()
_REASON_REPR.maxstring = _REASON_REPR.maxother = 200


@dataclass
class RawRow:
    line: int  # 1-based physical line where the row starts (JSONL, CSV), row number in Parquet
    data: dict[str, Any] | None
    raw: Any
    parse_error: str | None = None


@dataclass
class CatalogSummary:
    read: int = 0
    indexed: int = 0
    rejected: int = 0
    duplicates: int = 0
    ignored_fields: set[str] = field(default_factory=set)

    def as_dict(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "indexed": self.indexed,
            "rejected": self.rejected,
            "duplicates": self.duplicates,
            "ignored_fields": sorted(self.ignored_fields),
        }


@dataclass
class LoadedCatalog:
    products: list[Product]
    summary: CatalogSummary
    dead_letter_path: Path


def detect_format(path: Path) -> str:
    suffix = path.suffix.lower().lstrip(".")
    aliases = {
        "jsonl": "jsonl",
        "ndjson": "jsonl",
        "json": "jsonl",
        "csv": "csv",
        "parquet": "parquet",
        "pq": "parquet",
    }
    if suffix not in aliases:
        raise CatalogError(f"cannot tell the format of {path}: use a .jsonl, .csv or .parquet file", field="catalog")
    return aliases[suffix]


def iter_rows(path: Path) -> Iterator[RawRow]:
    """Yield every row of the file; rows that cannot even be parsed carry a parse_error."""
    if not path.is_file():
        raise CatalogError(f"catalog file {path} does not exist", field="catalog")
    fmt = detect_format(path)
    if fmt in ("jsonl", "csv"):
        _refuse_other_unicode(path)
    if fmt == "jsonl":
        yield from _iter_jsonl(path)
    elif fmt == "csv":
        yield from _iter_csv(path)
    else:
        yield from _iter_parquet(path)


_OTHER_UNICODE = {  # longest first: UTF-32 LE's mark begins with UTF-16 LE's
    codecs.BOM_UTF32_LE: "UTF-32",
    codecs.BOM_UTF32_BE: "UTF-32",
    codecs.BOM_UTF16_LE: "UTF-16",
    codecs.BOM_UTF16_BE: "UTF-16",
}


def _refuse_other_unicode(path: Path) -> None:
    """A text file saved as UTF-16 or UTF-32 (Excel's "Unicode text") is the file's fault,
    not every row's: read as UTF-8, each of its rows would be dead-lettered as bad JSON."""
    with path.open("rb") as handle:
        start = handle.read(4)
    for mark, name in _OTHER_UNICODE.items():
        if start.startswith(mark):
            raise CatalogError(
                f"{path} is {name} text (its byte-order mark says so); save the catalog as UTF-8", field="catalog"
            )


def _starts_an_array(path: Path) -> bool:
    """A JSON array document (``[{...}, {...}]``), not JSON Lines, whose rows are objects."""
    with path.open(encoding="utf-8-sig", errors="surrogateescape") as handle:
        for line in handle:
            if line.strip():
                return line.lstrip().startswith("[")
    return False


def _iter_json_array(path: Path) -> Iterator[RawRow]:
    """Each element of a JSON array document, with the line it starts on.

    json parses each element (``raw_decode``); only the commas between them are stepped
    over here, because json.load would give the elements without their lines. A document
    that does not parse stops the job: past a syntax error its rows cannot be told apart.
    """
    text = path.read_text(encoding="utf-8-sig", errors="surrogateescape")
    decoder = json.JSONDecoder()
    position = _skip_blanks(text, text.index("[") + 1)
    line, counted = 1, 0
    if text.startswith("]", position):  # an empty array
        position += 1
    else:
        while True:
            line += text.count("\n", counted, position)
            counted = position
            try:
                data, position = decoder.raw_decode(text, position)
            except json.JSONDecodeError as exc:
                raise _json_document_error(path, text, exc.pos, exc.msg) from exc
            except (ValueError, RecursionError) as exc:  # an integer past 4,300 digits; nesting past the stack
                raise _json_document_error(path, text, position, _one_line(exc)) from exc
            if isinstance(data, dict):
                yield RawRow(line, data, data)
            else:
                yield RawRow(line, None, data, f"expected a JSON object, got {type(data).__name__}")
            position = _skip_blanks(text, position)
            if text.startswith("]", position):
                position += 1
                break
            if not text.startswith(",", position):
                reason = "the array is never closed with ]" if position >= len(text) else "expected , or ] after a row"
                raise _json_document_error(path, text, position, reason)
            position = _skip_blanks(text, position + 1)
    trailing = _skip_blanks(text, position)
    if trailing < len(text):
        raise _json_document_error(path, text, trailing, "text after the array's closing ]")


_JSON_BLANKS = re.compile(r"[ \t\r\n]*")  # the whitespace JSON allows between values


def _skip_blanks(text: str, position: int) -> int:
    return _JSON_BLANKS.match(text, position).end()


def _json_document_error(path: Path, text: str, position: int, reason: str) -> CatalogError:
    line = text.count("\n", 0, position) + 1
    column = position - (text.rfind("\n", 0, position) + 1) + 1
    return CatalogError(
        f"{path}:{line}: not a valid JSON array at column {column}: {reason}; the live index is unchanged",
        field="catalog",
    )


def _iter_jsonl(path: Path) -> Iterator[RawRow]:
    if _starts_an_array(path):
        yield from _iter_json_array(path)
        return
    # utf-8-sig: a BOM (Excel and many shop exports write one) is not part of the first row.
    with path.open(encoding="utf-8-sig", errors="surrogateescape") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                # Some of json's messages end in "at" already ("Unterminated string starting at").
                message = exc.msg.removesuffix(" at")
                yield RawRow(number, None, line.rstrip("\n"), f"invalid JSON: {message} at column {exc.colno}")
                continue
            except (ValueError, RecursionError) as exc:  # an integer past 4,300 digits; nesting past the stack
                yield RawRow(number, None, line.rstrip("\n"), f"invalid JSON: {_one_line(exc)}")
                continue
            if not isinstance(data, dict):
                yield RawRow(number, None, data, f"expected a JSON object, got {type(data).__name__}")
                continue
            yield RawRow(number, data, data)


@dataclass
class _CsvRecord:
    first: int  # physical lines the record spans
    last: int
    cells: list[str]
    open_quote: str | None = None  # the record's first line, when a quote it opened never closed
    past_limit: bool = False  # the open cell ran past CSV_FIELD_LIMIT before the reader gave up


class _LineFeed:
    """The file's physical lines for csv.reader, numbered, with the lines of a bad record
    handed back to be read again (csv.reader cannot resync after an error, so each retry
    starts a new reader on this feed)."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle
        self._given_back: list[tuple[int, str]] = []
        self._read = 0
        self.taken: list[tuple[int, str]] = []  # (number, line) handed out since start_record

    def __iter__(self) -> _LineFeed:
        return self

    def __next__(self) -> str:
        if self._given_back:
            number, line = self._given_back.pop()
        else:
            line = next(self._handle)
            self._read += 1
            number = self._read
        self.taken.append((number, line))
        return line

    def start_record(self) -> None:
        self.taken = []

    def give_back(self, lines: list[tuple[int, str]]) -> None:
        self._given_back.extend(reversed(lines))


def _csv_records(handle: Any, path: Path) -> Iterator[_CsvRecord]:
    """Every record of the file; a quoted cell may span lines.

    Read strictly, so a quote that opens a cell and never closes shows as an error instead
    of running the cell on over the rows below it (the lenient reader swallows them into
    that cell without a word). Such a record's first line is the bad row; the lines after
    it are read again as rows. A strict error within one line (``"12" pipe"``) is read
    as the lenient reader reads it, as before.
    """
    feed = _LineFeed(handle)
    reader = csv.reader(feed, strict=True)
    while True:
        feed.start_record()
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            lines = feed.taken
            reader = csv.reader(feed, strict=True)
            # A quote open at the end of the file fails on its one line too ("unexpected end of data").
            if len(lines) > 1 or "end of data" in str(exc):
                feed.give_back(lines[1:])
                past_limit = "field limit" in str(exc)
                yield _CsvRecord(lines[0][0], lines[-1][0], [], lines[0][1].rstrip("\r\n"), past_limit)
                continue
            try:
                cells = next(csv.reader([lines[0][1]]), [])
            except csv.Error as lenient_exc:  # a cell past the field limit within one line
                raise CatalogError(
                    f"cannot read CSV file {path} at line {lines[0][0]}: {lenient_exc}"
                    f" (cells hold at most {CSV_FIELD_LIMIT // 2**20} Mi characters)",
                    field="catalog",
                ) from exc
        yield _CsvRecord(feed.taken[0][0], feed.taken[-1][0], cells)


def _open_quote_reason(record: _CsvRecord, names: list[str]) -> str:
    assert record.open_quote is not None
    cells = next(csv.reader([record.open_quote]), [""])  # the line ends inside the open cell: the last one
    column = names[len(cells) - 1] if len(cells) <= len(names) else f"cell {len(cells)}"
    ran = "past the cell limit" if record.past_limit else "to the end of the file or into a misplaced quote"
    return (
        f"{column}: a quote opens the cell and never closes (it ran on over lines {record.first}-{record.last}"
        f" {ran}); this line is set aside and the lines after it are read as rows"
    )


def _column_names(header: list[str], path: Path) -> list[str]:
    """The schema's field names for a file's columns; a column named twice refuses the file."""
    # As the judgments reader: "Product_ID", " Title " and "product id" name the schema's fields.
    names = [name.strip().lower().replace(" ", "_") for name in header]
    if _SURROGATE.search("".join(names)):
        raise CatalogError(f"the header of {path} is not valid UTF-8; save the catalog as UTF-8", field="catalog")
    repeated = [name for name, count in Counter(names).items() if count > 1]
    if repeated:
        spellings = [written for written, name in zip(header, names, strict=True) if name == repeated[0]]
        raise CatalogError(
            f"the header of {path} names column {repeated[0]!r} more than once ({spellings});"
            " remove or rename the extra one",
            field="catalog",
        )
    return names


def _iter_csv(path: Path) -> Iterator[RawRow]:
    csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))  # process-wide: only ever raised
    with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as handle:
        records = _csv_records(handle, path)
        header_record = next((record for record in records if record.cells or record.open_quote), None)
        header = header_record.cells if header_record else []
        if header_record is not None and header_record.open_quote is not None:
            raise CatalogError(f"the header of {path} opens a quote that never closes", field="catalog")
        if not header:
            return
        names = _column_names(header, path)
        for record in records:
            if record.open_quote is not None:
                yield RawRow(record.first, None, record.open_quote, _open_quote_reason(record, names))
                continue
            cells, first, last = record.cells, record.first, record.last
            if not cells:
                continue  # a blank line
            values = dict(zip(names, cells, strict=False))
            raw: Any = values if len(cells) == len(names) else cells
            # Ids and titles never hold a line break: one that does is a quote left open that
            # the strict reader could not catch (the next quote in the file ended a cell),
            # which ran the cell on over the following rows.
            broken = next((name for name in ("product_id", "title") if _LINE_BREAK.search(values.get(name, ""))), None)
            if broken:
                reason = (
                    f"{broken} holds a line break: probably an unmatched quote, which ran this cell"
                    f" on over lines {first}-{last} (those rows are in this one)"
                )
                yield RawRow(first, None, raw, reason)
            elif len(cells) != len(names):
                yield RawRow(first, None, raw, f"row has {len(cells)} cells, header has {len(names)}")
            else:
                # Empty CSV cells mean "absent", not "empty string".
                yield RawRow(first, {name: cell for name, cell in values.items() if cell != ""}, raw)


def _iter_parquet(path: Path) -> Iterator[RawRow]:
    import pyarrow as pa  # imported here: only Parquet catalogs pay for it
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
        schema = parquet.schema_arrow
    except Exception as exc:  # pyarrow raises several unrelated types for bad files
        raise CatalogError(f"cannot read Parquet file {path}: {_one_line(exc)}", field="catalog") from exc
    names = _column_names(list(schema.names), path)
    batches = parquet.iter_batches(batch_size=10_000)
    number = 0
    while True:
        try:  # a corrupt data page shows only when its row group is read
            batch = next(batches, None)
        except (OSError, pa.ArrowException) as exc:
            raise CatalogError(f"cannot read Parquet file {path}: {_one_line(exc)}", field="catalog") from exc
        if batch is None:
            return
        columns = [_column_values(column) for column in batch.columns]
        for values in zip(*columns, strict=True):
            number += 1
            row = dict(zip(names, values, strict=True))
            yield RawRow(number, {k: v for k, v in row.items() if v is not None}, row)


def _column_values(column: Any) -> list[Any]:
    """A Parquet column's values as the schema wants them: maps and structs as dicts without
    absent keys, and float16/float32 numbers at their shortest decimal (a float32 19.99 is
    19.989999771118164 as a Python float, and a price filter at 19.99 would miss it)."""
    import pyarrow as pa

    def plain(value: Any, dtype: Any) -> Any:
        if value is None:
            return None
        if pa.types.is_float32(dtype) or pa.types.is_float16(dtype):
            return float(str((np.float16 if pa.types.is_float16(dtype) else np.float32)(value)))
        if pa.types.is_struct(dtype):
            fields = (dtype.field(i) for i in range(dtype.num_fields))
            return {f.name: plain(value[f.name], f.type) for f in fields if value.get(f.name) is not None}
        if pa.types.is_map(dtype):
            return {key: plain(item, dtype.item_type) for key, item in value if item is not None}
        if pa.types.is_list(dtype) or pa.types.is_large_list(dtype) or pa.types.is_fixed_size_list(dtype):
            return [plain(item, dtype.value_type) for item in value]
        return value

    values = column.to_pylist()
    dtype = column.type
    nested = pa.types.is_nested(dtype) or pa.types.is_float32(dtype) or pa.types.is_float16(dtype)
    return [plain(value, dtype) for value in values] if nested else values


def _one_line(exc: Exception) -> str:
    # pyarrow's messages span lines and may quote the corrupt bytes themselves
    return " ".join("".join(char if char.isprintable() else " " for char in str(exc)).split())


def _not_utf8(data: dict[str, Any]) -> str | None:
    """Why a row read with surrogateescape holds text that was not UTF-8, or None."""
    for key, value in data.items():
        found = _SURROGATE.search(key + json.dumps(value, ensure_ascii=False, default=str))
        if found:
            code = ord(found.group())
            what = f"byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"lone surrogate U+{code:04X}"
            return f"{key}: not valid UTF-8 ({what}); save the catalog as UTF-8"
    return None


def describe_validation_error(exc: ValidationError) -> str:
    """One readable line naming each bad field, e.g. "price: Input should be >= 0 (got -3)"."""
    parts = []
    for error in exc.errors():
        name = ".".join(str(part) for part in error["loc"]) or "row"
        got = f" (got {_REASON_REPR.repr(error['input'])})" if error["type"] != "missing" else ""
        parts.append(f"{name}: {error['msg']}{got}")
    return "; ".join(parts)


def _json_safe(value: Any) -> Any:
    """The row with NaN and infinities as text: the dead-letter file stays strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    return value


def load_catalog(path: Path, dead_letter_path: Path, *, exclusive: bool = False) -> LoadedCatalog:
    """Validate every row of ``path``; bad rows go to ``dead_letter_path`` with their reason.

    Duplicate product ids: the last row wins, earlier ones count as duplicates. With
    ``exclusive`` an existing dead-letter file is never overwritten (FileExistsError).
    Raises CatalogError when the file cannot be read at all.
    """
    summary = CatalogSummary()
    by_id: dict[str, Product] = {}
    known_fields = set(Product.model_fields)
    dead_letter_path.parent.mkdir(parents=True, exist_ok=True)
    with dead_letter_path.open("x" if exclusive else "w", encoding="utf-8") as dead_letters:
        for row in iter_rows(path):
            summary.read += 1
            reason = row.parse_error
            if reason is None:
                assert row.data is not None
                reason = _not_utf8(row.data)
            if reason is None:
                assert row.data is not None
                try:
                    product = Product.model_validate(row.data)
                except ValidationError as exc:
                    reason = describe_validation_error(exc)
                else:
                    summary.ignored_fields.update(set(row.data) - known_fields)
                    if product.product_id in by_id:
                        summary.duplicates += 1
                        del by_id[product.product_id]  # re-insert so order follows the winning row
                    by_id[product.product_id] = product
                    continue
            summary.rejected += 1
            record = {"line": row.line, "reason": reason, "row": _json_safe(row.raw), "source": str(path)}
            # Undecodable bytes (surrogates here) become U+FFFD: the file stays UTF-8, the reason names them.
            dead_letters.write(_SURROGATE.sub("\ufffd", json.dumps(record, ensure_ascii=False, default=str)) + "\n")
    summary.indexed = len(by_id)
    return LoadedCatalog(list(by_id.values()), summary, dead_letter_path)
