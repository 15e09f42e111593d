"""GET /search."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from relevance.api.params import parse_params
from relevance.api.schemas import SearchParams, result_out
from relevance.api.timing import server_timing
from relevance.services import Services

bp = Blueprint("search", __name__)


@bp.get("/search")
def search() -> ResponseReturnValue:
    services: Services = current_app.extensions["relevance"]
    params = parse_params(SearchParams, request.args)
    fusion = params.fusion_options(services.pipeline.default_fusion)
    result = services.pipeline.search(
        params.q, params.filters(), page=params.page, size=params.size, mode=params.mode, fusion=fusion
    )
    first_rank = (params.page - 1) * params.size + 1
    body = {
        "query": params.q,
        "mode": params.mode,
        "fusion": fusion.model_dump() if params.mode == "hybrid" else None,
        "page": params.page,
        "size": params.size,
        "total": result.total,
        "results": [result_out(item, first_rank + i, params.explain) for i, item in enumerate(result.results)],
    }
    if params.explain:
        body["timings_ms"] = result.timings.stages_ms
    response = jsonify(body)
    response.headers["Server-Timing"] = server_timing(result.timings)
    return response
