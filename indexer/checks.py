"""What a new index version must pass before the alias moves onto it.

Smoke queries must return hits on both retrieval paths; the optional judgment gate
refuses a version whose NDCG@10 falls more than a margin below the live one's.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from indexer.product import Product
from relevance.errors import CatalogError, ReindexRefused
from relevance.evaluation import ndcg_at_k
from relevance.filters import SearchFilters
from relevance.pipeline import SearchPipeline
from reranker.text import fold

SMOKE_SAMPLE = 5


@dataclass(frozen=True)
class JudgmentGate:
    queries: Mapping[str, str]  # query id -> text
    judgments: Mapping[str, Mapping[str, float]]  # query id -> product id -> gain
    margin: float = 0.01
    k: int = 10


# Lucene's English stop words: what every engine's English analyzer drops (tantivy's
# "english" stopword filter, Elasticsearch's and OpenSearch's `_english_`).
# fmt: off
ENGINE_STOP_WORDS = frozenset({
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it", "no", "not",
    "of", "on", "or", "such", "that", "the", "their", "then", "there", "these", "they", "this", "to", "was",
    "will", "with",
})
# fmt: on
_TOKEN = re.compile(r"[^\W_]+")  # the engines' tokenizers split on what is not a letter or digit
_TERM_BYTES_LIMIT = 40  # the embedded analyzer drops tokens of this many UTF-8 bytes or more


def lexically_searchable(title: str) -> bool:
    """Whether a title keeps a term after English analysis, so searching it can find its product:
    an estimate for engines whose analyzer the layer does not hold. Tokens are folded before
    the stop-word filter, as the engines fold ("Thé" and "ｔｈｅ" are "the")."""
    return any(
        len(token.encode()) < _TERM_BYTES_LIMIT and fold(token) not in ENGINE_STOP_WORDS
        for token in _TOKEN.findall(title.lower())
    )


def default_smoke_queries(
    products: Sequence[Product], count: int = SMOKE_SAMPLE, searchable: Callable[[str], bool] = lexically_searchable
) -> list[str]:
    """Titles of products spread evenly over the catalog: each must at least find something.

    Titles that analysis empties ("!!!", "the") are valid products but could never find
    anything lexically, so they are not taken: an odd row must not refuse the whole job.
    """
    titles = [product.title for product in products if searchable(product.title)]
    step = max(len(titles) // count, 1)
    return titles[::step][:count]


def check_smoke_queries(queries: Sequence[str]) -> None:
    """Given smoke queries must be some, none blank: no query would switch the check off,
    and a blank one finds nothing on a healthy version. Raises CatalogError."""
    if not queries:
        raise CatalogError("no smoke query given; the check needs at least one", field="smoke_queries")
    blank = [number for number, text in enumerate(queries, start=1) if not text.strip()]
    if blank:
        raise CatalogError(f"smoke query number {blank[0]} is blank", field="smoke_queries")


def smoke_check(pipeline: SearchPipeline, queries: Sequence[str]) -> dict[str, Any]:
    empty = []
    for text in queries:
        for mode in ("lexical", "vector"):
            if not pipeline.ranked(text, SearchFilters(), mode=mode, depth=10):
                empty.append({"query": text, "mode": mode})
    report = {"queries": len(queries), "empty": empty}
    if empty:
        raise ReindexRefused(f"smoke queries returned no hits on the new version: {empty}", field="smoke_queries")
    return report


def mean_ndcg(pipeline: SearchPipeline, gate: JudgmentGate) -> float:
    scores = []
    for query_id, gains in gate.judgments.items():
        if query_id not in gate.queries:
            continue
        hits = pipeline.ranked(gate.queries[query_id], SearchFilters(), depth=gate.k)
        scores.append(ndcg_at_k([hit.product_id for hit in hits], gains, gate.k))
    if not scores:
        raise ReindexRefused("the gate's judgments share no query id with its queries file", field="gate")
    return float(np.mean(scores))


def judgment_gate(live: SearchPipeline | None, candidate: SearchPipeline, gate: JudgmentGate) -> dict[str, Any]:
    """Full-retrieval NDCG@k of the new version against the live one, with the serving defaults."""
    new_score = mean_ndcg(candidate, gate)
    # A live version whose vectors this embedder cannot search (embedding settings changed:
    # the re-index is the remedy) has no score to defend; the gate compares nothing then.
    unscorable = live.index_embedding.mismatch(live.embedder) if live is not None else None
    live_score = mean_ndcg(live, gate) if live is not None and unscorable is None else None
    report = {
        "metric": f"ndcg@{gate.k}",
        "queries": sum(1 for qid in gate.judgments if qid in gate.queries),
        "new": round(new_score, 4),
        "live": None if live_score is None else round(live_score, 4),
        "margin": gate.margin,
    }
    if unscorable:
        report["live_not_scored"] = unscorable
    if live_score is not None and new_score < live_score - gate.margin:
        raise ReindexRefused(
            f"NDCG@{gate.k} of the new version is {new_score:.4f}, more than {gate.margin} below the live"
            f" index's {live_score:.4f}; the alias was not moved",
            field="gate",
        )
    return report


class VersionChecks:
    """Callable the index job runs on a filled, committed version before swapping."""

    def __init__(
        self, pipeline: SearchPipeline, smoke_queries: Sequence[str] | None = None, gate: JudgmentGate | None = None
    ) -> None:
        if smoke_queries is not None:  # before anything is built
            check_smoke_queries(smoke_queries)
        self.pipeline = pipeline
        self.smoke_queries = smoke_queries
        self.gate = gate

    def __call__(self, version: str, products: Sequence[Product]) -> dict[str, Any]:
        candidate = self.pipeline.on_index(version)
        queries = self.smoke_queries
        if queries is None:
            # The embedded engine holds its analyzer: ask it rather than estimate (a run of 14
            # CJK characters is one 42-byte token there, which it drops).
            analyze = getattr(self.pipeline.engine, "analyze", None)
            searchable = (lambda title: bool(analyze(title))) if analyze else lexically_searchable
            queries = default_smoke_queries(products, searchable=searchable)
        if queries:
            report: dict[str, Any] = {"smoke": smoke_check(candidate, queries)}
        else:  # no title of this catalog keeps a term: the count check is all there is
            report = {"smoke": {"queries": 0, "skipped": "no product title keeps a searchable term"}}
        if self.gate is not None:
            live_version = self.pipeline.engine.alias_target(self.pipeline.alias)
            live = self.pipeline.on_index(live_version) if live_version else None
            report["gate"] = judgment_gate(live, candidate, self.gate)
        return report
