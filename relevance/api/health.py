"""GET /healthz (the process answers) and GET /readyz (it can serve searches)."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify
from flask.typing import ResponseReturnValue

from relevance.errors import RelevanceError
from relevance.services import Services

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> ResponseReturnValue:
    services: Services = current_app.extensions["relevance"]
    alias = services.settings.index_alias
    try:
        services.engine.ping()
        products = services.engine.count(alias)
        services.embedder.load()
        version = services.engine.alias_target(alias)
        if version is None and services.engine.version_metadata(alias):  # index_alias names a version
            version = alias
        mismatch = services.pipeline.index_embedding.mismatch(services.embedder, version)
    except RelevanceError as exc:
        return jsonify({"status": "not_ready", "detail": exc.detail}), 503
    if version is None:  # it answered a count: an index the layer did not build holds the name
        detail = (
            f"{alias!r} is an index, not an alias over a version this layer built: index the catalog under"
            " another index_alias, or delete that index and index the catalog"
        )
        return jsonify({"status": "not_ready", "detail": detail}), 503
    if mismatch:
        return jsonify({"status": "not_ready", "detail": mismatch}), 503
    pipeline = services.pipeline
    stats = pipeline.catalog_stats.current()
    reranker = pipeline.reranker.status(stats) if pipeline.reranker else None
    detail = None
    if reranker is not None and reranker.state == "degraded":
        detail = f"reranker model unusable, serving the fused order: {reranker.reason}"
    elif stats.problem:
        detail = f"serving without spelling correction: {stats.problem}"
    # Degraded still serves (the fused order), so it stays a 200 for load balancers.
    return jsonify(
        {
            "status": "degraded" if detail else "ready",
            "detail": detail,
            "index_version": version,
            "products": products,
            "embedding_model": services.embedder.model_name,
            "query_encoder": services.embedder.query_encoder,
            "reranker": reranker.as_dict() if reranker else None,
        }
    )
