from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from relevance.embedder import Embedder
from relevance.errors import ModelError
from tests.conftest import tiny_mpnet_model

TEXTS = ["DEWALT 20V MAX Cordless Drill", "1/2 in. x 10 ft. PVC Pipe", "Mid-Century Modern Velvet Accent Chair"]


def test_vectors_are_normalised_and_queries_match_batches(embedder: Embedder) -> None:
    batch = Embedder(embedder.model_name, batch_precision="float32")
    batch._model = embedder._model  # same loaded weights, float32 batches
    vectors = batch.encode(TEXTS)
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.allclose(batch.encode_query(TEXTS[0]), vectors[0], atol=1e-5)


def test_bfloat16_batches_stay_close_to_float32(embedder: Embedder) -> None:
    fp32 = Embedder(embedder.model_name, batch_precision="float32")
    bf16 = Embedder(embedder.model_name, batch_precision="bfloat16")
    fp32._model = bf16._model = embedder._model
    cosines = np.sum(fp32.encode(TEXTS) * bf16.encode(TEXTS), axis=1)
    assert cosines.min() > 0.999
    assert fp32.model_id != bf16.model_id  # the cache never mixes the two


def test_unknown_model_fails_clearly(tmp_path) -> None:
    with pytest.raises(ModelError, match="neither"):
        Embedder(str(tmp_path / "no-model")).load()
    with pytest.raises(ModelError, match="batch_precision"):
        Embedder(batch_precision="int4")


def _distribution_installed(name: str) -> bool:
    try:
        importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


QUERIES = [
    "drill",
    "1/2 in. pvc pipe 10 ft",
    "velvet accent chair for living room",
    "cordless hammer drill with two batteries " * 40,  # longer than max_seq_length: truncated alike
    "ñandú décor",
]


def test_onnx_queries_match_torch_queries(embedder: Embedder) -> None:
    float32 = Embedder(embedder.model_name, query_precision="float32", cache_dir=embedder.cache_dir)
    float32.load()
    assert float32._query_encoder is not None and float32._query_encoder.path.name == "transformer.onnx"
    torch_queries = Embedder(embedder.model_name, query_backend="torch")
    torch_queries._model = embedder._model
    for text in QUERIES:
        assert np.allclose(float32.encode_query(text), torch_queries.encode_query(text), atol=1e-5)


def test_int8_queries_stay_close_to_float32_and_keep_the_order(embedder: Embedder) -> None:
    assert embedder._query_encoder.precision == "int8" and embedder._query_encoder.path.name == "transformer-int8.onnx"
    float32 = Embedder(embedder.model_name, query_precision="float32", cache_dir=embedder.cache_dir)
    float32.load()
    products = float32.encode([*TEXTS, "Cordless Hammer Drill Kit with 2 Batteries", "Velvet Sofa"])
    for text in QUERIES:
        int8, exact = embedder.encode_query(text), float32.encode_query(text)
        assert abs(np.linalg.norm(int8) - 1.0) < 1e-5
        assert float(int8 @ exact) > 0.98  # 6,965 Home Depot queries: median 0.994, 1st percentile 0.988
        assert not np.allclose(int8, exact, atol=1e-5)  # the quantized encoder really ran
        assert np.argmax(products @ int8) == np.argmax(products @ exact)
    with pytest.raises(ModelError, match="query_precision"):
        Embedder(query_precision="int4")


def test_an_int8_encoder_that_strays_falls_back_to_float32(embedder: Embedder, monkeypatch, caplog) -> None:
    import relevance.onnx_query as onnx_query

    monkeypatch.setattr(onnx_query, "MIN_INT8_COSINE", 0.99999)  # no int8 encoder is that close
    strict = Embedder(embedder.model_name, query_precision="int8", cache_dir=embedder.cache_dir)
    strict.load()
    assert strict.query_encoder == "onnx-float32" and "strays from float32" in caplog.text
    exact = Embedder(embedder.model_name, query_backend="torch")
    exact._model = embedder._model
    assert np.allclose(strict.encode_query("drill"), exact.encode_query("drill"), atol=1e-5)


def test_a_failed_quantization_keeps_the_float32_onnx_encoder(
    embedder: Embedder, tmp_path, monkeypatch, caplog
) -> None:
    import relevance.onnx_query as onnx_query

    def broken(path):
        raise RuntimeError("quantizer exploded")

    monkeypatch.setattr(onnx_query.OnnxQueryEncoder, "_quantize", staticmethod(broken))
    fallback = Embedder(embedder.model_name, cache_dir=tmp_path)
    fallback.load()
    assert fallback.query_encoder == "onnx-float32" and "quantizer exploded" in caplog.text


def test_making_the_int8_encoder_does_not_warn(embedder: Embedder, tmp_path: Path, caplog) -> None:
    """onnxruntime's quantizer advises pre-processing on the root logger; that model would not be the measured one."""
    import logging

    fresh = Embedder(embedder.model_name, query_precision="int8", cache_dir=tmp_path)
    with caplog.at_level(logging.WARNING):
        fresh.load()
    assert fresh.query_encoder == "onnx-int8" and fresh._query_encoder.path.name == "transformer-int8.onnx"
    assert fresh._query_encoder.path.is_relative_to(tmp_path), "made here, not found in the shared cache"
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert logging.getLogger().filters == [], "the filter is gone once the encoder is made"


