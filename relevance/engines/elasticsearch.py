"""Elasticsearch 9 adapter (official ``elasticsearch`` client)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import elasticsearch
from elasticsearch import helpers

from relevance.engines.base import NativeFusion
from relevance.engines.search_server import BULK_OPTIONS, SearchServerEngine, filter_clauses
from relevance.errors import EngineFeatureUnavailable
from relevance.filters import SearchFilters


class ElasticsearchEngine(SearchServerEngine):
    name = "elasticsearch"
    mapping_file = "elasticsearch.json"
    not_found_errors = (elasticsearch.NotFoundError,)
    engine_errors = (elasticsearch.ApiError, elasticsearch.TransportError)
    timeout_errors = (elasticsearch.ConnectionTimeout,)
    connection_errors = (elasticsearch.ConnectionError,)

    def _make_client(self) -> Any:
        return elasticsearch.Elasticsearch(self.url, request_timeout=self.timeout, max_retries=0)

    def _create_index(self, index: str, body: dict[str, Any]) -> dict[str, Any]:
        client = self.client.options(request_timeout=self.create_timeout)
        return client.indices.create(index=index, body=body, wait_for_active_shards="1", timeout=self.shard_wait)

    def _streaming_bulk(self, actions: Iterator[dict[str, Any]]) -> Iterator[tuple[bool, dict[str, Any]]]:
        return helpers.streaming_bulk(self.client.options(request_timeout=self.bulk_timeout), actions, **BULK_OPTIONS)

    def _knn_clause(self, vector: list[float], bool_filter: dict[str, Any], k: int) -> dict[str, Any]:
        # knn.filter runs inside the HNSW search, so a selective filter still yields k hits.
        num_candidates = min(max(k * self.num_candidates_factor, 100), 10_000)
        return {
            "field": "vector",
            "query_vector": vector,
            "k": k,
            "num_candidates": num_candidates,
            "filter": bool_filter,
        }

    def _knn_body(self, vector: list[float], bool_filter: dict[str, Any], k: int) -> dict[str, Any]:
        return {"size": k, "knn": self._knn_clause(vector, bool_filter, k), "_source": False}

    def _native_hybrid(
        self,
        index: str,
        lexical_query: dict[str, Any],
        vector: list[float],
        filters: SearchFilters,
        k: int,
        fusion: NativeFusion,
    ) -> dict[str, Any]:
        window = max(fusion.window, k)
        lexical = {"standard": {"query": lexical_query}}
        knn = {"knn": self._knn_clause(vector, filter_clauses(filters), window)}
        if fusion.method == "rrf":
            retriever = {
                "rrf": {
                    "retrievers": [lexical, knn],
                    "rank_constant": max(round(fusion.rank_constant), 1),
                    "rank_window_size": window,
                }
            }
        else:
            if fusion.normalization != "minmax":  # the linear retriever normalises by minmax or l2_norm only
                raise EngineFeatureUnavailable(
                    "Elasticsearch's linear retriever has no z-score normaliser; use normalization=minmax",
                    field="normalization",
                )
            retriever = {
                "linear": {
                    "retrievers": [
                        {"retriever": lexical, "weight": fusion.lexical_weight, "normalizer": "minmax"},
                        {"retriever": knn, "weight": fusion.vector_weight, "normalizer": "minmax"},
                    ],
                    "rank_window_size": window,
                }
            }
        body = {"size": k, "retriever": retriever, "_source": False}
        return self.client.search(index=index, body=body).body

    def _missing_native_feature(self, error: BaseException) -> str | None:
        if "unknown retriever" in str(error):
            return (
                "its 'rrf' and 'linear' retrievers come from the rank-rrf module, which this distribution does not"
                " ship (the integration-test zip on Maven Central has no x-pack modules)"
            )
        return None
