"""Convert the WANDS product subset into the project's catalog schema.

Usage: python scripts/convert_wands.py ../shared/data/wands_catalog/products.jsonl data/sample/wands_products.jsonl

WANDS (Wayfair ANnotation DataSet, Chen et al., ECIR 2022) is MIT licensed; the
licence travels with the converted file (data/sample/LICENSE-WANDS).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def convert_row(row: dict) -> dict:
    """Map one WANDS row onto the catalog schema.

    WANDS writes category paths with "/" separators; the catalog uses " > " so a
    category filter such as "Furniture > Beds" works as a path prefix.
    """
    segments = [part.strip() for part in (row.get("category") or "").split("/") if part.strip()]
    product = {"product_id": str(row["product_id"]), "title": row["title"].strip()}
    if segments:
        product["category"] = " > ".join(segments)
    if row.get("product_class"):
        product["attributes"] = {"product_class": row["product_class"]}
    return product


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="WANDS products.jsonl")
    parser.add_argument("target", type=Path, help="catalog JSONL to write")
    args = parser.parse_args()
    with args.source.open(encoding="utf-8") as src, args.target.open("w", encoding="utf-8") as dst:
        for line in src:
            if line.strip():
                dst.write(json.dumps(convert_row(json.loads(line)), ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
