from __future__ import annotations

import numpy as np
import pytest

from relevance.embedder import Embedder
from relevance.errors import ModelError

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


def test_onnx_queries_match_torch_queries(embedder: Embedder) -> None:
    assert embedder.query_backend == "onnx" and embedder._query_encoder is not None
    torch_queries = Embedder(embedder.model_name, query_backend="torch")
    torch_queries._model = embedder._model
    long_query = "cordless hammer drill with two batteries " * 40  # longer than max_seq_length: truncated alike
    for text in ["drill", "1/2 in. pvc pipe 10 ft", "velvet accent chair for living room", long_query, "ñandú décor"]:
        assert np.allclose(embedder.encode_query(text), torch_queries.encode_query(text), atol=1e-5)
