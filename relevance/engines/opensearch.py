"""OpenSearch 2.19 adapter (official ``opensearch-py`` client, k-NN plugin with the lucene engine)."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import opensearchpy
from opensearchpy import helpers

from relevance.engines.base import NativeFusion
from relevance.engines.search_server import BULK_OPTIONS, SearchServerEngine, filter_clauses
from relevance.filters import SearchFilters

# The client logs every failed request at WARNING with the transport's whole traceback;
# the layer turns the failure into one 503 and one log line of its own (as with
# Elasticsearch, whose client logs none), so only the client's errors are kept.
logging.getLogger("opensearch").setLevel(logging.ERROR)


class OpenSearchEngine(SearchServerEngine):
    name = "opensearch"
    mapping_file = "opensearch.json"
    not_found_errors = (opensearchpy.NotFoundError,)
    engine_errors = (opensearchpy.TransportError, opensearchpy.ConnectionError)
    timeout_errors = (opensearchpy.ConnectionTimeout,)
    connection_errors = (opensearchpy.ConnectionError,)

    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(url, **options)
        self._pipelines: set[str] = set()

    def _make_client(self) -> Any:
        # urllib3 keeps one connection per host by default; the lexical and vector requests of
        # a hybrid search go out together, and the second connection was discarded after every
        # search (with a pool-full warning). 10 is what the Elasticsearch client keeps.
        return opensearchpy.OpenSearch(hosts=[self.url], timeout=self.timeout, max_retries=0, pool_maxsize=10)

    def _create_index(self, index: str, body: dict[str, Any]) -> dict[str, Any]:
        # request_timeout given, the client sends ``timeout`` to the server (else it takes it as its own).
        return self.client.indices.create(
            index=index,
            body=body,
            wait_for_active_shards="1",
            timeout=self.shard_wait,
            request_timeout=self.create_timeout,
        )

    def _streaming_bulk(self, actions: Iterator[dict[str, Any]]) -> Iterator[tuple[bool, dict[str, Any]]]:
        return helpers.streaming_bulk(self.client, actions, request_timeout=self.bulk_timeout, **BULK_OPTIONS)

    def get_vectors(self, index: str, product_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Read from the vector field itself: the mapping keeps vectors out of the stored ``_source``
        (parsing them there cost 18 of the 47 ms it took to fetch a rerank window's 200 products).

        One request per product: with several documents in one request, OpenSearch 2.19's
        k-NN script values gave some documents another document's vector (tested). Callers
        ask for one product (similar products), so this costs nothing in practice.
        """
        found = {}
        for product_id in dict.fromkeys(product_ids):
            body = {
                "size": 1,
                "query": {"ids": {"values": [product_id]}},
                "_source": False,
                "script_fields": {"vector": {"script": {"source": "doc['vector'].getValue()"}}},
            }
            hits = self._call("get vectors", self.client.search, index=index, body=body)["hits"]["hits"]
            if hits and hits[0].get("fields", {}).get("vector"):
                found[product_id] = np.asarray(hits[0]["fields"]["vector"][0], dtype=np.float32)
        return found

    def _knn_query(self, vector: list[float], bool_filter: dict[str, Any], k: int) -> dict[str, Any]:
        # The lucene engine applies this filter during the graph search (efficient filtering).
        return {"knn": {"vector": {"vector": vector, "k": k, "filter": bool_filter}}}

    def _knn_body(self, vector: list[float], bool_filter: dict[str, Any], k: int) -> dict[str, Any]:
        return {"size": k, "query": self._knn_query(vector, bool_filter, k), "_source": False}

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
        pipeline = self._hybrid_pipeline(fusion)
        body = {
            "size": k,
            "query": {"hybrid": {"queries": [lexical_query, self._knn_query(vector, filter_clauses(filters), window)]}},
            "_source": False,
        }
        return self.client.search(index=index, body=body, params={"search_pipeline": pipeline})

    def _hybrid_pipeline(self, fusion: NativeFusion) -> str:
        """The search pipeline that fuses the hybrid query's two lists, created once per setting."""
        if fusion.method == "rrf":
            processor = {
                "score-ranker-processor": {
                    "combination": {"technique": "rrf", "rank_constant": max(round(fusion.rank_constant), 1)}
                }
            }
        else:
            total = (fusion.lexical_weight + fusion.vector_weight) or 1.0  # OpenSearch wants weights summing to 1
            processor = {
                "normalization-processor": {
                    "normalization": {"technique": "min_max" if fusion.normalization == "minmax" else "z_score"},
                    "combination": {
                        "technique": "arithmetic_mean",
                        "parameters": {"weights": [fusion.lexical_weight / total, fusion.vector_weight / total]},
                    },
                }
            }
        definition = {"description": "relevance layer: native hybrid fusion", "phase_results_processors": [processor]}
        name = "relevance-hybrid-" + hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()[:12]
        if name not in self._pipelines:
            self.client.transport.perform_request("PUT", f"/_search/pipeline/{name}", body=definition)
            self._pipelines.add(name)
        return name

    def _missing_native_feature(self, error: BaseException) -> str | None:
        text = str(error)
        if "invalid processor type" in text.lower() or "[hybrid]" in text:
            return (
                "the hybrid query and its normalization/score-ranker processors come from the neural-search plugin,"
                " which this node does not have (it is not published on Maven Central)"
            )
        return None
