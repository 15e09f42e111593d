"""The query-time pipeline: embed the query, retrieve both candidate lists, fuse, page.

Pages are cut from one fixed fused window (``settings.window``), so page 2 never
repeats page 1 and the total a client sees does not move between pages.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from indexer.product import Product
from relevance.config import Settings
from relevance.embedder import Embedder
from relevance.engines.base import EngineHit, NativeFusion, SearchEngine
from relevance.errors import NotFoundError
from relevance.filters import SearchFilters
from relevance.fusion import FusedHit, FusionMethod, Normalization, fuse, single_list
from relevance.index_embedding import IndexEmbedding
from relevance.product_cache import ProductCache
from relevance.served_version import ServedVersion
from relevance.spelling import corrections, lexical_text, vector_text
from reranker.features import Candidate, compute_features
from reranker.judged_categories import EMPTY, JudgedCategories
from reranker.model import RankerModel
from reranker.serving import CatalogStatsProvider, Reranker

Mode = Literal["hybrid", "lexical", "vector"]
# On server engines a second request goes out from here while the request thread works on
# the first: the lexical search while the query is embedded and kNN runs, the cosines of
# the window's unscored products while its products are fetched (ONNX and the HTTP clients
# release the GIL). Threads start lazily, so each forked gunicorn worker gets its own.
_ENGINE_POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="engine")


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
class RerankDetail:
    """What the rerank stage computed for one query: the served feature rows, in served order."""

    model_version: str | None  # None: features computed (for logging) without a model
    candidate_ids: list[str]
    features: np.ndarray
    scores: np.ndarray | None
    products: dict[str, Product]
    categories_of: str | None = None  # the model whose judged-category table the features read

    def rows_for(self, product_ids: Sequence[str]) -> np.ndarray:
        position = {pid: i for i, pid in enumerate(self.candidate_ids)}
        return self.features[[position[pid] for pid in product_ids]]


@dataclass
class RankingTrace:
    """Every list one search built, for explaining where a product landed (relevance.explain)."""

    fused: list[FusedHit]  # the whole fused list, before the window cut and any learned reordering
    served: list[FusedHit]  # the window pages are cut from, in served order
    detail: RerankDetail | None
    query_vector: np.ndarray | None  # None where no vector was searched (lexical mode, engine-side fusion)
    corrected: dict[str, str]
    lexical_text: str  # what the BM25 list searched (the query with its corrections)


@dataclass
class SearchResult:
    total: int
    results: list[RankedProduct]
    timings: Timings
    rerank: RerankDetail | None = None
    corrections: dict[str, str] = field(default_factory=dict)  # misspelt word -> the catalog word(s) searched too


class SearchPipeline:
    def __init__(
        self, engine: SearchEngine, embedder: Embedder, settings: Settings, reranker: Reranker | None = None
    ) -> None:
        self.engine = engine
        self.embedder = embedder
        self.settings = settings
        self.alias = settings.index_alias
        self.default_fusion = FusionOptions.from_settings(settings)
        self.reranker = reranker
        self.served = ServedVersion(engine, settings.index_alias)
        self.catalog_stats = CatalogStatsProvider(settings.data_dir, self.served)
        self.index_embedding = IndexEmbedding(engine, self.served)
        self.product_cache = ProductCache(settings.product_cache_entries)

    def on_index(self, index: str) -> SearchPipeline:
        """The same pipeline reading ``index`` (a version name) instead of the alias."""
        clone = copy.copy(self)
        clone.alias = index
        clone.served = ServedVersion.pinned(index)
        clone.catalog_stats = CatalogStatsProvider(self.settings.data_dir, clone.served)  # that version's statistics
        clone.index_embedding = IndexEmbedding(self.engine, clone.served)
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
        rerank: bool = True,
        rerank_window: int | None = None,
    ) -> list[FusedHit]:
        """The ranked list for ``text``, cut to ``depth`` (default: the window).

        ``candidates`` is the top-N of each retrieval list (default: the setting; a
        single-path mode takes enough to fill the window). In hybrid mode the active
        learned model reorders the top ``rerank_window`` (default: the setting; below it
        the fused order stands) unless ``rerank`` is False.
        """
        hits, _ = self.ranked_with_detail(
            text,
            filters,
            mode=mode,
            fusion=fusion,
            depth=depth,
            candidates=candidates,
            timings=timings,
            rerank=rerank,
            rerank_window=rerank_window,
        )
        return hits

    def ranked_with_detail(
        self,
        text: str,
        filters: SearchFilters,
        *,
        mode: Mode = "hybrid",
        fusion: FusionOptions | None = None,
        depth: int | None = None,
        candidates: int | None = None,
        timings: Timings | None = None,
        rerank: bool = True,
        features: bool = False,
        judged: JudgedCategories | None = None,
        corrected: dict[str, str] | None = None,
        rerank_window: int | None = None,
    ) -> tuple[list[FusedHit], RerankDetail | None]:
        """``ranked`` plus what the rerank stage computed (``features``: compute them even without a model).

        ``judged``: the judged-category table features read when no model reranks (training
        passes each query's out-of-fold table); None: the active model's (``_served_categories``).
        A reranking model reads its own.
        ``corrected``: ``spelling_corrections(text)`` where the caller has them already.
        """
        timings = timings or Timings()
        fusion = fusion or self.default_fusion
        depth = depth or self.settings.window
        if corrected is None:
            corrected = self.spelling_corrections(text)
        fused, query_vector, version = self._fused(text, corrected, filters, mode, fusion, depth, candidates, timings)
        reorder = rerank_window or self.settings.rerank_window
        learned = _learned_vector(mode, query_vector)
        return self._served(text, fused, learned, version, depth, timings, rerank, features, judged, reorder)

    def trace(
        self,
        text: str,
        filters: SearchFilters,
        *,
        mode: Mode = "hybrid",
        fusion: FusionOptions | None = None,
        rerank: bool = True,
    ) -> RankingTrace:
        """The lists ``search`` builds for ``text`` with these settings, kept whole."""
        timings, fusion, depth = Timings(), fusion or self.default_fusion, self.settings.window
        corrected = self.spelling_corrections(text)
        fused, query_vector, version = self._fused(text, corrected, filters, mode, fusion, depth, None, timings)
        served, detail = self._served(
            text,
            fused,
            _learned_vector(mode, query_vector),
            version,
            depth,
            timings,
            rerank,
            False,
            None,
            self.settings.rerank_window,
        )
        return RankingTrace(fused, served, detail, query_vector, corrected, lexical_text(text, corrected))

    def _served(
        self,
        text: str,
        fused: list[FusedHit],
        query_vector: np.ndarray | None,
        version: str | None,
        depth: int,
        timings: Timings,
        rerank: bool,
        features: bool,
        judged: JudgedCategories | None,
        rerank_window: int,
    ) -> tuple[list[FusedHit], RerankDetail | None]:
        """The top ``depth`` of the fused list as served: its top ``rerank_window`` reordered by the
        active model where one fits, the fused order below that."""
        if query_vector is None or not (rerank or features):
            return fused[:depth], None
        model = None
        if rerank and self.settings.rerank and self.reranker:
            model = self.reranker.model_for(self.catalog_stats.current())
        if model is None and not features:
            return fused[:depth], None
        window = fused[:rerank_window]
        with timings.stage("rerank"):
            hits, detail = self._rerank(text, query_vector, window, model, depth, version, judged)
        return hits + fused[len(window) : max(depth - len(hits), 0) + len(window)], detail

    def candidate_features(
        self,
        text: str,
        query_vector: np.ndarray,
        hits: Sequence[FusedHit],
        version: str | None = None,
        judged: JudgedCategories = EMPTY,
    ) -> tuple[list[FusedHit], np.ndarray, dict[str, Product]]:
        """The feature rows of ``hits`` (those still in the index), as serving computes them.

        ``version``: the index version the hits came from, where the engine reported it;
        ``judged``: the scoring model's judged-category table.
        """
        unscored = [hit.product_id for hit in hits if hit.vector_score is None]  # not in the kNN list
        pending_cosines = None
        if unscored and self.engine.concurrent_retrieval:  # both are round trips: send them together
            pending_cosines = _ENGINE_POOL.submit(self._cosines, unscored, query_vector, version)
        products = self._window_products([hit.product_id for hit in hits], version)
        cosines = pending_cosines.result() if pending_cosines else self._cosines(unscored, query_vector, version)
        kept = [hit for hit in hits if hit.product_id in products]
        candidates = [
            Candidate(
                products[hit.product_id],
                hit.score,
                position,
                hit.lexical_score,
                hit.lexical_rank,
                hit.vector_rank,
                cosines.get(hit.product_id) if hit.vector_score is None else hit.vector_score,
            )
            for position, hit in enumerate(kept, start=1)
        ]
        return kept, compute_features(text, candidates, self.catalog_stats.current(), judged), products

    def _served_categories(self, reranking: RankerModel | None) -> tuple[JudgedCategories, str | None]:
        """The judged-category table served features read, and whose: the active model's, also
        where it does not rerank (``rerank=false``, a catalog it does not fit), so that a logged
        column means one thing in every request; without an active model none (the column is missing)."""
        model = reranking or (self.reranker.model() if self.reranker else None)
        return (model.judged_categories, model.version) if model is not None else (EMPTY, None)

    def _window_products(self, product_ids: list[str], version: str | None) -> dict[str, Product]:
        """The products of a rerank window: those of a reported (committed, so unchanging) version
        from the cache where it has them, the rest from the engine."""
        if version is None:
            return self.engine.get(self.alias, product_ids)
        found, missing = self.product_cache.lookup(version, product_ids)
        if missing:
            fetched = self.engine.get(version, missing)
            self.product_cache.store(version, fetched)
            found.update(fetched)
        return found

    def _cosines(self, product_ids: list[str], query_vector: np.ndarray, version: str | None) -> dict[str, float]:
        """Cosines of products the kNN list did not score, from the version that answered where known."""
        return self.engine.cosines(version or self.alias, query_vector, product_ids) if product_ids else {}

    def _rerank(
        self,
        text: str,
        query_vector: np.ndarray,
        window: list[FusedHit],
        model: RankerModel | None,
        depth: int,
        version: str | None,
        judged: JudgedCategories | None,
    ) -> tuple[list[FusedHit], RerankDetail]:
        """The top ``depth`` of the window in the model's order, and what it computed for the whole window."""
        categories_of = None
        if model is not None or judged is None:
            judged, categories_of = self._served_categories(model)
        kept, rows, products = self.candidate_features(text, query_vector, window, version, judged)
        if model is None:
            ids = [hit.product_id for hit in kept]
            return kept[:depth], RerankDetail(None, ids, rows, None, products, categories_of)
        scores = model.predict(rows) if len(kept) else np.zeros(0)
        order = np.argsort(-scores, kind="stable")  # ties keep the fused order
        ranked = order.tolist()
        hits = [
            kept[i].reranked(score) for i, score in zip(ranked[:depth], scores[order[:depth]].tolist(), strict=True)
        ]
        ranked_ids = [kept[i].product_id for i in ranked]
        detail = RerankDetail(model.version, ranked_ids, rows[order], scores[order], products, categories_of)
        return hits, detail

    def _fused(
        self,
        text: str,
        corrected: dict[str, str],
        filters: SearchFilters,
        mode: Mode,
        fusion: FusionOptions,
        depth: int,
        candidates: int | None,
        timings: Timings,
    ) -> tuple[list[FusedHit], np.ndarray | None, str | None]:
        """The fused list (not cut), the query vector when one was computed, and the index version
        that answered when the engine reported one (None too if a swap fell between the two searches)."""
        self.served.current()  # an alias no one version serves (two indexes) fails here, naming them
        n = candidates or max(self.settings.candidates, depth if mode != "hybrid" else 0)
        if mode == "hybrid" and fusion.backend == "engine":
            return self._engine_fused(text, corrected, filters, fusion, depth, n, timings), None, None
        lexical = vector = []
        query_vector = None
        pending_lexical = None
        if mode in ("hybrid", "vector"):  # before any request goes out
            self.index_embedding.require_match(self.embedder)
        if mode == "hybrid" and self.engine.concurrent_retrieval:  # runs while the query is embedded
            pending_lexical = _ENGINE_POOL.submit(self._lexical, lexical_text(text, corrected), filters, n, timings)
        if mode in ("hybrid", "vector"):
            with timings.stage("embed"):
                query_vector = self.embedder.encode_query(vector_text(text, corrected))
            with timings.stage("vector"):
                vector = self.engine.vector_search(self.alias, query_vector, filters, n)
        if pending_lexical is not None:
            lexical = pending_lexical.result()
        elif mode in ("hybrid", "lexical"):
            lexical = self._lexical(lexical_text(text, corrected), filters, n, timings)
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
        versions = {hit.version for hit in (*lexical, *vector)}
        version = versions.pop() if len(versions) == 1 else None
        return fused, query_vector, version

    def spelling_corrections(self, text: str) -> dict[str, str]:
        """The misspelt query words and the catalog words searched for them (relevance.spelling)."""
        if not self.settings.spelling_correction:
            return {}
        return corrections(text, self.catalog_stats.current())

    def _lexical(self, query: str, filters: SearchFilters, n: int, timings: Timings) -> list[EngineHit]:
        with timings.stage("lexical"):
            return self.engine.lexical_search(self.alias, query, filters, n)

    def _engine_fused(
        self,
        text: str,
        corrected: dict[str, str],
        filters: SearchFilters,
        fusion: FusionOptions,
        depth: int,
        n: int,
        timings: Timings,
    ) -> list[FusedHit]:
        """Both retrievals and their fusion in one engine request (no per-list scores to explain)."""
        self.index_embedding.require_match(self.embedder)
        with timings.stage("embed"):
            query_vector = self.embedder.encode_query(vector_text(text, corrected))
        native = NativeFusion(
            method=fusion.method,
            rank_constant=fusion.rrf_k,
            normalization=fusion.normalization,
            lexical_weight=fusion.lexical_weight,
            vector_weight=fusion.vector_weight,
            window=n,
        )
        with timings.stage("hybrid"):
            hits = self.engine.hybrid_search(
                self.alias, lexical_text(text, corrected), query_vector, filters, depth, native
            )
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
        rerank: bool = True,
        features: bool = False,
    ) -> SearchResult:
        timings = Timings()
        corrected = self.spelling_corrections(text)
        window, detail = self.ranked_with_detail(
            text,
            filters,
            mode=mode,
            fusion=fusion,
            timings=timings,
            rerank=rerank,
            features=features,
            corrected=corrected,
        )
        result = self._page(window, page, size, timings, known=detail.products if detail else None)
        result.rerank = detail
        result.corrections = corrected
        return result

    def similar(self, product_id: str, filters: SearchFilters, *, page: int = 1, size: int = 10) -> SearchResult:
        """Vector neighbours of a product, the product itself excluded."""
        timings = Timings()
        self.served.current()  # as in _fused: not a raw failure of the reads below
        vectors = self.engine.get_vectors(self.alias, [product_id])
        if product_id not in vectors:
            raise NotFoundError(f"product {product_id!r} is not in the index", field="product_id")
        with timings.stage("vector"):
            hits = self.engine.vector_search(
                self.alias, vectors[product_id], filters, self.settings.window, exclude_ids=[product_id]
            )
        return self._page(single_list(hits, lexical=False), page, size, timings)

    def rank_candidates(
        self,
        text: str,
        candidate_ids: Sequence[str],
        *,
        mode: Mode = "hybrid",
        fusion: FusionOptions | None = None,
        rerank: bool = True,
    ) -> list[FusedHit]:
        """Re-rank exactly ``candidate_ids``: every candidate comes back once.

        Candidates neither retrieval path scored (no term matched in lexical mode, or
        unknown to the index) follow the scored ones in their given order.
        """
        unique = list(dict.fromkeys(candidate_ids))
        filters = SearchFilters(product_ids=tuple(unique))
        ranked = self.ranked(
            text,
            filters,
            mode=mode,
            fusion=fusion,
            depth=len(unique),
            candidates=len(unique),
            rerank=rerank,
            rerank_window=len(unique),  # every given candidate is the model's to order
        )
        seen = {hit.product_id for hit in ranked}
        tail = [FusedHit(pid, float("-inf"), None, None, None, None) for pid in unique if pid not in seen]
        return ranked + tail

    def _page(
        self,
        window: list[FusedHit],
        page: int,
        size: int,
        timings: Timings,
        known: dict[str, Product] | None = None,
    ) -> SearchResult:
        start = (page - 1) * size
        page_hits = window[start : start + size]
        if known is not None:  # the rerank stage already fetched the whole window
            products = known
        else:
            with timings.stage("fetch"):
                products = self.engine.get(self.alias, [hit.product_id for hit in page_hits])
        results = [RankedProduct(products[hit.product_id], hit) for hit in page_hits if hit.product_id in products]
        return SearchResult(total=len(window), results=results, timings=timings)


def _learned_vector(mode: Mode, query_vector: np.ndarray | None) -> np.ndarray | None:
    """The query vector the learned stage may rerank with: the model learned from hybrid
    lists, so a lexical or vector search serves its own order (no vector: no reranking)."""
    return query_vector if mode == "hybrid" else None
