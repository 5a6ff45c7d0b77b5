"""`isograd-relay version | check-config | migrate | web | worker | scheduler`: the processes."""

from __future__ import annotations

import argparse
import os
from typing import TypeAlias

from worker import __version__
from worker.jobs.process import run_worker
from worker.processes import (
    CONFIG_ERROR_EXIT,
    check_config,
    load_settings,
    run_migrate,
    start_logging,
)
from worker.settings import Settings

Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def settings_from(args: argparse.Namespace) -> Settings | None:
    """The settings for a command (its --config), or None once every problem is printed."""
    return load_settings(os.environ, config_path=args.config)


def _cmd_version(args: argparse.Namespace) -> int:
    print(f"isograd-relay {__version__}")
    return 0


def _cmd_check_config(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    if settings is None:
        return CONFIG_ERROR_EXIT
    check_config(settings)
    return 0


def _cmd_migrate(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    if settings is None:
        return CONFIG_ERROR_EXIT
    start_logging(settings)
    run_migrate(settings)
    return 0


def _cmd_web(args: argparse.Namespace) -> int:
    # Validate first, so a bad configuration is reported once, before uvicorn starts.
    settings = settings_from(args)
    if settings is None:
        return CONFIG_ERROR_EXIT
    if args.config:
        os.environ["RELAY_CONFIG"] = args.config
    import signal

    import uvicorn

    # uvicorn re-raises the SIGINT/SIGTERM it stopped on once it has shut down gracefully; with
    # the default handlers underneath, that ends the process as killed (-15, or a traceback).
    # No-op handlers underneath make a graceful stop exit 0, as process managers expect.
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, lambda signum, frame: None)
    # By import string: the worker package never imports the web package (ARCHITECTURE.md).
    # log_config=None keeps our redacting log configuration (worker.logs).
    uvicorn.run(
        "webhooks.asgi:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        log_config=None,
        # The access log would print callback tokens (their path); webhooks.callbacks writes one
        # canonical line per callback instead.
        access_log=False,
        proxy_headers=True,
        server_header=False,
    )
    return 0


def _cmd_worker(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    if settings is None:
        return CONFIG_ERROR_EXIT
    start_logging(settings)
    run_worker(settings, threads=args.threads, freeze=True)
    return 0


def _cmd_scheduler(args: argparse.Namespace) -> int:
    from worker.scheduler.process import run_scheduler

    settings = settings_from(args)
    if settings is None:
        return CONFIG_ERROR_EXIT
    start_logging(settings)
    run_scheduler(settings, lock_ttl=args.lock_ttl)
    return 0


def add_commands(commands: Commands, config: argparse.ArgumentParser) -> None:
    """Register this group's subcommands; `config` is the parent parser adding --config."""
    version = commands.add_parser("version", help="print the version")
    version.set_defaults(handler=_cmd_version)

    check = commands.add_parser(
        "check-config", parents=[config], help="validate the configuration and list every problem"
    )
    check.set_defaults(handler=_cmd_check_config)

    migrate = commands.add_parser(
        "migrate", parents=[config], help="apply database migrations (safe to run twice)"
    )
    migrate.set_defaults(handler=_cmd_migrate)

    web = commands.add_parser(
        "web", parents=[config], help="run the HTTP edge (callbacks, admin API)"
    )
    web.add_argument("--host", default="127.0.0.1")
    web.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    web.set_defaults(handler=_cmd_web)

    worker = commands.add_parser(
        "worker", parents=[config], help="run the job worker (completions, deliveries)"
    )
    worker.add_argument("--threads", type=int, default=8, help="worker threads (default 8)")
    worker.set_defaults(handler=_cmd_worker)

    scheduler = commands.add_parser(
        "scheduler",
        parents=[config],
        help="run the periodic jobs: reconciler, sweeper (one active instance)",
    )
    scheduler.add_argument(
        "--lock-ttl",
        type=float,
        default=30.0,
        help="seconds a dead scheduler keeps the lock before another takes over (default 30)",
    )
    scheduler.set_defaults(handler=_cmd_scheduler)
