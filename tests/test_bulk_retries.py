"""Bulk loads survive 5xx answers from a real server, and give up loudly when they persist.

The 503s are injected by a proxy in front of the real node (tests/fault_proxy.py);
every document still has to reach the real index.
"""

from __future__ import annotations

import os
import uuid

import pytest

from indexer.catalog import load_catalog
from indexer.product_text import product_text
from relevance.embedder import Embedder
from relevance.engines.base import IndexedProduct
from relevance.errors import EngineError
from tests.conftest import CATALOG
from tests.fault_proxy import BulkFaults, fault_proxy

SERVER_URLS = {
    "elasticsearch": os.environ.get("RELEVANCE_TEST_ELASTICSEARCH_URL"),
    "opensearch": os.environ.get("RELEVANCE_TEST_OPENSEARCH_URL"),
}


def server_engine(name: str, url: str, retries: int = 3):
    if name == "elasticsearch":
        from relevance.engines.elasticsearch import ElasticsearchEngine as Engine
    else:
        from relevance.engines.opensearch import OpenSearchEngine as Engine
    return Engine(url, timeout=30, bulk_retries=retries, bulk_backoff=0.05)


@pytest.fixture(scope="module")
def items(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> list[IndexedProduct]:
    loaded = load_catalog(CATALOG, tmp_path_factory.mktemp("dl") / "dead.jsonl")
    vectors = embedder.encode([product_text(p, ["title"]) for p in loaded.products])
    return [IndexedProduct(p, v) for p, v in zip(loaded.products, vectors, strict=True)]


@pytest.fixture(params=sorted(SERVER_URLS))
def upstream(request: pytest.FixtureRequest):
    url = SERVER_URLS[request.param]
    if not url:
        pytest.skip(f"no {request.param} node (.ci/run starts one)")
    request.applymarker(pytest.mark.engines)
    direct = server_engine(request.param, url)
    alias = f"bulk-retry-{uuid.uuid4().hex[:8]}"
    yield request.param, url, direct, alias
    for version in direct.list_versions(alias):
        direct.drop_version(version.name)


@pytest.mark.parametrize(
    "fault",
    [{"whole_requests": 2}, {"first_items": 2}, {"first_items": 2, "item_error": "cluster_block_exception"}],
    ids=["request", "item", "503-block"],  # a 503 block (no master yet) passes, unlike a disk's 429 block
)
def test_5xx_answers_are_retried_until_every_document_is_indexed(upstream, items, fault: dict[str, int]) -> None:
    name, url, direct, alias = upstream
    faults = BulkFaults(**fault)
    with fault_proxy(url, faults) as proxied_url:
        engine = server_engine(name, proxied_url)
        version = engine.create_version(alias, len(items[0].vector), {})
        refused = engine.bulk_upsert(version, items)
    assert refused == []
    assert faults.bulk_requests == 3, "two failed attempts, then one that went through"
    direct.commit(version)
    assert direct.count(version) == len(items)


def test_persistent_5xx_fails_the_load_instead_of_dead_lettering_documents(upstream, items) -> None:
    name, url, _direct, alias = upstream
    faults = BulkFaults(whole_requests=100)
    with fault_proxy(url, faults) as proxied_url:
        engine = server_engine(name, proxied_url, retries=2)
        version = engine.create_version(alias, len(items[0].vector), {})
        with pytest.raises(EngineError, match=r"503|answered 429 or 5xx"):
            engine.bulk_upsert(version, items)
    assert faults.bulk_requests == 3, "the first try and two retries"


def test_a_document_the_engine_rejects_is_refused_not_retried(upstream, items) -> None:
    name, url, _direct, alias = upstream
    bad = IndexedProduct(items[0].product.model_copy(update={"product_id": "bad-vector"}), items[0].vector[:10])
    faults = BulkFaults()
    with fault_proxy(url, faults) as proxied_url:
        engine = server_engine(name, proxied_url)
        version = engine.create_version(alias, len(items[0].vector), {})
        refused = engine.bulk_upsert(version, [*items[:3], bad])
    assert [doc_id for doc_id, _ in refused] == ["bad-vector"]
    assert "dimension" in refused[0][1].lower() or "dims" in refused[0][1].lower()
    assert faults.bulk_requests == 1


def test_an_overloaded_server_s_429_is_retried(upstream, items) -> None:
    name, url, direct, alias = upstream
    faults = BulkFaults(first_items=2, item_status=429, item_error="es_rejected_execution_exception")
    with fault_proxy(url, faults) as proxied_url:
        engine = server_engine(name, proxied_url)
        version = engine.create_version(alias, len(items[0].vector), {})
        refused = engine.bulk_upsert(version, items)
    assert refused == [] and faults.bulk_requests == 3
    direct.commit(version)
    assert direct.count(version) == len(items)


def test_a_job_whose_products_the_engine_mostly_refuses_puts_nothing_live(
    upstream, tmp_path, embedder: Embedder
) -> None:
    """The catalog's bad-row limit (max_rejected_share) holds for the engine's refusals too."""
    from relevance.errors import ReindexRefused
    from tests.conftest import make_services

    name, url, _direct, alias = upstream
    options = {"engine": name, "engine_timeout": 30, "index_alias": alias}
    live = make_services(tmp_path, embedder, engine_url=url, **options).index_catalog(CATALOG).version
    doubled = tmp_path / "doubled.jsonl"  # every row twice: 80 rows, the same 40 products
    doubled.write_text(CATALOG.read_text(encoding="utf-8") * 2, encoding="utf-8")
    faults = BulkFaults(refused_items=30)  # of the 40 products sent: 75%, whatever the duplicate rows
    with fault_proxy(url, faults) as proxied_url:
        services = make_services(tmp_path, embedder, engine_url=proxied_url, **options)
        with pytest.raises(ReindexRefused, match=r"the engine refused 30 of the 40 products .* max_rejected_share"):
            services.index_catalog(doubled)
    assert services.engine.alias_target(alias) == live
    assert [v.name for v in services.engine.list_versions(alias)] == [live]
