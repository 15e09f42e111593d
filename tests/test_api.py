from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from indexer.catalog import load_catalog
from relevance.api import create_app
from relevance.embedder import DEFAULT_MODEL, Embedder, resolve_model_path
from relevance.services import Services
from tests.conftest import CATALOG, make_services, tiny_mpnet_model


def assert_error(response, status: int, field: str | None) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"error", "detail", "field"}
    assert body["field"] == field
    assert "Traceback" not in body["detail"]
    return body


def test_search_returns_hybrid_results(client) -> None:
    body = client.get("/search?q=cordless+drill&size=3").get_json()
    assert body["mode"] == "hybrid" and body["fusion"]["method"] == "rrf"
    assert [r["rank"] for r in body["results"]] == [1, 2, 3]
    assert body["results"][0]["product_id"] in {"d1", "d2", "d3", "d4"}
    assert "explain" not in body["results"][0] and "timings_ms" not in body


def test_explain_adds_component_scores_ranks_and_timings(client) -> None:
    response = client.get("/search?q=cordless+drill&size=3&explain=true")
    body = response.get_json()
    explain = body["results"][0]["explain"]
    assert explain["lexical_rank"] >= 1 and explain["vector_rank"] >= 1
    assert explain["fused_score"] == pytest.approx(
        1 / (60 + explain["lexical_rank"]) + 1 / (60 + explain["vector_rank"])
    )
    assert set(body["timings_ms"]) >= {"embed", "lexical", "vector", "fusion", "fetch"}
    assert "lexical;dur=" in response.headers["Server-Timing"]


def test_fusion_options_are_applied(client) -> None:
    body = client.get(
        "/search?q=drill&fusion=linear&normalization=zscore&lexical_weight=1&vector_weight=0&explain=true"
    ).get_json()
    assert body["fusion"] == {
        "method": "linear",
        "backend": "layer",
        "rrf_k": 60.0,
        "normalization": "zscore",
        "lexical_weight": 1.0,
        "vector_weight": 0.0,
    }
    lexical = [r["explain"]["lexical_score"] or 0.0 for r in body["results"]]
    assert lexical == sorted(lexical, reverse=True), "with vector weight 0 the order follows BM25"


def test_filters_as_query_parameters(client) -> None:
    body = client.get("/search?q=drill&brand=DEWALT&brand=milwaukee&in_stock=true&price_max=150&size=50").get_json()
    assert body["results"]
    for result in body["results"]:
        assert result["brand"] in ("DEWALT", "Milwaukee") and result["in_stock"] and result["price"] <= 150


def test_pages_do_not_repeat(client) -> None:
    first = client.get("/search?q=chair&size=3&page=1").get_json()
    second = client.get("/search?q=chair&size=3&page=2").get_json()
    assert first["total"] == second["total"]
    assert not {r["product_id"] for r in first["results"]} & {r["product_id"] for r in second["results"]}
    assert [r["rank"] for r in second["results"]] == [4, 5, 6]
    beyond = client.get("/search?q=chair&size=100&page=50").get_json()
    assert beyond["results"] == [] and beyond["total"] == first["total"]


def test_product_and_similar(client) -> None:
    assert client.get("/products/d1").get_json()["title"].startswith("DEWALT 20V MAX")
    similar = client.get("/products/d1/similar?size=4&category=Tools").get_json()
    assert len(similar["results"]) == 4 and "d1" not in [r["product_id"] for r in similar["results"]]
    assert all(r["category"].startswith("Tools") for r in similar["results"])


