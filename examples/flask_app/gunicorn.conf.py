"""gunicorn settings for digits-api (the model loads once per worker at start-up)."""

import os

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = 2
timeout = 30
graceful_timeout = 10
accesslog = "-"
errorlog = "-"
