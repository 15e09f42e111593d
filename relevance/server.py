"""Run the API under gunicorn from the CLI, with the CLI's settings."""

from __future__ import annotations

import logging
from typing import Any

from gunicorn.app.base import BaseApplication

from relevance.config import Settings

# gunicorn answers a longer request line itself, in HTML, before Flask can say which
# field is at fault; its default (4,094 bytes) is shorter than a valid query (500
# characters, up to 9 bytes each once percent-encoded) with filters. 8,190 is its maximum.
LIMIT_REQUEST_LINE = 8190
WORKER_TIMEOUT_SECONDS = 60  # a worker loads torch, the models and the index before it answers


class _GunicornApp(BaseApplication):
    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        self.settings = settings
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        # Runs in each worker after the fork: torch and the index load per worker.
        from relevance.api import create_app, warm_up

        # force: the CLI configured WARNING before forking; a worker logs as `gunicorn wsgi:app` does.
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s", force=True)
        app = create_app(self.settings)
        warm_up(app)
        return app


def run_gunicorn(settings: Settings, *, host: str, port: int, workers: int) -> None:
    options = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "timeout": WORKER_TIMEOUT_SECONDS,
        "limit_request_line": LIMIT_REQUEST_LINE,
        "accesslog": None,
        "preload_app": False,
    }
    _GunicornApp(settings, options).run()
