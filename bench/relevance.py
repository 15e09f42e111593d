"""NDCG@10 of bm25, knn, rrf and linear on the Home Depot dev split, in both modes.

    python bench/relevance.py --data ../shared/data/home_depot --engine embedded
    python bench/relevance.py --data ../shared/data/home_depot --engine opensearch --engine-url http://127.0.0.1:9200

Scoring follows ../shared/data/README.md exactly: gain = relevance - 1, exponential
gain, log2 discount; queries whose judged products all share one relevance are
skipped; full retrieval counts unjudged products as gain 0 with the ideal from the
judged products. The engine's native hybrid variants (``fusion_backend=engine``) are
scored the same way where the engine has them; otherwise the JSON says why not. No
learned reranking here (bench/ltr.py measures it). ``--per-query`` / ``--compare-to``
set one setting against another (``--spelling off`` then ``on``) with paired 95% CIs.
Prints one JSON object.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

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
    read_judgments,
    read_queries,
)
from relevance.embedder import Embedder
from relevance.errors import EngineFeatureUnavailable
from relevance.evaluation import ndcg_at_k
from relevance.filters import SearchFilters
from relevance.pipeline import FusionOptions
from relevance.services import Services
from relevance.significance import paired_bootstrap

METHODS = {
    "bm25": ("lexical", None),
    "knn": ("vector", None),
    "rrf": ("hybrid", FusionOptions(method="rrf", rrf_k=60)),
    "linear": ("hybrid", FusionOptions(method="linear", normalization="minmax", lexical_weight=0.5, vector_weight=0.5)),
}


class MemoQueries:
    """Embeds each distinct query once, through the serving path, for all eight runs."""

    def __init__(self, inner: Embedder, known: dict[str, np.ndarray] | None = None) -> None:
        self._inner = inner
        self._vectors: dict[str, np.ndarray] = dict(known or {})

    def encode_query(self, text: str) -> np.ndarray:
        if text not in self._vectors:
            self._vectors[text] = self._inner.encode_query(text)
        return self._vectors[text]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)  # the rest (dims, model_name, ids) is the wrapped embedder's


NATIVE = {
    "native_rrf": FusionOptions(method="rrf", rrf_k=60, backend="engine"),
    "native_linear": FusionOptions(
        method="linear", normalization="minmax", lexical_weight=0.5, vector_weight=0.5, backend="engine"
    ),
}


def native_fusion(services: Services, queries: dict[str, str], judgments, eligible: list[str]) -> dict:
    """The engine's own hybrid search, scored like the rest, or why the engine cannot run it."""
    results = {}
    for name, fusion in NATIVE.items():
        try:
            judged, full = [], []
            for qid in tqdm(eligible, desc=name, file=sys.stderr):
                text, gains = queries[qid], judgments[qid]
                ranked = services.pipeline.rank_candidates(text, list(gains), fusion=fusion, rerank=False)
                judged.append(ndcg_at_k([h.product_id for h in ranked], gains))
                retrieved = services.pipeline.ranked(text, SearchFilters(), fusion=fusion, depth=10, rerank=False)
                full.append(ndcg_at_k([h.product_id for h in retrieved], gains))
            results[name] = {
                "judged_list": round(float(np.mean(judged)), 4),
                "full_retrieval": round(float(np.mean(full)), 4),
            }
        except EngineFeatureUnavailable as exc:
            results[name] = {"unavailable": exc.detail}
    return results


def score_methods(
    services: Services,
    queries: dict[str, str],
    judgments: dict[str, dict[str, float]],
    eligible: list[str],
    methods: dict = METHODS,
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Per-query NDCG@10 of every method, in judged-list and full-retrieval mode (no learned reranking)."""
    judged_list: dict[str, list[float]] = {name: [] for name in methods}
    full: dict[str, list[float]] = {name: [] for name in methods}
    for qid in tqdm(eligible, desc="queries", file=sys.stderr):
        text, gains = queries[qid], judgments[qid]
        for name, (mode, fusion) in methods.items():
            ranked = services.pipeline.rank_candidates(text, list(gains), mode=mode, fusion=fusion, rerank=False)
            judged_list[name].append(ndcg_at_k([h.product_id for h in ranked], gains))
            retrieved = services.pipeline.ranked(
                text, SearchFilters(), mode=mode, fusion=fusion, depth=10, rerank=False
            )
            full[name].append(ndcg_at_k([h.product_id for h in retrieved], gains))
    return judged_list, full


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--limit", type=at_least(1), default=None, help="score only the first N eligible queries")
    parser.add_argument(
        "--per-query", type=output_file, help="write every method's per-query NDCG@10 here, for --compare-to"
    )
    parser.add_argument(
        "--compare-to",
        type=existing_file,
        help="an earlier run's --per-query file: each method's difference, paired by query",
    )
    args = parser.parse_args()

    paths = home_depot_paths(args.data)
    services = Services.from_settings(bench_settings(args))
    index_report = ensure_index(services, paths["products"])
    queries = read_queries(paths["queries"])
    judgments = read_judgments(paths["judgments"])
    eligible = [qid for qid, gains in judgments.items() if len(set(gains.values())) > 1 and qid in queries]
    eligible = eligible[: args.limit] if args.limit else eligible

    started = time.perf_counter()
    services.pipeline.embedder = MemoQueries(services.embedder)  # type: ignore[assignment]
    judged_list, full = score_methods(services, queries, judgments, eligible)
    native = native_fusion(services, queries, judgments, eligible)
    result = {
        "dataset": f"home_depot dev split ({args.data})",
        "engine": args.engine,
        "queries": len(eligible),
        "metric": "NDCG@10",
        "judged_list": {name: round(float(np.mean(v)), 4) for name, v in judged_list.items()},
        "full_retrieval": {name: round(float(np.mean(v)), 4) for name, v in full.items()},
        "native_fusion": native,
        "settings": {
            "candidates": services.settings.candidates,
            "rrf_k": 60,
            "linear": "minmax 0.5/0.5",
            "spelling_correction": services.settings.spelling_correction,
        },
        "seconds": round(time.perf_counter() - started, 1),
        "index_job": index_report,
        "machine": machine(),
    }
    scores = {"judged_list": judged_list, "full_retrieval": full}
    if args.per_query:
        args.per_query.write_text(json.dumps({"query_ids": eligible, **scores}))
    if args.compare_to:
        result["vs_compared_run"] = versus_earlier_run(scores, eligible, args.compare_to)
    print(json.dumps(result, indent=2))


def versus_earlier_run(scores: dict[str, dict[str, list[float]]], eligible: list[str], path: Path) -> dict:
    """Each method's NDCG@10 minus an earlier run's (another setting), paired by query, with its 95% CI."""
    earlier = json.loads(path.read_text())
    if earlier["query_ids"] != eligible:
        raise SystemExit(f"{path} scored other queries: compare runs over the same eligible queries")
    compared: dict = {"run": str(path)}
    for mode, by_method in scores.items():
        compared[mode] = {}
        for method, values in by_method.items():
            test = paired_bootstrap(values, earlier[mode][method], seed=0)
            compared[mode][method] = {
                "earlier": round(float(np.mean(earlier[mode][method])), 4),
                "difference": round(test.difference, 4),
                "ci95": [round(test.ci_low, 4), round(test.ci_high, 4)],
                "p_value": test.p_value,
            }
    return compared


if __name__ == "__main__":
    main()
