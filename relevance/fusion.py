"""Score fusion of the lexical and vector candidate lists.

Written by hand: RRF and a normalised linear blend are a few lines of arithmetic,
and no maintained library exposes them over our hit type with per-hit component
scores and ranks kept for explanations.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple

import numpy as np

from relevance.engines.base import EngineHit

FusionMethod = Literal["rrf", "linear"]
Normalization = Literal["minmax", "zscore"]


class FusedHit(NamedTuple):  # immutable and ~5x cheaper to build than a frozen dataclass: hundreds per search
    product_id: str
    score: float
    lexical_score: float | None
    lexical_rank: int | None
    vector_score: float | None
    vector_rank: int | None
    ltr_score: float | None = None  # set when the learned reranker ordered this hit

    @property
    def ranking_score(self) -> float:
        """The score the list is ordered by: the reranker's when it ran, else the fused one."""
        return self.score if self.ltr_score is None else self.ltr_score

    def reranked(self, ltr_score: float) -> FusedHit:
        return FusedHit(*self[:-1], ltr_score)  # positional: several times cheaper than _replace

    @property
    def best_rank(self) -> int:
        return min(rank for rank in (self.lexical_rank, self.vector_rank) if rank is not None)


class _Absent:
    """Stands in for the list a product is missing from: no score, no rank."""

    score = rank = None


_MISSING, _NO_RANK = _Absent(), float("inf")


def rrf_scores(ranks: Sequence[int | None], k: float) -> float:
    return sum(1.0 / (k + rank) for rank in ranks if rank is not None)


def normalise(scores: Sequence[float], method: Normalization) -> np.ndarray:
    """Min-max to [0, 1] (all-equal lists map to 1) or z-scores (all-equal map to 0)."""
    values = np.asarray(scores, dtype=np.float64)
    if len(values) == 0:
        return values
    if method == "minmax":
        low, high = values.min(), values.max()
        return np.ones_like(values) if high == low else (values - low) / (high - low)
    std = values.std()
    return np.zeros_like(values) if std == 0 else (values - values.mean()) / std


def fuse(
    lexical: Sequence[EngineHit],
    vector: Sequence[EngineHit],
    *,
    method: FusionMethod = "rrf",
    rrf_k: float = 60.0,
    normalization: Normalization = "minmax",
    lexical_weight: float = 0.5,
    vector_weight: float = 0.5,
) -> list[FusedHit]:
    """Merge two candidate lists into one ordered list.

    Linear blend: a product missing from a list gets that list's lowest normalised
    score (0 for min-max), i.e. it counts as no better than the worst candidate seen.
    Ties are broken by the best component rank, then product id, so the order is
    deterministic and pages cut from it are stable.
    """
    lex = {hit.product_id: hit for hit in lexical}
    vec = {hit.product_id: hit for hit in vector}
    ids = list(dict.fromkeys([*lex, *vec]))
    if method == "rrf":
        lex_part = {pid: 1.0 / (rrf_k + hit.rank) for pid, hit in lex.items()}
        vec_part = {pid: 1.0 / (rrf_k + hit.rank) for pid, hit in vec.items()}
        fused_scores = {pid: lex_part.get(pid, 0.0) + vec_part.get(pid, 0.0) for pid in ids}
    elif method == "linear":
        lex_norm = dict(zip(lex, normalise([h.score for h in lexical], normalization).tolist(), strict=True))
        vec_norm = dict(zip(vec, normalise([h.score for h in vector], normalization).tolist(), strict=True))
        lex_floor = min(lex_norm.values(), default=0.0)
        vec_floor = min(vec_norm.values(), default=0.0)
        fused_scores = {
            pid: lexical_weight * lex_norm.get(pid, lex_floor) + vector_weight * vec_norm.get(pid, vec_floor)
            for pid in ids
        }
    else:
        raise ValueError(f"unknown fusion method {method!r}")
    # Sort plain tuples, then build the hits: the hot path of every search, so no per-hit properties here.
    missing = _MISSING
    keyed = []
    for pid in ids:
        lexical_hit, vector_hit = lex.get(pid, missing), vec.get(pid, missing)
        best = min(lexical_hit.rank or _NO_RANK, vector_hit.rank or _NO_RANK)
        keyed.append((-fused_scores[pid], best, pid, lexical_hit, vector_hit))
    keyed.sort(key=lambda item: item[:3])
    return [
        FusedHit(pid, -negative, lexical_hit.score, lexical_hit.rank, vector_hit.score, vector_hit.rank)
        for negative, _, pid, lexical_hit, vector_hit in keyed
    ]


def single_list(hits: Sequence[EngineHit], *, lexical: bool) -> list[FusedHit]:
    """One retrieval path only (mode=lexical or mode=vector), in the engine's order."""
    return [
        FusedHit(
            hit.product_id,
            hit.score,
            hit.score if lexical else None,
            hit.rank if lexical else None,
            None if lexical else hit.score,
            None if lexical else hit.rank,
        )
        for hit in hits
    ]
