"""The active model's trees compiled to native code: LightGBM's scores bit for bit, and
LightGBM itself whenever compiling is not possible."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest
import tl2cgen

from relevance.api import create_app
from relevance.config import BUNDLED_MODEL
from relevance.embedder import Embedder
from reranker.compiled import compile_trees, probe_rows, split_thresholds
from reranker.features import FEATURE_NAMES
from reranker.model import RankerModel
from tests.conftest import make_services, titles_only_catalog


def bundled_model() -> RankerModel:
    meta = json.loads((BUNDLED_MODEL / "meta.json").read_text())
    return RankerModel.from_text("default", (BUNDLED_MODEL / "model.txt").read_text(), meta)


def page(client: object, query: str) -> list[tuple[str, float]]:
    body = client.get(f"/search?q={query}&size=20").get_json()  # type: ignore[attr-defined]
    assert body["reranked_by"] == "default"
    return [(r["product_id"], r["score"]) for r in body["results"]]


def test_compiled_trees_score_bit_for_bit_like_lightgbm(tmp_path: Path) -> None:
    model = bundled_model()
    compiled = compile_trees(model.booster, model.checksum, tmp_path, "gcc")
    rows = probe_rows(split_thresholds(model.booster), rows=5000, seed=11)
    expected = model.booster.predict(rows, num_threads=1)
    assert np.array_equal(compiled.try_predict(rows), expected)
    assert len(np.unique(expected)) > 4000, "the probe rows reach many different leaves"
    assert compiled.try_predict(np.zeros((0, len(FEATURE_NAMES)))).shape == (0,)


def test_searches_move_to_the_compiled_trees_once_built_with_the_same_scores(
    tmp_path: Path, embedder: Embedder
) -> None:
    services = make_services(tmp_path, embedder, default_model=BUNDLED_MODEL)
    services.index_catalog(titles_only_catalog(tmp_path))
    client = create_app(services=services).test_client()
    reranker = services.pipeline.reranker
    served = {query: page(client, query) for query in ("cordless+drill", "1/2+inch+pvc", "water+heater")}
    reranker.compiler.wait(180)
    model = reranker.model()
    assert model.native is not None and model.native_failure is None
    status = client.get("/readyz").get_json()["reranker"]
    assert status["predictor"] == "compiled" and status["predictor_detail"] is None

    def lightgbm_unavailable(*args: object, **kwargs: object) -> None:
        raise AssertionError("scored through LightGBM")

    model.booster.predict = lightgbm_unavailable  # from here on only the compiled trees can score
    assert {query: page(client, query) for query in served} == served


def test_without_a_compiler_the_model_predicts_through_lightgbm(
    tmp_path: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools"))
    services = make_services(tmp_path, embedder, default_model=BUNDLED_MODEL)
    services.index_catalog(titles_only_catalog(tmp_path))
    client = create_app(services=services).test_client()
    with caplog.at_level(logging.WARNING, logger="reranker.compiled"):
        served = page(client, "cordless+drill")
        services.pipeline.reranker.compiler.wait(60)
    model = services.pipeline.reranker.model()
    assert model.native is None and "gcc" in model.native_failure
    status = client.get("/readyz").get_json()["reranker"]
    assert status["state"] == "active" and status["predictor"] == "lightgbm"
    assert status["predictor_detail"].startswith("compiling the trees failed") and "gcc" in status["predictor_detail"]
    assert page(client, "cordless+drill") == served
    assert any("predicts through LightGBM" in r.getMessage() for r in caplog.records)


def test_a_cached_library_that_disagrees_with_the_model_or_is_damaged_is_built_again(tmp_path: Path) -> None:
    model = bundled_model()
    rng = np.random.default_rng(0)
    features, labels = rng.random((200, len(FEATURE_NAMES))), rng.integers(0, 3, 200)
    other = lgb.train(
        {"objective": "lambdarank", "num_leaves": 4, "min_data_in_leaf": 5, "verbosity": -1},
        lgb.Dataset(features, labels, group=[20] * 10),
        num_boost_round=5,
    )
    planted = compile_trees(other, "0" * 64, tmp_path / "other", "gcc").library
    target = tmp_path / "cache" / planted.name.replace("0" * 32, model.checksum[:32])
    target.parent.mkdir()
    target.write_bytes(planted.read_bytes())  # a stale or foreign file under this model's name
    # This process keeps the foreign library it loaded (the loader hands out one copy per path),
    # so it serves through LightGBM; the file is built anew for the next process.
    with pytest.raises(ValueError, match="disagree with LightGBM"):
        compile_trees(model.booster, model.checksum, tmp_path / "cache", "gcc")
    assert target.is_file() and target.read_bytes() != planted.read_bytes()
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / target.name).write_bytes(b"\x7fELF" + b"\x00" * 64)  # a full disk, a killed copy: never rebuilt
    rebuilt = compile_trees(model.booster, model.checksum, damaged, "gcc")
    probe = np.random.default_rng(1).random((50, len(FEATURE_NAMES)))
    assert np.array_equal(rebuilt.try_predict(probe), model.booster.predict(probe))


def test_build_folders_left_by_an_exited_process_are_removed(tmp_path: Path) -> None:
    abandoned, fresh = tmp_path / "build-abandoned", tmp_path / "build-running"
    for folder in (abandoned, fresh):
        folder.mkdir()
        (folder / "main.c").write_text("/* generated */")
    os.utime(abandoned, (time.time() - 7200, time.time() - 7200))
    model = bundled_model()
    compile_trees(model.booster, model.checksum, tmp_path, "gcc")
    assert not abandoned.exists() and fresh.exists(), "only folders no build can still own are removed"
    assert [p.name for p in tmp_path.glob("*.so")] == [f"{model.checksum[:32]}-tl2cgen-{tl2cgen.__version__}.so"]


def test_values_whose_low_word_is_all_ones_are_not_read_as_missing(tmp_path: Path) -> None:
    """tl2cgen marks a missing value by -1 in the low 32 bits of the double; 1 - 2**-53 has them all set."""
    model = bundled_model()
    compiled = compile_trees(model.booster, model.checksum, tmp_path, "gcc")
    rows = probe_rows(split_thresholds(model.booster), rows=2000, seed=5)
    almost_one = 0.9999999999999999  # an idf-weighted coverage of 1 summed in floating point
    assert np.array(almost_one).view(np.uint64) & 0xFFFFFFFF == 0xFFFFFFFF
    rows[:, FEATURE_NAMES.index("title_idf_coverage")] = almost_one
    rows[: len(rows) // 2, FEATURE_NAMES.index("title_coverage")] = -almost_one
    assert np.array_equal(compiled.try_predict(rows), model.booster.predict(rows, num_threads=1))
