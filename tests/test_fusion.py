from __future__ import annotations

import math

import pytest

from relevance.engines.base import EngineHit
from relevance.fusion import fuse, normalise, single_list


def hits(*pairs: tuple[str, float]) -> list[EngineHit]:
    return [EngineHit(pid, score, rank) for rank, (pid, score) in enumerate(pairs, start=1)]


LEX = hits(("a", 10.0), ("b", 6.0), ("c", 2.0))
VEC = hits(("c", 0.9), ("d", 0.8), ("a", 0.5))


def test_rrf_sums_reciprocal_ranks() -> None:
    fused = {h.product_id: h for h in fuse(LEX, VEC, method="rrf", rrf_k=60)}
    assert fused["a"].score == pytest.approx(1 / 61 + 1 / 63)
    assert fused["c"].score == pytest.approx(1 / 63 + 1 / 61)
    assert fused["b"].score == pytest.approx(1 / 62)
    assert fused["d"].score == pytest.approx(1 / 62)
    assert (fused["a"].lexical_rank, fused["a"].vector_rank) == (1, 3)
    assert fused["b"].vector_rank is None and fused["b"].vector_score is None


def test_rrf_k_changes_the_balance() -> None:
    small_k = [h.product_id for h in fuse(hits(("x", 1), ("y", 1)), hits(("y", 1), ("z", 1)), rrf_k=1)]
    assert small_k[0] == "y"  # in both lists: 1/3 + 1/2 beats 1/2


def test_ties_break_by_best_rank_then_id() -> None:
    order = [h.product_id for h in fuse(LEX, VEC, method="rrf")]
    # a and c tie on score, both with best rank 1 -> by id; b and d tie with best rank 2 -> by id
    assert order == ["a", "c", "b", "d"]


def test_linear_minmax_blend() -> None:
    fused = {h.product_id: h.score for h in fuse(LEX, VEC, method="linear", lexical_weight=0.7, vector_weight=0.3)}
    lex_norm = {"a": 1.0, "b": 0.5, "c": 0.0}
    vec_norm = {"c": 1.0, "d": 0.75, "a": 0.0}
    for pid in "abcd":
        expected = 0.7 * lex_norm.get(pid, 0.0) + 0.3 * vec_norm.get(pid, 0.0)
        assert fused[pid] == pytest.approx(expected)


def test_linear_zscore_blend_uses_list_floor_for_missing() -> None:
    fused = {h.product_id: h.score for h in fuse(LEX, VEC, method="linear", normalization="zscore")}
    lex = [10.0, 6.0, 2.0]
    mean, std = sum(lex) / 3, math.sqrt(sum((x - 6.0) ** 2 for x in lex) / 3)
    z_lex_a = (10.0 - mean) / std
    vec = [0.9, 0.8, 0.5]
    vmean = sum(vec) / 3
    vstd = math.sqrt(sum((x - vmean) ** 2 for x in vec) / 3)
    z_vec_a = (0.5 - vmean) / vstd
    assert fused["a"] == pytest.approx(0.5 * z_lex_a + 0.5 * z_vec_a)
    # b is missing from the vector list: it gets that list's lowest z-score
    z_lex_b = (6.0 - mean) / std
    assert fused["b"] == pytest.approx(0.5 * z_lex_b + 0.5 * min((x - vmean) / vstd for x in vec))


def test_normalise_degenerate_lists() -> None:
    assert list(normalise([3.0, 3.0], "minmax")) == [1.0, 1.0]
    assert list(normalise([3.0, 3.0], "zscore")) == [0.0, 0.0]
    assert len(normalise([], "minmax")) == 0


def test_one_empty_list_keeps_the_other_order() -> None:
    assert [h.product_id for h in fuse(LEX, [], method="rrf")] == ["a", "b", "c"]
    assert [h.product_id for h in fuse([], VEC, method="linear")] == ["c", "d", "a"]


def test_single_list_keeps_engine_order_and_components() -> None:
    only = single_list(VEC, lexical=False)
    assert [h.product_id for h in only] == ["c", "d", "a"]
    assert only[0].vector_rank == 1 and only[0].lexical_rank is None
