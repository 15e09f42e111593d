"""GET /search."""

from __future__ import annotations

from flask import Blueprint, current_app, g, jsonify, request
from flask.typing import ResponseReturnValue

from relevance.api.params import parse_params
from relevance.api.schemas import SearchParams, result_out
from relevance.api.timing import server_timing
from relevance.explain import learned_explanations
from relevance.services import Services

bp = Blueprint("search", __name__)


@bp.get("/search")
def search() -> ResponseReturnValue:
    services: Services = current_app.extensions["relevance"]
    params = parse_params(SearchParams, request.args)
    fusion = params.fusion_options(services.pipeline.default_fusion)
    log_features = services.feature_log.wanted(params.log_features)
    result = services.pipeline.search(
        params.q,
        params.filters(),
        page=params.page,
        size=params.size,
        mode=params.mode,
        fusion=fusion,
        rerank=params.rerank,
        features=log_features,
    )
    if log_features and result.rerank is not None:
        services.feature_log.write(g.request_id, params.q, result.rerank)
    first_rank = (params.page - 1) * params.size + 1
    learned = {}
    if params.explain:
        page_ids = [item.product.product_id for item in result.results]
        learned = learned_explanations(services.pipeline, result.rerank, page_ids)
    body = {
        "query": params.q,
        "mode": params.mode,
        "fusion": fusion.model_dump() if params.mode == "hybrid" else None,
        "page": params.page,
        "size": params.size,
        "total": result.total,
        "results": [
            result_out(item, first_rank + i, params.explain, learned.get(item.product.product_id))
            for i, item in enumerate(result.results)
        ],
        "reranked_by": result.rerank.model_version if result.rerank else None,
        "corrections": result.corrections,
    }
    if params.explain:
        body["timings_ms"] = result.timings.stages_ms
    response = jsonify(body)
    response.headers["Server-Timing"] = server_timing(result.timings)
    return response
