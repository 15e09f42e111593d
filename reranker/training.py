"""Training data for the reranker, gathered through the live pipeline (or from feature logs).

Each judged query contributes query groups of the lists serving reranks: the fused
window of a full-catalog search ("window") and/or the query's judged products
("judged", as `rank --candidates` reranks them). Features come from the same
``SearchPipeline.ranked_with_detail`` call serving makes. Unjudged candidates are the
open question of full-retrieval training; ``unjudged`` decides: ``negative`` (grade 0,
what the full-retrieval metric assumes), ``drop``, or ``sample`` (N random ones per
query as grade 0).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from relevance.errors import ModelError
from relevance.evaluation import ndcg_at_k
from relevance.filters import SearchFilters
from relevance.judgments import JudgmentSet
from relevance.pipeline import SearchPipeline
from reranker.catalog_stats import CatalogStats
from reranker.feature_log import LogReading, read_feature_logs
from reranker.features import FEATURE_NAMES, FEATURE_SPEC, FIELD_FEATURES
from reranker.judged_categories import CATEGORIES_FILE, EMPTY, CategoryLearner, JudgedCategories
from reranker.model import DEFAULT_PARAMS, TrainingSet, refit_booster, train_booster
from reranker.registry import ModelRegistry, model_checksum

ListKind = Literal["window", "judged"]
UnjudgedPolicy = Literal["negative", "drop", "sample"]


@dataclass(frozen=True)
class CollectOptions:
    lists: tuple[ListKind, ...] = ("window", "judged")
    unjudged: UnjudgedPolicy = "negative"
    unjudged_sample: int = 50
    judged_weight: float = 1.0  # row weight of "judged" groups against "window" groups
    seed: int = 7


def label_scale(judged: JudgmentSet) -> float:
    """The smallest factor that turns every gain into an integer label (Home Depot's thirds: 3)."""
    gains = np.array([g for per_query in judged.gains.values() for g in per_query.values()])
    # Averaged grades are often written rounded (2.33, 2.67), hence the tolerance.
    for scale in (1, 2, 3, 4, 6, 12):
        if np.allclose(gains * scale, np.round(gains * scale), atol=0.05):
            return float(scale)
    return 12.0


def split_queries(query_ids: Sequence[str], valid_share: float, salt: str = "valid") -> tuple[list[str], list[str]]:
    """A deterministic split by query (a hash of the id), so no query is on both sides."""

    def bucket(qid: str) -> float:
        return int(hashlib.sha256(f"{salt}:{qid}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF

    valid = [q for q in query_ids if bucket(q) < valid_share]
    chosen = set(valid)
    return [q for q in query_ids if q not in chosen], valid


def _labels(
    product_ids: list[str], gains: dict[str, float], scale: float, options: CollectOptions, rng: random.Random
) -> tuple[list[int], np.ndarray]:
    """Rows to keep and their integer labels."""
    judged_rows = [i for i, pid in enumerate(product_ids) if pid in gains]
    unjudged_rows = [i for i, pid in enumerate(product_ids) if pid not in gains]
    if options.unjudged == "drop":
        unjudged_rows = []
    elif options.unjudged == "sample" and len(unjudged_rows) > options.unjudged_sample:
        unjudged_rows = sorted(rng.sample(unjudged_rows, options.unjudged_sample))
    keep = sorted(judged_rows + unjudged_rows)
    labels = np.array([round(gains.get(product_ids[i], 0.0) * scale) for i in keep], dtype=np.int32)
    return keep, labels


@dataclass(frozen=True)
class CandidateList:
    """One query's candidates as serving would rerank them, with their feature rows."""

    query_id: str
    kind: ListKind
    product_ids: list[str]
    features: np.ndarray


def served_stats(pipeline: SearchPipeline) -> CatalogStats:
    """The served version's catalog statistics; ModelError where they cannot be read (serving
    then reranks nothing, and features computed without them would teach a model nonsense)."""
    stats = pipeline.catalog_stats.current()
    if stats.problem:
        raise ModelError(f"cannot compute the features: {stats.problem}")
    return stats


def category_learner(pipeline: SearchPipeline, judged: JudgmentSet, query_ids: Sequence[str]) -> CategoryLearner:
    """The judged-category table of ``query_ids``' judgments, over the categories of the served catalog."""
    return CategoryLearner(judged, query_ids, served_stats(pipeline).texts.category_of)


def candidate_lists(
    pipeline: SearchPipeline,
    judged: JudgmentSet,
    query_ids: Sequence[str],
    lists: Sequence[ListKind],
    progress: Callable[[int], None] | None = None,
    categories: CategoryLearner | None = None,
) -> list[CandidateList]:
    """Fetch each query's lists through the pipeline, features computed as serving computes them.

    ``categories``: each query's features read the judged-category table learned without
    its fold; without it the ``judged_category_agreement`` column is missing (NaN).
    """
    served_stats(pipeline)
    found = []
    for done, qid in enumerate(query_ids, start=1):
        text, gains = judged.queries[qid], judged.gains[qid]
        table = categories.out_of_fold(qid) if categories is not None else EMPTY
        for kind in lists:
            if kind == "window":
                _, detail = pipeline.ranked_with_detail(
                    text, SearchFilters(), rerank=False, features=True, judged=table
                )
            else:
                ids = list(gains)
                _, detail = pipeline.ranked_with_detail(
                    text,
                    SearchFilters(product_ids=tuple(ids)),
                    depth=len(ids),
                    candidates=len(ids),
                    rerank=False,
                    features=True,
                    judged=table,
                    rerank_window=len(ids),  # as rank_candidates: every judged product is scored
                )
            if detail is not None:
                found.append(CandidateList(qid, kind, detail.candidate_ids, detail.features))
        if progress:
            progress(done)
    return found


def training_set(
    lists: Sequence[CandidateList], judged: JudgmentSet, scale: float, options: CollectOptions
) -> TrainingSet:
    """Label the lists (unjudged candidates per ``options.unjudged``); groups with one grade are left out."""
    return _labelled(
        (
            (
                item.query_id,
                item.kind,
                f"{item.query_id}:{item.kind}",
                item.product_ids,
                item.features,
                options.judged_weight if item.kind == "judged" else 1.0,
            )
            for item in lists
            if item.kind in options.lists
        ),
        judged,
        scale,
        options,
    )


def collect_from_logs(source: Path, judged: JudgmentSet, scale: float, options: CollectOptions) -> TrainingSet:
    """Training rows straight from served-feature logs, joined to judgments by query text."""
    by_text = {text.strip().lower(): qid for qid, text in judged.queries.items()}
    reading = LogReading()
    logged = list(read_feature_logs(source, reading))
    if not logged:
        raise ModelError(
            f"no usable logged request in {source}: {reading.other_features} were logged by a build with other"
            f" features, {reading.fragments} lines were unfinished writes; log requests with this build",
            field="feature_logs",
        )
    joined = (
        (qid, "log", f"{qid}:log:{request.request_id}", request.product_ids, request.features, 1.0)
        for request in logged
        if (qid := by_text.get(request.query.strip().lower())) is not None and qid in judged.gains
    )
    return _labelled(joined, judged, scale, options)


def _labelled(
    groups_in: Iterable[tuple[str, str, str, list[str], np.ndarray, float]],
    judged: JudgmentSet,
    scale: float,
    options: CollectOptions,
) -> TrainingSet:
    """(query id, kind, group id, product ids, feature rows, row weight) groups -> a labelled TrainingSet."""
    rng = random.Random(options.seed)
    blocks, labels, groups, group_ids, queries, kinds, pids, weights = [], [], [], [], [], [], [], []
    for query_id, kind, group_id, product_ids, features, weight in groups_in:
        keep, group_labels = _labels(product_ids, judged.gains[query_id], scale, options, rng)
        if len(set(group_labels.tolist())) < 2:
            continue  # one grade only: nothing for a ranking objective to learn
        blocks.append(features[keep])
        labels.append(group_labels)
        groups.append(len(keep))
        group_ids.append(group_id)
        queries.append(query_id)
        kinds.append(kind)
        pids.extend(product_ids[i] for i in keep)
        weights.append(np.full(len(keep), weight))
    if not blocks:
        return TrainingSet.empty()
    data = TrainingSet(np.vstack(blocks), np.concatenate(labels), groups, group_ids, queries, kinds, pids)
    row_weights = np.concatenate(weights)
    if np.any(row_weights != 1.0):
        data.weights = row_weights
    return data


def ndcg_by_group(data: TrainingSet, scores: np.ndarray, scale: float, k: int = 10) -> dict[str, float]:
    """Our NDCG@k of each query group ordered by ``scores`` (gain = label / scale)."""
    results, start = {}, 0
    for qid, size in zip(data.group_ids, data.groups, strict=True):
        rows = slice(start, start + size)
        ids = data.product_ids[rows]
        gains = {pid: label / scale for pid, label in zip(ids, data.labels[rows], strict=True) if label > 0}
        order = np.argsort(-scores[rows], kind="stable")
        results[qid] = ndcg_at_k([ids[i] for i in order], gains, k)
        start += size
    return results


def field_coverage(data: TrainingSet) -> dict[str, float]:
    """Per optional text field: the share of training candidates whose product had it (RankerModel.unfit_for reads it)."""
    return {
        field: round(float(np.mean(~np.isnan(data.features[:, FEATURE_NAMES.index(column)]))), 4)
        for field, column in FIELD_FEATURES.items()
    }


def fused_order_scores(data: TrainingSet) -> np.ndarray:
    """Scores that reproduce the fused order within each group (for the before/after comparison)."""
    return -data.features[:, FEATURE_NAMES.index("fused_rank")]


def train_and_save(
    training: TrainingSet,
    validation: TrainingSet,
    registry: ModelRegistry,
    *,
    scale: float,
    options: CollectOptions,
    params: dict[str, Any] | None = None,
    source: dict[str, Any] | None = None,
    judged_categories: JudgedCategories = EMPTY,
    refit: bool = True,
) -> tuple[str, dict[str, Any]]:
    """Train LightGBM lambdarank with early stopping on ``validation`` and save a model version.

    ``refit``: then train again on ``training`` and ``validation`` together for the early-stopped
    round count scaled to the larger set (``refit_booster``), and save that model; the validation
    figures are the early-stopped model's, the only ones measured on queries it did not learn
    from. Cross-validated on Home Depot the refit is level within the seed spread (+0.0003
    judged-list, +0.0004 full-retrieval NDCG@10 over five seeds; bench/README, "Refit"); it
    is the default so that a shipped model learns from every judged query.
    ``judged_categories``: the table the model serves with (learned from all its queries).
    """
    if not training.groups:
        raise ModelError("no training query has two different grades among its candidates; nothing to learn")
    booster, fit = train_booster(training, validation if validation.groups else None, scale, params)
    validation_report: dict[str, Any] = {"queries": len(set(validation.queries)), **fit}
    if validation.groups:
        model_scores = booster.predict(validation.features, num_threads=1)
        by_model = ndcg_by_group(validation, model_scores, scale)
        by_fused = ndcg_by_group(validation, fused_order_scores(validation), scale)
        for kind in dict.fromkeys(validation.kinds):  # window, judged, or log (logged requests)
            keys = [g for g, of in zip(validation.group_ids, validation.kinds, strict=True) if of == kind]
            if keys:
                validation_report[f"{kind}_ndcg@10_model"] = round(float(np.mean([by_model[q] for q in keys])), 4)
                validation_report[f"{kind}_ndcg@10_fused"] = round(float(np.mean([by_fused[q] for q in keys])), 4)
    refit_report: dict[str, Any] | None = None
    if refit and validation.groups:
        booster, rounds = refit_booster(training, validation, scale, params, fit["best_iteration"])
        training = training.joined(validation)  # what the saved model learned from, for its metadata
        refit_report = {"rounds": rounds, "early_stopped_rounds": fit["best_iteration"]}
    importance = booster.feature_importance(importance_type="gain")
    meta = {
        "features": FEATURE_SPEC,
        "feature_names": list(FEATURE_NAMES),
        "params": {**DEFAULT_PARAMS, **(params or {})},
        "label_scale": scale,
        "training": {
            "queries": len(set(training.queries)),
            "groups": len(training.groups),
            "rows": len(training.labels),
            "data_sha256": training.fingerprint(),
            "lists": list(options.lists),
            "unjudged": options.unjudged,
            "field_coverage": field_coverage(training),
            "judged_categories": {
                "queries": judged_categories.queries,
                "terms": len(judged_categories.term_categories),
            },
            **(source or {}),
        },
        "validation": validation_report,
        "refit": refit_report,
        "feature_importance_gain": {
            name: round(float(value), 2)
            for name, value in sorted(zip(FEATURE_NAMES, importance, strict=True), key=lambda kv: -kv[1])
        },
    }
    categories_text = judged_categories.to_json()
    meta["judged_categories_sha256"] = model_checksum(categories_text)
    version = registry.save(booster.model_to_string(), meta, {CATEGORIES_FILE: categories_text})
    return version, registry_meta(registry, version)


def registry_meta(registry: ModelRegistry, version: str) -> dict[str, Any]:
    return json.loads((registry.model_dir(version) / "meta.json").read_text(encoding="utf-8"))
