"""Whether an index version's vectors can be searched with the embedder's query vectors.

Checked by the pipeline before every vector search, on every engine: a version made by
another embedding model (``embedding_model`` changed without a re-index) is refused with
both models named, instead of each engine's own error (numpy's shape error in the
embedded engine, a dimension message as ``engine_unavailable`` on the servers).
"""

from __future__ import annotations

from typing import Any

from relevance.embedder import Embedder
from relevance.engines.base import SearchEngine
from relevance.errors import EmbeddingMismatchError
from relevance.served_version import ServedVersion


class IndexEmbedding:
    def __init__(self, engine: SearchEngine, served: ServedVersion) -> None:
        self.engine = engine
        self.served = served
        self._read: tuple[str, dict[str, Any]] | None = None  # (version, metadata) last read

    def mismatch(self, embedder: Embedder, version: str | None = None) -> str | None:
        """Why ``version`` (default: the served one) cannot be searched with ``embedder``'s vectors, or None.

        Dimensions, not model names, decide: a moved model directory keeps its vectors, and
        versions made before the index job recorded dimensions are taken as they are.
        """
        version = version or self.served.current()
        if version is None:  # nothing served: the search itself says index_not_ready
            return None
        metadata = self._metadata(version)
        dims = metadata.get("embedding_dims")
        if dims is None or dims == embedder.dims:
            return None
        indexed_by = str(metadata.get("embedding_model", "another model")).split("|")[0]
        return (
            f"index {version!r} holds {dims}-dimension vectors of {indexed_by}; queries are embedded by"
            f" {embedder.model_name} ({embedder.dims} dimensions): re-index with this embedding_model, or set it back"
        )

    def require_match(self, embedder: Embedder) -> None:
        problem = self.mismatch(embedder)
        if problem:
            raise EmbeddingMismatchError(problem)  # a setting, not the request, is at fault: no field

    def _metadata(self, version: str) -> dict[str, Any]:
        read = self._read
        if read is None or read[0] != version:
            read = (version, self.engine.version_metadata(version))
            self._read = read
        return read[1]
