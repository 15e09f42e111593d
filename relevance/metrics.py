"""Per-query ranking metrics and a run evaluator, with the benchmark data's conventions.

Hand-written rather than taken from a library because the benchmark data's README fixes
conventions that no one library follows: gains are fractional (Home Depot's mean ratings
give gains like 0.33 or 1.67, while ranx and trec_eval take integer grades only), NDCG's
ideal comes from the query's judged products (scikit-learn's ``ndcg_score`` takes it from
the scored list, which differs in full-retrieval mode), and queries whose judged products
all share one gain are not scored. ``tests/test_metrics.py`` cross-checks NDCG, MAP, MRR,
P@k and Recall@k against ranx on integer gains, where the definitions agree; the two
judgment-pool diagnostics (``judged_at_k``, ``condensed_ndcg_at_k``) are a count and
NDCG over a filtered list, which ranx does not offer.

A ranked list holds unique product ids, best first. ``judged_gains`` maps product id to
gain (``>= 0``); a product missing from it has gain 0. The binary metrics (AP, reciprocal
rank, P@k, Recall@k) count a product as relevant when its gain reaches
``relevant_threshold``, or, when that is ``None``, when its gain is above 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from relevance.evaluation import ndcg_at_k

__all__ = [
    "average_precision",
    "condensed_ndcg_at_k",
    "err_at_k",
    "evaluate_run",
    "judged_at_k",
    "ndcg_at_k",
    "precision_at_k",
    "recall_at_k",
    "reciprocal_rank",
    "summarize",
    "uniform",
]


def uniform(judged_gains: Mapping[str, float]) -> bool:
    """All judged products share one gain: every ranking scores the same, so the README's rule skips the query."""
    return len(set(judged_gains.values())) < 2


def _relevant(gain: float, threshold: float | None) -> bool:
    return gain > 0 if threshold is None else gain >= threshold


def _hits(ranked_ids: Sequence[str], judged_gains: Mapping[str, float], threshold: float | None) -> list[bool]:
    return [_relevant(judged_gains.get(pid, 0.0), threshold) for pid in ranked_ids]


def _relevant_count(judged_gains: Mapping[str, float], threshold: float | None) -> int:
    return sum(_relevant(gain, threshold) for gain in judged_gains.values())


def average_precision(
    ranked_ids: Sequence[str], judged_gains: Mapping[str, float], relevant_threshold: float | None = None
) -> float:
    """Average precision over the whole ranked list; 0 when the query has no relevant judged product.

    The denominator is the number of relevant judged products, so a relevant product the
    ranking misses counts as precision 0.
    """
    relevant = _relevant_count(judged_gains, relevant_threshold)
    if relevant == 0:
        return 0.0
    found, total = 0, 0.0
    for rank, hit in enumerate(_hits(ranked_ids, judged_gains, relevant_threshold), start=1):
        if hit:
            found += 1
            total += found / rank
    return total / relevant


def reciprocal_rank(
    ranked_ids: Sequence[str], judged_gains: Mapping[str, float], relevant_threshold: float | None = None
) -> float:
    """1 / rank of the first relevant product in the whole list; 0 when none is relevant."""
    hits = _hits(ranked_ids, judged_gains, relevant_threshold)
    return next((1.0 / rank for rank, hit in enumerate(hits, start=1) if hit), 0.0)


def precision_at_k(
    ranked_ids: Sequence[str], judged_gains: Mapping[str, float], k: int = 10, relevant_threshold: float | None = None
) -> float:
    """Relevant products in the top ``k`` divided by ``k`` (a shorter list is not rewarded)."""
    return sum(_hits(ranked_ids[:k], judged_gains, relevant_threshold)) / k


def recall_at_k(
    ranked_ids: Sequence[str], judged_gains: Mapping[str, float], k: int = 10, relevant_threshold: float | None = None
) -> float:
    """Share of the relevant judged products found in the top ``k``; 0 when none is relevant."""
    relevant = _relevant_count(judged_gains, relevant_threshold)
    if relevant == 0:
        return 0.0
    return sum(_hits(ranked_ids[:k], judged_gains, relevant_threshold)) / relevant


def err_at_k(
    ranked_ids: Sequence[str], judged_gains: Mapping[str, float], k: int = 10, max_gain: float | None = None
) -> float:
    """Expected reciprocal rank (Chapelle et al., CIKM 2009) of the top ``k``.

    A product of gain ``g`` satisfies the user with probability ``(2^g - 1) / 2^max_gain``;
    ``max_gain`` defaults to the largest gain in ``judged_gains``.

    Raises:
        ValueError: a judged gain exceeds ``max_gain`` (the probability would pass 1).
    """
    top = max(judged_gains.values(), default=0.0)
    max_gain = top if max_gain is None else max_gain
    if top > max_gain:
        raise ValueError(f"gain {top} is above max_gain {max_gain}; pass the top of the grading scale")
    gains = np.array([judged_gains.get(pid, 0.0) for pid in ranked_ids[:k]], dtype=np.float64)
    satisfied = (2.0**gains - 1.0) / 2.0**max_gain
    reached = np.cumprod(np.concatenate(([1.0], 1.0 - satisfied[:-1])))  # P(user gets to rank r)
    return float(np.sum(reached * satisfied / np.arange(1, gains.size + 1)))


