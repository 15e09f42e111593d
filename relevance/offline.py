"""Offline evaluation of a configured pipeline against judgments, in both modes.

Judged-list mode reranks each query's judged products (``rank --candidates``);
full-retrieval mode searches the whole catalog. The same code scores the serving
configuration, with the learned reranker when one is active.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from relevance.filters import SearchFilters
from relevance.judgments import JudgmentSet
from relevance.metrics import evaluate_run, uniform
from relevance.pipeline import SearchPipeline

MODES = ("judged", "full")


def scored_queries(judged: JudgmentSet) -> list[str]:
    """The query ids evaluation scores: judged, with a text, and not all one grade."""
    return [qid for qid in judged.scorable() if not uniform(judged.gains[qid])]


def skipped_queries(judged: JudgmentSet) -> dict[str, list[str]]:
    """Judged query ids that are not scored, by reason: ``"one grade"`` and ``"no text"``."""
    return {
        "one grade": [qid for qid in judged.gains if uniform(judged.gains[qid])],
        "no text": [qid for qid in judged.gains if qid not in judged.queries and not uniform(judged.gains[qid])],
    }


def missing_products(pipeline: SearchPipeline, judged: JudgmentSet) -> set[str]:
    """The scored queries' judged product ids that the served index does not hold."""
    return products_missing_from(pipeline, {pid for qid in scored_queries(judged) for pid in judged.gains[qid]})


def products_missing_from(pipeline: SearchPipeline, product_ids: Collection[str], batch: int = 500) -> set[str]:
    """Those of ``product_ids`` the served index does not hold (asked in batches)."""
    wanted = sorted(product_ids)
    found: set[str] = set()
    for start in range(0, len(wanted), batch):
        found.update(pipeline.engine.get(pipeline.alias, wanted[start : start + batch]))
    return set(wanted) - found


def runs_for(
    pipeline: SearchPipeline,
    judged: JudgmentSet,
    depth: int,
    progress: Callable[[int], None] | None = None,
    missing: Collection[str] = frozenset(),
) -> dict[str, dict[str, list[str]]]:
    """mode -> query id -> ranked product ids.

    Judged-list mode ranks the judged products the index holds; the ``missing`` ones
    (``missing_products``) cannot be ranked, so they count as not found rather than
    trailing the ranking in the judgments file's order.
    """
    runs: dict[str, dict[str, list[str]]] = {mode: {} for mode in MODES}
    for done, qid in enumerate(scored_queries(judged), start=1):
        text, gains = judged.queries[qid], judged.gains[qid]
        held = [pid for pid in gains if pid not in missing]
        ranked = pipeline.rank_candidates(text, held) if held else []
        runs["judged"][qid] = [hit.product_id for hit in ranked]
        hits = pipeline.ranked(text, SearchFilters(), depth=depth, candidates=max(pipeline.settings.candidates, depth))
        runs["full"][qid] = [hit.product_id for hit in hits]
        if progress:
            progress(done)
    return runs


def per_query_metrics(
    runs: dict[str, dict[str, list[str]]], judged: JudgmentSet, k: int
) -> dict[str, dict[str, float]]:
    """``"<mode>:<metric>" -> query id -> value`` over the scorable queries (README rules)."""
    scorable = {qid: judged.gains[qid] for qid in judged.scorable()}
    merged: dict[str, dict[str, float]] = {}
    for mode in MODES:
        # Judged lists hold judged products only: the pool metrics would say nothing there.
        for metric, values in evaluate_run(runs[mode], scorable, k, pool_metrics=mode == "full").items():
            merged[f"{mode}:{metric}"] = values
    return merged
