from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest

from relevance.evaluation import dcg
from relevance.metrics import (
    average_precision,
    condensed_ndcg_at_k,
    err_at_k,
    evaluate_run,
    judged_at_k,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
    reciprocal_rank,
    summarize,
)

GAINS = {"a": 2.0, "b": 1.0, "c": 0.0, "d": 1.0}


def test_binary_metrics_by_hand() -> None:
    ranked = ["x", "a", "c", "b", "y"]  # relevant (gain > 0) at ranks 2 and 4; "d" never retrieved
    assert average_precision(ranked, GAINS) == pytest.approx((1 / 2 + 2 / 4) / 3)
    assert reciprocal_rank(ranked, GAINS) == pytest.approx(1 / 2)
    assert precision_at_k(ranked, GAINS, k=4) == pytest.approx(2 / 4)
    assert precision_at_k(ranked, GAINS, k=10) == pytest.approx(2 / 10)  # a short list is not rewarded
    assert recall_at_k(ranked, GAINS, k=3) == pytest.approx(1 / 3)
    assert recall_at_k(ranked, GAINS, k=10) == pytest.approx(2 / 3)


def test_relevant_threshold_makes_only_high_gains_relevant() -> None:
    ranked = ["b", "d", "a"]
    assert reciprocal_rank(ranked, GAINS, relevant_threshold=2) == pytest.approx(1 / 3)
    assert average_precision(ranked, GAINS, relevant_threshold=2) == pytest.approx(1 / 3)
    assert precision_at_k(ranked, GAINS, k=2, relevant_threshold=2) == 0.0
    assert recall_at_k(ranked, GAINS, k=3, relevant_threshold=2) == 1.0
    assert reciprocal_rank(ranked, GAINS, relevant_threshold=1) == 1.0


def test_no_relevant_product_scores_zero() -> None:
    gains = {"a": 0.0, "b": 0.0}
    for metric in (average_precision, reciprocal_rank, recall_at_k, err_at_k, ndcg_at_k):
        assert metric(["a", "b"], gains) == 0.0


def test_err_worked_example() -> None:
    # R = (2^g - 1) / 2^2 = 3/4, 1/4, 0: ERR = 1 * 3/4 + 1/2 * (1 - 3/4) * 1/4
    assert err_at_k(["a", "b", "c"], GAINS) == pytest.approx(0.78125)
    # with a larger scale the top product satisfies less often: R = 3/8, 1/8
    assert err_at_k(["a", "b"], GAINS, max_gain=3) == pytest.approx(3 / 8 + 1 / 2 * 5 / 8 * 1 / 8)
    assert err_at_k(["a", "b", "c"], GAINS, k=1) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="max_gain"):
        err_at_k(["a"], GAINS, max_gain=1)


def _err_by_enumeration(gains: list[float], max_gain: float) -> float:
    """ERR as an expectation: each rank satisfies independently, the user stops at the first satisfied one."""
    p = [(2.0**g - 1.0) / 2.0**max_gain for g in gains]
    expected = 0.0
    for outcome in itertools.product((True, False), repeat=len(gains)):
        probability = math.prod(pi if hit else 1 - pi for pi, hit in zip(p, outcome, strict=True))
        first = next((rank for rank, hit in enumerate(outcome, start=1) if hit), None)
        expected += probability / first if first else 0.0
    return expected


def test_err_matches_enumeration_of_user_outcomes() -> None:
    rng = np.random.default_rng(3)
    for _ in range(30):
        n = int(rng.integers(1, 9))
        gains = {str(i): float(g) for i, g in enumerate(rng.choice([0, 0.33, 1, 1.67, 2], size=n))}
        ranked = [str(i) for i in rng.permutation(n)] + ["unjudged"]
        k = int(rng.integers(1, n + 2))
        expected = _err_by_enumeration([gains.get(pid, 0.0) for pid in ranked[:k]], 2.0)
        assert err_at_k(ranked, gains, k=k, max_gain=2.0) == pytest.approx(expected, abs=1e-12)


def test_evaluate_run_scores_judged_queries_and_skips_uniform_ones() -> None:
    judgments = {
        "q1": {"a": 2.0, "b": 0.0},
        "q2": {"c": 1.0, "d": 1.0},  # all one gain: cannot tell rankings apart
        "q3": {"e": 1.0, "f": 0.0},  # not in the run: an empty ranking
    }
    run = {"q1": ["b", "a"], "q2": ["c"], "q9": ["z"]}
    per_query = evaluate_run(run, judgments, k=5)
    assert list(per_query) == ["ndcg@5", "map", "mrr", "err@5", "p@5", "recall@5"]
    assert all(set(values) == {"q1", "q3"} for values in per_query.values())
    assert per_query["ndcg@5"]["q1"] == pytest.approx(dcg([0, 2]) / dcg([2]))
    assert per_query["mrr"] == {"q1": 0.5, "q3": 0.0}
    assert per_query["p@5"]["q1"] == pytest.approx(1 / 5)
    assert all(values["q3"] == 0.0 for values in per_query.values())
    assert set(evaluate_run(run, judgments, skip_uniform=False)["map"]) == {"q1", "q2", "q3"}


