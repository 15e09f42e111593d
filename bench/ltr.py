"""Learning to rank on the Home Depot dev split: 5-fold cross-validation by query.

    python bench/ltr.py --data ../shared/data/home_depot

Every eligible query (judged products with at least two grades, as in
../shared/data/README.md) is scored once per mode by bm25, knn, rrf, linear (the layer,
no learned model) and by the LightGBM reranker trained on the other four folds (its
features computed through the serving pipeline, ``SearchPipeline.ranked_with_detail``).
Judged-list mode reranks each query's judged products; full-retrieval mode reranks
the fused window (200) of a whole-catalog search and scores its top 10. Reports NDCG@10
per method and mode, the paired-bootstrap 95% CI and p-value of LTR minus the best
non-learned method, and the features' mean gain importance. For full retrieval it also
reports two judgment-pool diagnostics of the window's top 10 in BM25 order (the window's
BM25-ranked products), fused order and LTR order: the share of judged products
(``judged@10``) and NDCG@10 with unjudged products dropped (``condensed_ndcg@10``),
with LTR minus the fused and the BM25 order on the latter. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import (
    at_least,
    bench_parser,
    bench_settings,
    ensure_index,
    existing_file,
    home_depot_paths,
    machine,
    output_file,
    retrieval_key,
    share,
)
from bench.relevance import MemoQueries, score_methods
from indexer.catalog import load_catalog
from relevance.evaluation import ndcg_at_k
from relevance.judgments import read_judgments
from relevance.metrics import condensed_ndcg_at_k, judged_at_k
from relevance.services import Services
from relevance.significance import paired_bootstrap
from reranker.catalog_stats import STATS_VERSION, CatalogStats, stats_path, write_version_stats
from reranker.features import FEATURE_NAMES, FEATURE_SPEC
from reranker.model import DEFAULT_PARAMS, refit_booster, train_booster
from reranker.training import (
    CandidateList,
    CollectOptions,
    candidate_lists,
    category_learner,
    label_scale,
    split_queries,
    training_set,
)


def ensure_catalog_stats(services: Services, catalog: Path) -> None:
    """Indexes built before the reranker existed have no catalog statistics yet: compute them."""
    version = services.engine.alias_target(services.settings.index_alias)
    path = stats_path(services.settings.data_dir, version) if version else None
    if path and (not path.is_file() or CatalogStats.load(path).version != STATS_VERSION):
        products = load_catalog(catalog, services.settings.dead_letter_dir / "ltr-bench.jsonl").products
        write_version_stats(services.settings.catalog_stats_dir, version, products)


def cached_lists(services: Services, judged, eligible: list[str], cache_dir: Path) -> list[CandidateList]:
    texts = [judged.queries[q] for q in eligible]
    key = hashlib.sha256(json.dumps([*retrieval_key(services, texts), FEATURE_SPEC, eligible]).encode())
    key = key.hexdigest()[:16]
    path = cache_dir / f"ltr-lists-{key}.pickle"
    if path.is_file():
        return pickle.loads(path.read_bytes())
    bar = tqdm(total=len(eligible), desc="features", file=sys.stderr)
    # As `relevance train` does: each query's judged-category features read the table learned without its fold.
    categories = category_learner(services.pipeline, judged, judged.scorable())
    lists = candidate_lists(
        services.pipeline, judged, eligible, ("window", "judged"), lambda n: bar.update(1), categories
    )
    bar.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(lists))
    return lists


def cached_baselines(services: Services, judged, eligible: list[str], cache_dir: Path):
    texts = [judged.queries[q] for q in eligible]
    key = hashlib.sha256(json.dumps([*retrieval_key(services, texts), eligible]).encode()).hexdigest()[:16]
    path = cache_dir / f"baselines-{key}.json"
    if path.is_file():
        return json.loads(path.read_text())
    scores = score_methods(services, judged.queries, judged.gains, eligible)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(scores))
    return scores


def folds_of(query_ids: list[str], folds: int) -> dict[str, int]:
    return {q: int(hashlib.sha256(f"fold:{q}".encode()).hexdigest()[:8], 16) % folds for q in query_ids}


def ranked_ids(item: CandidateList, scores: np.ndarray) -> list[str]:
    order = np.argsort(-scores, kind="stable")
    return [item.product_ids[i] for i in order]


POOL_ORDERS = ("bm25", "fused", "ltr")
_LEXICAL_RANK, _FUSED_RANK = FEATURE_NAMES.index("lexical_rank"), FEATURE_NAMES.index("fused_rank")


def window_orders(item: CandidateList, ltr_scores: np.ndarray) -> dict[str, list[str]]:
    """The window's products in BM25 order (those BM25 ranked), fused order and LTR order."""
    lexical = item.features[:, _LEXICAL_RANK]
    in_lexical = np.flatnonzero(~np.isnan(lexical))
    return {
        "bm25": [item.product_ids[i] for i in in_lexical[np.argsort(lexical[in_lexical], kind="stable")]],
        "fused": [item.product_ids[i] for i in np.argsort(item.features[:, _FUSED_RANK], kind="stable")],
        "ltr": ranked_ids(item, ltr_scores),
    }


