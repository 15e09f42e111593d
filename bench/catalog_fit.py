"""Does the reranker help on a catalog unlike the one it was trained on? A label-free proxy.

    python bench/catalog_fit.py --catalog data/sample/wands_products.jsonl

The WANDS judgments are held aside, so the queries here are the catalog's own product
classes (``attributes.product_class``, e.g. "accent chairs") and a product is relevant
(gain 1) when it belongs to the class: a proxy for shoppers' product-type queries, not
a relevance judgment. Scored with NDCG@10: BM25, the fused order, and the fused order
reranked by the active model (forced past the catalog-fit check,
``rerank_unfit_catalogs``), on the catalog as given and on a copy without brands,
categories and descriptions (what the bundled model was trained on). Each copy is
indexed once under ``--work-dir`` (embedded engine). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import ROOT, at_least, existing_file, load_settings, machine, work_dir
from relevance.evaluation import ndcg_at_k
from relevance.filters import SearchFilters
from relevance.services import Services
from relevance.significance import paired_bootstrap, wins_losses
from reranker.product_texts import OPTIONAL_TEXT_FIELDS

ALIAS = "catalog-fit"


def class_queries(catalog: Path, min_products: int) -> dict[str, set[str]]:
    """Product class (lowercased) -> ids of the products in it, for classes with enough products."""
    members: dict[str, set[str]] = defaultdict(set)
    with catalog.open(encoding="utf-8") as handle:
        for line in handle:
            product = json.loads(line)
            for name in str((product.get("attributes") or {}).get("product_class") or "").split("|"):
                if name.strip():
                    members[name.strip().lower()].add(str(product["product_id"]))
    return {name: ids for name, ids in sorted(members.items()) if len(ids) >= min_products}


def titles_only(catalog: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    with catalog.open(encoding="utf-8") as source, target.open("w", encoding="utf-8") as out:
        for line in source:
            product = json.loads(line)
            out.write(json.dumps({k: v for k, v in product.items() if k not in OPTIONAL_TEXT_FIELDS}) + "\n")
    return target


def score_variant(catalog: Path, data_dir: Path, queries: dict[str, set[str]]) -> dict[str, object]:
    settings = load_settings(data_dir=data_dir, engine="embedded", index_alias=ALIAS, rerank_unfit_catalogs=True)
    services = Services.from_settings(settings)
    if services.engine.alias_target(ALIAS) is None:
        services.index_catalog(catalog)
    pipeline = services.pipeline
    model = pipeline.reranker.model() if pipeline.reranker else None
    if model is None:
        raise SystemExit("no active reranker model: nothing to measure")
    runs = {
        "bm25": {"mode": "lexical", "rerank": False},
        "fused": {"mode": "hybrid", "rerank": False},
        "reranked": {"mode": "hybrid", "rerank": True},
    }
    scores: dict[str, list[float]] = {name: [] for name in runs}
    for text, relevant in queries.items():
        gains = dict.fromkeys(relevant, 1.0)
        for name, options in runs.items():
            result = pipeline.search(text, SearchFilters(), **options)
            scores[name].append(ndcg_at_k([item.product.product_id for item in result.results], gains))
    shares = pipeline.catalog_stats.current().field_shares()
    reranked_vs_fused = paired_bootstrap(scores["reranked"], scores["fused"])
    outcome = wins_losses(scores["reranked"], scores["fused"], list(queries))
    return {
        "field_shares": {name: round(share, 4) for name, share in shares.items()},
        "model": model.version,
        "fit_check": model.unfit_for(shares) or "fits",
        "ndcg@10": {name: round(sum(values) / len(values), 4) for name, values in scores.items()},
        "reranked_minus_fused": {
            "difference": round(reranked_vs_fused.difference, 4),
            "ci95": [round(reranked_vs_fused.ci_low, 4), round(reranked_vs_fused.ci_high, 4)],
            "p_value": round(reranked_vs_fused.p_value, 4),
            "queries_better": outcome.wins,
            "queries_worse": outcome.losses,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--catalog", type=existing_file, required=True, help="JSONL products with attributes.product_class"
    )
    parser.add_argument("--work-dir", type=work_dir, default=ROOT / "bench" / "results" / "catalog-fit")
    parser.add_argument("--min-products", type=at_least(1), default=5, help="smallest class used as a query")
    args = parser.parse_args()
    queries = class_queries(args.catalog, args.min_products)
    if len(queries) < 2:
        raise SystemExit(f"{args.catalog}: fewer than 2 product classes with {args.min_products}+ products")
    variants = {
        "as_given": (args.catalog, args.work_dir / "as-given"),
        "titles_only": (titles_only(args.catalog, args.work_dir / "titles-only.jsonl"), args.work_dir / "titles-only"),
    }
    print(
        json.dumps(
            {
                "catalog": str(args.catalog),
                "queries": len(queries),
                "relevance": "proxy: query = a product class, relevant = the products of that class (gain 1)",
                **{name: score_variant(path, data_dir, queries) for name, (path, data_dir) in variants.items()},
                "machine": machine(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
