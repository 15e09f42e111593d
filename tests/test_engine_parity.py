"""Parity between engines on the fixture catalog: the same layer should not change its
answers much when the engine underneath changes."""

from __future__ import annotations

import itertools
import os
import uuid

import numpy as np
import pytest

from indexer.catalog import load_catalog
from indexer.product_text import product_text
from relevance.embedder import Embedder
from relevance.engines.base import IndexedProduct, SearchEngine
from relevance.engines.embedded import EmbeddedEngine
from relevance.filters import SearchFilters
from tests.conftest import CATALOG

pytestmark = pytest.mark.engines
QUERIES = [
    "cordless drill",
    "drill bit set",
    "paint brush",
    "velvet chair",
    "kitchen faucet",
    "led light bulb",
    "pvc pipe",
    "garden hose",
    "queen bed",
    "hammer",
    "sofa",
    "trimmer line",
]
URLS = {
    "elasticsearch": os.environ.get("RELEVANCE_TEST_ELASTICSEARCH_URL"),
    "opensearch": os.environ.get("RELEVANCE_TEST_OPENSEARCH_URL"),
}


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder):
    missing = [name for name, url in URLS.items() if not url]
    if missing:
        pytest.skip(f"parity needs every engine; missing {missing} (.ci/run starts them)")
    from relevance.engines.elasticsearch import ElasticsearchEngine
    from relevance.engines.opensearch import OpenSearchEngine

    loaded = load_catalog(CATALOG, tmp_path_factory.mktemp("dl") / "dead.jsonl")
    vectors = embedder.encode([product_text(p, ["title", "brand", "category"]) for p in loaded.products])
    items = [IndexedProduct(p, v) for p, v in zip(loaded.products, vectors, strict=True)]
    alias = f"parity-{uuid.uuid4().hex[:8]}"
    built: dict[str, SearchEngine] = {
        "embedded": EmbeddedEngine(tmp_path_factory.mktemp("parity") / "indexes"),
        "elasticsearch": ElasticsearchEngine(URLS["elasticsearch"], timeout=30),
        "opensearch": OpenSearchEngine(URLS["opensearch"], timeout=30),
    }
    for engine in built.values():
        version = engine.create_version(alias, 384, {})
        engine.bulk_upsert(version, items)
        engine.commit(version)
        engine.swap_alias(alias, version)
    yield alias, built, items
    for name in ("elasticsearch", "opensearch"):
        for version in built[name].list_versions(alias):
            built[name].drop_version(version.name)


def test_lexical_top10_overlap_between_any_two_engines(engines, embedder: Embedder) -> None:
    alias, built, _ = engines
    for first, second in itertools.combinations(built, 2):
        overlaps = []
        for query in QUERIES:
            a = {h.product_id for h in built[first].lexical_search(alias, query, SearchFilters(), 10)}
            b = {h.product_id for h in built[second].lexical_search(alias, query, SearchFilters(), 10)}
            overlaps.append(len(a & b) / max(len(a | b), 1) if a | b else 1.0)
        assert np.mean(overlaps) >= 0.7, (first, second, overlaps)


def test_knn_recall_at_10_against_exact_cosine(engines, embedder: Embedder) -> None:
    alias, built, items = engines
    matrix = np.vstack([item.vector for item in items])
    for name, engine in built.items():
        recalls = []
        for query in QUERIES:
            vector = embedder.encode_query(query)
            exact = {items[i].product.product_id for i in np.argsort(-(matrix @ vector))[:10]}
            got = {h.product_id for h in engine.vector_search(alias, vector, SearchFilters(), 10)}
            recalls.append(len(got & exact) / 10)
        assert np.mean(recalls) >= 0.95, (name, recalls)
