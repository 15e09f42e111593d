"""A LightGBM lambdarank model over the feature registry: train, load, predict, explain."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from relevance.errors import ModelError
from reranker.compiled import CompiledTrees
from reranker.features import FEATURE_NAMES, FEATURE_SPEC
from reranker.judged_categories import CATEGORIES_FILE, EMPTY, JudgedCategories
from reranker.registry import MODEL_FILE, model_checksum, read_meta

DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "lambdarank",
    "metric": "ndcg",
    "eval_at": [10],
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_data_in_leaf": 50,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambdarank_truncation_level": 20,
    "num_threads": 2,
    "seed": 7,
    "deterministic": True,
    "force_row_wise": True,
    "verbosity": -1,
}
MAX_ROUNDS, EARLY_STOPPING_ROUNDS = 2000, 100
# A catalog relies on a text field when most of its products carry it. A model trained where
# (almost) no candidate had that field ranks without it and overrides the fused order, whose
# BM25 does read it: on the WANDS demo catalog (categories on every product) the Home Depot
# model (titles only) lost to the fused order it reranked (bench/README, "Catalog fit").
RELIED_ON_SHARE, UNSEEN_SHARE = 0.5, 0.01
_PLURALS = {"brand": "brands", "category": "categories", "description": "descriptions"}


@dataclass
class TrainingSet:
    """Rows grouped by query, in query order; labels are integer grades."""

    features: np.ndarray
    labels: np.ndarray
    groups: list[int]  # rows per group (one candidate list), in order
    group_ids: list[str]  # one per group: "<query id>:window", "<query id>:judged", "<query id>:log:<request>"
    queries: list[str] = field(default_factory=list)  # one per group: its judged query's id
    kinds: list[str] = field(default_factory=list)  # one per group: "window", "judged" or "log"
    product_ids: list[str] = field(default_factory=list)  # one per row
    weights: np.ndarray | None = None  # one per row; scales each row's lambdarank gradient

    @classmethod
    def empty(cls) -> TrainingSet:
        return cls(np.zeros((0, len(FEATURE_NAMES))), np.zeros(0, dtype=np.int32), [], [])

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for array in (np.nan_to_num(self.features, nan=-1e308), self.labels, np.asarray(self.groups)):
            digest.update(np.ascontiguousarray(array).tobytes())
        digest.update("\n".join(self.group_ids).encode())
        return digest.hexdigest()

    def joined(self, other: TrainingSet) -> TrainingSet:
        """Both sets' groups, this one's first."""
        if self.weights is None and other.weights is None:
            weights = None
        else:
            weights = np.concatenate(
                [s.weights if s.weights is not None else np.ones(len(s.labels)) for s in (self, other)]
            )
        return TrainingSet(
            np.vstack([self.features, other.features]),
            np.concatenate([self.labels, other.labels]),
            [*self.groups, *other.groups],
            [*self.group_ids, *other.group_ids],
            [*self.queries, *other.queries],
            [*self.kinds, *other.kinds],
            [*self.product_ids, *other.product_ids] if self.product_ids and other.product_ids else [],
            weights,
        )

    def subset(self, keep_queries: set[str]) -> TrainingSet:
        """The groups of the judged queries ``keep_queries``."""
        starts = np.cumsum([0, *self.groups])
        rows: list[int] = []
        kept = [i for i, query in enumerate(self.queries) if query in keep_queries]
        for i in kept:
            rows.extend(range(starts[i], starts[i + 1]))
        return TrainingSet(
            self.features[rows],
            self.labels[rows],
            [self.groups[i] for i in kept],
            [self.group_ids[i] for i in kept],
            [self.queries[i] for i in kept],
            [self.kinds[i] for i in kept],
            [self.product_ids[r] for r in rows] if self.product_ids else [],
            self.weights[rows] if self.weights is not None else None,
        )


def label_gains(max_label: int, scale: float) -> list[float]:
    """LightGBM's gain per integer label, so its NDCG matches ours (2^gain - 1, gain = label / scale)."""
    return [2.0 ** (label / scale) - 1.0 for label in range(max_label + 1)]


def refit_rounds(best_iteration: int, valid_share: float) -> int:
    """Trees for a refit on the training and early-stopping queries together: the early-stopped
    count grown with the data (the held-out share's worth more), as boosting needs more rounds
    to fit more rows."""
    return max(1, round(best_iteration / (1.0 - valid_share)))