def judged_at_k(ranked_ids: Sequence[str], judged_gains: Mapping[str, float], k: int = 10) -> float:
    """Share of the top ``k`` that has a judgment, of any gain (ir_measures' ``Judged@k``).

    In full-retrieval mode an unjudged product counts as gain 0: this says how much of a
    score rests on products someone judged rather than on that assumption.
    """
    return sum(pid in judged_gains for pid in ranked_ids[:k]) / k


def condensed_ndcg_at_k(ranked_ids: Sequence[str], judged_gains: Mapping[str, float], k: int = 10) -> float:
    """NDCG@k of the ranking with its unjudged products removed (Sakai's condensed list, SIGIR 2007).

    How well a system orders the judged products among themselves, whatever unjudged
    products sit between them; with ``judged_at_k`` it separates ordering from which
    products reach the top (on Home Depot, most of a reranker's full-retrieval lift over
    the fused order is the latter: bench/README).
    """
    return ndcg_at_k([pid for pid in ranked_ids if pid in judged_gains], judged_gains, k)


def evaluate_run(
    run: Mapping[str, Sequence[str]],
    judgments: Mapping[str, Mapping[str, float]],
    k: int = 10,
    *,
    relevant_threshold: float | None = None,
    max_gain: float | None = None,
    skip_uniform: bool = True,
    pool_metrics: bool = False,
) -> dict[str, dict[str, float]]:
    """Per-query values of every metric: ``{"ndcg@10": {qid: value}, "map": ..., ...}``.

    Scores the judged queries, in the order of ``judgments``; with ``skip_uniform`` (the
    benchmark README's rule, in judged-list and full-retrieval mode alike) it leaves out a
    query whose judged products all share one gain. A scored query missing from ``run``
    counts as an empty ranking (every metric 0), so a system cannot gain by dropping
    queries; queries in ``run`` without judgments are ignored. ERR's ``max_gain`` defaults
    to the largest gain in all of ``judgments``, one scale for every query. With
    ``pool_metrics`` (for rankings of the whole catalog, where unjudged products appear)
    it adds ``judged@k`` and ``condensed_ndcg@k``.

    Returns:
        metric name -> query id -> value, metric names ``ndcg@k``, ``map``, ``mrr``,
        ``err@k``, ``p@k``, ``recall@k`` (then ``judged@k``, ``condensed_ndcg@k``).

    Raises:
        ValueError: ``k`` is below 1, or a ranked list repeats a product id.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if max_gain is None:
        max_gain = max((g for gains in judgments.values() for g in gains.values()), default=0.0)
    names = (f"ndcg@{k}", "map", "mrr", f"err@{k}", f"p@{k}", f"recall@{k}")
    if pool_metrics:
        names += (f"judged@{k}", f"condensed_ndcg@{k}")
    per_query: dict[str, dict[str, float]] = {name: {} for name in names}
    for qid, gains in judgments.items():
        if skip_uniform and uniform(gains):
            continue
        ranked = list(run.get(qid, ()))
        if len(set(ranked)) != len(ranked):
            repeated = next(pid for pid in ranked if ranked.count(pid) > 1)
            raise ValueError(f"query {qid!r}: product {repeated!r} appears more than once in the ranking")
        values = (
            ndcg_at_k(ranked, gains, k),
            average_precision(ranked, gains, relevant_threshold),
            reciprocal_rank(ranked, gains, relevant_threshold),
            err_at_k(ranked, gains, k, max_gain),
            precision_at_k(ranked, gains, k, relevant_threshold),
            recall_at_k(ranked, gains, k, relevant_threshold),
        )
        if pool_metrics:
            values += (judged_at_k(ranked, gains, k), condensed_ndcg_at_k(ranked, gains, k))
        for name, value in zip(names, values, strict=True):
            per_query[name][qid] = float(value)
    return per_query


def summarize(per_query: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Mean over queries of each metric.

    Raises:
        ValueError: a metric has no query scored (its mean is undefined).
    """
    empty = [name for name, values in per_query.items() if not values]
    if empty:
        raise ValueError(f"no query scored for {', '.join(empty)}; check the run and judgments share query ids")
    return {name: float(np.mean(list(values.values()))) for name, values in per_query.items()}
