"""GET /products/<id>, /products/<id>/similar and /products/<id>/explain."""

from __future__ import annotations

from dataclasses import asdict

from flask import Blueprint, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from relevance.api.params import parse_params
from relevance.api.schemas import FilterParams, NoParams, RankingParams, result_out
from relevance.api.timing import server_timing
from relevance.errors import NotFoundError
from relevance.explain import explain_placement
from relevance.services import Services

bp = Blueprint("products", __name__, url_prefix="/products")


def _services() -> Services:
    return current_app.extensions["relevance"]


@bp.get("/<product_id>")
def get_product(product_id: str) -> ResponseReturnValue:
    parse_params(NoParams, request.args)  # an unknown parameter is a 400 here as on every endpoint
    services = _services()
    found = services.engine.get(services.settings.index_alias, [product_id])
    if product_id not in found:
        raise NotFoundError(f"product {product_id!r} is not in the index", field="product_id")
    return jsonify(found[product_id].model_dump())


@bp.get("/<product_id>/similar")
def similar_products(product_id: str) -> ResponseReturnValue:
    params = parse_params(FilterParams, request.args)
    result = _services().pipeline.similar(product_id, params.filters(), page=params.page, size=params.size)
    first_rank = (params.page - 1) * params.size + 1
    response = jsonify(
        {
            "query": None,
            "product_id": product_id,
            "mode": "vector",
            "page": params.page,
            "size": params.size,
            "total": result.total,
            "results": [result_out(item, first_rank + i, explain=False) for i, item in enumerate(result.results)],
        }
    )
    response.headers["Server-Timing"] = server_timing(result.timings)
    return response


@bp.get("/<product_id>/explain")
def explain_product(product_id: str) -> ResponseReturnValue:
    """Where the product lands for ``q`` under these ranking settings, stage by stage, and why."""
    params = parse_params(RankingParams, request.args)
    pipeline = _services().pipeline
    fusion = params.fusion_options(pipeline.default_fusion)
    placement = explain_placement(
        pipeline, params.q, product_id, params.filters(), mode=params.mode, fusion=fusion, rerank=params.rerank
    )
    return jsonify(
        {
            "query": params.q,
            "product_id": product_id,
            "mode": params.mode,
            "fusion": fusion.model_dump() if params.mode == "hybrid" else None,
            "summary": placement.summary(),
            "passes_filters": placement.passes_filters,
            "rank": placement.rank,
            "total": placement.window,
            "fused_rank": placement.fused_rank,
            "fused_score": placement.fused_score,
            "lexical": asdict(placement.lexical) if placement.lexical else None,
            "vector": asdict(placement.vector) if placement.vector else None,
            "reranked_by": placement.reranked_by,
            "learned": placement.learned,
            "corrections": placement.corrections,
            "product": placement.product.model_dump(),
        }
    )
