"""Offline relevance metrics, defined as in the benchmark data's README.

NDCG uses the exponential gain ``2^g - 1`` and a ``log2(rank + 1)`` discount. The
ideal ranking comes from the query's judged products, so in full-retrieval mode an
unjudged product counts as gain 0 and cannot inflate the ideal. Written out here
because that ideal-from-judgments rule is not what library NDCGs compute; a test
cross-checks it against scikit-learn where the two definitions agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def dcg(gains: Sequence[float]) -> float:
    values = np.asarray(gains, dtype=np.float64)
    if values.size == 0:
        return 0.0
    discounts = np.log2(np.arange(2, values.size + 2))
    return float(np.sum((2.0**values - 1.0) / discounts))


def ndcg_at_k(ranked_ids: Sequence[str], judged_gains: Mapping[str, float], k: int = 10) -> float:
    """NDCG@k of ``ranked_ids`` given ``judged_gains`` (product id -> gain, unjudged = 0)."""
    ideal = dcg(sorted(judged_gains.values(), reverse=True)[:k])
    if ideal == 0:
        return 0.0
    return dcg([judged_gains.get(pid, 0.0) for pid in ranked_ids[:k]]) / ideal