def pool_diagnostics(pool: dict[str, dict[str, np.ndarray]], samples: int) -> dict:
    """Means of judged@10 and condensed NDCG@10 per order, and LTR minus the other orders on the latter."""
    condensed = pool["condensed_ndcg@10"]
    result: dict = {
        metric: {order: round(float(v.mean()), 4) for order, v in values.items()} for metric, values in pool.items()
    }
    for other in ("fused", "bm25"):
        test = paired_bootstrap(condensed["ltr"], condensed[other], samples=samples, seed=0)
        result[f"condensed_ltr_vs_{other}"] = {
            "difference": round(test.difference, 4),
            "ci95": [round(test.ci_low, 4), round(test.ci_high, 4)],
            "p_value": test.p_value,
        }
    return result


def versus_earlier_run(ltr: dict[str, np.ndarray], eligible: list[str], path: Path, samples: int) -> dict:
    """This run's LTR minus an earlier run's (another variant), paired by query: a variant's effect with its CI."""
    earlier = json.loads(path.read_text())
    if earlier["query_ids"] != eligible:
        raise SystemExit(f"{path} scored other queries: compare runs over the same eligible queries")
    compared: dict = {"run": str(path)}
    for mode, values in ltr.items():
        test = paired_bootstrap(values, np.asarray(earlier[mode]), samples=samples, seed=0)
        compared[mode] = {
            "earlier": round(float(np.mean(earlier[mode])), 4),
            "difference": round(test.difference, 4),
            "ci95": [round(test.ci_low, 4), round(test.ci_high, 4)],
            "p_value": test.p_value,
        }
    return compared


def seed_spread(runs: dict[int, tuple], baselines: dict[str, dict], samples: int) -> dict:
    """Per seed: LTR's NDCG@10 and its paired CI against the best non-learned method; over
    seeds: mean and standard deviation, what a change must exceed to be more than reseeding."""
    spread: dict = {"per_seed": {}, "summary": {}}
    for seed, (ltr, *_) in runs.items():
        row = {}
        for mode, base in baselines.items():
            best = max(base, key=lambda name: np.mean(base[name]))
            test = paired_bootstrap(ltr[mode], base[best], samples=samples, seed=0)
            row[mode] = {
                "ltr": round(float(ltr[mode].mean()), 4),
                "baseline": best,
                "difference": round(test.difference, 4),
                "ci95": [round(test.ci_low, 4), round(test.ci_high, 4)],
                "p_value": test.p_value,
            }
        spread["per_seed"][str(seed)] = row
    for mode in baselines:
        means = [float(run[0][mode].mean()) for run in runs.values()]
        spread["summary"][mode] = {
            "mean": round(float(np.mean(means)), 4),
            "sd": round(float(np.std(means, ddof=1)), 4),
        }
    return spread


