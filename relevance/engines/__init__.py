"""Engine adapters behind one interface (``SearchEngine``).

Only modules in this package import an engine's client library.
"""

from __future__ import annotations

from relevance.config import Settings
from relevance.engines.base import EngineHit, IndexedProduct, IndexVersion, SearchEngine


def create_engine(settings: Settings) -> SearchEngine:
    """The adapter the settings name. Builds it without opening any connection."""
    boosts = settings.field_boosts.model_dump()
    if settings.engine == "embedded":
        from relevance.engines.embedded import EmbeddedEngine

        return EmbeddedEngine(
            settings.index_root,
            field_boosts=boosts,
            exact_knn_max=settings.exact_knn_max,
            hnsw_m=settings.hnsw_m,
            hnsw_ef_construction=settings.hnsw_ef_construction,
            hnsw_ef_search=settings.hnsw_ef_search,
        )
    if settings.engine == "elasticsearch":
        from relevance.engines.elasticsearch import ElasticsearchEngine

        return ElasticsearchEngine(settings.engine_url, field_boosts=boosts, timeout=settings.engine_timeout)
    if settings.engine == "opensearch":
        from relevance.engines.opensearch import OpenSearchEngine

        return OpenSearchEngine(settings.engine_url, field_boosts=boosts, timeout=settings.engine_timeout)
    raise ValueError(f"unknown engine {settings.engine!r}")  # unreachable: Settings validates the name


__all__ = ["EngineHit", "IndexVersion", "IndexedProduct", "SearchEngine", "create_engine"]
