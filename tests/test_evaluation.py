from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import ndcg_score

from relevance.evaluation import dcg, ndcg_at_k


def test_dcg_by_hand() -> None:
    assert dcg([2, 0, 1]) == pytest.approx(3 / math.log2(2) + 0 + 1 / math.log2(4))


def test_perfect_and_reversed_rankings() -> None:
    gains = {"a": 2.0, "b": 1.0, "c": 0.0}
    assert ndcg_at_k(["a", "b", "c"], gains) == pytest.approx(1.0)
    assert ndcg_at_k(["c", "b", "a"], gains) < 1.0


def test_unjudged_products_count_as_zero_and_do_not_change_the_ideal() -> None:
    gains = {"a": 2.0, "b": 1.0}
    with_noise = ndcg_at_k(["x", "a", "b"], gains)
    assert with_noise == pytest.approx(dcg([0, 2, 1]) / dcg([2, 1]))


def test_matches_scikit_learn_on_a_judged_list() -> None:
    rng = np.random.default_rng(7)
    for _ in range(50):
        n = int(rng.integers(2, 16))
        gains = rng.choice([0.0, 0.33, 0.67, 1.0, 1.33, 1.67, 2.0], size=n)
        scores = rng.permutation(n).astype(float)  # no ties: sklearn averages tied scores
        ranked = [str(i) for i in np.argsort(-scores)]
        ours = ndcg_at_k(ranked, {str(i): g for i, g in enumerate(gains)}, k=10)
        if dcg(sorted(gains, reverse=True)[:10]) == 0:
            continue
        theirs = ndcg_score([2.0**gains - 1.0], [scores], k=10)
        assert ours == pytest.approx(theirs)
