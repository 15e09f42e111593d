from __future__ import annotations

import json

import numpy as np
import pytest

from relevance.comparison import compare
from relevance.significance import QueryDelta, paired_bootstrap, wins_losses


def test_a_system_better_on_every_query_is_significant() -> None:
    rng = np.random.default_rng(1)
    b = rng.random(40)
    a = b + rng.uniform(0.01, 0.05, size=40)
    result = paired_bootstrap(a, b, samples=2000)
    assert result.difference == pytest.approx(float(np.mean(a - b)))
    assert 0 < result.ci_low < result.difference < result.ci_high
    assert result.p_value < 0.01
    assert (result.mean_a, result.mean_b, result.samples) == (pytest.approx(a.mean()), pytest.approx(b.mean()), 2000)
    worse = paired_bootstrap(b, a, samples=2000)
    assert worse.ci_high < 0 and worse.difference == pytest.approx(-result.difference)


def test_identical_systems_differ_by_nothing() -> None:
    a = np.random.default_rng(2).random(25)
    result = paired_bootstrap(a, a, samples=2000)
    assert (result.difference, result.ci_low, result.ci_high, result.p_value) == (0.0, 0.0, 0.0, 1.0)


def test_systems_from_one_distribution_have_a_ci_around_zero() -> None:
    rng = np.random.default_rng(3)
    covered, significant = 0, 0
    for seed in range(20):
        a, b = rng.random(60), rng.random(60)
        result = paired_bootstrap(a, b, samples=1000, seed=seed)
        assert result.ci_low <= result.difference <= result.ci_high
        covered += result.ci_low < 0 < result.ci_high
        significant += result.p_value < 0.05
    assert covered >= 16  # about 19 expected at 95%
    assert significant <= 4  # about 1 expected


def test_exact_sign_flip_p_value_with_few_queries() -> None:
    # 5 positive differences: of the 2^5 sign patterns only "all +" and "all -" are as extreme
    assert paired_bootstrap([1, 2, 3, 4, 5], [0, 0, 0, 0, 0]).p_value == pytest.approx(2 / 32)
    # one non-zero difference: flipping its sign is the only change, so nothing is unusual
    assert paired_bootstrap([1, 0, 1, 0.5], [0, 0, 1, 0.5]).p_value == pytest.approx(1.0)


def test_seed_makes_the_interval_reproducible_and_confidence_widens_it() -> None:
    rng = np.random.default_rng(4)
    a, b = rng.random(50), rng.random(50)
    first = paired_bootstrap(a, b, samples=1000, seed=7)
    assert paired_bootstrap(a, b, samples=1000, seed=7) == first
    assert paired_bootstrap(a, b, samples=1000, seed=8) != first
    narrow = paired_bootstrap(a, b, samples=1000, seed=7, confidence=0.5)
    assert first.ci_low < narrow.ci_low < narrow.ci_high < first.ci_high


def test_paired_bootstrap_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="one length"):
        paired_bootstrap([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="at least 2 queries"):
        paired_bootstrap([1.0], [0.0])
    with pytest.raises(ValueError, match="confidence"):
        paired_bootstrap([1.0, 2.0], [0.0, 1.0], confidence=95)


def test_wins_losses_counts_and_orders_the_biggest_changes() -> None:
    a = [0.9, 0.5, 0.2, 0.7, 0.4 + 1e-12, 0.3]
    b = [0.1, 0.5, 0.9, 0.6, 0.4, 0.5]
    result = wins_losses(a, b, ["q1", "q2", "q3", "q4", "q5", "q6"], top=1)
    assert (result.wins, result.losses, result.ties) == (2, 2, 2)
    assert result.biggest_gains == [QueryDelta("q1", 0.9, 0.1, pytest.approx(0.8))]
    assert result.biggest_losses == [QueryDelta("q3", 0.2, 0.9, pytest.approx(-0.7))]
    assert [d.qid for d in wins_losses(a, b, list("abcdef")).biggest_losses] == ["c", "f"]
    with pytest.raises(ValueError, match="3 query ids"):
        wins_losses(a, b, ["q1", "q2", "q3"])


PER_QUERY_A = {"ndcg@10": {"q1": 0.9, "q2": 0.5, "q3": 0.7}, "map": {"q1": 0.8, "q2": 0.4, "q3": 0.6}}
PER_QUERY_B = {"ndcg@10": {"q3": 0.6, "q2": 0.6, "q1": 0.5}, "map": {"q1": 0.5, "q2": 0.4, "q3": 0.2}}


def test_compare_pairs_queries_by_id_and_is_json_ready() -> None:
    result = compare("bm25", PER_QUERY_A, "knn", PER_QUERY_B, {"q1": "drill", "q9": "not scored"}, samples=500)
    assert result["queries"] == 3 and result["metrics"] == ["ndcg@10", "map"] and result["headline"] == "ndcg@10"
    assert result["a"]["means"]["ndcg@10"] == pytest.approx(0.7)
    assert result["b"] is not None and result["b"]["means"]["map"] == pytest.approx(1.1 / 3)
    assert result["bootstrap"]["ndcg@10"]["difference"] == pytest.approx((0.4 - 0.1 + 0.1) / 3)
    assert result["wins_losses"]["ndcg@10"]["biggest_losses"] == [
        {"qid": "q2", "a": 0.5, "b": 0.6, "delta": pytest.approx(-0.1)}
    ]
    assert result["query_texts"] == {"q1": "drill"}
    assert json.loads(json.dumps(result))["bootstrap"]["map"]["samples"] == 500


def test_compare_one_system_and_refuses_mismatched_systems() -> None:
    alone = compare("bm25", PER_QUERY_A)
    assert alone["b"] is None and alone["bootstrap"] == {} and alone["a"]["means"]["map"] == pytest.approx(0.6)
    with pytest.raises(ValueError, match="same metrics and queries"):
        compare("a", PER_QUERY_A, "b", {"ndcg@10": {"q1": 0.5, "q2": 0.1}, "map": {"q1": 0.5, "q2": 0.3}})
    with pytest.raises(ValueError, match="same metrics and queries"):
        compare("a", PER_QUERY_A, "b", {"map": PER_QUERY_B["map"]})
    reordered = compare("a", PER_QUERY_A, "b", {"map": PER_QUERY_B["map"], "ndcg@10": PER_QUERY_B["ndcg@10"]})
    assert reordered["metrics"] == ["ndcg@10", "map"]
    with pytest.raises(ValueError, match="both"):
        compare("a", PER_QUERY_A, "b")
    with pytest.raises(ValueError, match="different queries"):
        compare("a", {"ndcg@10": {"q1": 1.0}, "map": {"q2": 1.0}})
