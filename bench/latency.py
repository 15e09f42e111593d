"""Latency of GET /search over HTTP: gunicorn (2 workers) serving the Home Depot index.

    python bench/latency.py --data ../shared/data/home_depot
    python bench/latency.py --data ../shared/data/home_depot --engine opensearch --engine-url http://127.0.0.1:9200

Real shopper queries are sent by 1 and then 8 concurrent clients. Reports client
latency percentiles, throughput, and each server stage from the Server-Timing
header (query embedding, lexical, vector, fusion, rerank, fetch); "response" is the
client-measured time minus the server's critical path (Flask, JSON, HTTP, client; in
hybrid searches the lexical stage runs alongside embed + vector). Then the layer's
overhead: for the same queries, one client's /search time minus the same work done
straight through the adapter (see ``layer_overhead``). Prints one JSON object.
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
import urllib3

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import (
    Gunicorn,
    at_least,
    bench_parser,
    bench_settings,
    cpu_yardstick_ms,
    ensure_index,
    home_depot_paths,
    machine,
    percentiles,
    read_queries,
)
from relevance.filters import SearchFilters
from relevance.services import Services


def parse_server_timing(header: str) -> dict[str, float]:
    stages = {}
    for part in header.split(","):
        name, _, duration = part.strip().partition(";dur=")
        if duration:
            stages[name] = float(duration)
    return stages


def http_client(base: str) -> urllib3.HTTPConnectionPool:
    """The load generator's client: urllib3, as the engines' Python clients use, so the
    client's own cost is small and alike on both sides of the overhead comparison
    (``requests`` adds ~0.9 ms per call on this machine: GET /healthz p50 2.1 ms against 1.2)."""
    return urllib3.connectionpool.connection_from_url(base, maxsize=1, timeout=30.0, retries=False)


def critical_path(stages: dict[str, float]) -> float:
    """Server time on the request's critical path: in hybrid searches the lexical stage runs
    alongside embed + vector, and only the part of it that outlasts them adds to the wait."""
    lexical = stages.get("lexical", 0.0)
    if "embed" in stages:
        lexical = max(0.0, lexical - stages["embed"] - stages.get("vector", 0.0))
    return sum(ms for name, ms in stages.items() if name != "lexical") + lexical


def run_clients(base: str, queries: list[str], clients: int, size: int) -> dict:
    per_client = [queries[i::clients] for i in range(clients)]
    latencies: list[float] = []
    stages: dict[str, list[float]] = defaultdict(list)
    failures = 0

    def client(batch: list[str]) -> None:
        nonlocal failures
        connection = http_client(base)
        for text in batch:
            started = time.perf_counter()
            response = connection.request("GET", "/search", fields={"q": text, "size": size})
            elapsed = (time.perf_counter() - started) * 1000
            if response.status != 200:
                failures += 1
                continue
            latencies.append(elapsed)
            server = parse_server_timing(response.headers.get("Server-Timing", ""))
            for name, ms in server.items():
                stages[name].append(ms)
            stages["response"].append(elapsed - critical_path(server))

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(client, per_client))
    wall = time.perf_counter() - started
    return {
        "clients": clients,
        "requests": len(latencies),
        "failures": failures,
        "latency_ms": percentiles(latencies),
        "throughput_rps": round(len(latencies) / wall, 1),
        "stages_ms": {name: percentiles(values) for name, values in stages.items()},
    }


def layer_overhead(base: str, services: Services, queries: list[str], size: int) -> dict:
    """Per query: /search over HTTP against the same work done straight through the adapter.

    The direct path does what a hybrid client of the engine has to do, the way the layer
    does it: the lexical request (in a second thread while the query is embedded and the
    kNN request runs, on server engines), the embedding, kNN, then the page fetch. The difference is what the layer adds (HTTP,
    Flask, JSON, fusion). ``engine_requests_ms`` is the engine's own three requests one
    after another with the vector precomputed, for reference.
    """
    engine, settings = services.engine, services.settings
    alias, n, no_filters = settings.index_alias, settings.candidates, SearchFilters()
    pool = http_client(base)
    overhead, direct_ms, sequential_ms = [], [], []
    services.embedder.encode_query("warm up")  # the model loads on first use: not part of any query
    with ThreadPoolExecutor(max_workers=1) as lexical_thread:
        for text in queries:
            started = time.perf_counter()
            pending = lexical_thread.submit(engine.lexical_search, alias, text, no_filters, n)
            if not engine.concurrent_retrieval:  # as the layer does on this engine: one after the other
                pending.result()
            vector = services.embedder.encode_query(text)
            vectors = engine.vector_search(alias, vector, no_filters, n)
            lexical = pending.result()
            engine.get(alias, [hit.product_id for hit in (lexical + vectors)[:size]])
            direct = (time.perf_counter() - started) * 1000
            started = time.perf_counter()
            engine.lexical_search(alias, text, no_filters, n)
            engine.vector_search(alias, vector, no_filters, n)
            engine.get(alias, [hit.product_id for hit in (lexical + vectors)[:size]])
            sequential = (time.perf_counter() - started) * 1000
            started = time.perf_counter()
            response = pool.request("GET", "/search", fields={"q": text, "size": size})
            total = (time.perf_counter() - started) * 1000
            if response.status != 200:
                continue
            direct_ms.append(direct)
            sequential_ms.append(sequential)
            overhead.append(total - direct)
    return {
        "queries": len(direct_ms),
        "engine_requests_ms": percentiles(sequential_ms),
        "direct_hybrid_ms": percentiles(direct_ms),
        "overhead_ms": percentiles(overhead),
    }


def settled_status(base: str, timeout: float = 180.0, in_a_row: int = 10) -> dict:
    """/readyz once every worker's reranker has its compiled trees (or never will): they build after start."""
    deadline, seen = time.monotonic() + timeout, 0
    while True:
        status = requests.get(f"{base}/readyz", timeout=10).json()
        reranker = status.get("reranker") or {}
        if reranker.get("state") != "active" or reranker.get("predictor") == "compiled":
            seen += 1  # gunicorn hands each request to any worker: several answers in a row cover them all
        else:
            seen = 0
        if seen >= in_a_row or time.monotonic() > deadline:
            return status
        time.sleep(0.2)


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--requests", type=at_least(1), default=1000, help="requests per concurrency level")
    parser.add_argument("--warmup", type=at_least(0), default=50)
    parser.add_argument("--size", type=at_least(1), default=10)
    parser.add_argument("--workers", type=at_least(1), default=2)
    parser.add_argument("--torch-threads", type=at_least(1), default=1, help="per gunicorn worker")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--overhead-queries", type=at_least(0), default=300)
    parser.add_argument(
        "--rerank", choices=["on", "off"], default="on", help="serve with the active (or bundled) learned model"
    )
    args = parser.parse_args()

    paths = home_depot_paths(args.data)
    settings = bench_settings(args)
    services = Services.from_settings(settings)
    index_report = ensure_index(services, paths["products"])
    texts = list(read_queries(paths["queries"]).values())
    most = max(args.warmup, args.requests, args.overhead_queries)
    if most > len(texts):  # each run draws distinct queries: repeats would time the caches
        raise SystemExit(
            f"--requests/--warmup/--overhead-queries ask for {most} distinct queries; the data has {len(texts)}"
        )
    rng = random.Random(args.seed)
    env = {
        "RELEVANCE_DATA_DIR": str(settings.data_dir),
        "RELEVANCE_ENGINE": args.engine,
        "RELEVANCE_INDEX_ALIAS": settings.index_alias,
        "RELEVANCE_TORCH_THREADS": str(args.torch_threads),
        "RELEVANCE_ENGINE_URL": settings.engine_url,
        "RELEVANCE_RERANK": "true" if args.rerank == "on" else "false",
        "RELEVANCE_EMBEDDING_QUERY_PRECISION": settings.embedding_query_precision,
        "RELEVANCE_EMBEDDING_MODEL": settings.embedding_model,
        "RELEVANCE_SPELLING_CORRECTION": "true" if settings.spelling_correction else "false",
    }
    for role in ("query", "document"):  # unset: the server takes the model's own, as here
        prompt = getattr(settings, f"embedding_{role}_prompt")
        if prompt is not None:
            env[f"RELEVANCE_EMBEDDING_{role.upper()}_PROMPT"] = prompt
    results = []
    yardstick_at_start = cpu_yardstick_ms()
    with Gunicorn(env, workers=args.workers, log_path=args.work_dir / "gunicorn.log") as server:
        count = requests.get(f"{server.base}/readyz", timeout=10).json()["products"]
        run_clients(server.base, rng.sample(texts, args.warmup), 2, args.size)
        server_status = settled_status(server.base)
        for clients in (1, 8):
            results.append(run_clients(server.base, rng.sample(texts, args.requests), clients, args.size))
        overhead = layer_overhead(server.base, services, rng.sample(texts, args.overhead_queries), args.size)
    print(
        json.dumps(
            {
                "dataset": "home_depot queries against the home_depot products index",
                "engine": args.engine,
                "products": count,
                "gunicorn_workers": args.workers,
                "torch_threads_per_worker": args.torch_threads,
                "query_precision": settings.embedding_query_precision,
                "page_size": args.size,
                "rerank": args.rerank,
                "reranker": server_status.get("reranker"),
                "runs": results,
                "layer_overhead": overhead,
                "index_job": index_report,
                "machine": {**machine(), "yardstick_ms_at_start": yardstick_at_start},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
