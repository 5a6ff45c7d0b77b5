"""Process start and stop, shared by every process: settings, logging, migrations, signals."""

from __future__ import annotations

import gc
import signal
import sys
import threading
from collections.abc import Mapping
from typing import TextIO

import structlog

from worker.errors import ConfigurationError
from worker.logs import configure_logging
from worker.settings import Settings
from worker.storage import migrate

log = structlog.get_logger(__name__)

CONFIG_ERROR_EXIT = 2


def load_settings(
    environ: Mapping[str, str], *, config_path: str | None = None, out: TextIO | None = None
) -> Settings | None:
    """Settings from the environment, or None after printing every problem to `out` (stderr)."""
    out = out or sys.stderr
    try:
        return Settings.from_env(environ, config_path=config_path)
    except ConfigurationError as exc:
        print(f"isograd-relay: invalid configuration ({len(exc.problems)} problem(s)):", file=out)
        for problem in exc.problems:
            print(f"  - {problem}", file=out)
        return None


def start_logging(settings: Settings) -> None:
    """Configure logging for a process and report the settings' notices once."""
    configure_logging(
        json=settings.log_json, level=settings.log_level, secrets=settings.redacted_secrets()
    )
    for notice in settings.notices:
        log.warning("configuration_notice", notice=notice)


def check_config(settings: Settings, *, out: TextIO | None = None) -> None:
    """Print a summary of valid settings to `out` (stdout), never a secret."""
    out = out or sys.stdout
    print("configuration OK", file=out)
    print(f"  isograd:       {settings.isograd_env} ({settings.isograd_api_url})", file=out)
    print(f"  public URL:    {settings.public_url}", file=out)
    print(f"  callback keys: {', '.join(key.kid for key in settings.callback_keys)}", file=out)
    print(
        f"  admin API:     {'enabled' if settings.admin_token else 'closed (no ADMIN_TOKEN)'}",
        file=out,
    )
    print(f"  database:      {url_scheme(settings.database_url)}", file=out)
    broker = url_scheme(settings.broker_url) if settings.broker_url else "embedded"
    print(f"  broker:        {broker}", file=out)
    print(f"  subscriptions: {len(settings.subscriptions)} from {settings.config_path}", file=out)
    for subscription in settings.subscriptions:
        state = "enabled" if subscription.enabled else "disabled"
        print(f"    - {subscription.name} ({subscription.kind}, {state})", file=out)
    for notice in settings.notices:
        print(f"  notice: {notice}", file=out)


def run_migrate(settings: Settings) -> None:
    migrate(settings.database_url)
    log.info("migrations_applied", database=url_scheme(settings.database_url))


def freeze_heap() -> None:
    """Move everything alive now (modules, settings, the app or runtime) out of the collector's
    reach: it lives as long as the process, and full collections otherwise rescan all of it.

    Called by the long-running processes once they are built
    (https://docs.python.org/3/library/gc.html#gc.freeze). Under a burst every full collection
    otherwise walks all the modules and the SQLAlchemy and httpx2 state again, holding the GIL.
    """
    gc.collect()
    gc.freeze()


def stop_on_signals() -> threading.Event:
    """An event set by SIGINT or SIGTERM (call from the main thread)."""
    stop = threading.Event()

    def handle(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
    return stop


def url_scheme(url: str | None) -> str:
    """Only the scheme of a service URL, for logs: URLs may carry passwords."""
    return (url or "").split(":", 1)[0] or "none"
