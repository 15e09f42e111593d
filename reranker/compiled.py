"""A model's trees compiled to native code for serving (treelite + tl2cgen).

LightGBM's ``predict`` walks 200 candidates through the bundled model's trees in about
a millisecond on one thread; the same trees compiled to C take about a third of that and give the same
scores (float64 thresholds and leaves; every compiled library is checked against
LightGBM, bit for bit, on probe rows before it serves). Compiling needs a C compiler and a few
seconds, so it runs once per model file (the library is cached under its checksum),
off the request path; until it is ready, or for good where no compiler exists, the
model predicts through LightGBM.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import lightgbm as lgb
import numpy as np
import tl2cgen
import treelite

if TYPE_CHECKING:
    from reranker.model import RankerModel

log = logging.getLogger(__name__)
PROBE_ROWS = 512
LOW_WORD = np.uint64(0xFFFFFFFF)
BUILD_PREFIX = "build-"
ABANDONED_AFTER_SECONDS = 3600.0  # a build takes seconds; an hour-old folder has no owner left
# Set when the process starts exiting: tl2cgen's own temporary build folder is removed then,
# under a compile still running in its daemon thread, which is no failure worth a warning.
_EXITING = threading.Event()
atexit.register(_EXITING.set)


class CompiledTrees:
    """A compiled library's predictor; it serves one caller at a time (tl2cgen's rule)."""

    def __init__(self, library: Path) -> None:
        self.library = library
        self._predictor = tl2cgen.Predictor(str(library), nthread=1)
        self._lock = threading.Lock()

    def try_predict(self, features: np.ndarray) -> np.ndarray | None:
        """Scores, or None while another thread is using the predictor (the caller uses LightGBM)."""
        if not len(features):
            return np.zeros(0)
        if not self._lock.acquire(blocking=False):
            return None
        try:
            matrix = tl2cgen.DMatrix(_unambiguous(features), dtype="float64")
            return self._predictor.predict(matrix, pred_margin=True).reshape(len(features))
        finally:
            self._lock.release()


def _low_word_set(values: np.ndarray) -> np.ndarray:
    return (values.view(np.uint64) & LOW_WORD) == LOW_WORD


def _unambiguous(features: np.ndarray) -> np.ndarray:
    """The rows with every value tl2cgen would read as missing moved up one ulp.

    The generated code takes each value in a C union whose int member is -1 for
    "missing", so a double whose low 32 bits are all ones (0.9999999999999999, an
    idf-weighted coverage of 1, is one) would take the missing branch. One ulp up
    clears them, and changes no split: ``v <= t`` and ``next(v) <= t`` differ only
    when ``t == v``, and ``compile_trees`` refuses models with such a threshold.
    """
    features = np.ascontiguousarray(features, dtype=np.float64)
    clash = _low_word_set(features) & ~np.isnan(features)
    return np.where(clash, np.nextafter(features, np.inf), features) if clash.any() else features


def compile_trees(booster: lgb.Booster, checksum: str, cache_dir: Path, toolchain: str) -> CompiledTrees:
    """The model's compiled trees, built (or found) under ``cache_dir`` and checked against LightGBM."""
    thresholds = split_thresholds(booster)
    if any(_low_word_set(np.asarray(values)).any() for values in thresholds):
        raise ValueError("a split threshold has its low 32 bits set; tl2cgen would read values equal to it as missing")
    library = cache_dir / f"{checksum[:32]}-tl2cgen-{tl2cgen.__version__}.so"
    if library.is_file():
        try:
            return _checked(CompiledTrees(library), booster, thresholds)
        except (OSError, ValueError, tl2cgen.TL2cgenError) as exc:  # a damaged or foreign file: build anew
            log.warning("the cached compiled trees %s are unusable (%s); building them again", library, exc)
            library.unlink(missing_ok=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_builds(cache_dir)
    model = treelite.frontend.from_lightgbm(booster)
    # Built aside and renamed: another worker compiling the same model never sees half a file.
    with tempfile.TemporaryDirectory(prefix=BUILD_PREFIX, dir=cache_dir) as scratch:
        built = Path(scratch) / "trees.so"
        tl2cgen.export_lib(model, toolchain=toolchain, libpath=built, params={"parallel_comp": 8}, verbose=False)
        os.replace(built, library)
    return _checked(CompiledTrees(library), booster, thresholds)


def _checked(compiled: CompiledTrees, booster: lgb.Booster, thresholds: list[list[float]]) -> CompiledTrees:
    probe = probe_rows(thresholds)
    expected = booster.predict(probe, num_threads=1)
    got = compiled.try_predict(probe)
    # Bit for bit: served scores must be reproducible from logged features with LightGBM alone.
    if got is None or not np.array_equal(got, expected):
        worst = float(np.max(np.abs(got - expected))) if got is not None else float("nan")
        raise ValueError(f"compiled trees disagree with LightGBM on probe rows (max difference {worst:g})")
    return compiled


def _remove_abandoned_builds(cache_dir: Path) -> None:
    """Build folders of processes that exited mid-compile (a daemon thread does not clean up)."""
    for folder in cache_dir.glob(f"{BUILD_PREFIX}*"):
        try:
            if time.time() - folder.stat().st_mtime > ABANDONED_AFTER_SECONDS:
                shutil.rmtree(folder, ignore_errors=True)
        except FileNotFoundError:  # another worker removed it first
            pass


def split_thresholds(booster: lgb.Booster) -> list[list[float]]:
    """Per feature, the thresholds of the splits on it."""
    thresholds: list[list[float]] = [[] for _ in range(booster.num_feature())]

    def collect(node: dict) -> None:
        if "split_feature" in node:
            thresholds[node["split_feature"]].append(float(node["threshold"]))
            collect(node["left_child"])
            collect(node["right_child"])

    for tree in booster.dump_model()["tree_info"]:
        collect(tree["tree_structure"])
    return thresholds


def probe_rows(thresholds: list[list[float]], rows: int = PROBE_ROWS, seed: int = 0) -> np.ndarray:
    """Rows that reach many leaves: each value a split threshold of its feature, nudged either way, missing,
    or with its low 32 bits set (the values tl2cgen could mistake for missing)."""
    rng = np.random.default_rng(seed)
    probe = np.full((rows, len(thresholds)), np.nan)
    for column, values in enumerate(thresholds):
        if not values:
            continue
        picked = rng.choice(np.asarray(values), size=rows)
        nudged = picked + rng.choice([-1e-6, 0.0, 1e-6], size=rows) * np.maximum(np.abs(picked), 1.0)
        low_word_set = (nudged.view(np.uint64) | LOW_WORD).view(np.float64)
        draw = rng.random(rows)
        probe[:, column] = np.where(draw < 0.1, np.nan, np.where(draw < 0.2, low_word_set, nudged))
    return probe


class TreeCompiler:
    """Compiles models off the request path, one at a time, and attaches the result when it checks out."""

    def __init__(self, cache_dir: Path, toolchain: str = "gcc") -> None:
        self.cache_dir = cache_dir
        self.toolchain = toolchain  # "none": LightGBM predicts
        self._queue_lock = threading.Lock()
        self._latest: threading.Thread | None = None

    def start(self, model: RankerModel) -> None:
        """Compile ``model``'s trees in a background thread (nothing when compiling is switched off)."""
        if self.toolchain == "none":
            return
        self._latest = threading.Thread(target=self._compile, args=(model,), name="tree-compiler", daemon=True)
        self._latest.start()

    def wait(self, timeout: float | None = None) -> None:
        """Until the latest compile has finished (attached or failed)."""
        if self._latest is not None:
            self._latest.join(timeout)

    def _compile(self, model: RankerModel) -> None:
        with self._queue_lock:
            try:
                compiled = compile_trees(model.booster, model.checksum, self.cache_dir, self.toolchain)
            except Exception as exc:  # no compiler, a failed build, a mismatch: LightGBM keeps serving
                if _EXITING.is_set():  # cut short by the exit; the next process compiles again
                    return
                model.native_failure = f"{type(exc).__name__}: {exc}"
                log.warning("model %s predicts through LightGBM: native trees unavailable (%s)", model.version, exc)
                return
            model.native = compiled
            log.info("model %s predicts through compiled trees (%s)", model.version, compiled.library.name)
