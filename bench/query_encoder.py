"""Query encoder precision: int8 against float32 ONNX queries, speed and relevance.

    python bench/query_encoder.py --data ../shared/data/home_depot

For each ``embedding_query_precision`` the script embeds every eligible Home Depot dev
query through the serving path (``Embedder.encode_query``, one query at a time,
alternating the two encoders so that both see the same machine state), then scores
knn and rrf in both modes exactly as bench/relevance.py does. Reports the encoders'
p50/p95 time per query, the cosine of each int8 vector to its float32 vector, NDCG@10
per precision and the paired-bootstrap 95% CI of int8 minus float32. Product vectors
are the index's own (float32) in both runs. Prints one JSON object.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import at_least, bench_parser, bench_settings, ensure_index, home_depot_paths, machine, percentiles
from bench.relevance import METHODS, MemoQueries, score_methods
from relevance.judgments import read_judgments
from relevance.services import Services
from relevance.significance import paired_bootstrap

PRECISIONS = ("float32", "int8")
COMPARED = ("knn", "rrf")


def timed_vectors(embedders: dict, texts: list[str]) -> tuple[dict[str, list[float]], dict[str, np.ndarray]]:
    timings: dict[str, list[float]] = {name: [] for name in embedders}
    vectors: dict[str, list[np.ndarray]] = {name: [] for name in embedders}
    for text in texts:
        for name, embedder in embedders.items():
            started = time.perf_counter()
            vectors[name].append(embedder.encode_query(text))
            timings[name].append((time.perf_counter() - started) * 1000)
    return timings, {name: np.stack(values) for name, values in vectors.items()}


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--limit", type=at_least(1), default=None, help="only the first N eligible queries")
    parser.add_argument("--bootstrap-samples", type=at_least(100), default=10000)
    args = parser.parse_args()

    paths = home_depot_paths(args.data)
    services = {
        precision: Services.from_settings(bench_settings(args, rerank=False, embedding_query_precision=precision))
        for precision in PRECISIONS
    }
    index_report = ensure_index(services["float32"], paths["products"])
    judged = read_judgments(paths["judgments"], queries_path=paths["queries"], grade_offset=1.0)
    eligible = [q for q in judged.scorable() if len(set(judged.gains[q].values())) > 1]
    eligible = eligible[: args.limit] if args.limit else eligible
    texts = [judged.queries[q] for q in eligible]

    embedders = {precision: s.embedder for precision, s in services.items()}
    for embedder in embedders.values():
        embedder.encode_query("warm up")  # loads (and on first use exports and quantizes) the encoder
    timings, vectors = timed_vectors(embedders, texts)
    cosines = np.sum(vectors["float32"] * vectors["int8"], axis=1)

    methods = {name: METHODS[name] for name in COMPARED}
    scores = {}
    for precision, service in services.items():
        timed = dict(zip(texts, vectors[precision], strict=True))  # score the very vectors timed above
        service.pipeline.embedder = MemoQueries(service.embedder, timed)  # type: ignore[assignment]
        scores[precision] = score_methods(service, judged.queries, judged.gains, eligible, methods)

    result: dict = {
        "dataset": f"home_depot dev split ({args.data})",
        "engine": args.engine,
        "queries": len(eligible),
        "metric": "NDCG@10",
        "encoders": {precision: embedder.query_vectors_id for precision, embedder in embedders.items()},
        "encode_query_ms": {precision: percentiles(values) for precision, values in timings.items()},
        "cosine_int8_to_float32": {
            "min": round(float(cosines.min()), 4),
            "p1": round(float(np.percentile(cosines, 1)), 4),
            "median": round(float(np.median(cosines)), 4),
        },
    }
    for mode_index, mode in enumerate(("judged_list", "full_retrieval")):
        result[mode] = {}
        for name in COMPARED:
            exact = np.asarray(scores["float32"][mode_index][name])
            int8 = np.asarray(scores["int8"][mode_index][name])
            test = paired_bootstrap(int8, exact, samples=args.bootstrap_samples, seed=0)
            result[mode][name] = {
                "float32": round(float(exact.mean()), 4),
                "int8": round(float(int8.mean()), 4),
                "int8_minus_float32": round(test.difference, 4),
                "ci95": [round(test.ci_low, 4), round(test.ci_high, 4)],
                "p_value": test.p_value,
            }
    result["index_job"] = index_report
    result["machine"] = machine()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
