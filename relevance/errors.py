"""One error hierarchy for the whole layer.

Adapters wrap client exceptions (``raise EngineError(...) from exc``); the API
renders every ``RelevanceError`` as one JSON shape and the CLI prints its message.
"""

from __future__ import annotations


class RelevanceError(Exception):
    """Base class: ``status`` is the HTTP status the API answers with."""

    status = 500
    kind = "internal_error"

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field


class ConfigError(RelevanceError):
    """A setting is missing, unknown or invalid."""

    kind = "config_error"


class CatalogError(RelevanceError):
    """A catalog file cannot be read at all (single bad rows are dead-lettered instead)."""

    status = 422
    kind = "catalog_error"


class RequestError(RelevanceError):
    """An API request is malformed (400) or semantically invalid (422)."""

    kind = "invalid_request"

    def __init__(self, detail: str, *, field: str | None = None, status: int = 400) -> None:
        super().__init__(detail, field=field)
        self.status = status


class NotFoundError(RelevanceError):
    status = 404
    kind = "not_found"


class EngineError(RelevanceError):
    """The search engine failed or is unreachable."""

    status = 503
    kind = "engine_unavailable"


class IndexNotReadyError(EngineError):
    """No index is being served under the alias yet."""

    kind = "index_not_ready"


class EmbeddingMismatchError(EngineError):
    """The index holds vectors of another embedding model than the one embedding queries."""

    kind = "embedding_mismatch"


class EngineFeatureUnavailable(RelevanceError):
    """The engine lacks a feature the request asks for (a module, plugin or licence)."""

    status = 501
    kind = "engine_feature_unavailable"


class ReindexRefused(RelevanceError):
    """A new index version failed its checks, so the alias stays where it was."""

    status = 409
    kind = "reindex_refused"


class ModelError(RelevanceError):
    """The embedding model cannot be loaded or used."""

    status = 503
    kind = "model_unavailable"
