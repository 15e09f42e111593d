"""Indexing throughput: a cold index (empty embedding cache) and a re-index of the unchanged catalog.

    python bench/indexing.py --data ../shared/data/home_depot
    python bench/indexing.py --data ../shared/data/home_depot --engine opensearch --engine-url URL

Runs the same job as `relevance index` with a fresh work directory (so "cold" means an
empty embedding cache) into its own alias, whose versions are dropped afterwards.
Prints one JSON object.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import bench_parser, bench_settings, home_depot_paths, machine
from relevance.services import Services

BENCH_ALIAS = "indexing-bench"


def main() -> None:
    args = bench_parser(__doc__).parse_args()
    catalog = home_depot_paths(args.data)["products"]

    work_dir = Path(tempfile.mkdtemp(prefix="bench-indexing-"))
    try:
        # A fresh work dir: "cold" must mean an empty embedding cache.
        args.work_dir = work_dir
        services = Services.from_settings(bench_settings(args, index_alias=BENCH_ALIAS, keep_versions=1))
        load_started = time.perf_counter()
        services.embedder.load()
        model_load_seconds = time.perf_counter() - load_started
        runs = {}
        for name in ("cold", "unchanged_catalog"):
            report = services.index_catalog(catalog).as_dict()
            runs[name] = {
                "products": report["indexed"],
                "seconds": report["seconds"],
                "products_per_second": report["products_per_second"],
                "unique_texts": report["unique_texts"],
                "embedded": report["embedded"],
                "embedding_cache_hits": report["embedding_cache_hits"],
            }
        for version in services.engine.list_versions(BENCH_ALIAS):  # leave a server as we found it
            services.engine.drop_version(version.name)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    print(
        json.dumps(
            {
                "dataset": f"home_depot products ({catalog})",
                "engine": args.engine,
                "embedding_model": services.embedder.model_id,
                "model_load_seconds": round(model_load_seconds, 2),
                **runs,
                "machine": machine(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
