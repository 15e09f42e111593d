"""Elasticsearch 9 adapter (official ``elasticsearch`` client)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import elasticsearch
from elasticsearch import helpers

from relevance.engines.search_server import BULK_OPTIONS, SearchServerEngine


class ElasticsearchEngine(SearchServerEngine):
    name = "elasticsearch"
    mapping_file = "elasticsearch.json"
    not_found_errors = (elasticsearch.NotFoundError,)
    engine_errors = (elasticsearch.ApiError, elasticsearch.TransportError)

    def _make_client(self) -> Any:
        return elasticsearch.Elasticsearch(self.url, request_timeout=self.timeout, max_retries=0)

    def _streaming_bulk(self, actions: Iterator[dict[str, Any]]) -> Iterator[tuple[bool, dict[str, Any]]]:
        return helpers.streaming_bulk(
            self.client.options(request_timeout=max(self.timeout, 60)), actions, **BULK_OPTIONS
        )

    def _knn_body(self, vector: list[float], bool_filter: dict[str, Any], k: int) -> dict[str, Any]:
        # knn.filter runs inside the HNSW search, so a selective filter still yields k hits.
        num_candidates = min(max(k * self.num_candidates_factor, 100), 10_000)
        return {
            "size": k,
            "knn": {
                "field": "vector",
                "query_vector": vector,
                "k": k,
                "num_candidates": num_candidates,
                "filter": bool_filter,
            },
            "_source": False,
        }