@pytest.mark.parametrize(
    ("url", "status", "field"),
    [
        ("/search", 400, "q"),
        ("/search?q=drill&size=abc", 400, "size"),
        ("/search?q=drill&sise=3", 400, "sise"),
        ("/search?q=drill&page=1&page=2", 400, "page"),
        ("/search?q=drill&in_stock=perhaps", 400, "in_stock"),
        ("/search?q=drill&size=101", 422, "size"),
        ("/search?q=drill&size=0", 422, "size"),
        ("/search?q=drill&page=0", 422, "page"),
        ("/search?q=%20%20", 422, "q"),
        ("/search?q=%E2%80%8B", 422, "q"),  # a zero-width space
        ("/search?q=%EF%BB%BF%00", 422, "q"),  # a byte-order mark and a NUL
        ("/products/d1/explain?q=%E2%80%8B", 422, "q"),
        ("/search?q=drill&mode=magic", 422, "mode"),
        ("/search?q=drill&fusion=sum", 422, "fusion"),
        ("/search?q=drill&rrf_k=0", 422, "rrf_k"),
        ("/search?q=drill&price_min=-1", 422, "price_min"),
        ("/search?q=drill&price_min=nan", 422, "price_min"),
        ("/search?q=drill&price_min=10&price_max=5", 422, "price_min"),
        ("/search?q=drill&category=Tools%20%3E%20%3E%20Drills", 422, "category"),
        ("/products/nope", 404, "product_id"),
        ("/products/nope/similar", 404, "product_id"),
        ("/products/d1/similar?size=1000", 422, "size"),
        ("/products/d1?size=3", 400, "size"),
        ("/no/such/route", 404, None),
        ("/search?=x&q=drill", 400, ""),
        # a weight of 1e308 once blended to inf, which JSON cannot carry (a 500 with log_features)
        ("/search?q=drill&fusion=linear&lexical_weight=1e308&vector_weight=1e308", 422, "lexical_weight"),
        ("/search?q=drill&fusion=linear&vector_weight=1001", 422, "vector_weight"),
        ("/search?q=drill&fusion=linear&lexical_weight=0&vector_weight=0", 422, "vector_weight"),
        ("/search?q=drill&brand=", 422, "brand"),
        ("/search?q=drill&brand=DEWALT&brand=" + "x" * 201, 422, "brand"),
        ("/search?q=drill" + "&brand=b" * 21, 422, "brand"),
        ("/search?q=drill&category=" + "x" * 201, 422, "category"),
        ("/search?q=drill&mode=lexical&log_features=true", 422, "log_features"),
    ],
)
def test_bad_requests_get_json_errors_naming_the_field(client, url: str, status: int, field: str | None) -> None:
    assert_error(client.get(url), status, field)


def test_wrong_method_is_a_json_405_saying_what_is_allowed(client) -> None:
    response = client.post("/search?q=drill")
    assert_error(response, 405, None)
    assert set(response.headers["Allow"].split(", ")) == {"GET", "HEAD", "OPTIONS"}
    assert response.content_type == "application/json"


def test_the_largest_blend_weights_keep_scores_finite(client) -> None:
    response = client.get("/search?q=drill&fusion=linear&lexical_weight=1000&vector_weight=1000&explain=true")
    assert response.status_code == 200
    assert "Infinity" not in response.get_data(as_text=True)
    assert response.get_json()["results"][0]["score"] <= 2000


def test_an_unreadable_alias_is_503_and_a_reindex_repairs_it(tmp_path: Path, embedder: Embedder) -> None:
    services = make_services(tmp_path, embedder)
    services.index_catalog(CATALOG)
    engine, alias = services.engine, services.settings.index_alias
    live = engine.alias_target(alias)
    alias_file = engine.root / "aliases" / f"{alias}.json"
    client = create_app(services=services).test_client()
    for content in ("{not json", "[]", '{"swapped_at": "2026-11-29"}', '"products-1"'):
        alias_file.write_text(content)
        body = assert_error(client.get("/search?q=drill"), 503, "index")
        assert body["error"] == "index_not_ready" and str(alias_file) in body["detail"], content
        assert client.get("/readyz").status_code == 503
        assert_error(client.get("/products/d1"), 503, "index")
        assert engine.swap_alias(alias, live) is None  # the swap rewrites it; nothing readable was live
        assert client.get("/search?q=drill").status_code == 200


def test_a_damaged_index_version_is_503_not_an_empty_or_failing_index(tmp_path: Path, embedder: Embedder) -> None:
    import json
    import shutil

    services = make_services(tmp_path, embedder)
    services.index_catalog(CATALOG)
    version_dir = services.engine.root / "versions" / services.engine.alias_target(services.settings.index_alias)
    pristine = tmp_path / "pristine"
    shutil.copytree(version_dir, pristine)
    manifest = json.loads((version_dir / "manifest.json").read_text())
    damages = {
        # tantivy opened an empty index in place of one without its meta.json: lexical found nothing, readyz was ready
        "tantivy/meta.json": lambda: (version_dir / "tantivy" / "meta.json").unlink(),
        # valid JSON without the generation: every endpoint, /readyz too, answered 500
        "lacks 'generation'": lambda: (version_dir / "manifest.json").write_text(
            json.dumps({k: v for k, v in manifest.items() if k != "generation"})
        ),
    }
    for said, damage in damages.items():
        fresh = make_services(tmp_path, embedder)  # a worker starting on the damaged version
        client = create_app(services=fresh).test_client()
        damage()
        for url in ("/search?q=drill&mode=lexical", "/search?q=drill", "/readyz"):
            answer = client.get(url)
            assert answer.status_code == 503 and said in answer.get_json().get("detail", ""), (said, url)
        assert not (version_dir / "tantivy" / "meta.json").exists() or said != "tantivy/meta.json", "nothing written"
        shutil.rmtree(version_dir)
        shutil.copytree(pristine, version_dir)


