"""Catalog statistics the features need: term document frequencies, the vocabulary for
spelling correction, which categories each term points to, and every product's
analysed text (reranker.product_texts).

Computed by the index job from the catalog it indexes and stored per index version
(``<data_dir>/catalog_stats/<version>.json`` and ``<version>.texts.npz``), so training
and serving read the same numbers for the same index.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from indexer.product import Product
from reranker.product_texts import OPTIONAL_TEXT_FIELDS, ProductTexts
from reranker.speller import CatalogSpeller
from reranker.text import analyse, category_level

TOP_CATEGORIES_PER_TERM = 8


STATS_VERSION = 4  # 4: text folded beyond ASCII (reranker.text.fold)
BRAND_MIN_COUNT = 3  # a word is brand-like when it leads at least this many titles...
BRAND_MIN_LEAD_SHARE = 0.5  # ...and leads at least this share of the titles it appears in


def bm25_idf(documents: int, df: int) -> float:
    """BM25's idf of a term held by ``df`` of ``documents`` documents."""
    return math.log(1 + (documents - df + 0.5) / (df + 0.5))


@dataclass(frozen=True)
class FieldTerms:
    """BM25's collection numbers for one optional text field (brand, category, description)."""

    documents: int  # products that have the field
    average_terms: float  # their mean number of distinct stems
    document_frequency: dict[str, int]  # stem -> products whose field holds it

    def idf(self, stems: list[str]) -> np.ndarray:
        """BM25's idf of each stem in this field; a stem the field never holds counts as df 0."""
        return np.array([bm25_idf(self.documents, self.document_frequency.get(stem, 0)) for stem in stems])


@dataclass
class CatalogStats:
    version: int = STATS_VERSION
    documents: int = 0
    document_frequency: dict[str, int] = field(default_factory=dict)  # stem -> titles containing it
    words: dict[str, int] = field(default_factory=dict)  # surface word -> count, for spelling
    term_categories: dict[str, dict[str, float]] = field(default_factory=dict)  # stem -> category -> P(cat|stem)
    brand_words: list[str] = field(default_factory=list)  # words that name brands (brand fields, leading words)
    texts: ProductTexts = field(default_factory=ProductTexts.empty, repr=False, compare=False)
    problem: str | None = field(default=None, compare=False)  # why the version's statistics could not be read
    _speller: CatalogSpeller | None = field(default=None, repr=False, compare=False)
    _brands: frozenset[str] | None = field(default=None, repr=False, compare=False)
    _field_shares: dict[str, float] | None = field(default=None, repr=False, compare=False)
    _field_terms: dict[str, FieldTerms] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def build(cls, products: Iterable[Product]) -> CatalogStats:
        products = list(products)
        documents, frequency, words, leading, brands = 0, Counter(), Counter(), Counter(), set()
        by_term: dict[str, Counter] = defaultdict(Counter)
        for product in products:
            documents += 1
            analysed = analyse(product.title)
            frequency.update(analysed.stem_set)
            words.update(set(analysed.words))
            if product.brand:
                brands.update(analyse(product.brand).words)
            elif analysed.words and analysed.text.startswith(analysed.words[0]):
                leading[analysed.words[0]] += 1  # catalogs without a brand field often lead with it
            category = category_level(product.category)
            if category:
                for stem in analysed.stem_set:
                    by_term[stem][category] += 1
        term_categories = {}
        for stem, counts in by_term.items():
            total = sum(counts.values())
            term_categories[stem] = {c: n / total for c, n in counts.most_common(TOP_CATEGORIES_PER_TERM)}
        brands.update(w for w, n in leading.items() if n >= BRAND_MIN_COUNT and n >= BRAND_MIN_LEAD_SHARE * words[w])
        stats = cls(STATS_VERSION, documents, dict(frequency), dict(words), term_categories, sorted(brands))
        stats.texts = ProductTexts.build(products, stats.brand_set())
        return stats

    def idf(self, stem: str) -> float:
        """BM25's idf, with unseen terms as rare as a term seen once."""
        return bm25_idf(self.documents, self.document_frequency.get(stem, 1)) if self.documents else 1.0

    def speller(self) -> CatalogSpeller:
        """This catalog's speller, built on first use (~20 ms on Home Depot's 54,667 titles)."""
        if self._speller is None:
            self._speller = CatalogSpeller(self.words)
        return self._speller

    def correct(self, word: str) -> str:
        """The catalog's spelling of a word (reranker.speller): itself, or the title word(s) meant."""
        return self.speller().correct(word)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "version": self.version,
            "documents": self.documents,
            "document_frequency": self.document_frequency,
            "words": self.words,
            "term_categories": self.term_categories,
            "brand_words": self.brand_words,
        }
        self.texts.save(texts_path(path))
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(payload), encoding="utf-8")
        temporary.replace(path)

    @classmethod
    def load(cls, path: Path) -> CatalogStats:
        """Raises ValueError naming the file (the statistics or their text table) that cannot be read."""
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
            payload.setdefault("version", 1)
            stats = cls(**payload)
        except Exception as exc:  # unreadable, not JSON, or not these fields
            raise ValueError(f"{path}: {type(exc).__name__}: {exc}") from exc
        texts = texts_path(path)
        if texts.is_file():
            try:
                stats.texts = ProductTexts.load(texts)
            except Exception as exc:
                raise ValueError(f"{texts}: {type(exc).__name__}: {exc}") from exc
        return stats

    def field_shares(self) -> dict[str, float]:
        """Per optional text field: the share of the catalog's products that have it (empty without a text table)."""
        if self._field_shares is None:
            scalars = self.texts.table.scalars
            self._field_shares = (
                {field: float(scalars[f"has_{field}"].mean()) for field in OPTIONAL_TEXT_FIELDS}
                if len(self.texts)
                else {}
            )
        return self._field_shares

    def field_terms(self, name: str) -> FieldTerms:
        """BM25's numbers for an optional text field, counted over the catalog's text table on first use."""
        found = self._field_terms.get(name)
        if found is None:
            values, offsets = self.texts.table.ragged[f"{name}_stems"]
            present = self.texts.table.scalars[f"has_{name}"]
            lengths = np.diff(offsets)[present]
            average = float(lengths.mean()) if lengths.size else 1.0
            counts = np.bincount(values)
            stems = self.texts.stems.items
            frequency = {stems[i]: int(counts[i]) for i in np.flatnonzero(counts).tolist()}
            found = FieldTerms(int(present.sum()), max(average, 1.0), frequency)
            self._field_terms[name] = found
        return found

    def brand_set(self) -> frozenset[str]:
        if self._brands is None:
            self._brands = frozenset(self.brand_words)
        return self._brands


