"""The operator's reindex on every engine: checks before the swap, zero downtime, clean failure.

Every test runs on embedded, Elasticsearch and OpenSearch (``engine_services``).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from indexer.checks import JudgmentGate
from relevance.api import create_app
from relevance.errors import ReindexRefused
from relevance.services import Services
from tests.conftest import CATALOG, SERVER_URLS, make_services

QUERY = "/search?q=cordless+drill&size=100"
DRILLS = {"d1": 2.0, "d2": 2.0, "d3": 2.0, "d4": 2.0, "b1": 1.0}


def catalog_without(tmp_path: Path, product_ids: set[str]) -> Path:
    import json

    lines = [line for line in CATALOG.read_text().splitlines() if json.loads(line)["product_id"] not in product_ids]
    path = tmp_path / "smaller.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_queries_during_reindex_and_swap_all_succeed_and_see_a_whole_index(engine_services, tmp_path: Path) -> None:
    _, services = engine_services
    services.index_catalog(CATALOG)
    # The reindexing job runs with its own engine object, as `relevance reindex` in another process would.
    operator = _operator(services, tmp_path / "operator")
    app = create_app(services=services)
    baseline = app.test_client().get(QUERY).get_json()
    expected_ids = {result["product_id"] for result in baseline["results"]}
    assert baseline["total"] > 10

    stop = threading.Event()
    outcomes: list[tuple[int, int, frozenset[str]]] = []

    def shopper() -> None:
        client = app.test_client()
        while not stop.is_set():
            response = client.get(QUERY)
            body = response.get_json()
            ids = frozenset(r["product_id"] for r in body.get("results", [])) if response.status_code == 200 else None
            outcomes.append((response.status_code, body.get("total", -1), ids))

    threads = [threading.Thread(target=shopper) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        versions = [operator.index_catalog(CATALOG).version for _ in range(2)]
    finally:
        stop.set()
        for thread in threads:
            thread.join()

    assert services.engine.alias_target(services.settings.index_alias) == versions[-1]
    assert len(outcomes) > 20, "the load ran through both reindexes"
    failures = [outcome for outcome in outcomes if outcome[0] != 200]
    assert failures == [], f"{len(failures)} of {len(outcomes)} requests failed during the reindex"
    partial = [o for o in outcomes if o[1] != baseline["total"] or o[2] != expected_ids]
    assert partial == [], "a request saw a half-built index"


def _operator(services: Services, own_dir: Path) -> Services:
    """A second Services on the same engine and alias (embedded: the same data directory)."""
    settings = services.settings
    if settings.engine == "embedded":
        return make_services(settings.data_dir, services.embedder, index_alias=settings.index_alias)
    return make_services(
        own_dir,
        services.embedder,
        engine=settings.engine,
        engine_url=settings.engine_url,
        engine_timeout=30,
        index_alias=settings.index_alias,
    )


def test_smoke_queries_without_hits_refuse_the_swap(engine_services) -> None:
    _, services = engine_services
    live = services.index_catalog(CATALOG).version
    with pytest.raises(ReindexRefused, match="smoke queries"):
        services.index_catalog(CATALOG, smoke_queries=["cordless drill", "zzqx vvbnm"])
    assert services.engine.alias_target(services.settings.index_alias) == live
    assert [v.name for v in services.engine.list_versions(services.settings.index_alias)] == [live]
    report = services.index_catalog(CATALOG)
    assert report.checks["smoke"]["queries"] == 5 and report.checks["smoke"]["empty"] == []


def test_the_judgment_gate_refuses_a_worse_index_and_passes_an_equal_one(engine_services, tmp_path: Path) -> None:
    _, services = engine_services
    alias = services.settings.index_alias
    live = services.index_catalog(CATALOG).version
    gate = JudgmentGate({"q1": "cordless drill"}, {"q1": DRILLS}, margin=0.05)
    worse = catalog_without(tmp_path, {"d1", "d2", "d3"})
    with pytest.raises(ReindexRefused, match="NDCG@10") as refused:
        services.index_catalog(worse, gate=gate)
    assert refused.value.field == "gate"
    assert services.engine.alias_target(alias) == live
    assert [v.name for v in services.engine.list_versions(alias)] == [live], "the refused version is removed"
    passed = services.index_catalog(CATALOG, gate=gate)
    assert passed.checks["gate"]["new"] == pytest.approx(passed.checks["gate"]["live"], abs=0.05)
    assert services.engine.alias_target(alias) == passed.version


class _InterruptedSwap:
    """Fault injection: the operator hits Ctrl-C just as the alias would move."""

    def __init__(self, engine) -> None:
        self._engine = engine

    def swap_alias(self, alias: str, version: str):
        raise KeyboardInterrupt

    def __getattr__(self, name: str):
        return getattr(self._engine, name)


def test_an_interrupted_reindex_keeps_the_live_index_and_a_rerun_works(engine_services) -> None:
    _, services = engine_services
    alias = services.settings.index_alias
    live = services.index_catalog(CATALOG).version
    real_engine = services.engine
    services.engine = _InterruptedSwap(real_engine)  # type: ignore[assignment]
    with pytest.raises(KeyboardInterrupt):
        services.index_catalog(CATALOG)
    services.engine = real_engine
    assert real_engine.alias_target(alias) == live
    assert [v.name for v in real_engine.list_versions(alias)] == [live]
    rerun = services.index_catalog(CATALOG)
    assert real_engine.alias_target(alias) == rerun.version and rerun.previous_version == live


def test_rollback_returns_to_the_version_live_before_the_current_one(engine_services) -> None:
    from indexer.history import SwapHistory, rollback
    from relevance.errors import NotFoundError

    _, services = engine_services
    alias, engine = services.settings.index_alias, services.engine
    history = SwapHistory(services.settings.swap_history_path)
    first = services.index_catalog(CATALOG).version
    second = services.index_catalog(CATALOG).version
    assert rollback(engine, alias, history) == (first, second)
    third = services.index_catalog(CATALOG).version  # built while `first` was live
    assert third > second, "by name, `second` comes before it"
    assert rollback(engine, alias, history) == (first, third)
    assert engine.alias_target(alias) == first
    with pytest.raises(NotFoundError, match="no earlier version"):
        rollback(engine, alias, history)
    assert engine.alias_target(alias) == first


def test_a_version_swapped_in_before_swaps_were_recorded_rolls_back_to_the_one_built_before_it(
    engine_services,
) -> None:
    from indexer.history import SwapHistory, rollback

    _, services = engine_services
    alias, engine = services.settings.index_alias, services.engine
    first = services.index_catalog(CATALOG).version
    second = services.index_catalog(CATALOG).version
    services.settings.swap_history_path.unlink()  # a data dir from before the record existed
    assert rollback(engine, alias, SwapHistory(services.settings.swap_history_path)) == (first, second)
    assert engine.alias_target(alias) == first


def test_rollback_refuses_when_the_version_live_before_is_no_longer_kept(engine_services) -> None:
    from indexer.history import SwapHistory, rollback
    from relevance.errors import NotFoundError

    _, services = engine_services
    alias, engine = services.settings.index_alias, services.engine
    first = services.index_catalog(CATALOG).version
    second = services.index_catalog(CATALOG).version
    services.engine.drop_version(first)  # pruned, or dropped by hand
    with pytest.raises(NotFoundError, match=f"{first}, the version live before {second}, is no longer kept"):
        rollback(engine, alias, SwapHistory(services.settings.swap_history_path))
    assert engine.alias_target(alias) == second


def test_pruning_keeps_the_version_a_rollback_returns_to(engine_services) -> None:
    _, services = engine_services
    alias = services.settings.index_alias
    services.settings.keep_versions = 2
    first = services.index_catalog(CATALOG).version
    second = services.index_catalog(CATALOG).version
    services.engine.swap_alias(alias, first)  # as a rollback does
    third = services.index_catalog(CATALOG)
    assert third.previous_version == first and third.pruned == [second]
    assert {v.name for v in services.engine.list_versions(alias)} == {first, third.version}


def test_a_title_that_analysis_empties_is_no_smoke_query_and_does_not_refuse_the_job(
    engine_services, tmp_path: Path
) -> None:
    import json

    _, services = engine_services
    rows = [json.loads(line) for line in CATALOG.read_text().splitlines()]
    # Valid products, but no term survives analysis: punctuation, a stop word, one folded to a
    # stop word, and tokens the embedded analyzer drops as too long (40 UTF-8 bytes or more;
    # 14 CJK characters are one 42-byte token there).
    empty_titles = ["!!!", "the", "Thé", "ｔｈｅ", "不锈钢厨房水槽单槽加厚款大号", "é" * 20, "x" * 45]
    for number in range(len(rows) - 5):  # so any of them taken for searchable would be a smoke query
        rows[number]["title"] = empty_titles[number % len(empty_titles)]
    odd = tmp_path / "odd.jsonl"
    odd.write_text("".join(json.dumps(row) + "\n" for row in rows))
    report = services.index_catalog(odd)
    assert report.summary["indexed"] == len(rows)
    assert report.checks["smoke"]["queries"] == 5 and report.checks["smoke"]["empty"] == []
    assert services.engine.alias_target(services.settings.index_alias) == report.version


def test_given_smoke_queries_must_be_some_and_none_blank(engine_services) -> None:
    from relevance.errors import CatalogError

    _, services = engine_services
    for queries in ([], ["cordless drill", "  "]):
        with pytest.raises(CatalogError, match="smoke query"):
            services.index_catalog(CATALOG, smoke_queries=queries)
    assert services.engine.list_versions(services.settings.index_alias) == [], "refused before building"


def test_readyz_during_a_swap_costs_no_search_of_a_worker_still_on_the_pruned_version(tmp_path: Path, embedder) -> None:
    serving = make_services(tmp_path, embedder, keep_versions=1)
    serving.index_catalog(CATALOG)
    client = create_app(services=serving).test_client()
    serving.pipeline.served.ttl_seconds = 600  # this worker goes on serving the old version a while
    assert client.get("/search?q=drill").status_code == 200
    make_services(tmp_path, embedder, keep_versions=1).index_catalog(CATALOG)  # another process; prunes the old
    assert client.get("/readyz").status_code == 200  # asks about the alias's new version
    after = client.get("/search?q=drill")
    assert after.status_code == 200, after.get_json()
    assert client.get("/search?q=drill&mode=vector").status_code == 200


def test_a_gated_reindex_can_replace_a_version_this_embedder_cannot_search(tmp_path: Path, embedder) -> None:
    """The remedy for embedding_mismatch is a re-index; the gate must not refuse it for a score
    the live version cannot have."""
    import numpy as np

    from indexer.catalog import load_catalog
    from relevance.engines.base import IndexedProduct

    services = make_services(tmp_path, embedder)
    products = load_catalog(CATALOG, tmp_path / "dead.jsonl").products
    other = services.engine.create_version("products", 32, {"embedding_dims": 32, "embedding_model": "other"})
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(len(products), 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    services.engine.bulk_upsert(other, [IndexedProduct(p, v) for p, v in zip(products, vectors, strict=True)])
    services.engine.commit(other)
    services.engine.swap_alias("products", other)
    gate = JudgmentGate({"q1": "cordless drill"}, {"q1": DRILLS}, margin=0.05)
    report = services.index_catalog(CATALOG, gate=gate)
    assert services.engine.alias_target("products") == report.version
    assert report.checks["gate"]["live"] is None and "32-dimension" in report.checks["gate"]["live_not_scored"]


@pytest.fixture(params=["elasticsearch", "opensearch"])
def server_settings(request: pytest.FixtureRequest) -> Iterator[dict[str, object]]:
    """Settings for a fresh alias on a server engine, whose indexes of that name are deleted afterwards."""
    url = SERVER_URLS[request.param]
    if not url:
        pytest.skip(f"no {request.param} node (set RELEVANCE_TEST_{request.param.upper()}_URL; .ci/run does)")
    request.applymarker(pytest.mark.engines)
    options = {
        "engine": request.param,
        "engine_url": url,
        "engine_timeout": 30,
        "index_alias": f"t-{uuid.uuid4().hex[:10]}",
    }
    yield options
    for index in requests.get(f"{url}/_cat/indices/{options['index_alias']}*?format=json", timeout=30).json():
        requests.delete(f"{url}/{index['index']}", timeout=30)


def test_an_alias_pointed_at_two_indexes_out_of_band_is_a_clear_503_until_an_index_job_repairs_it(
    server_settings: dict[str, object], tmp_path: Path, embedder
) -> None:
    alias = str(server_settings["index_alias"])
    make_services(tmp_path, embedder, **server_settings).index_catalog(CATALOG)
    make_services(tmp_path, embedder, **server_settings).index_catalog(CATALOG)
    services = make_services(tmp_path, embedder, **server_settings)
    older, newer = (v.name for v in services.engine.list_versions(alias))
    url = str(server_settings["engine_url"])
    added = requests.post(f"{url}/_aliases", json={"actions": [{"add": {"index": older, "alias": alias}}]}, timeout=30)
    assert added.status_code == 200, added.text
    assert {v.name for v in services.engine.list_versions(alias) if v.is_live} == {older, newer}, "both shown live"

    serving = make_services(tmp_path, embedder, spelling_correction=False, **server_settings)
    client = create_app(services=serving).test_client()
    searches = ("/search?q=cordless+drill", "/search?q=cordless+drill&mode=lexical", "/products/d1/similar")
    for url in ("/readyz", *searches):
        answer = client.get(url)
        assert answer.status_code == 503, (url, answer.get_json())
        detail = answer.get_json()["detail"]
        assert f"alias {alias!r} points at 2 indexes ({older}, {newer})" in detail, (url, detail)

    remedy = make_services(tmp_path, embedder, keep_versions=2, **server_settings).index_catalog(CATALOG)
    assert remedy.previous_version == newer and remedy.pruned == [older], "the newest served: kept for rollback"
    assert len(services.engine.client.indices.get_alias(name=alias)) == 1
    client = create_app(services=make_services(tmp_path, embedder, **server_settings)).test_client()
    assert client.get("/search?q=cordless+drill").status_code == 200
    assert client.get("/readyz").get_json()["status"] in ("ready", "degraded")


def test_an_index_the_layer_did_not_build_under_the_aliass_name_is_not_ready(
    server_settings: dict[str, object], tmp_path: Path, embedder
) -> None:
    alias = str(server_settings["index_alias"])
    url = str(server_settings["engine_url"])
    made = requests.put(f"{url}/{alias}/_doc/x?refresh=true", json={"title": "cordless drill"}, timeout=30)
    assert made.status_code == 201, made.text  # a plain index, created by the write
    answer = create_app(services=make_services(tmp_path, embedder, **server_settings)).test_client().get("/readyz")
    assert answer.status_code == 503
    assert answer.get_json()["status"] == "not_ready"
    assert f"{alias!r} is an index, not an alias" in answer.get_json()["detail"]


def test_a_closed_version_is_listed_closed_never_rolled_back_to_and_pruned_like_any_other(
    server_settings: dict[str, object], tmp_path: Path, embedder
) -> None:
    """Operators close old versions to free the server's memory; closed, they still hold disk."""
    from indexer.history import SwapHistory, rollback
    from relevance.errors import EngineError

    services = make_services(tmp_path, embedder, keep_versions=2, **server_settings)
    alias, engine = services.settings.index_alias, services.engine
    first = services.index_catalog(CATALOG).version
    second = services.index_catalog(CATALOG).version
    closed = requests.post(f"{server_settings['engine_url']}/{first}/_close", timeout=30)
    assert closed.status_code == 200, closed.text
    listed = {v.name: v for v in engine.list_versions(alias)}
    assert listed[first].unavailable.startswith("closed") and listed[first].count is None
    assert listed[second].unavailable is None and listed[second].count > 0

    with pytest.raises(EngineError, match=f"{first}.* is closed"):
        rollback(engine, alias, SwapHistory(services.settings.swap_history_path))
    assert engine.alias_target(alias) == second, "the live alias untouched"

    third = services.index_catalog(CATALOG)
    assert third.pruned == [first], "a closed version takes a kept place, and goes when its turn comes"


