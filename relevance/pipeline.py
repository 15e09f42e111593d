"""The query-time pipeline: embed the query, retrieve both candidate lists, fuse, page.

Pages are cut from one fixed fused window (``settings.window``), so page 2 never
repeats page 1 and the total a client sees does not move between pages.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from indexer.product import Product
from relevance.config import Settings
from relevance.embedder import Embedder
from relevance.engines.base import NativeFusion, SearchEngine
from relevance.errors import NotFoundError
from relevance.filters import SearchFilters
from relevance.fusion import FusedHit, FusionMethod, Normalization, fuse, single_list

Mode = Literal["hybrid", "lexical", "vector"]


class FusionOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    method: FusionMethod = "rrf"
    backend: Literal["layer", "engine"] = "layer"
    rrf_k: float = Field(60.0, gt=0)
    normalization: Normalization = "minmax"
    lexical_weight: float = Field(0.5, ge=0)
    vector_weight: float = Field(0.5, ge=0)

    @classmethod
    def from_settings(cls, settings: Settings) -> FusionOptions:
        return cls(
            method=settings.fusion,
            backend=settings.fusion_backend,
            rrf_k=settings.rrf_k,
            normalization=settings.linear_normalization,
            lexical_weight=settings.lexical_weight,
            vector_weight=settings.vector_weight,
        )


@dataclass
class Timings:
    stages_ms: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.stages_ms[name] = round((time.perf_counter() - started) * 1000, 3)


@dataclass
class RankedProduct:
    product: Product
    hit: FusedHit


@dataclass
class SearchResult:
    total: int
    results: list[RankedProduct]
    timings: Timings


class SearchPipeline:
    def __init__(self, engine: SearchEngine, embedder: Embedder, settings: Settings) -> None:
        self.engine = engine
        self.embedder = embedder
        self.settings = settings
        self.alias = settings.index_alias
        self.default_fusion = FusionOptions.from_settings(settings)

    def on_index(self, index: str) -> SearchPipeline:
        """The same pipeline reading ``index`` (a version name) instead of the alias."""
        clone = copy.copy(self)
        clone.alias = index
        return clone

    def ranked(
        self,
        text: str,
        filters: SearchFilters,
        *,
        mode: Mode = "hybrid",
        fusion: FusionOptions | None = None,
        depth: int | None = None,
        candidates: int | None = None,
        timings: Timings | None = None,
    ) -> list[FusedHit]:
        """The fused list for ``text``, cut to ``depth`` (default: the window).

        ``candidates`` is the top-N of each retrieval list (default: the setting; a
        single-path mode takes enough to fill the window).
        """
        timings = timings or Timings()
        fusion = fusion or self.default_fusion
        depth = depth or self.settings.window
        n = candidates or max(self.settings.candidates, depth if mode != "hybrid" else 0)
        if mode == "hybrid" and fusion.backend == "engine":
            return self._engine_fused(text, filters, fusion, depth, n, timings)
        lexical = vector = []
        if mode in ("hybrid", "vector"):
            with timings.stage("embed"):
                query_vector = self.embedder.encode_query(text)
            with timings.stage("vector"):
                vector = self.engine.vector_search(self.alias, query_vector, filters, n)
        if mode in ("hybrid", "lexical"):
            with timings.stage("lexical"):
                lexical = self.engine.lexical_search(self.alias, text, filters, n)
        with timings.stage("fusion"):
            if mode == "lexical":
                fused = single_list(lexical, lexical=True)
            elif mode == "vector":
                fused = single_list(vector, lexical=False)
            else:
                fused = fuse(
                    lexical,
                    vector,
                    method=fusion.method,
                    rrf_k=fusion.rrf_k,
                    normalization=fusion.normalization,
                    lexical_weight=fusion.lexical_weight,
                    vector_weight=fusion.vector_weight,
                )
        return fused[:depth]

    def _engine_fused(
        self, text: str, filters: SearchFilters, fusion: FusionOptions, depth: int, n: int, timings: Timings
    ) -> list[FusedHit]:
        """Both retrievals and their fusion in one engine request (no per-list scores to explain)."""
        with timings.stage("embed"):
            query_vector = self.embedder.encode_query(text)
        native = NativeFusion(
            method=fusion.method,
            rank_constant=fusion.rrf_k,
            normalization=fusion.normalization,
            lexical_weight=fusion.lexical_weight,
            vector_weight=fusion.vector_weight,
            window=n,
        )
        with timings.stage("hybrid"):
            hits = self.engine.hybrid_search(self.alias, text, query_vector, filters, depth, native)
        return [FusedHit(hit.product_id, hit.score, None, None, None, None) for hit in hits]

    def search(
        self,
        text: str,
        filters: SearchFilters,
        *,
        page: int = 1,
        size: int = 10,
        mode: Mode = "hybrid",
        fusion: FusionOptions | None = None,
    ) -> SearchResult:
        timings = Timings()
        window = self.ranked(text, filters, mode=mode, fusion=fusion, timings=timings)
        return self._page(window, page, size, timings)

    def similar(self, product_id: str, filters: SearchFilters, *, page: int = 1, size: int = 10) -> SearchResult:
        """Vector neighbours of a product, the product itself excluded."""
        timings = Timings()
        vectors = self.engine.get_vectors(self.alias, [product_id])
        if product_id not in vectors:
            raise NotFoundError(f"product {product_id!r} is not in the index", field="product_id")
        with timings.stage("vector"):
            hits = self.engine.vector_search(
                self.alias, vectors[product_id], filters, self.settings.window, exclude_ids=[product_id]
            )
        return self._page(single_list(hits, lexical=False), page, size, timings)

    def rank_candidates(
        self, text: str, candidate_ids: Sequence[str], *, mode: Mode = "hybrid", fusion: FusionOptions | None = None
    ) -> list[FusedHit]:
        """Re-rank exactly ``candidate_ids``: every candidate comes back once.

        Candidates neither retrieval path scored (no term matched in lexical mode, or
        unknown to the index) follow the scored ones in their given order.
        """
        unique = list(dict.fromkeys(candidate_ids))
        filters = SearchFilters(product_ids=tuple(unique))
        ranked = self.ranked(text, filters, mode=mode, fusion=fusion, depth=len(unique), candidates=len(unique))
        seen = {hit.product_id for hit in ranked}
        tail = [FusedHit(pid, float("-inf"), None, None, None, None) for pid in unique if pid not in seen]
        return ranked + tail

    def _page(self, window: list[FusedHit], page: int, size: int, timings: Timings) -> SearchResult:
        start = (page - 1) * size
        page_hits = window[start : start + size]
        with timings.stage("fetch"):
            products = self.engine.get(self.alias, [hit.product_id for hit in page_hits])
        results = [RankedProduct(products[hit.product_id], hit) for hit in page_hits if hit.product_id in products]
        return SearchResult(total=len(window), results=results, timings=timings)
