"""The Flask application factory."""

from __future__ import annotations

import gc
import logging
import time
import uuid

from flask import Flask, Response, g, request

from relevance.config import Settings, load_settings
from relevance.filters import SearchFilters
from relevance.services import Services

log = logging.getLogger("relevance.api")


def create_app(settings: Settings | None = None, *, services: Services | None = None) -> Flask:
    """Build the API. Nothing heavy happens here: the model loads on warm-up or first use."""
    from relevance.api import errors, health, openapi, products, search

    app = Flask(__name__)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    services = services or Services.from_settings(settings or load_settings())
    app.extensions["relevance"] = services
    errors.init_app(app)
    for blueprint in (search.bp, products.bp, health.bp, openapi.bp):
        app.register_blueprint(blueprint)

    @app.before_request
    def _start_timer() -> None:
        g.started = time.perf_counter()
        g.request_id = request.headers.get("X-Request-ID") or uuid.uuid4().hex

    @app.after_request
    def _log_request(response: Response) -> Response:
        elapsed_ms = (time.perf_counter() - g.get("started", time.perf_counter())) * 1000
        response.headers["X-Request-ID"] = g.get("request_id", "")
        log.info(
            "%s %s %d %.1fms id=%s",
            request.method,
            request.full_path,
            response.status_code,
            elapsed_ms,
            g.get("request_id"),
        )
        return response

    return app


def warm_up(app: Flask) -> None:
    """Load the model and the index now, so the first request is not slow."""
    services: Services = app.extensions["relevance"]
    services.embedder.load()
    services.embedder.encode_query("warm up")
    try:
        services.engine.count(services.settings.index_alias)
        services.pipeline.search("warm up", SearchFilters())  # reranker model and catalog statistics too
        services.pipeline.catalog_stats.current().speller()
    except Exception as exc:  # not ready yet is fine: /readyz reports it
        log.warning("index not loaded at start: %s", exc)
    settle_heap()


def settle_heap() -> None:
    """Keep the garbage collector off what a warmed-up worker has loaded.

    The index snapshot, text tables, vocabularies and models (~800,000 objects on the Home
    Depot index) live as long as the worker. Python's full collections rescan every
    tracked object: 20-365 ms each over this heap, paid by whichever request triggers one.
    Frozen, they are left out; they are still freed by reference counting (a swapped-out
    snapshot holds no cycles).
    """
    gc.freeze()
