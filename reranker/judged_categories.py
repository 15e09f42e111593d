"""Which categories a query's words ask for, learned from relevance judgments.

The catalog alone says which categories a word appears in (``CatalogStats.term_categories``:
"drill" is in power tools and in drill bits alike). Judgments say which categories
satisfied the queries that used the word: each judged query spreads its gain over the
categories of its judged products, and each of its stems collects that spread. The
result, P(category | stem), feeds the ``judged_category_agreement`` feature.

It is learned from training judgments, so it belongs to the model trained with it and
ships in the model's version directory, not with the catalog. During training each
query reads a table learned without its own fold of queries (out of fold), so its own
grades never feed its features: serving sees queries whose grades the table never held.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from relevance.judgments import JudgmentSet
from reranker.catalog_stats import TOP_CATEGORIES_PER_TERM
from reranker.text import analyse

CATEGORIES_FILE = "judged_categories.json"
FOLDS = 5  # out-of-fold tables during training: each learned from 4/5 of the queries
FORMAT_VERSION = 1


@dataclass(frozen=True)
class JudgedCategories:
    term_categories: dict[str, dict[str, float]]  # stem -> category -> P(category | stem)
    queries: int  # judged queries that had a gain on a product with a category

    def to_json(self) -> str:
        payload = {"version": FORMAT_VERSION, "queries": self.queries, "term_categories": self.term_categories}
        return json.dumps(payload, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> JudgedCategories:
        payload = json.loads(text)
        if payload.get("version") != FORMAT_VERSION:
            raise ValueError(f"judged categories format {payload.get('version')!r}, this build reads {FORMAT_VERSION}")
        return cls(payload["term_categories"], int(payload["queries"]))


EMPTY = JudgedCategories({}, 0)


class _Counts:
    """Per stem, the summed category spreads of the queries that used it."""

    def __init__(self) -> None:
        self.by_stem: dict[str, Counter] = defaultdict(Counter)
        self.queries = 0

    def add(self, stems: Iterable[str], spread: dict[str, float]) -> None:
        self.queries += 1
        for stem in stems:
            self.by_stem[stem].update(spread)

    def without(self, other: _Counts) -> _Counts:
        left = _Counts()
        left.queries = self.queries - other.queries
        for stem, counts in self.by_stem.items():
            remaining = Counter(counts)
            remaining.subtract(other.by_stem.get(stem, Counter()))
            remaining = Counter({c: n for c, n in remaining.items() if n > 1e-12})
            if remaining:
                left.by_stem[stem] = remaining
        return left

    def table(self) -> JudgedCategories:
        table = {}
        for stem, counts in self.by_stem.items():
            total = sum(counts.values())
            table[stem] = {c: round(n / total, 6) for c, n in counts.most_common(TOP_CATEGORIES_PER_TERM)}
        return JudgedCategories(table, self.queries)


def _spread(gains: dict[str, float], category_of: Callable[[str], str | None]) -> dict[str, float]:
    """The query's gain over its judged products' categories, summing to 1 (empty: no gain on a categorised product)."""
    by_category: Counter = Counter()
    for product_id, gain in gains.items():
        category = category_of(product_id)
        if category and gain > 0:
            by_category[category] += gain
    total = sum(by_category.values())
    return {c: g / total for c, g in by_category.items()} if total else {}


def fold_of(query_id: str) -> int:
    return int(hashlib.sha256(f"categories:{query_id}".encode()).hexdigest()[:8], 16) % FOLDS


class CategoryLearner:
    """Learns the table from ``query_ids``' judgments; ``out_of_fold`` gives each query the table without its fold."""

    def __init__(self, judged: JudgmentSet, query_ids: Iterable[str], category_of: Callable[[str], str | None]) -> None:
        self._folds = [_Counts() for _ in range(FOLDS)]
        self._all = _Counts()
        for qid in query_ids:
            spread = _spread(judged.gains.get(qid, {}), category_of)
            if not spread or qid not in judged.queries:
                continue
            stems = set(analyse(judged.queries[qid]).stems)
            self._all.add(stems, spread)
            self._folds[fold_of(qid)].add(stems, spread)
        self._held_out: dict[int, JudgedCategories] = {}

    def table(self) -> JudgedCategories:
        """Learned from every query: what the model ships and serves with."""
        return self._all.table() if self._all.queries else EMPTY

    def out_of_fold(self, query_id: str) -> JudgedCategories:
        """Learned from the queries outside ``query_id``'s fold: what its training features read."""
        fold = fold_of(query_id)
        if fold not in self._held_out:
            self._held_out[fold] = self._all.without(self._folds[fold]).table()
        return self._held_out[fold]
