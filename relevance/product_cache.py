"""Products of committed index versions, kept per worker for the rerank stage.

On Elasticsearch and OpenSearch the rerank stage's biggest cost is fetching the window's
~200 products (each document's stored fields read and decompressed: ~12 ms and ~25 ms
per window, bench/README). A version is never written after its commit (the index job
builds a new version for every change), so a product fetched from one version stays
right for that version, and keys carry the version: a swap can never serve another
version's product. Least recently used entries go first.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

from indexer.product import Product


class ProductCache:
    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, str], Product] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, version: str, product_ids: Sequence[str]) -> tuple[dict[str, Product], list[str]]:
        """The cached products of ``version`` by id, and the ids it lacks (in their order, once each)."""
        found: dict[str, Product] = {}
        missing: list[str] = []
        with self._lock:
            for product_id in product_ids:
                product = self._entries.get((version, product_id))
                if product is None:
                    missing.append(product_id)
                else:
                    self._entries.move_to_end((version, product_id))
                    found[product_id] = product
        return found, list(dict.fromkeys(missing))

    def store(self, version: str, products: dict[str, Product]) -> None:
        if not self.max_entries:
            return
        with self._lock:
            for product_id, product in products.items():
                self._entries[(version, product_id)] = product
                self._entries.move_to_end((version, product_id))
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
