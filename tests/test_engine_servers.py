"""The real Elasticsearch and OpenSearch nodes that .ci/run starts with scripts/engines.py.

These pin down what the adapters (next: the Elasticsearch/OpenSearch issue) rely on
from the servers we can get from Maven Central: English analysis, vector fields with
kNN filtered inside the search, and atomic alias swaps. They run where
RELEVANCE_TEST_ELASTICSEARCH_URL / RELEVANCE_TEST_OPENSEARCH_URL point at a node.
"""

from __future__ import annotations

import os
import uuid

import pytest
import requests

pytestmark = pytest.mark.engines

SERVERS = {
    "elasticsearch": os.environ.get("RELEVANCE_TEST_ELASTICSEARCH_URL"),
    "opensearch": os.environ.get("RELEVANCE_TEST_OPENSEARCH_URL"),
}
VECTORS = {"a": [1.0, 0.0], "b": [0.9, 0.1], "c": [0.0, 1.0], "d": [0.95, 0.05]}


@pytest.fixture(params=list(SERVERS))
def server(request: pytest.FixtureRequest) -> tuple[str, str]:
    url = SERVERS[request.param]
    if not url:
        pytest.skip(f"no {request.param} node (set RELEVANCE_TEST_{request.param.upper()}_URL; .ci/run does)")
    return request.param, url


def vector_mapping(engine: str) -> dict:
    if engine == "elasticsearch":
        return {"type": "dense_vector", "dims": 2, "index": True, "similarity": "cosine"}
    return {
        "type": "knn_vector",
        "dimension": 2,
        "method": {"name": "hnsw", "engine": "lucene", "space_type": "cosinesimil"},
    }


def knn_query(engine: str, vector: list[float], brand: str, k: int) -> dict:
    brand_filter = {"term": {"brand": brand}}
    if engine == "elasticsearch":
        return {
            "knn": {"field": "vector", "query_vector": vector, "k": k, "num_candidates": 50, "filter": brand_filter}
        }
    return {"size": k, "query": {"knn": {"vector": {"vector": vector, "k": k, "filter": brand_filter}}}}


@pytest.fixture
def index(server: tuple[str, str]):
    engine, url = server
    name = f"capability-{uuid.uuid4().hex[:8]}"
    settings = {"index.knn": True} if engine == "opensearch" else {}
    body = {
        "settings": settings,
        "mappings": {
            "properties": {
                "title": {"type": "text", "analyzer": "english"},
                "brand": {"type": "keyword"},
                "vector": vector_mapping(engine),
            }
        },
    }
    response = requests.put(f"{url}/{name}", json=body, timeout=30)
    assert response.status_code == 200, response.text
    docs = {
        "a": ("Cordless Drills", "dewalt"),
        "b": ("Drill Bits", "bosch"),
        "c": ("Velvet Sofa", "dewalt"),
        "d": ("Hammer Drill", "dewalt"),
    }
    for doc_id, (title, brand) in docs.items():
        requests.put(
            f"{url}/{name}/_doc/{doc_id}", json={"title": title, "brand": brand, "vector": VECTORS[doc_id]}, timeout=30
        )
    requests.post(f"{url}/{name}/_refresh", timeout=30)
    yield engine, url, name
    requests.delete(f"{url}/{name}", timeout=30)


def test_english_analysis_stems_and_drops_stop_words(server: tuple[str, str]) -> None:
    _, url = server
    tokens = requests.post(
        f"{url}/_analyze", json={"analyzer": "english", "text": "The Cordless Drills"}, timeout=30
    ).json()
    assert [t["token"] for t in tokens["tokens"]] == ["cordless", "drill"]


def test_bm25_matches_stemmed_terms(index) -> None:
    _, url, name = index
    hits = requests.post(f"{url}/{name}/_search", json={"query": {"match": {"title": "drill"}}}, timeout=30).json()
    assert {h["_id"] for h in hits["hits"]["hits"]} == {"a", "b", "d"}


def test_knn_applies_the_filter_inside_the_search(index) -> None:
    engine, url, name = index
    # the nearest neighbour of [1, 0] is "a", then "d", "b"; with brand=bosch only "b" qualifies
    hits = requests.post(f"{url}/{name}/_search", json=knn_query(engine, [1.0, 0.0], "bosch", 2), timeout=30).json()
    assert [h["_id"] for h in hits["hits"]["hits"]] == ["b"]
    hits = requests.post(f"{url}/{name}/_search", json=knn_query(engine, [1.0, 0.0], "dewalt", 2), timeout=30).json()
    assert [h["_id"] for h in hits["hits"]["hits"]] == ["a", "d"]


def test_alias_swaps_atomically(index) -> None:
    _, url, name = index
    alias = f"{name}-alias"
    other = f"{name}-next"
    assert requests.put(f"{url}/{other}", json={}, timeout=30).status_code == 200
    try:
        requests.post(f"{url}/_aliases", json={"actions": [{"add": {"index": name, "alias": alias}}]}, timeout=30)
        swap = {"actions": [{"remove": {"index": name, "alias": alias}}, {"add": {"index": other, "alias": alias}}]}
        assert requests.post(f"{url}/_aliases", json=swap, timeout=30).json()["acknowledged"]
        assert list(requests.get(f"{url}/_alias/{alias}", timeout=30).json()) == [other]
    finally:
        requests.delete(f"{url}/{other}", timeout=30)


def test_the_test_nodes_do_not_refuse_indexes_when_the_hosts_disk_is_nearly_full(server: tuple[str, str]) -> None:
    # A CI host above the 90% high watermark had Elasticsearch leave new shards unassigned and
    # OpenSearch block index creation; scripts/engines.py switches the disk thresholds off.
    _, url = server
    settings = requests.get(
        f"{url}/_cluster/settings", params={"include_defaults": "true", "flat_settings": "true"}, timeout=30
    ).json()
    merged = {**settings["defaults"], **settings["persistent"], **settings["transient"]}
    assert merged["cluster.routing.allocation.disk.threshold_enabled"] == "false"