def test_an_index_alias_naming_a_version_is_ready(tmp_path: Path, embedder) -> None:
    version = make_services(tmp_path, embedder).index_catalog(CATALOG).version
    pinned = make_services(tmp_path, embedder, index_alias=version)
    body = create_app(services=pinned).test_client().get("/readyz").get_json()
    assert body["status"] in ("ready", "degraded") and body["index_version"] == version, body


@pytest.fixture
def index_template(server_settings: dict[str, object]) -> Iterator[Callable[[dict[str, object]], None]]:
    """Settings every new index of the alias gets (what a cluster under pressure imposes)."""
    url, alias = server_settings["engine_url"], server_settings["index_alias"]

    def impose(settings: dict[str, object]) -> None:
        body = {"index_patterns": [f"{alias}-*"], "priority": 500, "template": {"settings": settings}}
        answer = requests.put(f"{url}/_index_template/{alias}", json=body, timeout=30)
        assert answer.status_code == 200, answer.text

    yield impose
    requests.delete(f"{url}/_index_template/{alias}", timeout=30)


def test_a_disk_block_fails_the_job_at_once_blaming_no_product_and_leaving_nothing(
    server_settings: dict[str, object], index_template, tmp_path: Path, embedder, caplog: pytest.LogCaptureFixture
) -> None:
    """Past the flood-stage watermark writes answer 429 cluster_block_exception: not overload to
    wait out, and not bad rows (a partial version once went live that way, exit 0)."""
    from relevance.errors import EngineError
    from tests.fault_proxy import BulkFaults, fault_proxy

    services = make_services(tmp_path, embedder, **server_settings)
    alias, engine = services.settings.index_alias, services.engine
    live = services.index_catalog(CATALOG).version
    index_template({"index.blocks.read_only_allow_delete": True})  # what the flood stage sets
    counted = BulkFaults()  # no fault: it counts the _bulk requests that reach the server
    with fault_proxy(str(server_settings["engine_url"]), counted) as proxied_url:
        through_proxy = make_services(tmp_path, embedder, **{**server_settings, "engine_url": proxied_url})
        with pytest.raises(EngineError, match=r"refuses writes .*cluster_block_exception") as failed:
            through_proxy.index_catalog(CATALOG)
    assert "flood-stage" in failed.value.detail
    assert counted.bulk_requests == 1, "sent once: no retry by the client's helper nor by the layer"
    assert not any("retrying" in record.getMessage() for record in caplog.records)
    assert [v.name for v in engine.list_versions(alias)] == [live] and engine.alias_target(alias) == live
    dead_letters = services.settings.dead_letter_dir
    assert not dead_letters.exists() or not any(path.read_text() for path in dead_letters.iterdir())


