"""GET /products/<id>/explain: where any product lands for a query, and why, on every engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from relevance.api import create_app
from relevance.api.schemas import PlacementResponse
from relevance.embedder import Embedder
from relevance.services import Services
from tests.conftest import CATALOG, make_services


@pytest.fixture
def indexed(engine_services: tuple[str, Services]):
    engine, services = engine_services
    services.index_catalog(CATALOG)
    return engine, create_app(services=services).test_client()


def placement(client, product_id: str, query: str) -> dict:
    response = client.get(f"/products/{product_id}/explain?{query}")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    PlacementResponse.model_validate(body)  # no undocumented field, none missing
    return body


def test_a_served_product_is_placed_where_search_serves_it(indexed) -> None:
    _, client = indexed
    served = client.get("/search?q=cordless+drill&size=20&explain=true").get_json()["results"]
    for result in (served[0], served[6]):
        body = placement(client, result["product_id"], "q=cordless+drill")
        assert body["rank"] == result["rank"] and body["passes_filters"] is True
        assert body["fused_score"] == pytest.approx(result["explain"]["fused_score"])
        assert body["lexical"]["rank"] == result["explain"]["lexical_rank"]
        assert body["vector"]["rank"] == result["explain"]["vector_rank"]
        assert body["vector"]["score"] == pytest.approx(result["explain"]["vector_score"])
        assert body["summary"].startswith(f"{result['product_id']} is rank {result['rank']} of {body['total']}")


def test_a_product_no_query_term_matches_is_placed_by_its_cosine_alone(indexed) -> None:
    _, client = indexed
    body = placement(client, "f2", "q=cordless+drill")  # a linen sofa
    assert body["lexical"]["score"] is None and body["lexical"]["rank"] is None
    assert "BM25 matched no query term" in body["summary"]
    assert body["vector"]["rank"] is not None, "the fixture catalog is smaller than the kNN list"


def test_a_filtered_out_product_says_so(indexed) -> None:
    _, client = indexed
    body = placement(client, "d3", "q=cordless+drill&in_stock=true")  # the Ryobi drill is out of stock
    assert body["passes_filters"] is False and body["rank"] is None
    assert body["summary"] == "d3 is excluded by the request's filters"
    assert placement(client, "d1", "q=cordless+drill&in_stock=true")["passes_filters"] is True
    # Its own BM25 score whatever the filters say: it matches "drill" (it read null, "no query term matched").
    unfiltered = placement(client, "d3", "q=cordless+drill")["lexical"]["score"]
    assert unfiltered is not None
    assert body["lexical"]["score"] == pytest.approx(unfiltered)
    lexical = placement(client, "d3", "q=cordless+drill&in_stock=true&mode=lexical")
    assert lexical["passes_filters"] is False and lexical["lexical"]["score"] == pytest.approx(unfiltered)


def test_bad_requests_name_the_field(indexed) -> None:
    _, client = indexed
    missing = client.get("/products/nope/explain?q=drill")
    assert missing.status_code == 404 and missing.get_json()["field"] == "product_id"
    no_query = client.get("/products/d1/explain")
    assert no_query.status_code in (400, 422) and no_query.get_json()["field"] == "q"
    paging = client.get("/products/d1/explain?q=drill&page=2")  # one product: nothing to page
    assert paging.status_code == 400 and paging.get_json()["field"] == "page"


def test_a_product_outside_both_lists_says_how_far_it_was(tmp_path: Path, embedder: Embedder) -> None:
    services = make_services(tmp_path, embedder, candidates=3, window=4)
    services.index_catalog(CATALOG)
    client = create_app(services=services).test_client()
    body = placement(client, "b4", "q=cordless+drill")  # a spade bit set: "drill" matches, weakly
    assert body["rank"] is None and body["fused_rank"] is None
    lexical, vector = body["lexical"], body["vector"]
    assert lexical["length"] == vector["length"] == 3
    assert lexical["rank"] is None and 0 < lexical["score"] <= lexical["last_score"]
    assert vector["rank"] is None and vector["score"] <= vector["last_score"]
    assert body["summary"].startswith("b4 is not among the candidates: BM25 score ")
    assert "not in the list; the list's last of 3 scored" in body["summary"]


def test_vector_mode_places_the_product_in_the_knn_list(indexed) -> None:
    _, client = indexed
    served = client.get("/search?q=cordless+drill&mode=vector&size=20&explain=true").get_json()["results"]
    top = served[0]
    body = placement(client, top["product_id"], "q=cordless+drill&mode=vector")
    assert body["lexical"] is None, "vector mode searched no BM25 list"
    assert body["vector"]["rank"] == top["explain"]["vector_rank"] == 1
    assert body["vector"]["score"] == pytest.approx(top["explain"]["vector_score"])
    assert "kNN rank 1 of" in body["summary"]


def test_vector_mode_says_how_far_a_product_outside_the_knn_list_was(tmp_path: Path, embedder: Embedder) -> None:
    services = make_services(tmp_path, embedder, candidates=3, window=4)
    services.index_catalog(CATALOG)
    client = create_app(services=services).test_client()
    body = placement(client, "f2", "q=cordless+drill&mode=vector")  # a linen sofa
    vector = body["vector"]
    assert vector["rank"] is None and vector["length"] == 4  # a one-list search reaches the window
    assert vector["score"] is not None and vector["score"] <= vector["last_score"]
    assert body["summary"].startswith("f2 is not among the candidates") and "kNN" in body["summary"]
