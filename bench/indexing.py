"""Indexing throughput: a cold index (empty embedding cache) and a re-index of the unchanged catalog.

    python bench/indexing.py --data ../shared/data/home_depot

Runs the same job as `relevance index` in a fresh work directory. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import bench_settings, home_depot_paths, machine
from relevance.services import Services


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="the home_depot folder")
    parser.add_argument("--engine", default="embedded", choices=["embedded"])
    args = parser.parse_args()
    catalog = home_depot_paths(args.data)["products"]

    work_dir = Path(tempfile.mkdtemp(prefix="bench-indexing-"))
    try:
        # A fresh work dir: "cold" must mean an empty embedding cache.
        services = Services.from_settings(bench_settings(argparse.Namespace(engine=args.engine, work_dir=work_dir)))
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