def cross_validate(
    eligible: list[str],
    fold: dict[str, int],
    folds: int,
    lists: list[CandidateList],
    by_key: dict[tuple[str, str], CandidateList],
    judged,
    scale: float,
    options: CollectOptions,
    valid_share: float,
    params: dict,
    refit: bool = False,
) -> tuple[dict[str, np.ndarray], dict, np.ndarray, list[int]]:
    """Each fold's model scores its own queries: per-query NDCG@10 in both modes, the pool
    diagnostics of the windows, summed gain importances and each fold's best iteration."""
    ltr = {"judged_list": np.zeros(len(eligible)), "full_retrieval": np.zeros(len(eligible))}
    pool = {m: {o: np.zeros(len(eligible)) for o in POOL_ORDERS} for m in ("judged@10", "condensed_ndcg@10")}
    importance = np.zeros(len(FEATURE_NAMES))
    rounds = []
    for f in range(folds):
        train_queries = [q for q in eligible if fold[q] != f]
        fit_queries, stop_queries = split_queries(train_queries, valid_share)
        fit_set = set(fit_queries)
        fit = training_set([i for i in lists if i.query_id in fit_set], judged, scale, options)
        stop_set = set(stop_queries)
        stop = training_set([i for i in lists if i.query_id in stop_set], judged, scale, options)
        booster, report = train_booster(fit, stop, scale, params)
        rounds.append(report["best_iteration"])
        if refit:  # as `train` does by default: fit and stop queries together, rounds scaled up
            booster, _ = refit_booster(fit, stop, scale, params, report["best_iteration"])
        importance += booster.feature_importance(importance_type="gain")
        for position, qid in enumerate(eligible):
            if fold[qid] != f:
                continue
            gains = judged.gains[qid]
            for mode, kind in (("judged_list", "judged"), ("full_retrieval", "window")):
                item = by_key.get((qid, kind))
                if item is None or not item.product_ids:
                    continue
                scores = booster.predict(item.features, num_threads=1)
                ids = ranked_ids(item, scores)
                if kind == "judged":
                    ids += [pid for pid in gains if pid not in set(ids)]
                else:
                    for order, ranked in window_orders(item, scores).items():
                        pool["judged@10"][order][position] = judged_at_k(ranked, gains)
                        pool["condensed_ndcg@10"][order][position] = condensed_ndcg_at_k(ranked, gains)
                ltr[mode][position] = ndcg_at_k(ids, gains)
    return ltr, pool, importance, rounds


