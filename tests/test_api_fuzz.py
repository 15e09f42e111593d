"""Property-based requests to the HTTP API: whatever a client sends, the answer is a 200
with a consistent page or a JSON 4xx naming a parameter it was sent, and always strict
JSON (the weight that blended to inf once answered "Infinity"). Hypothesis generates the
requests; derandomized, so a run is reproducible and CI never flakes on a new draw.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from relevance.api.schemas import PlacementResponse, SearchParams

SEARCH_NAMES = sorted(SearchParams.model_fields)
# Values that sit on the rules' edges, beside arbitrary text.
EDGE_VALUES = [
    *("", " ", "0", "1", "-1", "100", "101", "10000", "10001", "1e308", "-1e308", "nan", "inf", "-inf"),
    *("true", "false", "perhaps", "rrf", "linear", "sum", "minmax", "zscore", "layer", "engine"),
    *("hybrid", "lexical", "vector", "Tools", "Tools > Drills", "Tools > > Drills", "DEWALT", "9" * 400),
]
SETTINGS = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
printable = st.text(st.characters(exclude_categories=("Cs",)), max_size=520)  # lone surrogates cannot be sent
values = st.one_of(st.sampled_from(EDGE_VALUES), printable)
pairs = st.lists(st.tuples(st.sampled_from([*SEARCH_NAMES, "", "sise", "q[]"]), values), max_size=8)


def _strict_json(text: str) -> Any:
    def refuse(constant: str) -> None:
        raise AssertionError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def _check(response: Any, sent: list[tuple[str, str]], first_rank: int, size: int) -> None:
    body = _strict_json(response.get_data(as_text=True))
    assert response.content_type == "application/json"
    if response.status_code == 200:
        ranks = [result["rank"] for result in body["results"]]
        assert ranks == list(range(first_rank, first_rank + len(ranks))) and len(ranks) <= size
        scores = [result["score"] for result in body["results"]]
        assert scores == sorted(scores, reverse=True)
        return
    _check_error(response.status_code, body, sent)


def _check_error(status: int, body: dict, sent: list[tuple[str, str]]) -> None:
    assert status in (400, 422, 501), body
    assert set(body) == {"error", "detail", "field"} and "Traceback" not in body["detail"]
    assert body["field"] in {name for name, _ in sent} | {"q"}, (body, sent)


def _paging(sent: list[tuple[str, str]]) -> tuple[int, int]:
    given_values = dict(sent)
    try:
        page, size = int(given_values.get("page", 1)), int(given_values.get("size", 10))
    except ValueError:
        return 1, 10  # refused anyway
    return (page - 1) * size + 1, size


@SETTINGS
@given(query=st.one_of(st.none(), values), extra=pairs)
@example(query="drill", extra=[("fusion", "linear"), ("lexical_weight", "1e308"), ("vector_weight", "1e308")])
def test_any_search_request_gets_a_page_or_a_json_error_naming_what_was_sent(client, query, extra) -> None:
    sent = ([("q", query)] if query is not None else []) + extra
    first_rank, size = _paging(sent)
    _check(client.get("/search", query_string=sent), sent, first_rank, size)


@SETTINGS
@given(extra=pairs)
def test_any_similar_request_gets_a_page_or_a_json_error_naming_what_was_sent(client, extra) -> None:
    first_rank, size = _paging(extra)
    _check(client.get("/products/d1/similar", query_string=extra), extra, first_rank, size)


@SETTINGS
@given(query=st.one_of(st.none(), values), extra=pairs)
@example(query="drill", extra=[("fusion", "linear"), ("lexical_weight", "1e308"), ("vector_weight", "1e308")])
def test_any_explain_request_gets_a_placement_or_a_json_error_naming_what_was_sent(client, query, extra) -> None:
    sent = ([("q", query)] if query is not None else []) + extra
    response = client.get("/products/d1/explain", query_string=sent)
    body = _strict_json(response.get_data(as_text=True))
    assert response.content_type == "application/json"
    if response.status_code == 200:
        PlacementResponse.model_validate(body)
        assert body["product_id"] == "d1" and (body["rank"] is None or 1 <= body["rank"] <= body["total"])
        return
    _check_error(response.status_code, body, sent)
