"""The one filter format every caller passes and every engine adapter translates.

Category filters match a path prefix at segment boundaries ("Tools > Power Tools"
matches "Tools > Power Tools > Drills", not "Tools > Power Toolsets"), compared
folded (case, accents). Brands match folded too; several brands mean any of them.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field, model_validator

from indexer.product import CATEGORY_SEPARATOR, split_category
from reranker.text import fold


def _key(text: str) -> str:
    """Text as filters compare it: folded as the analyzers fold (case, accents, compatibility
    forms: ``Straße`` = ``STRASSE``, ``Décor`` = ``decor``), whitespace collapsed."""
    return " ".join(fold(text).split())


def category_key(path: str) -> str:
    """Canonical form of a category path for matching: trimmed, folded segments."""
    return CATEGORY_SEPARATOR.join(_key(segment) for segment in split_category(path))


def category_prefix_keys(path: str | None, key: Callable[[str], str] = category_key) -> list[str]:
    """Every prefix of a product's category path, canonical: what a prefix filter can hit."""
    if not path:
        return []
    segments = key(path).split(CATEGORY_SEPARATOR)
    return [CATEGORY_SEPARATOR.join(segments[: depth + 1]) for depth in range(len(segments))]


def brand_key(brand: str) -> str:
    return _key(brand)


# Indexes written before keys were folded (2026-11-29) hold them lowercased only; a filter
# asks for that form too, so they keep matching what they matched until they are re-indexed.
def lowered_category_key(path: str) -> str:
    return CATEGORY_SEPARATOR.join(segment.lower() for segment in split_category(path))


def lowered_brand_key(brand: str) -> str:
    return " ".join(brand.lower().split())


class SearchFilters(BaseModel):
    """Filters applied inside both lexical and vector retrieval."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    category: str | None = Field(None, description="Category path prefix, e.g. 'Furniture > Beds'.")
    brand: tuple[str, ...] = Field((), description="Any of these brands.")
    price_min: float | None = Field(None, ge=0)
    price_max: float | None = Field(None, ge=0)
    in_stock: bool | None = None
    product_ids: tuple[str, ...] | None = Field(None, description="Restrict to these products (candidate re-ranking).")

    @model_validator(mode="after")
    def _consistent(self) -> SearchFilters:
        if self.price_min is not None and self.price_max is not None and self.price_min > self.price_max:
            raise ValueError(f"price_min ({self.price_min}) is greater than price_max ({self.price_max})")
        if self.category is not None:
            category_key(self.category)  # raises on an empty segment
        return self

    @property
    def is_empty(self) -> bool:
        return self == SearchFilters()

    @property
    def category_filter_keys(self) -> list[str]:
        """The category's keys: any of them matches (the folded one, and the lowercased one of older indexes)."""
        if not self.category:
            return []
        return list(dict.fromkeys([category_key(self.category), lowered_category_key(self.category)]))

    @property
    def brand_keys(self) -> list[str]:
        return list(dict.fromkeys(key for b in self.brand for key in (brand_key(b), lowered_brand_key(b))))