def lightgbm_param(text: str) -> tuple[str, object]:
    """``key=value``, the value JSON (``num_leaves=31``, ``objective="rank_xendcg"``)."""
    key, separator, value = text.partition("=")
    if not separator or not key:
        raise argparse.ArgumentTypeError(f"{text!r}: give key=value")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: the value is not JSON (strings are quoted)") from exc


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--folds", type=at_least(2), default=5)
    parser.add_argument("--limit", type=at_least(1), default=None, help="only the first N eligible queries")
    parser.add_argument("--lists", default="window,judged", help="training lists: window, judged or both")
    parser.add_argument("--unjudged", choices=["negative", "drop", "sample"], default="negative")
    parser.add_argument("--unjudged-sample", type=at_least(1), default=50)
    parser.add_argument("--judged-weight", type=float, default=1.0, help="row weight of judged-list groups")
    parser.add_argument("--valid-share", type=share, default=0.1, help="of each training fold, for early stopping")
    parser.add_argument(
        "--refit",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="after early stopping, retrain each fold's model on all its training queries for the"
        " early-stopped round count scaled to them, as `relevance train` does (default: on)",
    )
    parser.add_argument("--bootstrap-samples", type=at_least(100), default=10000)
    parser.add_argument(
        "--param", action="append", type=lightgbm_param, default=[], help="LightGBM parameter override, key=JSON value"
    )
    parser.add_argument(
        "--seeds",
        help="comma-separated LightGBM seeds: the cross-validation once per seed, reported under"
        ' "seeds" (each, and mean and sd); the headline figures are the first seed\'s (default: one run)',
    )
    parser.add_argument(
        "--per-query", type=output_file, help="write LTR's per-query NDCG@10 here (JSON), for --compare-to"
    )
    parser.add_argument(
        "--compare-to", type=existing_file, help="an earlier run's --per-query file: paired CI of this run minus it"
    )
    args = parser.parse_args()
    lists_given = args.lists.split(",")
    if not lists_given or any(kind not in ("window", "judged") for kind in lists_given):
        parser.error(f"--lists: {args.lists!r}: use window, judged or both")
    try:
        seeds_given = [int(seed) for seed in args.seeds.split(",")] if args.seeds else None
    except ValueError:
        parser.error(f"--seeds: {args.seeds!r} is not comma-separated integers")
    if args.valid_share >= 1:
        parser.error("--valid-share must leave queries to train on (below 1)")

    paths = home_depot_paths(args.data)
    services = Services.from_settings(bench_settings(args, rerank=False))
    index_report = ensure_index(services, paths["products"])
    ensure_catalog_stats(services, paths["products"])
    judged = read_judgments(paths["judgments"], queries_path=paths["queries"], grade_offset=1.0)
    eligible = [q for q in judged.scorable() if len(set(judged.gains[q].values())) > 1]
    eligible = eligible[: args.limit] if args.limit else eligible
    services.pipeline.embedder = MemoQueries(services.embedder)  # type: ignore[assignment]

    started = time.perf_counter()
    lists = cached_lists(services, judged, eligible, args.work_dir / "ltr-cache")
    collected_seconds = time.perf_counter() - started
    by_key = {(item.query_id, item.kind): item for item in lists}
    judged_base, full_base = cached_baselines(services, judged, eligible, args.work_dir / "ltr-cache")
    baseline_seconds = time.perf_counter() - started - collected_seconds

    scale = label_scale(judged)
    options = CollectOptions(
        lists=tuple(lists_given),
        unjudged=args.unjudged,
        unjudged_sample=args.unjudged_sample,
        judged_weight=args.judged_weight,
    )
    params = dict(args.param)
    fold = folds_of(eligible, args.folds)
    seeds = seeds_given or [params.get("seed", DEFAULT_PARAMS["seed"])]
    runs = {
        seed: cross_validate(
            eligible,
            fold,
            args.folds,
            lists,
            by_key,
            judged,
            scale,
            options,
            args.valid_share,
            {**params, "seed": seed},
            args.refit,
        )
        for seed in seeds
    }
    ltr, pool, importance, rounds = runs[seeds[0]]

    result: dict = {
        "dataset": f"home_depot dev split ({args.data})",
        "engine": args.engine,
        "query_vectors": services.embedder.query_vectors_id,
        "spelling_correction": services.settings.spelling_correction,
        "queries": len(eligible),
        "folds": args.folds,
        "metric": "NDCG@10",
        "training": {
            "lists": list(options.lists),
            "unjudged": options.unjudged,
            "label_scale": scale,
            "judged_weight": options.judged_weight,
            "refit": args.refit,
            "params": params,
            "seeds": seeds,
            "best_iterations": rounds,
        },
    }
    for mode, base in (("judged_list", judged_base), ("full_retrieval", full_base)):
        means = {name: round(float(np.mean(values)), 4) for name, values in base.items()}
        means["ltr"] = round(float(ltr[mode].mean()), 4)
        best = max(base, key=lambda name: np.mean(base[name]))
        test = paired_bootstrap(ltr[mode], base[best], samples=args.bootstrap_samples, seed=0)
        result[mode] = {
            "ndcg@10": means,
            "ltr_vs_best_baseline": {
                "baseline": best,
                "difference": round(test.difference, 4),
                "ci95": [round(test.ci_low, 4), round(test.ci_high, 4)],
                "p_value": test.p_value,
                "wins": int(np.sum(ltr[mode] > np.asarray(base[best]) + 1e-9)),
                "losses": int(np.sum(ltr[mode] < np.asarray(base[best]) - 1e-9)),
            },
        }
    result["full_retrieval"]["pool"] = pool_diagnostics(pool, args.bootstrap_samples)
    if len(seeds) > 1:
        baselines = {"judged_list": judged_base, "full_retrieval": full_base}
        result["seeds"] = seed_spread(runs, baselines, args.bootstrap_samples)
    if args.per_query:
        args.per_query.write_text(json.dumps({"query_ids": eligible, **{m: v.tolist() for m, v in ltr.items()}}))
    if args.compare_to:
        result["ltr_vs_compared_run"] = versus_earlier_run(ltr, eligible, args.compare_to, args.bootstrap_samples)
    total = importance.sum() or 1.0
    result["feature_importance_gain_share"] = {
        name: round(float(value / total), 4)
        for name, value in sorted(zip(FEATURE_NAMES, importance, strict=True), key=lambda kv: -kv[1])
    }
    result["seconds"] = {
        "features": round(collected_seconds, 1),
        "baselines": round(baseline_seconds, 1),
        "total": round(time.perf_counter() - started, 1),
    }
    result["index_job"] = index_report
    result["machine"] = machine()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
