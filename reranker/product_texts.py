"""Every catalog product's text, analysed once at index time into integer arrays.

Serving reranks ~200 candidates per query. Analysing their titles then (stemming,
numbers and units, 3-grams: ~60 µs a title) was most of the rerank stage, and a cache
warmed by traffic stays cold for the long tail. So the index job analyses each product
once per index version (``<version>.texts.npz`` beside the catalog statistics), and the
features gather the candidates' rows and work on them with numpy.

Terms are ids in per-table vocabularies. A product the table does not hold, or holds
with other text (changed in a live index after the build), is analysed when first seen
with the same code, so the features never depend on whether the table was warm.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from cachetools import LRUCache

from indexer.product import DESCRIPTION_CHARS, Product
from reranker import kernels
from reranker.text import UNIT_ALIASES, analyse, category_level

UNITS: tuple[str, ...] = tuple(sorted(UNIT_ALIASES))
UNIT_IDS = {unit: i for i, unit in enumerate(UNITS)}
OVERFLOW_ENTRIES = 50_000  # products analysed at serving time, kept per process
BIGRAM_SHIFT = 32  # a stem bigram is one int64: first id << 32 | second id

# Variable-length fields (one array of values per product, stored flat with offsets).
RAGGED_FIELDS: dict[str, type] = {
    "stems": np.int32,  # title stems in order, repeats kept
    "stem_set": np.int32,  # distinct title stems
    "words": np.int32,  # distinct title words (letters only, stop words dropped)
    "bigrams": np.int64,  # distinct stem bigrams of the title
    "trigrams": np.int32,  # distinct character 3-grams of the title words
    "numbers": np.float64,  # distinct numbers in the title
    "quantity_values": np.float64,  # distinct (value, unit) pairs in the title...
    "quantity_units": np.int16,  # ...their units, ids in UNITS
    "brand_stems": np.int32,  # distinct stems of the brand field
    "brand_words": np.int32,  # words naming the product's brand (brand field, or a brand-like first title word)
    "category_stems": np.int32,
    "description_stems": np.int32,
}
# One value per product.
SCALAR_FIELDS: dict[str, type] = {
    "fingerprint": np.uint32,  # Product.text_fingerprint, to notice a product whose text changed
    "has_brand": np.bool_,
    "has_category": np.bool_,
    "has_description": np.bool_,
    "category_key": np.int32,  # id of category_level(category) in the category vocabulary, -1: none
}
VOCABULARIES = ("stem", "word", "trigram", "category")
OPTIONAL_TEXT_FIELDS = ("brand", "category", "description")  # each has a has_<field> scalar


class Vocabulary:
    """Strings to dense ids; grows (under a lock) when serving meets a new product."""

    def __init__(self, items: Iterable[str] = ()) -> None:
        self.items = list(items)
        self.ids = {item: i for i, item in enumerate(self.items)}
        self._lock = threading.Lock()

    def get(self, item: str) -> int:
        return self.ids.get(item, -1)

    def add(self, item: str) -> int:
        found = self.ids.get(item)
        if found is not None:
            return found
        with self._lock:
            found = self.ids.get(item)
            if found is None:
                found = self.ids[item] = len(self.items)
                self.items.append(item)
            return found


class Rows(NamedTuple):
    """Gathered ragged values of some products: ``values`` flat, ``owner`` the product each belongs to."""

    values: np.ndarray
    owner: np.ndarray  # index into the batch, one per value
    lengths: np.ndarray  # values per product


class TextBatch:
    """The analysed text of one candidate list, in candidate order.

    A field is gathered on first use: queries without numbers or brands never pay for those.
    """

    def __init__(self, table: _Table, rows: np.ndarray) -> None:
        self.size = len(rows)
        self._table = table
        self._rows = rows
        self._gathered: dict[str, Rows] = {}
        self._scalars: dict[str, np.ndarray] = {}

    def __getitem__(self, name: str) -> Rows:
        found = self._gathered.get(name)
        if found is None:
            found = self._gathered[name] = self._table.gather(name, self._rows)
        return found

    def scalar(self, name: str) -> np.ndarray:
        found = self._scalars.get(name)
        if found is None:
            found = self._scalars[name] = self._table.scalars[name][self._rows]
        return found

    # Read in place through compiled loops (reranker.kernels), without gathering the values.
    def lengths(self, name: str) -> np.ndarray:
        offsets = self._table.ragged[name][1]
        return offsets[self._rows + 1] - offsets[self._rows]

    def ends(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Each product's first and last value of ``name`` (-1 where it has none)."""
        values, offsets = self._table.ragged[name]
        starts, stops = offsets[self._rows], offsets[self._rows + 1]
        if not values.size:
            return np.full(self.size, -1, dtype=values.dtype), np.full(self.size, -1, dtype=values.dtype)
        empty = starts == stops
        first = np.where(empty, -1, values[np.minimum(starts, values.size - 1)])
        return first, np.where(empty, -1, values[np.maximum(stops - 1, 0)])

    def sorted_hits(self, name: str, wanted: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """(len(weights), products): per row of ``weights``, the summed weights of the sorted, distinct
        ``wanted`` values among each product's values of ``name``."""
        values, offsets = self._table.ragged[name]
        return kernels.sorted_hits(values, offsets, self._rows, wanted.astype(values.dtype), weights)

    def distinct(self, name: str) -> np.ndarray:
        """The sorted distinct values of ``name`` over the whole list."""
        values, offsets = self._table.ragged[name]
        return kernels.distinct_values(values, offsets, self._rows)

    def mean_best_score(self, name: str, distinct: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Per product: the mean over ``scores``' rows of the best score among its values of ``name``.

        ``scores[i, c]`` is row i's score for the value ``distinct[c]`` (``distinct``: as ``self.distinct(name)``).
        """
        values, offsets = self._table.ragged[name]
        return kernels.mean_best_score(values, offsets, self._rows, distinct, scores)

    def last_position(self, name: str, target: int) -> np.ndarray:
        values, offsets = self._table.ragged[name]
        return kernels.last_position(values, offsets, self._rows, target)


class _Table:
    """Products' encoded rows: ragged fields as flat values + offsets, scalars as arrays."""

    def __init__(self, ragged: dict[str, tuple[np.ndarray, np.ndarray]], scalars: dict[str, np.ndarray]) -> None:
        self.ragged = ragged
        self.scalars = scalars

    @classmethod
    def from_rows(cls, rows: Sequence[dict[str, object]]) -> _Table:
        ragged = {}
        for name, dtype in RAGGED_FIELDS.items():
            lengths = np.fromiter((len(row[name]) for row in rows), dtype=np.int64, count=len(rows))
            offsets = np.zeros(len(rows) + 1, dtype=np.int64)
            np.cumsum(lengths, out=offsets[1:])
            values = np.fromiter(itertools.chain.from_iterable(row[name] for row in rows), dtype=dtype)
            ragged[name] = (values, offsets)
        scalars = {
            name: np.fromiter((row[name] for row in rows), dtype=dtype, count=len(rows))
            for name, dtype in SCALAR_FIELDS.items()
        }
        return cls(ragged, scalars)

    def take(self, rows: np.ndarray) -> TextBatch:
        return TextBatch(self, rows)

    def gather(self, name: str, rows: np.ndarray) -> Rows:
        values, offsets = self.ragged[name]
        starts = offsets[rows]
        lengths = offsets[rows + 1] - starts
        # Position i of product k's segment maps to starts[k] + i - (first output slot of k).
        first_slot = np.cumsum(lengths) - lengths
        index = np.repeat(starts - first_slot, lengths) + np.arange(int(lengths.sum()))
        return Rows(values[index], np.repeat(np.arange(len(rows)), lengths), lengths)


class ProductTexts:
    """The encoded text of a catalog's products, by product id, plus what serving adds."""

    def __init__(self, ids: Sequence[str], table: _Table, vocabularies: dict[str, Vocabulary]) -> None:
        self.row_of = {pid: i for i, pid in enumerate(ids)}
        self.table = table
        self._fingerprints = table.scalars["fingerprint"].tolist()  # Python ints: compared per candidate
        self.vocabularies = vocabularies
        # Products encoded at serving time (not in the table), least recently used dropped first.
        self._overflow: LRUCache[tuple[str, int], dict[str, object]] = LRUCache(OVERFLOW_ENTRIES)
        self._lock = threading.Lock()

    @property
    def stems(self) -> Vocabulary:
        return self.vocabularies["stem"]

    @property
    def words(self) -> Vocabulary:
        return self.vocabularies["word"]

    @property
    def trigrams(self) -> Vocabulary:
        return self.vocabularies["trigram"]

    @property
    def categories(self) -> Vocabulary:
        return self.vocabularies["category"]

    @classmethod
    def empty(cls) -> ProductTexts:
        return cls([], _Table.from_rows([]), {name: Vocabulary() for name in VOCABULARIES})

    @classmethod
    def build(cls, products: Iterable[Product], brands: frozenset[str]) -> ProductTexts:
        texts = cls.empty()
        products = list(products)
        rows = [texts._encode(product, brands) for product in products]
        return cls([p.product_id for p in products], _Table.from_rows(rows), texts.vocabularies)

    def __len__(self) -> int:
        return len(self.row_of)

    def category_of(self, product_id: str) -> str | None:
        """The compared level of an indexed product's category (``category_level``); None: none or not indexed."""
        row = self.row_of.get(product_id)
        if row is None:
            return None
        key = int(self.table.scalars["category_key"][row])
        return self.categories.items[key] if key >= 0 else None

    def batch(self, products: Sequence[Product], brands: frozenset[str]) -> TextBatch:
        """The candidates' rows; products the table lacks (or holds with other text) are analysed now."""
        row_of, fingerprints = self.row_of, self._fingerprints
        rows = [row_of.get(p.product_id, -1) for p in products]
        fresh = [row >= 0 and fingerprints[row] == p.text_fingerprint for row, p in zip(rows, products, strict=True)]
        if all(fresh):
            return self.table.take(np.array(rows, dtype=np.int64))
        encoded = [
            self._row(row) if ok else self._encoded_now(product, brands)
            for row, ok, product in zip(rows, fresh, products, strict=True)
        ]
        return _Table.from_rows(encoded).take(np.arange(len(products)))

    def _row(self, row: int) -> dict[str, object]:
        record: dict[str, object] = {}
        for name, (values, offsets) in self.table.ragged.items():
            record[name] = values[offsets[row] : offsets[row + 1]]
        for name, column in self.table.scalars.items():
            record[name] = column[row]
        return record

    def _encoded_now(self, product: Product, brands: frozenset[str]) -> dict[str, object]:
        key = (product.product_id, product.text_fingerprint)
        with self._lock:
            found = self._overflow.get(key)  # a hit becomes the most recently used
            if found is not None:
                return found
        encoded = self._encode(product, brands)
        with self._lock:
            self._overflow[key] = encoded
        return encoded

    def _encode(self, product: Product, brands: frozenset[str]) -> dict[str, object]:
        stem_id, word_id, trigram_id = self.stems.add, self.words.add, self.trigrams.add
        title = analyse(product.title)
        stems = [stem_id(s) for s in title.stems]
        quantities = sorted(title.quantities)
        row: dict[str, object] = {
            "stems": stems,
            "stem_set": sorted(set(stems)),
            "words": sorted({word_id(w) for w in title.words}),
            "bigrams": sorted({a << BIGRAM_SHIFT | b for a, b in itertools.pairwise(stems)}),
            "trigrams": sorted(trigram_id(g) for g in title.trigrams),
            "numbers": sorted(title.numbers),
            "quantity_values": [value for value, _ in quantities],
            "quantity_units": [UNIT_IDS[unit] for _, unit in quantities],
            "fingerprint": product.text_fingerprint,
            "has_brand": bool(product.brand),
            "has_category": bool(product.category),
            "has_description": bool(product.description),
            "category_key": -1,
        }
        if product.brand:
            brand = analyse(product.brand)
            row["brand_stems"] = sorted({stem_id(s) for s in brand.stems})
            row["brand_words"] = sorted({word_id(w) for w in brand.words})
        else:
            row["brand_stems"] = []
            lead = title.words[0] if title.words and title.words[0] in brands else None
            row["brand_words"] = [word_id(lead)] if lead else []
        row["category_stems"] = []
        if product.category:
            row["category_stems"] = sorted({stem_id(s) for s in analyse(product.category.replace(">", " ")).stems})
            row["category_key"] = self.categories.add(category_level(product.category))
        row["description_stems"] = []
        if product.description:
            description = analyse(product.description[:DESCRIPTION_CHARS])
            row["description_stems"] = sorted({stem_id(s) for s in description.stems})
        return row

    def save(self, path: Path) -> None:
        arrays: dict[str, np.ndarray] = {"product_ids": np.array(list(self.row_of), dtype=str)}
        for name, (values, offsets) in self.table.ragged.items():
            arrays[f"{name}.values"], arrays[f"{name}.offsets"] = values, offsets
        arrays.update({f"{name}.scalar": column for name, column in self.table.scalars.items()})
        arrays.update({f"{name}.vocabulary": np.array(v.items, dtype=str) for name, v in self.vocabularies.items()})
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp")
        with temporary.open("wb") as handle:
            np.savez(handle, **arrays)
        temporary.replace(path)

    @classmethod
    def load(cls, path: Path) -> ProductTexts:
        with np.load(path, allow_pickle=False) as stored:
            ragged = {name: (stored[f"{name}.values"], stored[f"{name}.offsets"]) for name in RAGGED_FIELDS}
            scalars = {name: stored[f"{name}.scalar"] for name in SCALAR_FIELDS}
            vocabularies = {name: Vocabulary(stored[f"{name}.vocabulary"].tolist()) for name in VOCABULARIES}
            ids = stored["product_ids"].tolist()
        return cls(ids, _Table(ragged, scalars), vocabularies)