def train_booster(
    train: TrainingSet, valid: TrainingSet | None, label_scale: float, params: dict[str, Any] | None = None
) -> tuple[lgb.Booster, dict[str, Any]]:
    settings = {**DEFAULT_PARAMS, **(params or {})}
    if valid is not None and not valid.groups:
        valid = None  # too few queries to hold any out: train for a fixed number of rounds
    max_label = int(max(train.labels.max(), valid.labels.max() if valid is not None else 0))
    settings["label_gain"] = label_gains(max_label, label_scale)
    dataset = lgb.Dataset(
        train.features, train.labels, weight=train.weights, group=train.groups, feature_name=list(FEATURE_NAMES)
    )
    valid_sets, callbacks, evals = [], [], {}
    if valid is not None:
        valid_sets = [lgb.Dataset(valid.features, valid.labels, group=valid.groups, reference=dataset)]
        callbacks = [lgb.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False), lgb.record_evaluation(evals)]
    rounds = settings.pop("num_boost_round", MAX_ROUNDS if valid_sets else 300)
    booster = lgb.train(settings, dataset, num_boost_round=rounds, valid_sets=valid_sets, callbacks=callbacks)
    metrics: dict[str, Any] = {"best_iteration": booster.best_iteration or rounds}
    if evals:
        history = evals["valid_0"]["ndcg@10"]
        metrics["validation_lightgbm_ndcg@10"] = round(float(history[booster.best_iteration - 1]), 4)
    return booster, metrics


def refit_booster(
    train: TrainingSet, valid: TrainingSet, label_scale: float, params: dict[str, Any] | None, best_iteration: int
) -> tuple[lgb.Booster, int]:
    """The model trained again on ``train`` and ``valid`` together for the early-stopped round count
    scaled to them (``refit_rounds``), and that count: what `train` saves by default."""
    rounds = refit_rounds(best_iteration, len(valid.groups) / (len(train.groups) + len(valid.groups)))
    booster, _ = train_booster(train.joined(valid), None, label_scale, {**(params or {}), "num_boost_round": rounds})
    return booster, rounds


@dataclass
class RankerModel:
    version: str
    booster: lgb.Booster
    meta: dict[str, Any]
    native: CompiledTrees | None = None  # the same trees compiled (reranker.compiled), once ready
    native_failure: str | None = None  # why there are none, when compiling failed
    judged_categories: JudgedCategories = EMPTY  # learned from its training judgments; its features read it

    @property
    def checksum(self) -> str:
        return str(self.meta["model_sha256"])

    @classmethod
    def load(cls, version: str, directory: Path) -> RankerModel:
        """A saved version: its model file, metadata and judged-category table, each checked."""
        meta = read_meta(version, directory)
        try:
            text = (directory / MODEL_FILE).read_text(encoding="utf-8")
        except (OSError, ValueError) as exc:  # missing, or not text at all
            raise ModelError(f"model {version}'s {directory / MODEL_FILE} is unreadable: {exc}") from exc
        model = cls.from_text(version, text, meta)
        expected = meta.get("judged_categories_sha256")
        if expected is None:
            raise ModelError(f"model {version} has no judged-category table (trained by an older build)")
        try:
            text = (directory / CATEGORIES_FILE).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ModelError(f"model {version}'s {CATEGORIES_FILE} is missing") from None
        if model_checksum(text) != expected:
            raise ModelError(f"model {version}'s {CATEGORIES_FILE} does not match the checksum saved with it")
        model.judged_categories = JudgedCategories.from_json(text)
        return model

    @classmethod
    def from_text(cls, version: str, text: str, meta: dict[str, Any]) -> RankerModel:
        features = meta.get("features")
        if features != FEATURE_SPEC:
            raise ModelError(
                f"model {version} was trained on other features than this build computes"
                f" (model: {sorted(features or {})}, build: feature set of {len(FEATURE_SPEC)})"
            )
        # LightGBM aborts the whole process on some malformed model text instead of raising,
        # so a file that is not byte-for-byte the one training saved never reaches it.
        if meta.get("model_sha256") != model_checksum(text):
            raise ModelError(f"model {version}'s file does not match the checksum saved with it (corrupt or edited)")
        try:
            booster = lgb.Booster(model_str=text)
        except lgb.basic.LightGBMError as exc:
            raise ModelError(f"model {version} cannot be loaded: {exc}") from exc
        if booster.feature_name() != list(FEATURE_NAMES):
            raise ModelError(f"model {version}'s feature columns differ from the registry's order")
        return cls(version, booster, meta)

    def unfit_for(self, field_shares: dict[str, float]) -> str | None:
        """Why this model should not rerank a catalog with these field shares, or None when it may."""
        coverage = self.meta.get("training", {}).get("field_coverage")
        if coverage is None:  # trained before coverage was recorded: nothing to compare against
            return None
        for name, share in field_shares.items():
            if share >= RELIED_ON_SHARE and coverage.get(name, 0.0) < UNSEEN_SHARE:
                fields = _PLURALS.get(name, name)
                return (
                    f"model {self.version} was trained without product {fields}, which {share:.0%} of this"
                    " catalog's products have; train a model on this catalog's judgments to rerank it"
                )
        return None

    def predict(self, features: np.ndarray) -> np.ndarray:
        native = self.native
        scores = native.try_predict(features) if native is not None else None
        return scores if scores is not None else self.booster.predict(features, num_threads=1)

    def contributions(self, features: np.ndarray) -> np.ndarray:
        """(rows, features + 1): each feature's SHAP contribution, then the bias; rows sum to the score."""
        return self.booster.predict(features, pred_contrib=True, num_threads=1)
