"""GET /openapi.json, generated from the same pydantic models that validate requests.

Assembled by hand because the parameter and response schemas already come from
pydantic; a Flask OpenAPI plugin would add a second validation layer with its own
error format, which the one-shape error contract forbids.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue
from pydantic import BaseModel

from relevance.api.schemas import (
    ErrorResponse,
    FilterParams,
    HealthResponse,
    PlacementResponse,
    ProductOut,
    RankingParams,
    SearchParams,
    SearchResponse,
)

bp = Blueprint("openapi", __name__)
REF = "#/components/schemas/"


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template=REF + "{model}")
    required = set(schema.get("required", []))
    return [
        {
            "name": name,
            "in": "query",
            "required": name in required,
            "description": prop.get("description", ""),
            "schema": {k: v for k, v in prop.items() if k not in ("description", "title")},
            **({"explode": True} if prop.get("type") == "array" else {}),
        }
        for name, prop in schema["properties"].items()
    ]


def _json(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": REF + model.__name__}}}}


def _errors(*codes: int) -> dict[str, Any]:
    names = {
        400: "Malformed request",
        404: "Not found",
        422: "Invalid value",
        501: "The engine has no native hybrid search (fusion_backend=engine)",
        503: "Index or model not ready",
    }
    return {str(code): _json(ErrorResponse, names[code]) for code in codes}


def build_openapi() -> dict[str, Any]:
    components: dict[str, Any] = {}
    for model in (SearchResponse, ProductOut, ErrorResponse, HealthResponse, PlacementResponse):
        schema = model.model_json_schema(ref_template=REF + "{model}")
        components.update(schema.pop("$defs", {}))
        components[model.__name__] = schema
    path_id = {"name": "product_id", "in": "path", "required": True, "schema": {"type": "string"}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Relevance layer search API", "version": "1.0.0"},
        "paths": {
            "/search": {
                "get": {
                    "summary": "Hybrid product search (BM25 + vector kNN, fused)",
                    "parameters": _query_parameters(SearchParams),
                    "responses": {"200": _json(SearchResponse, "One page of results"), **_errors(400, 422, 501, 503)},
                }
            },
            "/products/{product_id}": {
                "get": {
                    "summary": "One product by id",
                    "parameters": [path_id],
                    "responses": {"200": _json(ProductOut, "The product"), **_errors(400, 404, 503)},
                }
            },
            "/products/{product_id}/similar": {
                "get": {
                    "summary": "Vector neighbours of a product (itself excluded), filters respected",
                    "parameters": [path_id, *_query_parameters(FilterParams)],
                    "responses": {
                        "200": _json(SearchResponse, "One page of neighbours"),
                        **_errors(400, 404, 422, 503),
                    },
                }
            },
            "/products/{product_id}/explain": {
                "get": {
                    "summary": "Where a product lands for a query, stage by stage (BM25 and kNN lists, fusion,"
                    " the learned model), and why: for any product, served or not",
                    "parameters": [path_id, *_query_parameters(RankingParams)],
                    "responses": {
                        "200": _json(PlacementResponse, "The product's placement"),
                        **_errors(400, 404, 422, 501, 503),
                    },
                }
            },
            "/healthz": {"get": {"summary": "Liveness", "responses": {"200": _json(HealthResponse, "Alive")}}},
            "/readyz": {
                "get": {
                    "summary": "Readiness: an index is served and the model is loaded",
                    "responses": {"200": _json(HealthResponse, "Ready"), "503": _json(HealthResponse, "Not ready")},
                }
            },
            "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI"}}}},
        },
        "components": {"schemas": components},
    }


@bp.get("/openapi.json")
def openapi() -> ResponseReturnValue:
    return jsonify(build_openapi())
