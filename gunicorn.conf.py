"""Settings `gunicorn wsgi:app` reads from the working directory; `relevance serve` uses the same."""

from relevance.server import LIMIT_REQUEST_LINE, WORKER_TIMEOUT_SECONDS

limit_request_line = LIMIT_REQUEST_LINE
timeout = WORKER_TIMEOUT_SECONDS