def test_health_and_readiness(client) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz").get_json()
    assert ready["status"] == "ready" and ready["products"] == 40 and ready["index_version"].startswith("products-")
    assert ready["query_encoder"] == "onnx-int8"  # the default, and what an operator checks after a fallback


def test_without_an_index_search_is_503_and_not_ready(tmp_path: Path, embedder: Embedder) -> None:
    app = create_app(services=make_services(tmp_path, embedder))
    client = app.test_client()
    body = assert_error(client.get("/search?q=drill"), 503, "index")
    assert body["error"] == "index_not_ready" and "relevance index" in body["detail"]
    assert client.get("/readyz").status_code == 503
    assert client.get("/healthz").status_code == 200


def test_without_an_index_every_endpoint_is_503_on_every_engine(engine_services: tuple[str, Services]) -> None:
    # Elasticsearch's mget answers a missing index with 200 and per-document errors: /similar said 404
    _, services = engine_services
    client = create_app(services=services).test_client()
    for url in ("/search?q=drill", "/products/d1", "/products/d1/similar"):
        body = assert_error(client.get(url), 503, "index")
        assert body["error"] == "index_not_ready", (url, body)


def test_hybrid_searches_log_no_warning_on_any_engine(engine_services: tuple[str, Services], caplog) -> None:
    # OpenSearch's client kept one connection; each hybrid search's two parallel requests
    # discarded one with a "Connection pool is full" warning
    _, services = engine_services
    services.index_catalog(CATALOG)
    client = create_app(services=services).test_client()
    client.get("/search?q=drill")  # warm-up: first loads may log at INFO
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        for query in ("cordless drill", "hammer", "circular saw"):
            assert client.get(f"/search?q={query}").status_code == 200
    assert [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING] == []


def test_an_index_embedded_by_another_model_is_refused_with_the_reason(
    engine_services: tuple[str, Services], tmp_path: Path, embedder: Embedder
) -> None:
    """embedding_model changed without a re-index: on every engine a clear 503 naming both models,
    not numpy's shape error as a 500 (embedded) or the server's dimension error as engine_unavailable."""
    _, services = engine_services
    services.index_catalog(CATALOG)  # 384-dimension vectors of all-MiniLM-L6-v2
    other = Embedder(str(tiny_mpnet_model(tmp_path)), cache_dir=tmp_path / "cache")  # 32 dimensions
    services.embedder = services.pipeline.embedder = other
    client = create_app(services=services).test_client()
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.get_json()["status"] == "not_ready"
    assert "384-dimension vectors of all-MiniLM-L6-v2" in ready.get_json()["detail"]
    assert "(32 dimensions)" in ready.get_json()["detail"]
    for url in ("/search?q=drill", "/search?q=drill&explain=true", "/search?q=drill&mode=vector"):
        body = assert_error(client.get(url), 503, None)
        assert body["error"] == "embedding_mismatch" and "384-dimension vectors of all-MiniLM-L6-v2" in body["detail"]
    assert client.get("/products/d1/similar").status_code == 200  # product vectors against product vectors
    lexical = client.get("/search?q=drill&mode=lexical")
    assert lexical.status_code == 200 and lexical.get_json()["results"]
    explained = client.get("/products/d1/explain?q=drill&mode=lexical")  # embeds nothing either (it was a 503)
    assert explained.status_code == 200 and explained.get_json()["lexical"]["rank"] is not None
    services.embedder = services.pipeline.embedder = embedder  # set back: served again at once
    assert client.get("/readyz").status_code == 200
    assert client.get("/search?q=drill").get_json()["results"]


def test_an_index_embedded_by_another_model_of_the_same_width_is_refused(
    engine_services: tuple[str, Services], tmp_path: Path, embedder: Embedder
) -> None:
    """Same dimensions, other vectors (bge-small and MiniLM both make 384): the dimension check
    passes, and without the probe text every vector search would answer meaninglessly."""
    _, services = engine_services
    services.index_catalog(CATALOG)
    other = Embedder(str(tiny_mpnet_model(tmp_path, hidden_size=384)), cache_dir=tmp_path / "cache")
    services.embedder = services.pipeline.embedder = other
    client = create_app(services=services).test_client()
    ready = client.get("/readyz")
    assert ready.status_code == 503 and "was embedded by all-MiniLM-L6-v2" in ready.get_json()["detail"]
    body = assert_error(client.get("/search?q=drill&mode=vector"), 503, None)
    assert body["error"] == "embedding_mismatch" and "cosine" in body["detail"]
    # The same model from another directory, or with float32 batches (another model id), makes
    # the index's vectors: served, not refused.
    (tmp_path / "moved").symlink_to(resolve_model_path(DEFAULT_MODEL))
    float32_batches = Embedder(embedder.model_name, batch_precision="float32")
    float32_batches._model = embedder._model  # the same weights, loaded once
    for same in (Embedder(str(tmp_path / "moved"), query_backend="torch"), float32_batches):
        services.embedder = services.pipeline.embedder = same
        assert client.get("/readyz").status_code == 200, same.model_id
        assert client.get("/search?q=drill&mode=vector").get_json()["results"]


