"""The text a product is embedded from: the configured fields, in order."""

from __future__ import annotations

from collections.abc import Sequence

from indexer.product import Product


def product_text(product: Product, fields: Sequence[str]) -> str:
    values = product.text_fields()
    return ". ".join(values[name] for name in fields if values[name])
