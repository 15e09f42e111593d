"""How much disk served-feature logging takes: bytes per logged request and per candidate.

    python bench/feature_log_size.py --catalog data/sample/wands_products.jsonl --queries 50

The catalog is indexed once under ``--work-dir`` (embedded engine); the queries are the
catalog's own product classes (``attributes.product_class``; the first ``--queries`` in
catalog order), each searched once through the API with ``log_features=true`` and its
record written to a fresh log directory. Prints one JSON object: record sizes, window
sizes, bytes per candidate, and what one logged request a second comes to per day
(the figure ``feature_log_keep_days`` is sized against).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import ROOT, at_least, ensure_index, existing_file, load_settings, work_dir
from relevance.api import create_app
from relevance.services import Services

SECONDS_PER_DAY = 86_400


def product_classes(catalog: Path, count: int) -> list[str]:
    classes: dict[str, None] = {}
    with catalog.open(encoding="utf-8") as handle:
        for line in handle:
            attributes = json.loads(line).get("attributes") or {}
            for name in str(attributes.get("product_class") or "").split("|"):
                if name.strip():
                    classes.setdefault(name.strip().lower())
            if len(classes) >= count:
                break
    return list(classes)[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--catalog", type=existing_file, default=ROOT / "data" / "sample" / "wands_products.jsonl")
    parser.add_argument("--queries", type=at_least(1), default=50)
    parser.add_argument("--work-dir", type=work_dir, default=ROOT / "bench" / "results" / "work-feature-log")
    args = parser.parse_args()

    queries = product_classes(args.catalog, args.queries)
    if not queries:
        parser.error(f"{args.catalog} has no attributes.product_class to take queries from")
    services = Services.from_settings(load_settings(data_dir=args.work_dir, index_alias="feature-log-size"))
    ensure_index(services, args.catalog)
    with tempfile.TemporaryDirectory() as logs:
        services.feature_log.directory = Path(logs)
        client = create_app(services=services).test_client()
        for text in queries:
            answer = client.get("/search", query_string={"q": text, "log_features": "true"})
            if answer.status_code != 200:
                raise SystemExit(f"/search?q={text} answered {answer.status_code}: {answer.get_json()}")
        records = [line for path in sorted(Path(logs).glob("*.jsonl")) for line in path.read_text().splitlines()]
    sizes = [len(line.encode("utf-8")) + 1 for line in records]
    windows = [len(json.loads(line)["candidates"]) for line in records]
    per_candidate = sum(sizes) / sum(windows)
    window = services.settings.rerank_window
    print(
        json.dumps(
            {
                "catalog": str(args.catalog),
                "requests": len(records),
                "record_bytes": {"median": statistics.median(sizes), "max": max(sizes)},
                "candidates": {"median": statistics.median(windows), "max": max(windows)},
                "bytes_per_candidate": round(per_candidate, 1),
                f"bytes_per_{window}_candidate_window": round(per_candidate * window),
                "gb_per_day_at_one_logged_request_a_second": round(
                    per_candidate * statistics.median(windows) * SECONDS_PER_DAY / 1e9, 2
                ),
                "reranked_by": json.loads(records[-1])["model_version"],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