def test_a_version_whose_shard_no_node_takes_fails_at_creation_and_is_dropped(
    server_settings: dict[str, object], index_template, tmp_path: Path, embedder
) -> None:
    """Past the high watermark no node takes a new shard: the index is created red (it used to
    be left behind, turning /readyz red, and its bulk load hung on 503s)."""
    from relevance.errors import EngineError

    services = make_services(tmp_path, embedder, **server_settings)
    alias, engine = services.settings.index_alias, services.engine
    live = services.index_catalog(CATALOG).version
    index_template({"index.routing.allocation.require._name": "no-such-node"})
    engine.shard_wait = "1s"
    with pytest.raises(EngineError, match="its shards were not placed within 1s"):
        services.index_catalog(CATALOG)
    assert [v.name for v in engine.list_versions(alias)] == [live] and engine.alias_target(alias) == live
    client = create_app(services=make_services(tmp_path, embedder, **server_settings)).test_client()
    assert client.get("/readyz").status_code == 200


def test_a_red_version_is_listed_unavailable_never_swapped_to_and_does_not_unready_the_live_one(
    server_settings: dict[str, object], tmp_path: Path, embedder
) -> None:
    from relevance.errors import EngineError

    services = make_services(tmp_path, embedder, **server_settings)
    alias, engine, url = services.settings.index_alias, services.engine, server_settings["engine_url"]
    live = services.index_catalog(CATALOG).version
    # A committed version whose shard no node holds (a lost node, a full disk): red.
    red = f"{alias}-20000101000000000000"
    body = {
        "settings": {"number_of_replicas": 0, "index.routing.allocation.require._name": "no-such-node"},
        "mappings": {"_meta": {"alias": alias, "committed": True, "created_at": "2000-01-01T00:00:00+00:00"}},
    }
    requests.put(f"{url}/{red}?wait_for_active_shards=0", json=body, timeout=30).raise_for_status()

    listed = {v.name: v for v in engine.list_versions(alias)}  # a count of it would fail: none is asked
    assert listed[red].unavailable.startswith("red") and listed[red].count is None
    assert listed[live].unavailable is None and listed[live].count > 0
    with pytest.raises(EngineError, match=f"{red}.* is red"):
        engine.swap_alias(alias, red)  # as a rollback to it would
    assert engine.alias_target(alias) == live
    client = create_app(services=make_services(tmp_path, embedder, **server_settings)).test_client()
    assert client.get("/readyz").status_code == 200, "the cluster is red, the served version is not"
    assert client.get("/search?q=cordless+drill").status_code == 200


def test_a_count_that_some_shards_did_not_answer_is_an_error_not_a_number(
    server_settings: dict[str, object],
) -> None:
    from relevance.config import load_settings
    from relevance.engines import create_engine
    from relevance.errors import EngineError

    url, alias = server_settings["engine_url"], server_settings["index_alias"]
    partial = f"{alias}-partial"  # two primaries, room for one: half the index answers
    body = {
        "settings": {
            "number_of_shards": 2,
            "number_of_replicas": 0,
            "index.routing.allocation.total_shards_per_node": 1,
        }
    }
    requests.put(f"{url}/{partial}?wait_for_active_shards=0", json=body, timeout=30).raise_for_status()
    placed = requests.get(f"{url}/_cluster/health/{partial}?wait_for_active_shards=1&timeout=30s", timeout=60)
    assert placed.json()["active_primary_shards"] == 1, placed.text
    engine = create_engine(load_settings(**server_settings))
    with pytest.raises(EngineError, match=r"answered from 1 of 2 shards"):
        engine.count(partial)
