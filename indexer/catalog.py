"""Read a catalog file (JSONL, CSV or Parquet), validate every row, dead-letter bad ones.

The job never stops on a bad row: it is written to the dead-letter file with its
line number and the reason, and the summary keeps ``read = indexed + rejected + duplicates``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from indexer.product import Product
from relevance.errors import CatalogError

FORMATS = ("jsonl", "csv", "parquet")


@dataclass
class RawRow:
    line: int  # 1-based line of a JSONL file, data row (header excluded) of CSV/Parquet
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
    if fmt == "jsonl":
        yield from _iter_jsonl(path)
    elif fmt == "csv":
        yield from _iter_csv(path)
    else:
        yield from _iter_parquet(path)


def _iter_jsonl(path: Path) -> Iterator[RawRow]:
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                yield RawRow(number, None, line.rstrip("\n"), f"invalid JSON: {exc.msg} at column {exc.colno}")
                continue
            if not isinstance(data, dict):
                yield RawRow(number, None, data, f"expected a JSON object, got {type(data).__name__}")
                continue
            yield RawRow(number, data, data)


def _iter_csv(path: Path) -> Iterator[RawRow]:
    with path.open(encoding="utf-8", errors="replace", newline="") as handle:
        reader = csv.DictReader(handle)
        for number, row in enumerate(reader, start=1):
            if None in row:  # more cells than header columns
                yield RawRow(
                    number, None, row, f"row has {len(row) - 1 + len(row[None])} cells, header has {len(row) - 1}"
                )
                continue
            # Empty CSV cells mean "absent", not "empty string".
            yield RawRow(number, {k: v for k, v in row.items() if v not in ("", None)}, row)


def _iter_parquet(path: Path) -> Iterator[RawRow]:
    import pyarrow.parquet as pq  # imported here: only Parquet catalogs pay for it

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several unrelated types for bad files
        raise CatalogError(f"cannot read Parquet file {path}: {exc}", field="catalog") from exc
    number = 0
    for batch in parquet.iter_batches(batch_size=10_000):
        for row in batch.to_pylist():
            number += 1
            yield RawRow(number, {k: v for k, v in row.items() if v is not None}, row)


def describe_validation_error(exc: ValidationError) -> str:
    """One readable line naming each bad field, e.g. "price: Input should be >= 0 (got -3)"."""
    parts = []
    for error in exc.errors():
        name = ".".join(str(part) for part in error["loc"]) or "row"
        got = f" (got {error['input']!r})" if error["type"] != "missing" else ""
        parts.append(f"{name}: {error['msg']}{got}")
    return "; ".join(parts)


def load_catalog(path: Path, dead_letter_path: Path) -> LoadedCatalog:
    """Validate every row of ``path``; bad rows go to ``dead_letter_path`` with their reason.

    Duplicate product ids: the last row wins, earlier ones count as duplicates.
    """
    summary = CatalogSummary()
    by_id: dict[str, Product] = {}
    known_fields = set(Product.model_fields)
    dead_letter_path.parent.mkdir(parents=True, exist_ok=True)
    with dead_letter_path.open("w", encoding="utf-8") as dead_letters:
        for row in iter_rows(path):
            summary.read += 1
            reason = row.parse_error
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
            record = {"line": row.line, "reason": reason, "row": row.raw, "source": str(path)}
            dead_letters.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
    summary.indexed = len(by_id)
    return LoadedCatalog(list(by_id.values()), summary, dead_letter_path)
