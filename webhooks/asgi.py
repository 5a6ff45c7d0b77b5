"""The web process's ASGI entry point, started by import string (`isograd-relay web`)."""

from __future__ import annotations

import os

from starlette.applications import Starlette

from webhooks.app import create_app
from worker.errors import ConfigurationError
from worker.processes import freeze_heap, load_settings, start_logging


def app_from_env() -> Starlette:
    """Build the web app from the process environment (uvicorn factory)."""
    settings = load_settings(os.environ)
    if settings is None:
        raise ConfigurationError("invalid configuration (problems printed above)")
    start_logging(settings)
    app = create_app(settings)
    # Under a burst, full collections rescanning every module and the app were the callbacks'
    # p99: ~70 ms with 32 concurrent callbacks, ~19 ms with the collector off, ~26 ms frozen
    # (bench/callback_edge.py).
    freeze_heap()
    return app
