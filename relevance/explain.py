"""Explaining rankings: the learned model's view of the products it scored, and where any
product lands for a query, stage by stage.

Relevance engineers ask "why is this product 37th?" or "why is it not found at all?".
``explain=true`` answers for the products on a page; this answers for any product,
including one that never made the candidate lists: its BM25 score and cosine for the
query, asked of the engine for that product alone, set against the last entry of each
list, so the answer says how far it was from getting in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from indexer.product import Product
from relevance.errors import NotFoundError
from relevance.filters import SearchFilters
from relevance.fusion import FusedHit
from relevance.pipeline import FusionOptions, Mode, RerankDetail, SearchPipeline


@dataclass(frozen=True)
class ListPlacement:
    """The product in one retrieval list (BM25 or kNN)."""

    rank: int | None  # 1-based; None: not in the list
    score: float | None  # its BM25 score or cosine for the query; None: no query term matched (BM25)
    length: int  # the list's length: the candidates that path retrieved
    last_score: float | None  # the list's last entry's score, what a product had to beat to get in

    def describe(self) -> str:
        if self.rank is not None:
            return f"rank {self.rank} of {self.length} (score {self.score:.4g})"
        if self.score is None:
            return "matched no query term"
        last = f"; the list's last of {self.length} scored {self.last_score:.4g}" if self.last_score is not None else ""
        return f"score {self.score:.4g}, not in the list{last}"


@dataclass
class Placement:
    product: Product
    query: str
    mode: Mode
    passes_filters: bool
    rank: int | None  # in the served ranking; None: outside the window pages are cut from
    window: int  # the served ranking's length
    fused_rank: int | None  # in the fused list, before any learned reordering
    fused_score: float | None
    lexical: ListPlacement | None  # None where the mode (or engine-side fusion) has no such list
    vector: ListPlacement | None
    reranked_by: str | None  # the learned model that ordered the window, if any
    learned: dict[str, Any] | None  # its score, bias, feature values and contributions for this product
    corrections: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        """One sentence a relevance engineer can act on."""
        pid = self.product.product_id
        if not self.passes_filters:
            return f"{pid} is excluded by the request's filters"
        lists = [
            f"{name} {found.describe()}" for name, found in (("BM25", self.lexical), ("kNN", self.vector)) if found
        ]
        where = "; ".join(lists)
        if self.rank is None:
            if self.fused_rank is not None:
                return f"{pid} is fused rank {self.fused_rank}, past the {self.window} results served ({where})"
            return f"{pid} is not among the candidates: {where}" if where else f"{pid} is not among the candidates"
        reordered = ""
        if self.reranked_by and self.fused_rank is not None and self.fused_rank != self.rank:
            reordered = f", moved from fused rank {self.fused_rank} by model {self.reranked_by}"
        return f"{pid} is rank {self.rank} of {self.window}{reordered}" + (f" ({where})" if where else "")


def explain_placement(
    pipeline: SearchPipeline,
    text: str,
    product_id: str,
    filters: SearchFilters,
    *,
    mode: Mode = "hybrid",
    fusion: FusionOptions | None = None,
    rerank: bool = True,
) -> Placement:
    """Where ``product_id`` lands for ``text`` under these settings, and why."""
    fusion = fusion or pipeline.default_fusion
    found = pipeline.engine.get(pipeline.alias, [product_id])  # before the search: an unknown id costs none
    if product_id not in found:
        raise NotFoundError(f"product {product_id!r} is not in the index", field="product_id")
    trace = pipeline.trace(text, filters, mode=mode, fusion=fusion, rerank=rerank)
    query_vector = trace.query_vector  # None where no vector was searched (lexical mode, engine-side fusion)
    # Whether the filters let it through, asked of the engine that applies them: a kNN search
    # for the product alone under the filters, with its own vector where no query was embedded
    # (lexical explains embed nothing, so they work while the embedding model mismatches).
    alone = filters.model_copy(update={"product_ids": (product_id,)})
    probe = query_vector
    if probe is None:
        probe = pipeline.engine.get_vectors(pipeline.alias, [product_id])[product_id]
    passes = bool(pipeline.engine.vector_search(pipeline.alias, probe, alone, 1))

    fused_at = {hit.product_id: i for i, hit in enumerate(trace.fused, start=1)}
    served_at = {hit.product_id: i for i, hit in enumerate(trace.served, start=1)}
    fused_hit = trace.fused[fused_at[product_id] - 1] if product_id in fused_at else None
    per_list = mode != "hybrid" or fusion.backend == "layer"  # engine-side fusion reports no per-list scores
    lexical = vector = None
    only_it = SearchFilters(product_ids=(product_id,))  # its own scores, whatever the filters say
    if per_list and mode in ("hybrid", "lexical"):
        matched = pipeline.engine.lexical_search(pipeline.alias, trace.lexical_text, only_it, 1)
        lexical = _in_list(trace.fused, fused_hit, matched[0].score if matched else None, lexical=True)
    if per_list and mode in ("hybrid", "vector") and query_vector is not None:
        cosine = pipeline.engine.cosines(pipeline.alias, query_vector, [product_id]).get(product_id)
        vector = _in_list(trace.fused, fused_hit, cosine, lexical=False)
    model_version = trace.detail.model_version if trace.detail else None
    return Placement(
        product=found[product_id],
        query=text,
        mode=mode,
        passes_filters=passes,
        rank=served_at.get(product_id),
        window=len(trace.served),
        fused_rank=fused_at.get(product_id),
        fused_score=fused_hit.score if fused_hit else None,
        lexical=lexical,
        vector=vector,
        reranked_by=model_version,
        learned=learned_explanations(pipeline, trace.detail, [product_id]).get(product_id),
        corrections=trace.corrected,
    )


def _in_list(fused: list[FusedHit], hit: FusedHit | None, score: float | None, *, lexical: bool) -> ListPlacement:
    """The product in the BM25 (``lexical``) or kNN list that ``fused`` was built from."""
    entries = [(h.lexical_rank, h.lexical_score) if lexical else (h.vector_rank, h.vector_score) for h in fused]
    ranked = [(rank, value) for rank, value in entries if rank is not None]
    last = max(ranked, default=(0, None))
    rank = (hit.lexical_rank if lexical else hit.vector_rank) if hit else None
    if rank is not None:
        score = hit.lexical_score if lexical else hit.vector_score  # the score the list ranked it by
    return ListPlacement(rank=rank, score=score, length=last[0], last_score=last[1])


def learned_explanations(
    pipeline: SearchPipeline, detail: RerankDetail | None, product_ids: list[str]
) -> dict[str, dict[str, Any]]:
    """The model's score, bias, feature values and contributions for those of ``product_ids`` it
    scored, when the model that ordered the window (``detail``) is still the active one."""
    model = pipeline.reranker.model() if pipeline.reranker else None
    if detail is None or detail.model_version is None or model is None or model.version != detail.model_version:
        return {}
    scored = set(detail.candidate_ids)
    ids = [pid for pid in product_ids if pid in scored]
    explained = pipeline.reranker.explain(model, detail.rows_for(ids))
    scores = dict(zip(detail.candidate_ids, detail.scores.tolist(), strict=True)) if detail.scores is not None else {}
    return {
        pid: {"model_version": model.version, "score": scores[pid], **parts}
        for pid, parts in zip(ids, explained, strict=True)
    }
