"""Whether an index version's vectors can be searched with the embedder's query vectors.

Checked by the pipeline before every vector search, on every engine: a version made by
another embedding model (``embedding_model`` changed without a re-index) is refused with
both models named, instead of each engine's own error (numpy's shape error in the
embedded engine, a dimension message as ``engine_unavailable`` on the servers) or, where
the two models have the same width, silently meaningless vector results.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from relevance.embedder import Embedder
from relevance.engines.base import SearchEngine
from relevance.errors import EmbeddingMismatchError
from relevance.served_version import PerVersion, ServedVersion

# The probe text's vector from the index job against the configured embedder's. The same
# model gives >= 0.9999 (bf16 against float32 batches, a moved model directory); another
# model gives unrelated vectors. A changed document prompt or max_seq_length lands in
# between: "passage: " before MiniLM's texts keeps 0.989 (served), bge's long instruction
# 0.861 (refused: the index no longer matches what the product texts embed to).
MIN_PROBE_COSINE = 0.95


class _Recorded(NamedTuple):
    """What a version's metadata says about its vectors."""

    dims: int | None
    model: str
    probe: np.ndarray | None


class IndexEmbedding:
    def __init__(self, engine: SearchEngine, served: ServedVersion) -> None:
        self.engine = engine
        self.served = served
        self._recorded = PerVersion(self._read_recorded)

    def mismatch(self, embedder: Embedder, version: str | None = None) -> str | None:
        """Why ``version`` (default: the served one) cannot be searched with ``embedder``'s vectors, or None.

        Vectors, not model names, decide: the dimensions, then a probe text embedded by both,
        so a moved model directory or other batch precision still serves. Versions made before
        the index job recorded these are taken as they are.
        """
        version = version or self.served.current()
        if version is None:  # nothing served: the search itself says index_not_ready
            return None
        recorded = self._recorded.get(version)
        indexed_by = recorded.model.split("|")[0]
        if recorded.dims is not None and recorded.dims != embedder.dims:
            return (
                f"index {version!r} holds {recorded.dims}-dimension vectors of {indexed_by}; queries are embedded"
                f" by {embedder.model_name} ({embedder.dims} dimensions): re-index with this embedding_model,"
                " or set it back"
            )
        if recorded.probe is not None and recorded.probe.shape == (embedder.dims,):
            cosine = float(recorded.probe @ embedder.probe_vector())
            if cosine < MIN_PROBE_COSINE:
                return (
                    f"index {version!r} was embedded by {indexed_by}; {embedder.model_name} as configured embeds"
                    f" texts elsewhere (cosine {cosine:.2f} on a probe text: another model, document prompt or"
                    " max_seq_length): re-index with these embedding settings, or set them back"
                )
        return None

    def require_match(self, embedder: Embedder) -> None:
        problem = self.mismatch(embedder)
        if problem:
            raise EmbeddingMismatchError(problem)  # a setting, not the request, is at fault: no field

    def _read_recorded(self, version: str | None) -> _Recorded:
        metadata: dict[str, Any] = self.engine.version_metadata(version)
        probe = metadata.get("embedding_probe")
        return _Recorded(
            metadata.get("embedding_dims"),
            str(metadata.get("embedding_model", "another model")),
            np.asarray(probe, dtype=np.float32) if probe else None,
        )
