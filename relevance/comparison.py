"""One system's evaluation, or two systems compared, as one JSON-ready dict.

``compare`` takes the per-query values ``relevance.metrics.evaluate_run`` returns and
adds the means, and with a second system the paired bootstrap and the wins and losses
per metric. The result is a plain dict (a ``TypedDict``) so that it can be written as
JSON as is and rendered by ``relevance.report``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import TypedDict

from relevance.metrics import summarize
from relevance.significance import paired_bootstrap, wins_losses


class SystemResult(TypedDict):
    name: str
    means: dict[str, float]  # metric -> mean over the scored queries
    per_query: dict[str, dict[str, float]]  # metric -> query id -> value


class QueryDeltaDict(TypedDict):
    qid: str
    a: float
    b: float
    delta: float


class WinsLossesDict(TypedDict):
    wins: int
    losses: int
    ties: int
    biggest_gains: list[QueryDeltaDict]
    biggest_losses: list[QueryDeltaDict]


class BootstrapDict(TypedDict):
    mean_a: float
    mean_b: float
    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    samples: int


class Comparison(TypedDict):
    a: SystemResult
    b: SystemResult | None  # None when one system is evaluated alone
    queries: int  # number of queries scored, the same for every metric
    metrics: list[str]
    headline: str  # the metric whose per-query differences the report plots
    confidence: float
    bootstrap: dict[str, BootstrapDict]  # metric -> A minus B; empty without B
    wins_losses: dict[str, WinsLossesDict]  # metric -> A against B; empty without B
    query_texts: dict[str, str]  # query id -> text, for the scored queries that have one


def _query_ids(per_query: Mapping[str, Mapping[str, float]], name: str) -> list[str]:
    if not per_query:
        raise ValueError(f"system {name!r} has no metric")
    qids = [list(values) for values in per_query.values()]
    if any(set(q) != set(qids[0]) for q in qids):
        raise ValueError(f"system {name!r}: metrics were scored on different queries")
    return qids[0]


def compare(
    name_a: str,
    per_query_a: Mapping[str, Mapping[str, float]],
    name_b: str | None = None,
    per_query_b: Mapping[str, Mapping[str, float]] | None = None,
    queries: Mapping[str, str] | None = None,
    *,
    samples: int = 10000,
    seed: int = 0,
    confidence: float = 0.95,
    top: int = 10,
    headline: str | None = None,
) -> Comparison:
    """Summarise system A, and compare it with system B when B is given (differences are A - B).

    Args:
        name_a, per_query_a: system A's name and ``evaluate_run`` output.
        name_b, per_query_b: the same for system B (both or neither).
        queries: query id -> text, shown next to the biggest wins and losses.
        samples, seed, confidence: passed to ``paired_bootstrap`` for each metric.
        top: how many of the biggest per-query wins and losses to keep.
        headline: the metric to plot per query; defaults to the first ``ndcg@k``.

    Raises:
        ValueError: only one of ``name_b``/``per_query_b`` is given; a system scored its
            metrics on different queries; B's metrics or queries differ from A's; no
            query was scored; ``headline`` is not a metric.
    """
    if (name_b is None) != (per_query_b is None):
        raise ValueError("give both name_b and per_query_b, or neither")
    qids = _query_ids(per_query_a, name_a)
    if not qids:
        raise ValueError(f"system {name_a!r} scored no query")
    metrics = list(per_query_a)
    if headline is None:
        headline = next((m for m in metrics if m.startswith("ndcg@")), metrics[0])
    if headline not in per_query_a:
        raise ValueError(f"headline metric {headline!r} is not one of {metrics}")
    texts = {qid: queries[qid] for qid in qids if queries and qid in queries}
    result = Comparison(
        a=SystemResult(name=name_a, means=summarize(per_query_a), per_query=_plain(per_query_a)),
        b=None,
        queries=len(qids),
        metrics=metrics,
        headline=headline,
        confidence=confidence,
        bootstrap={},
        wins_losses={},
        query_texts=texts,
    )
    if name_b is None or per_query_b is None:
        return result
    if set(per_query_b) != set(metrics) or set(_query_ids(per_query_b, name_b)) != set(qids):
        raise ValueError(f"systems {name_a!r} and {name_b!r} must be scored on the same metrics and queries")
    result["b"] = SystemResult(name=name_b, means=summarize(per_query_b), per_query=_plain(per_query_b))
    for metric in metrics:
        a = [per_query_a[metric][q] for q in qids]
        b = [per_query_b[metric][q] for q in qids]
        boot = paired_bootstrap(a, b, samples=samples, seed=seed, confidence=confidence)
        result["bootstrap"][metric] = BootstrapDict(**asdict(boot))
        result["wins_losses"][metric] = WinsLossesDict(**asdict(wins_losses(a, b, qids, top=top)))
    return result


def _plain(per_query: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float]]:
    return {metric: {qid: float(v) for qid, v in values.items()} for metric, values in per_query.items()}