@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_a_model_whose_export_drops_token_type_ids_serves_queries(tmp_path: Path, precision: str) -> None:
    model = str(tiny_mpnet_model(tmp_path))
    onnx = Embedder(model, query_precision=precision, cache_dir=tmp_path / "cache")
    torch_queries = Embedder(model, query_backend="torch")
    assert onnx.query_encoder.startswith("onnx-")
    for text in QUERIES:
        vector, exact = onnx.encode_query(text), torch_queries.encode_query(text)
        assert float(vector @ exact) > (0.9999 if precision == "float32" else 0.98)


def test_an_export_that_differs_from_the_model_falls_back_to_torch_queries(
    embedder: Embedder, monkeypatch, caplog
) -> None:
    import relevance.onnx_query as onnx_query

    monkeypatch.setattr(onnx_query, "MIN_FLOAT32_COSINE", 1.5)  # no export passes: as if it were wrong
    fallback = Embedder(embedder.model_name, cache_dir=embedder.cache_dir)
    assert fallback.query_encoder == "torch-float32" and "ONNX query encoder unavailable" in caplog.text
    assert "differs from the model" in caplog.text
    exact = Embedder(embedder.model_name, query_backend="torch")
    exact._model = embedder._model
    assert np.allclose(fallback.encode_query("drill"), exact.encode_query("drill"), atol=1e-6)


def test_a_models_declared_prompts_go_before_queries_and_products(tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    # e5-style prompts, and pooling that leaves the prompt's tokens out (the ONNX path must count them)
    model = str(tiny_mpnet_model(tmp_path, prompts={"query": "query: ", "passage": "passage: "}, include_prompt=False))
    onnx = Embedder(model, query_precision="float32", batch_precision="float32", cache_dir=tmp_path / "cache")
    torch_queries = Embedder(model, query_backend="torch")
    assert onnx.query_encoder == "onnx-float32", "the export reproduces the prompted torch vectors"
    assert onnx.prompts == {"query": "query: ", "document": "passage: "}
    reference = SentenceTransformer(model, device="cpu")
    for text in QUERIES[:3]:
        exact = reference.encode(text, prompt="query: ", normalize_embeddings=True)
        assert np.allclose(onnx.encode_query(text), exact, atol=1e-5)
        assert np.allclose(torch_queries.encode_query(text), exact, atol=1e-5)
        assert float(exact @ reference.encode(text, normalize_embeddings=True)) < 0.9999, "the prompt changes it"
    documents = reference.encode(TEXTS, prompt="passage: ", normalize_embeddings=True)
    assert np.allclose(onnx.encode(TEXTS), documents, atol=1e-5)


def test_prompts_from_settings_override_the_models_and_name_the_vectors(tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    model = str(tiny_mpnet_model(tmp_path, prompts={"query": "query: ", "passage": "passage: "}))
    declared = Embedder(model, query_backend="torch", batch_precision="float32")
    plain = Embedder(model, query_backend="torch", batch_precision="float32", query_prompt="", document_prompt="")
    other = Embedder(model, query_backend="torch", batch_precision="float32", query_prompt="search: ")
    assert plain.prompts == {"query": "", "document": ""}
    reference = SentenceTransformer(model, device="cpu")
    assert np.allclose(plain.encode(TEXTS), reference.encode(TEXTS, normalize_embeddings=True), atol=1e-5)
    assert np.allclose(
        other.encode_query("drill"), reference.encode("drill", prompt="search: ", normalize_embeddings=True), atol=1e-5
    )
    # product vectors (the embedding cache, the index metadata) and query vectors (training metadata,
    # cached benchmark features) carry a prompt set in settings; the model's own are part of the model
    assert len({declared.model_id, plain.model_id}) == 2 and other.model_id == declared.model_id
    assert len({declared.query_vectors_id, plain.query_vectors_id, other.query_vectors_id}) == 3


def test_prompt_settings_reach_the_embedder(tmp_path: Path) -> None:
    from relevance.config import Settings
    from relevance.services import Services

    settings = Settings(data_dir=tmp_path, embedding_query_prompt="query: ", embedding_document_prompt="")
    embedder = Services.from_settings(settings).embedder
    assert "|query_prompt='query: '" in embedder.query_vectors_id and "|document_prompt=''" in embedder.model_id


@pytest.mark.skipif(not _distribution_installed("triton"), reason="torch without triton (a CPU wheel)")
def test_loading_the_model_leaves_triton_unimported(tmp_path: Path) -> None:
    # A fresh interpreter: this one may have imported triton through other tests' imports.
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from relevance.embedder import Embedder\n"
        f"embedder = Embedder(cache_dir=Path({str(tmp_path)!r}))\n"
        "embedder.load()\n"
        "assert embedder.encode_query('cordless drill').shape == (384,)\n"
        "print(sorted(name for name, module in sys.modules.items() if name.startswith('triton') and module))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
