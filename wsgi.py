"""gunicorn entry point: ``gunicorn wsgi:app``. Settings come from RELEVANCE_* / RELEVANCE_CONFIG_FILE."""

import logging

from relevance.api import create_app, warm_up

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
app = create_app()
warm_up(app)
