"""Fast single-query embeddings: the model's transformer exported to ONNX, run by onnxruntime.

A query through sentence-transformers' ``encode`` costs 10-19 ms on two busy cores;
the same transformer under onnxruntime with one thread costs about 3 ms and gives the
same vector (max abs difference ~2e-7, tested). sentence-transformers' own ONNX
backend needs ``optimum-onnx``, which no release makes compatible with
transformers 5, so the transformer is exported here with ``torch.onnx`` once and
cached on disk. Tokenisation and pooling stay sentence-transformers' own modules,
so any pooling the model declares is honoured.

``precision="int8"`` (the default setting) runs a copy whose matrix multiplications
hold int8 weights, one scale per output channel (onnxruntime's dynamic quantization):
twice as fast again, query vectors within cosine ~0.99 of float32, and on the Home
Depot dev split the same kNN NDCG@10 in both modes (bench/README.md, "Query encoder").
Only queries change: product vectors stay float32, so an index never needs rebuilding.
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

log = logging.getLogger(__name__)
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
PRECISIONS = ("int8", "float32")  # Embedder checks the setting against these


# Texts an int8 encoder must embed within MIN_INT8_COSINE of float32 before it serves:
# a model that quantizes badly falls back to float32 instead of degrading search.
PROBE_QUERIES = ("drill", "1/2 in. pvc pipe 10 ft", "velvet accent chair for living room", "led bulbs 60w", "ñandú")
MIN_INT8_COSINE = 0.98
MIN_FLOAT32_COSINE = 0.9999  # the float32 export against torch: the same vector up to rounding


class OnnxQueryEncoder:
    def __init__(
        self, sentence_transformer: Any, cache_dir: Path, model_id: str, precision: str, prompt: str = ""
    ) -> None:
        self._st = sentence_transformer
        self._prompt = prompt
        self._prompt_length = _prompt_length(sentence_transformer.tokenizer, prompt)
        self._transformer = sentence_transformer[0]
        self._post_modules = list(sentence_transformer)[1:]  # pooling (and any dense/normalise layers)
        path = self._export(cache_dir / hashlib.sha256(model_id.encode()).hexdigest()[:16] / "transformer.onnx")
        self.path, self.precision = path, "float32"
        self._graph = _load_graph(path)
        probes = self._probe_vectors_checked_against_torch()
        if precision == "int8":
            try:
                self._use_int8_if_close(self._quantize(path), probes)
            except Exception as exc:  # quantization trouble must not cost the fast float32 encoder
                log.warning("int8 query encoder unavailable (%s); queries use float32", exc)

    def _probe_vectors_checked_against_torch(self) -> np.ndarray:
        """The export's vectors of the probe queries; raises unless they reproduce the torch model's,
        so a model the export does not fit falls back to torch queries at load, not failing each query."""
        exact = self._st.encode(
            list(PROBE_QUERIES), prompt=self._prompt, normalize_embeddings=True, convert_to_numpy=True
        )
        exported = np.stack([self._vector(self._graph, text) for text in PROBE_QUERIES])
        worst = float(np.min(np.sum(exported * exact, axis=1)))
        if worst < MIN_FLOAT32_COSINE:
            raise ValueError(f"exported encoder differs from the model (cosine {worst:.5f} on probe queries)")
        return exported

    def _use_int8_if_close(self, int8_path: Path, float32_probes: np.ndarray) -> None:
        int8 = _load_graph(int8_path)
        cosines = [float(self._vector(int8, t) @ v) for t, v in zip(PROBE_QUERIES, float32_probes, strict=True)]
        if min(cosines) < MIN_INT8_COSINE:
            log.warning(
                "int8 query encoder %s strays from float32 (cosine %.4f < %.2f on probe queries); queries use float32",
                int8_path,
                min(cosines),
                MIN_INT8_COSINE,
            )
            return
        self._graph, self.path, self.precision = int8, int8_path, "int8"

    def _export(self, path: Path) -> Path:
        if path.exists():
            return path
        import torch

        path.parent.mkdir(parents=True, exist_ok=True)
        model = self._transformer.auto_model.eval()

        class TokenEmbeddings(torch.nn.Module):
            def __init__(self, inner: Any) -> None:
                super().__init__()
                self.inner = inner

            def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
                return self.inner(
                    input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
                ).last_hidden_state

        sample = self._st.tokenizer(["cordless drill", "1/2 in. pvc pipe"], padding=True, return_tensors="pt")
        if "token_type_ids" not in sample:
            sample["token_type_ids"] = torch.zeros_like(sample["input_ids"])
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        # The tracer warns about shape checks that are constant for a single unpadded
        # query; test_embedder checks the exported model against torch on varied lengths.
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                TokenEmbeddings(model),
                tuple(sample[name] for name in _INPUTS),
                str(tmp),
                dynamo=False,
                opset_version=17,
                input_names=list(_INPUTS),
                output_names=["token_embeddings"],
                dynamic_axes={name: {0: "batch", 1: "sequence"} for name in [*_INPUTS, "token_embeddings"]},
            )
        os.replace(tmp, path)  # atomic: concurrent workers never read a half-written model
        log.info("exported query encoder to %s", path)
        return path

    @staticmethod
    def _quantize(path: Path) -> Path:
        """int8 weights for the MatMuls only, per output channel: quantizing every op (or one
        scale per matrix) moved query vectors to cosine ~0.96 of float32; this keeps ~0.99."""
        target = path.with_name("transformer-int8.onnx")
        if target.exists():
            return target
        from onnxruntime.quantization import QuantType, quantize_dynamic

        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        with _without_preprocessing_advice():
            quantize_dynamic(path, tmp, weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul"])
        os.replace(tmp, target)
        log.info("quantized query encoder to %s", target)
        return target

    def encode(self, text: str) -> np.ndarray:
        return self._vector(self._graph, text)

    def _vector(self, graph: _Graph, text: str) -> np.ndarray:
        import torch

        features = self._st.tokenizer(
            [self._prompt + text], truncation=True, max_length=self._st.max_seq_length, return_tensors="np"
        )
        ids = features["input_ids"].astype(np.int64)
        # The export drops inputs a model ignores (MPNet never reads token_type_ids), and
        # onnxruntime refuses inputs its graph lacks: feed exactly the ones it declares.
        inputs = {
            name: features[name].astype(np.int64) if name in features else np.zeros_like(ids) for name in graph.inputs
        }
        token_embeddings = graph.session.run(None, inputs)[0]
        state = {
            "token_embeddings": torch.from_numpy(token_embeddings),
            "attention_mask": torch.from_numpy(inputs["attention_mask"]),
        }
        if self._prompt_length:
            state["prompt_length"] = self._prompt_length
        with torch.inference_mode():
            for module in self._post_modules:
                state = module(state)
        vector = state["sentence_embedding"][0].numpy().astype(np.float32)
        return vector / np.linalg.norm(vector)


def _prompt_length(tokenizer: Any, prompt: str) -> int:
    """Tokens of the prompt, for pooling that leaves it out (``include_prompt=False``), counted as
    sentence-transformers counts them: the prompt alone, less a trailing special token. The probe
    check against torch catches any difference."""
    if not prompt:
        return 0
    ids = tokenizer([prompt])["input_ids"][0]
    return len(ids) - (1 if ids[-1] in tokenizer.all_special_ids else 0)


class _Graph(NamedTuple):
    session: Any  # an onnxruntime InferenceSession
    inputs: tuple[str, ...]  # the inputs it declares


def _load_graph(path: Path) -> _Graph:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # one query at a time: threads only add overhead
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return _Graph(session, tuple(i.name for i in session.get_inputs()))


@contextmanager
def _without_preprocessing_advice() -> Iterator[None]:
    """Drop the quantizer's root-logger advice to pre-process the model first.

    Pre-processing (shape inference, graph optimisation) would make another int8 model
    than the one measured in bench/README ("Query encoder precision"); the encoder is
    checked against float32 at every load instead. The advice is a warning on every
    first start, so operators would learn to ignore warnings.
    """

    def keep(record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)
