"""One JSON error shape for every failure: ``{"error", "detail", "field"}``."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from relevance.errors import RelevanceError

log = logging.getLogger(__name__)


def error_response(kind: str, detail: str, status: int, field: str | None = None) -> Response:
    response = jsonify({"error": kind, "detail": detail, "field": field})
    response.status_code = status
    return response


def init_app(app: Flask) -> None:
    @app.errorhandler(RelevanceError)
    def _relevance_error(exc: RelevanceError) -> ResponseReturnValue:
        if exc.status >= 500:
            log.warning("%s: %s", exc.kind, exc.detail)
        return error_response(exc.kind, exc.detail, exc.status, exc.field)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> ResponseReturnValue:
        kind = (exc.name or "error").lower().replace(" ", "_")
        response = error_response(kind, exc.description or kind, exc.code or 500)
        # Keep the exception's headers beyond its body's type: a 405's Allow (RFC 9110 requires it).
        response.headers.extend((name, value) for name, value in exc.get_headers() if name.lower() != "content-type")
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> ResponseReturnValue:
        # The trace goes to the log, never to the client.
        log.exception("unhandled error")
        return error_response("internal_error", "unexpected server error; the log has the details", 500)
