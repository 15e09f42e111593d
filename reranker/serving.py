"""The served reranker: the active model, reloaded when it changes, and a fallback that
never fails a search.

A missing, corrupt or feature-mismatched model, or the served version's catalog
statistics unreadable, leaves the fused order in place; the status (for /readyz) says
"degraded" with the reason, and the log says it once.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from relevance.errors import ModelError
from relevance.served_version import PerVersion, ServedVersion
from reranker.catalog_stats import STATS_VERSION, CatalogStats, stats_path
from reranker.compiled import TreeCompiler
from reranker.features import FEATURE_NAMES
from reranker.judged_categories import CATEGORIES_FILE
from reranker.model import RankerModel
from reranker.registry import META_FILE, MODEL_FILE, ModelRegistry

log = logging.getLogger(__name__)
MODEL_FILES = (MODEL_FILE, META_FILE, CATEGORIES_FILE)  # what RankerModel.load reads
_NOT_LOADED = object()  # no pointer file is a state too (the bundled model), so None cannot mean "not read"


@dataclass(frozen=True)
class RerankerStatus:
    state: str  # "off" (no model active), "active" or "degraded"
    version: str | None
    reason: str | None = None
    predictor: str | None = None  # "compiled" or "lightgbm" while a model is active
    predictor_detail: str | None = None  # why LightGBM predicts

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "version": self.version,
            "reason": self.reason,
            "predictor": self.predictor,
            "predictor_detail": self.predictor_detail,
        }


class Reranker:
    def __init__(
        self, registry: ModelRegistry, compiler: TreeCompiler | None = None, *, check_catalog_fit: bool = True
    ) -> None:
        self.registry = registry
        self.compiler = compiler
        self.check_catalog_fit = check_catalog_fit  # False: rerank_unfit_catalogs
        self._lock = threading.Lock()
        self._pointer_key: tuple[Any, ...] | object = _NOT_LOADED
        self._watched: tuple[Path, ...] = ()
        self._model: RankerModel | None = None
        self._status = RerankerStatus("off", None)
        self._reported: set[tuple[str | None, str]] = set()

    def model(self) -> RankerModel | None:
        """The active model, or None (no model, or a broken one: see ``status``)."""
        self._refresh()
        return self._model

    def model_for(self, stats: CatalogStats) -> RankerModel | None:
        """The active model when it may rerank this catalog (``RankerModel.unfit_for``), else None."""
        model = self.model()
        if model is None:
            return None
        reason = self._unfit(model, stats)
        if reason is None:
            return model
        self._degraded(model.version, reason)  # logs once
        return None

    def status(self, stats: CatalogStats | None = None) -> RerankerStatus:
        """The model's state; with the served catalog's ``stats``, "degraded" when it does not fit that catalog."""
        self._refresh()
        model = self._model
        if model is None:
            return self._status
        predictor, detail = self._predictor(model)
        reason = self._unfit(model, stats)
        if reason is not None:
            return RerankerStatus("degraded", model.version, reason, predictor, detail)
        return dataclasses.replace(self._status, predictor=predictor, predictor_detail=detail)

    def _unfit(self, model: RankerModel, stats: CatalogStats | None) -> str | None:
        if stats is not None and stats.problem:  # the features would not be those the model learned from
            return stats.problem
        if stats is None or not self.check_catalog_fit:
            return None
        return model.unfit_for(stats.field_shares())

    def _predictor(self, model: RankerModel) -> tuple[str, str | None]:
        if model.native is not None:
            return "compiled", None
        if model.native_failure is not None:
            return "lightgbm", f"compiling the trees failed: {model.native_failure}"
        if self.compiler is None or self.compiler.toolchain == "none":
            return "lightgbm", "compiling the trees is switched off (rerank_compiler = none)"
        return "lightgbm", "the trees are being compiled"

    def _refresh(self) -> None:
        if self._files_key() == self._pointer_key:
            return
        with self._lock:
            if self._files_key() == self._pointer_key:
                return
            self._model, self._status = self._load()
            version = self._status.version
            directory = self.registry.model_dir(version) if version else None
            self._watched = tuple(directory / name for name in MODEL_FILES) if directory else ()
            self._pointer_key = self._files_key()

    def _files_key(self) -> tuple[tuple[int, int, int] | None, ...]:
        """The pointer's and the active model's own files' state: a model deleted or rewritten
        while active reloads (and degrades) in running workers too, as a new worker would."""
        return (_file_key(self.registry.active_path), *(_file_key(path) for path in self._watched))

    def _load(self) -> tuple[RankerModel | None, RerankerStatus]:
        try:
            version = self.registry.active_version()
        except ModelError as exc:
            return None, self._degraded(None, exc.detail)
        if version is None:
            return None, RerankerStatus("off", None)
        try:
            model = RankerModel.load(version, self.registry.model_dir(version))
        except Exception as exc:  # any broken model degrades to the fused order, never fails a search
            return None, self._degraded(version, f"{type(exc).__name__}: {exc}")
        log.info("reranking with model %s", version)
        if self.compiler is not None:
            self.compiler.start(model)  # serves through LightGBM until the compiled trees are ready
        return model, RerankerStatus("active", version)

    def _degraded(self, version: str | None, reason: str) -> RerankerStatus:
        if (version, reason) not in self._reported:
            self._reported.add((version, reason))
            log.error("reranker model %s unusable, serving the fused order: %s", version, reason)
        return RerankerStatus("degraded", version, reason)

    def explain(self, model: RankerModel, rows: np.ndarray) -> list[dict[str, Any]]:
        """Per row: feature values and their contributions (which sum, with the bias, to the score)."""
        if len(rows) == 0:  # an empty page: LightGBM's pred_contrib divides by the row count
            return []
        contributions = model.contributions(rows)
        explained = []
        for values, contribution in zip(rows, contributions, strict=True):
            explained.append(
                {
                    "features": {n: _json_float(v) for n, v in zip(FEATURE_NAMES, values, strict=True)},
                    "contributions": {n: float(c) for n, c in zip(FEATURE_NAMES, contribution[:-1], strict=True)},
                    "bias": float(contribution[-1]),
                }
            )
        return explained


def _file_key(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino)


def _json_float(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


class CatalogStatsProvider:
    """Statistics of the catalog the served version holds, read once per version."""

    def __init__(self, data_dir: Path, served: ServedVersion) -> None:
        self.data_dir = data_dir
        self.served = served
        self._stats = PerVersion(self.for_version)

    def current(self) -> CatalogStats:
        return self._stats.get(self.served.current())

    def for_version(self, version: str | None) -> CatalogStats:
        if version is None:  # nothing served yet
            return CatalogStats()
        path = stats_path(self.data_dir, version)
        if not path.is_file():  # another host indexed it (a shared cluster), or stats were not kept then
            problem = (
                f"no catalog statistics of {version} in {path.parent}: it was indexed from another data"
                " directory or before statistics were kept; re-index from this data directory"
            )
            log.error("serving %s without spelling correction or the learned reranker: %s", version, problem)
            return CatalogStats(problem=problem)
        try:
            stats = CatalogStats.load(path)
        except ValueError as exc:  # damaged on disk: search goes on without what they feed (read once per version)
            problem = f"the catalog statistics of {version} are unreadable ({exc}); re-index to rebuild them"
            log.error("serving %s without spelling correction or the learned reranker: %s", version, problem)
            return CatalogStats(problem=problem)
        if stats.version != STATS_VERSION:
            log.warning(
                "catalog statistics of %s were computed by an older text analysis (version %s, this build %s):"
                " they serve as they are, but text beyond ASCII may read otherwise than in training; re-index"
                " to refresh them",
                version,
                stats.version,
                STATS_VERSION,
            )
        return stats
