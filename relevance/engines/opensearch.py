"""OpenSearch 2.19 adapter (official ``opensearch-py`` client, k-NN plugin with the lucene engine)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import opensearchpy
from opensearchpy import helpers

from relevance.engines.search_server import BULK_OPTIONS, SearchServerEngine


class OpenSearchEngine(SearchServerEngine):
    name = "opensearch"
    mapping_file = "opensearch.json"
    source_param_prefix = "_"
    not_found_errors = (opensearchpy.NotFoundError,)
    engine_errors = (opensearchpy.TransportError, opensearchpy.ConnectionError)

    def _make_client(self) -> Any:
        return opensearchpy.OpenSearch(hosts=[self.url], timeout=self.timeout, max_retries=0)

    def _streaming_bulk(self, actions: Iterator[dict[str, Any]]) -> Iterator[tuple[bool, dict[str, Any]]]:
        return helpers.streaming_bulk(self.client, actions, request_timeout=max(self.timeout, 60), **BULK_OPTIONS)

    def _knn_body(self, vector: list[float], bool_filter: dict[str, Any], k: int) -> dict[str, Any]:
        # The lucene engine applies this filter during the graph search (efficient filtering).
        return {
            "size": k,
            "query": {"knn": {"vector": {"vector": vector, "k": k, "filter": bool_filter}}},
            "_source": False,
        }