def test_a_misspelt_word_is_also_searched_as_the_catalog_spells_it(engine_services: tuple[str, Services]) -> None:
    """No product says "dewlat": BM25 alone finds nothing; the lexical query adds the catalog's "dewalt"."""
    _, services = engine_services
    services.index_catalog(CATALOG)
    client = create_app(services=services).test_client()
    dewalt = {p.product_id for p in load_catalog(CATALOG, Path("/dev/null")).products if "DEWALT" in p.title}
    body = client.get("/search?q=dewlat&mode=lexical").get_json()
    assert body["corrections"] == {"dewlat": "dewalt"}
    assert {r["product_id"] for r in body["results"]} == dewalt
    hybrid = client.get("/search?q=dewlat+drill").get_json()
    assert hybrid["corrections"] == {"dewlat": "dewalt"} and hybrid["results"][0]["product_id"] in dewalt
    assert client.get("/search?q=dewalt&mode=lexical").get_json()["corrections"] == {}
    recording = services.pipeline.embedder = RecordingEmbedder(services.embedder)
    client.get("/search?q=Dewlat+drill&mode=vector")
    assert recording.queries == ["dewalt drill"], "the embedding model reads the corrected query"
    services.pipeline.settings = services.settings.model_copy(update={"spelling_correction": False})
    body = client.get("/search?q=dewlat&mode=lexical").get_json()
    assert body["corrections"] == {} and body["results"] == []
    client.get("/search?q=Dewlat+drill&mode=vector")
    assert recording.queries[-1] == "Dewlat drill"


class RecordingEmbedder:
    """An embedder that remembers the query texts it was given."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder
        self.queries: list[str] = []

    def encode_query(self, text: str):
        self.queries.append(text)
        return self.embedder.encode_query(text)

    def __getattr__(self, name: str):
        return getattr(self.embedder, name)


def test_openapi_documents_every_route(client) -> None:
    spec = client.get("/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    routes = {rule.rule.replace("<", "{").replace(">", "}") for rule in client.application.url_map.iter_rules()}
    routes.discard("/static/{path:filename}")
    assert routes == set(spec["paths"])
    params = {p["name"] for p in spec["paths"]["/search"]["get"]["parameters"]}
    assert {
        "q",
        "category",
        "brand",
        "price_min",
        "price_max",
        "in_stock",
        "page",
        "size",
        "mode",
        "fusion",
        "explain",
    } <= params
    assert "ErrorResponse" in spec["components"]["schemas"]


def test_unexpected_errors_are_json_500_without_trace(tmp_path: Path, embedder: Embedder) -> None:
    services = make_services(tmp_path, embedder)

    def explode(*_args, **_kwargs):
        raise RuntimeError("secret internals")

    services.pipeline.search = explode  # fault injection: a bug, not bad input
    client = create_app(services=services).test_client()
    body = assert_error(client.get("/search?q=drill"), 500, None)
    assert "secret" not in body["detail"]


def test_responses_match_their_documented_schemas(client) -> None:
    from relevance.api.schemas import ErrorResponse, HealthResponse, ProductOut, SearchResponse

    SearchResponse.model_validate(client.get("/search?q=drill&explain=true").get_json())
    SearchResponse.model_validate(client.get("/products/d1/similar").get_json())
    ProductOut.model_validate(client.get("/products/d1").get_json())
    HealthResponse.model_validate(client.get("/readyz").get_json())
    ErrorResponse.model_validate(client.get("/search").get_json())


def test_a_warmed_up_worker_keeps_the_collector_off_its_loaded_heap() -> None:
    # In a child process: freezing would otherwise pin this test run's objects for good.
    code = """
import gc, weakref
from relevance.api import settle_heap
class Node: pass
loaded = [[i] for i in range(1000)]
settle_heap()
cycle = Node(); cycle.self = cycle; alive = weakref.ref(cycle); del cycle
gc.collect()
print(gc.get_freeze_count(), alive() is None)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    frozen, cycle_collected = result.stdout.split()
    assert int(frozen) >= 1000, "the loaded objects are out of the collector's reach"
    assert cycle_collected == "True", "garbage made while serving is still collected"
