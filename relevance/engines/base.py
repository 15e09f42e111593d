"""The engine interface: what the layer needs from any search engine.

Indexes are versioned: an indexing job creates a new version, fills it, and swaps
the serving alias onto it. Searches always go through the alias.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from indexer.product import Product
from relevance.filters import SearchFilters


@dataclass(frozen=True)
class EngineHit:
    product_id: str
    score: float
    rank: int  # 1-based position in its candidate list
    # The index version that answered, where fetching its products is a round trip worth
    # caching (the servers report it; the embedded engine reads products from memory).
    version: str | None = None


@dataclass(frozen=True)
class IndexVersion:
    name: str
    created_at: str
    count: int | None  # None: unavailable
    is_live: bool
    complete: bool = True  # False: never committed (being built, or left by a job killed outright)
    unavailable: str | None = None  # why it answers no search (servers: closed, red); it still holds its disk


@dataclass(frozen=True)
class IndexedProduct:
    product: Product
    vector: np.ndarray  # float32, L2-normalised


@dataclass(frozen=True)
class NativeFusion:
    """The engine's own hybrid search: both retrievals and their fusion in one request."""

    method: str  # "rrf" or "linear"
    rank_constant: float
    normalization: str  # linear only: "minmax" or "zscore"
    lexical_weight: float
    vector_weight: float
    window: int  # candidates each retrieval contributes


@runtime_checkable
class SearchEngine(Protocol):
    """Implemented by every adapter in ``relevance.engines``."""

    name: str
    # True where a request is a network round trip: the pipeline then sends two at once (the
    # lexical search while it embeds the query, the window's cosines with its product fetch).
    # In-process engines compete for the same cores instead (measured).
    concurrent_retrieval: bool

    # Index versions and aliases
    def create_version(self, alias: str, dims: int, metadata: dict[str, Any]) -> str: ...
    def bulk_upsert(self, version: str, items: Sequence[IndexedProduct]) -> list[tuple[str, str]]:
        """Returns (product_id, reason) of every document the engine refused."""
        ...

    def delete(self, index: str, product_ids: Sequence[str]) -> int: ...
    def commit(self, version: str) -> None: ...
    def drop_version(self, version: str) -> None: ...
    def swap_alias(self, alias: str, version: str) -> str | None:
        """Point ``alias`` at ``version`` atomically; returns the version it pointed at before."""
        ...

    def alias_target(self, alias: str) -> str | None: ...
    def list_versions(self, alias: str) -> list[IndexVersion]: ...
    def version_metadata(self, index: str) -> dict[str, Any]: ...

    # Reads (``index`` is an alias or a version name)
    def count(self, index: str) -> int: ...
    def get(self, index: str, product_ids: Sequence[str]) -> dict[str, Product]: ...
    def get_vectors(self, index: str, product_ids: Sequence[str]) -> dict[str, np.ndarray]: ...
    def cosines(self, index: str, vector: np.ndarray, product_ids: Sequence[str]) -> dict[str, float]:
        """The cosine of ``vector`` (normalised) with each product's stored vector; unknown ids are left out."""
        ...

    def lexical_search(self, index: str, text: str, filters: SearchFilters, k: int) -> list[EngineHit]: ...
    def vector_search(
        self, index: str, vector: np.ndarray, filters: SearchFilters, k: int, exclude_ids: Sequence[str] = ()
    ) -> list[EngineHit]: ...
    def hybrid_search(
        self, index: str, text: str, vector: np.ndarray, filters: SearchFilters, k: int, fusion: NativeFusion
    ) -> list[EngineHit]:
        """Engine-native fusion; raises EngineFeatureUnavailable where the engine lacks it."""
        ...

    def ping(self) -> None:
        """Raise EngineError when the engine cannot serve."""
        ...