def stats_path(data_dir: Path, version: str) -> Path:
    return data_dir / "catalog_stats" / f"{version}.json"


def texts_path(stats_file: Path) -> Path:
    return stats_file.with_name(stats_file.name.removesuffix(".json") + ".texts.npz")


def write_version_stats(directory: Path, version: str, products: list[Product], keep_cached: int = 3) -> Path:
    """Save the catalog's statistics for ``version``; an unchanged catalog reuses the last computation.

    The computations are kept by content for the ``keep_cached`` catalogs indexed last
    (~70 MB for 54,667 products, so a catalog that changes every night must not pile them up).
    """
    digest = hashlib.sha256()
    for product in products:
        fields = (product.product_id, product.title, product.brand, product.category, product.description)
        digest.update("\x1f".join(value or "" for value in fields).encode() + b"\x1e")
    cached = directory / "by-content" / f"v{STATS_VERSION}-{digest.hexdigest()[:32]}.json"
    if cached.is_file() and texts_path(cached).is_file():
        os.utime(cached)  # used last: kept longest
    else:
        CatalogStats.build(products).save(cached)
    target = directory / f"{version}.json"
    shutil.copyfile(texts_path(cached), texts_path(target))
    shutil.copyfile(cached, target)
    _prune_cached(cached.parent, keep_cached)
    return target


def _prune_cached(by_content: Path, keep: int) -> None:
    current = sorted(by_content.glob(f"v{STATS_VERSION}-*.json"), key=lambda path: path.stat().st_mtime_ns)
    stale = [path for path in by_content.glob("v*-*.json") if not path.name.startswith(f"v{STATS_VERSION}-")]
    for path in [*current[:-keep], *stale]:
        path.unlink(missing_ok=True)
        texts_path(path).unlink(missing_ok=True)


def remove_version_stats(directory: Path, version: str) -> None:
    target = directory / f"{version}.json"
    target.unlink(missing_ok=True)
    texts_path(target).unlink(missing_ok=True)
