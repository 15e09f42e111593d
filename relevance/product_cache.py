"""Products of committed index versions, kept per worker for the rerank stage.

On Elasticsearch and OpenSearch the rerank stage's biggest cost is fetching the window's
~200 products (each document's stored fields read and decompressed: ~12 ms and ~25 ms
per window, bench/README). A version is never written after its commit (the index job
builds a new version for every change), so a product fetched from one version stays
right for that version, and keys carry the version: a swap can never serve another
version's product. Least recently used entries go first (cachetools' LRUCache).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from cachetools import LRUCache

from indexer.product import Product


class ProductCache:
    def __init__(self, max_entries: int) -> None:
        # LRUCache refuses an entry larger than its size, so a zero-size cache stores nothing at all.
        self._entries: LRUCache[tuple[str, str], Product] | None = LRUCache(max_entries) if max_entries else None
        self._lock = threading.Lock()  # LRUCache is not thread-safe; gunicorn threads share a worker's cache

    def __len__(self) -> int:
        return len(self._entries) if self._entries is not None else 0

    def lookup(self, version: str, product_ids: Sequence[str]) -> tuple[dict[str, Product], list[str]]:
        """The cached products of ``version`` by id, and the ids it lacks (in their order, once each)."""
        if self._entries is None:
            return {}, list(dict.fromkeys(product_ids))
        found: dict[str, Product] = {}
        missing: list[str] = []
        with self._lock:
            for product_id in product_ids:
                product = self._entries.get((version, product_id))  # a hit becomes the most recently used
                if product is None:
                    missing.append(product_id)
                else:
                    found[product_id] = product
        return found, list(dict.fromkeys(missing))

    def store(self, version: str, products: dict[str, Product]) -> None:
        if self._entries is None:
            return
        with self._lock:
            for product_id, product in products.items():
                self._entries[(version, product_id)] = product
