from __future__ import annotations

from indexer.product import Product
from relevance.product_cache import ProductCache


def product(product_id: str, title: str = "Cordless Drill") -> Product:
    return Product(product_id=product_id, title=title)


def test_products_are_kept_per_version() -> None:
    cache = ProductCache(10)
    cache.store("shop-1", {"a": product("a", "Old Title")})
    cache.store("shop-2", {"a": product("a", "New Title")})
    found, missing = cache.lookup("shop-2", ["a", "b", "b"])
    assert found["a"].title == "New Title" and missing == ["b"]
    assert cache.lookup("shop-1", ["a"])[0]["a"].title == "Old Title"
    assert cache.lookup("shop-3", ["a"]) == ({}, ["a"]), "a version never stored has nothing"


def test_the_least_recently_used_products_go_first() -> None:
    cache = ProductCache(2)
    cache.store("v", {"a": product("a"), "b": product("b")})
    cache.lookup("v", ["a"])  # a is now the most recently used
    cache.store("v", {"c": product("c")})
    assert len(cache) == 2
    found, missing = cache.lookup("v", ["a", "b", "c"])
    assert set(found) == {"a", "c"} and missing == ["b"]


def test_a_cache_of_no_entries_keeps_nothing() -> None:
    cache = ProductCache(0)
    cache.store("v", {"a": product("a")})
    assert len(cache) == 0 and cache.lookup("v", ["a"]) == ({}, ["a"])