def test_pool_metrics_separate_the_order_of_judged_products_from_which_products_reach_the_top() -> None:
    gains = {"a": 2.0, "b": 1.0, "c": 0.0}
    ordered = ["a", "b", "c"]
    # Unjudged products (u*) count as gain 0: they lower NDCG wherever they sit...
    padded = ["u1", "a", "u2", "u3", "b", "c"]
    assert ndcg_at_k(padded, gains, 3) < ndcg_at_k(ordered, gains, 3) == pytest.approx(1.0)
    # ...but not the condensed NDCG, which scores the judged products' order alone.
    assert condensed_ndcg_at_k(padded, gains, 3) == pytest.approx(1.0)
    swapped = ["u1", "b", "a", "c"]
    condensed = condensed_ndcg_at_k(swapped, gains, 3)
    assert condensed == pytest.approx(ndcg_at_k(["b", "a", "c"], gains, 3)) and condensed < 1.0
    assert judged_at_k(padded, gains, 4) == 0.25 and judged_at_k(ordered, gains, 10) == pytest.approx(0.3)
    assert judged_at_k([], gains, 10) == 0.0 and condensed_ndcg_at_k(["u1"], gains, 10) == 0.0
    per_query = evaluate_run({"q1": padded}, {"q1": gains}, k=3, pool_metrics=True)
    assert list(per_query)[-2:] == ["judged@3", "condensed_ndcg@3"]
    assert per_query["judged@3"]["q1"] == pytest.approx(1 / 3) and per_query["condensed_ndcg@3"]["q1"] == 1.0


def test_evaluate_run_uses_one_err_scale_for_all_queries() -> None:
    judgments = {"q1": {"a": 1.0, "b": 0.0}, "q2": {"c": 2.0, "d": 0.0}}
    per_query = evaluate_run({"q1": ["a"], "q2": ["c"]}, judgments)
    assert per_query["err@10"] == {"q1": pytest.approx(1 / 4), "q2": pytest.approx(3 / 4)}
    assert evaluate_run({"q1": ["a"]}, {"q1": judgments["q1"]})["err@10"]["q1"] == pytest.approx(1 / 2)
    assert evaluate_run({"q1": ["a"]}, judgments, max_gain=3.0)["err@10"]["q1"] == pytest.approx(1 / 8)


def test_evaluate_run_rejects_repeated_products_and_bad_k() -> None:
    with pytest.raises(ValueError, match=r"'q1'.*'a'"):
        evaluate_run({"q1": ["a", "b", "a"]}, {"q1": {"a": 1.0, "b": 0.0}})
    with pytest.raises(ValueError, match="k must be"):
        evaluate_run({}, {"q1": {"a": 1.0, "b": 0.0}}, k=0)


def test_summarize_takes_means_and_refuses_an_empty_metric() -> None:
    assert summarize({"map": {"q1": 1.0, "q2": 0.5}, "mrr": {"q1": 0.25}}) == {"map": 0.75, "mrr": 0.25}
    with pytest.raises(ValueError, match="no query scored for map"):
        summarize({"map": {}})


def _random_case(rng: np.random.Generator, queries: int) -> tuple[dict[str, dict[str, int]], dict[str, list[str]]]:
    qrels: dict[str, dict[str, int]] = {}
    run: dict[str, list[str]] = {}
    for q in range(queries):
        qid = f"q{q}"
        pool = [f"p{i}" for i in range(int(rng.integers(2, 25)))]
        judged = rng.choice(pool, size=int(rng.integers(1, len(pool) + 1)), replace=False)
        qrels[qid] = {str(pid): int(rng.integers(0, 4)) for pid in judged}
        run[qid] = [str(pid) for pid in rng.permutation(pool)[: int(rng.integers(1, len(pool) + 1))]]
    return qrels, run


def test_matches_ranx_on_random_runs() -> None:
    """ranx agrees on integer gains: its ndcg_burges is 2^g - 1 over the judged ideal, like ours."""
    from numba.core.errors import NumbaTypeSafetyWarning
    from ranx import evaluate

    qrels, run = _random_case(np.random.default_rng(11), 150)
    ranx_run = {qid: {pid: float(len(ranked) - i) for i, pid in enumerate(ranked)} for qid, ranked in run.items()}
    judgments = {qid: {pid: float(g) for pid, g in gains.items()} for qid, gains in qrels.items()}
    for k, level in ((10, 1), (5, 2)):
        ours = evaluate_run(run, judgments, k=k, relevant_threshold=level, skip_uniform=False)
        names = {
            f"ndcg@{k}": f"ndcg_burges@{k}",
            "map": f"map-l{level}",
            "mrr": f"mrr-l{level}",
            f"p@{k}": f"precision@{k}-l{level}",
            f"recall@{k}": f"recall@{k}-l{level}",
        }
        with warnings.catch_warnings():
            # numba warns about an integer cast in ranx's kernels while it compiles them
            warnings.simplefilter("ignore", NumbaTypeSafetyWarning)
            theirs = evaluate(qrels, ranx_run, list(names.values()), return_mean=False, threads=1)
        qids = list(qrels)  # ranx keeps the qrels' order
        for name, ranx_name in names.items():
            expected = np.asarray(theirs[ranx_name])
            assert [ours[name][q] for q in qids] == pytest.approx(list(expected), abs=1e-9), name
    default = evaluate_run(run, judgments, skip_uniform=False)
    assert default["map"] == evaluate_run(run, judgments, relevant_threshold=1, skip_uniform=False)["map"]
