"""The dev server: web, inbox, worker and simulator in one process, started and stopped in order.

`run_dev` is `isograd-relay dev`. What it runs, in start order (stopped in reverse):

- an embedded Redis (`EmbeddedRedis`, data in VAR_DIR/redis) unless BROKER_URL/REDIS_URL is set,
  restarted from its data if it dies (dev stops with exit status 1 if it keeps dying);
- the database (SQLite in VAR_DIR unless DATABASE_URL is set), migrated;
- the worker: Dramatiq threads on the broker, sharing one Runtime with the web app;
- the Isograd simulator on SIMULATOR_URL's port (default 8100), unless ISOGRAD_ENV names a real
  Isograd environment;
- the scheduler (reconciler, sweeper, retention) on its lock, as `isograd-relay scheduler` runs;
- the components `extra_components` adds;
- last, the web server on --port: the relay's app at /, the development inbox at /inbox. Its
  /readyz answers only once everything above runs.

Each part is a `Component` (start returns once it is ready; stop is safe to call twice). The web
app is imported by name (`webhooks.app`): the worker package never imports the web package.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol, TextIO
from urllib.parse import urlsplit

import dramatiq
import structlog
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount

from worker.broker import make_broker
from worker.dev import DevStartError
from worker.dev.embedded_redis import EmbeddedRedis
from worker.dev.inbox import INBOX_PATH, WEBHOOK_PATH, Inbox, create_inbox_app, inbox_secrets
from worker.dev.keys import admin_token_path, ensure_admin_token
from worker.errors import RelayError
from worker.isograd.environments import IsogradEnvironment
from worker.jobs.actors import DramatiqEnqueuer, RuntimeMiddleware, declare_actors, start_worker
from worker.processes import CONFIG_ERROR_EXIT, load_settings, start_logging, stop_on_signals
from worker.runtime import Runtime
from worker.scheduler import Scheduler
from worker.scheduler.locks import make_scheduler_lock
from worker.scheduler.process import scheduler_jobs
from worker.settings import Settings

log = structlog.get_logger(__name__)

WEB_APP_MODULE = "webhooks.app"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_THREADS = 4
START_FAILED_EXIT = 1
BROKER_LOST_EXIT = 1
SERVER_START_TIMEOUT = 15.0


class Component(Protocol):
    """One part of the dev process."""

    name: str

    def start(self) -> None:
        """Return once the part is ready; raise RelayError if it cannot start."""

    def stop(self) -> None:
        """Stop and release everything; safe to call twice, and after a failed start."""


@dataclass(frozen=True, slots=True)
class DevOptions:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    threads: int = DEFAULT_THREADS
    config_path: str | None = None


ExtraComponents = Callable[[Settings, dramatiq.Broker, Runtime], Sequence[Component]]
"""Builds more components once the broker and runtime exist (e.g. the scheduler)."""


def dev_environ(environ: Mapping[str, str], options: DevOptions) -> dict[str, str]:
    """The environment `dev` reads settings from: PUBLIC_URL defaults to the dev server's own
    URL, and a missing ADMIN_TOKEN is the development one kept in VAR_DIR (created once)."""
    env = dict(environ)
    if not env.get("PUBLIC_URL", "").strip():
        env["PUBLIC_URL"] = f"http://{_reachable_host(options.host)}:{options.port}"
    if not env.get("ADMIN_TOKEN", "").strip():
        env["ADMIN_TOKEN"] = ensure_admin_token(env.get("VAR_DIR", "").strip() or "var")
    return env


def run_dev(
    environ: Mapping[str, str],
    options: DevOptions = DevOptions(),
    *,
    out: TextIO = sys.stdout,
    stop: threading.Event | None = None,
    extra_components: ExtraComponents | None = None,
) -> int:
    """Run everything until SIGINT/SIGTERM (or `stop` is set), then stop it all; an exit code."""
    started_at = time.monotonic()
    stop = stop or stop_on_signals()
    admin_token_given = bool(environ.get("ADMIN_TOKEN", "").strip())
    settings = load_settings(dev_environ(environ, options), config_path=options.config_path)
    if settings is None:
        return CONFIG_ERROR_EXIT
    start_logging(settings)
    embedded_broker = settings.broker_url is None
    lost: list[str] = []

    def broker_lost(reason: str) -> None:
        lost.append(reason)
        stop.set()

    with contextlib.ExitStack() as running:
        try:
            settings = _start_broker(settings, running, on_lost=broker_lost)
            components = _start_core(settings, options, running, extra_components)
        except RelayError as exc:
            log.error("dev_start_failed", error=str(exc))
            print(f"isograd-relay dev: cannot start: {exc}", file=sys.stderr)
            return START_FAILED_EXIT
        log.info(
            "dev_ready",
            components=[component.name for component in components],
            seconds=round(time.monotonic() - started_at, 3),
        )
        _print_banner(settings, options, components, admin_token_given, embedded_broker, out)
        stop.wait()
        log.info("dev_stopping")
    log.info("dev_stopped")
    if lost:
        # Without its broker nothing is delivered: stop rather than run on, unready, forever.
        print(f"isograd-relay dev: stopped: {lost[0]}", file=sys.stderr)
        return BROKER_LOST_EXIT
    return 0


def _start_broker(
    settings: Settings, running: contextlib.ExitStack, *, on_lost: Callable[[str], None]
) -> Settings:
    if settings.broker_url is not None:
        return settings
    redis = EmbeddedRedis(Path(settings.var_dir) / "redis", on_lost=on_lost)
    running.callback(redis.stop)
    url = redis.start()
    log.info("embedded_redis_started", pid=redis.pid, data_dir=str(redis.data_dir))
    return replace(settings, broker_url=url)


def _start_core(
    settings: Settings,
    options: DevOptions,
    running: contextlib.ExitStack,
    extra_components: ExtraComponents | None,
) -> list[Component]:
    Path(settings.var_dir).mkdir(parents=True, exist_ok=True)
    broker = make_broker(settings.broker_url)
    running.callback(broker.close)
    actors = declare_actors(broker)
    runtime = Runtime.from_settings(settings, DramatiqEnqueuer(actors))
    running.callback(runtime.close)
    runtime.store.migrate()
    broker.add_middleware(RuntimeMiddleware(runtime))

    components: list[Component] = [WorkerComponent(broker, threads=options.threads)]
    if settings.isograd_env is IsogradEnvironment.SIMULATOR:
        components.append(_simulator_component(settings))
    components.append(SchedulerComponent(settings, runtime))
    if extra_components is not None:
        components.extend(extra_components(settings, broker, runtime))
    # The web starts last (and stops first): once /readyz answers, everything else runs, so a
    # script that waits for it (the quick start, `isograd-relay demo`) finds the simulator up.
    components.append(
        ServerComponent(
            "web", _web_app(settings, runtime, broker), host=options.host, port=options.port
        )
    )
    for component in components:
        running.callback(component.stop)
        component.start()
    return components


def _web_app(settings: Settings, runtime: Runtime, broker: dramatiq.Broker) -> Starlette:
    """The relay's web app (imported by name) with the development inbox mounted at /inbox."""
    web = importlib.import_module(WEB_APP_MODULE)
    relay: Starlette = web.create_app(settings, runtime=runtime, broker_ping=_broker_ping(broker))
    inbox = Inbox(inbox_secrets(settings.subscriptions))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # A mounted app's lifespan does not run by itself: run the relay's inside ours.
        async with relay.router.lifespan_context(relay):
            yield

    return Starlette(
        routes=[Mount(INBOX_PATH, app=create_inbox_app(inbox)), Mount("", app=relay)],
        lifespan=lifespan,
    )


def _simulator_component(settings: Settings) -> ServerComponent:
    from worker.simulator.app import create_simulator_app
    from worker.simulator.state import SimulatorConfig

    address = urlsplit(settings.simulator_url)
    config = SimulatorConfig(
        client_id=settings.isograd_client_id,
        client_secret=settings.isograd_client_secret,
        public_url=settings.simulator_url.rstrip("/"),
    )
    return ServerComponent(
        "simulator",
        create_simulator_app(config),
        host=address.hostname or DEFAULT_HOST,
        port=address.port or 80,
    )


def _broker_ping(broker: dramatiq.Broker) -> Callable[[], object] | None:
    # Redis brokers expose their client; the others have no cheap ping.
    ping = getattr(getattr(broker, "client", None), "ping", None)
    return ping if callable(ping) else None


class WorkerComponent:
    """The Dramatiq worker threads (the broker needs its RuntimeMiddleware and actors)."""

    name = "worker"

    def __init__(self, broker: dramatiq.Broker, *, threads: int) -> None:
        self.broker = broker
        self.threads = threads
        self._worker: dramatiq.Worker | None = None

    def start(self) -> None:
        self._worker = start_worker(self.broker, threads=self.threads)
        log.info("worker_ready", threads=self.threads, pid=os.getpid())

    def stop(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.stop()


class SchedulerComponent:
    """The scheduler in a thread; it runs its jobs once it holds the lock (at once, unless another
    scheduler on the same broker or database holds it)."""

    name = "scheduler"

    def __init__(self, settings: Settings, runtime: Runtime) -> None:
        self.scheduler = Scheduler(make_scheduler_lock(settings), scheduler_jobs(settings, runtime))
        self._thread = threading.Thread(target=self.scheduler.run, name="dev-scheduler")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.scheduler.stop()
        if self._thread.is_alive():
            self._thread.join()


class ServerComponent:
    """A uvicorn server in its own thread and event loop; ready once it listens."""

    def __init__(self, name: str, app: Any, *, host: str, port: int) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.server = uvicorn.Server(
            uvicorn.Config(
                app,
                host=host,
                port=port,
                # Our redacting logging stays in place (worker.logs); uvicorn's banner is ours.
                log_config=None,
                log_level="warning",
                # The access log would print callback tokens (they are in the path).
                access_log=False,
                server_header=False,
            )
        )
        # Not a signal handler: uvicorn only installs those from the main thread, which is ours.
        self._thread = threading.Thread(target=self._serve, name=f"dev-{name}", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{_reachable_host(self.host)}:{self.port}"

    def _serve(self) -> None:
        try:
            self.server.run()
        except SystemExit:
            # uvicorn exits when it cannot bind; start() reports it from the caller's thread.
            log.debug("server_exited", server=self.name)

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while not self.server.started:
            if not self._thread.is_alive():
                raise DevStartError(
                    f"the {self.name} server could not listen on {self.host}:{self.port}"
                    " (is the port in use?)"
                )
            if time.monotonic() > deadline:
                raise DevStartError(f"the {self.name} server did not start in time")
            # uvicorn offers no readiness event: poll its flag (a few ms in practice).
            time.sleep(0.005)
        log.info("server_ready", server=self.name, url=self.url)

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread.is_alive():
            self._thread.join()


def _reachable_host(host: str) -> str:
    return "127.0.0.1" if host in {"0.0.0.0", "::", ""} else host  # noqa: S104 - a comparison


def _print_banner(
    settings: Settings,
    options: DevOptions,
    components: Sequence[Component],
    admin_token_given: bool,
    embedded_broker: bool,
    out: TextIO,
) -> None:
    base = f"http://{_reachable_host(options.host)}:{options.port}"
    lines = [
        "",
        "isograd-relay dev is running (Ctrl-C stops everything)",
        f"  running:      {', '.join(component.name for component in components)}",
        f"  relay:        {base}   (health {base}/healthz, readiness {base}/readyz)",
        f"  admin API:    {base}/api   (Authorization: Bearer <ADMIN_TOKEN>)",
    ]
    if admin_token_given:
        lines.append("  admin token:  from ADMIN_TOKEN")
    else:
        token_file = admin_token_path(settings.var_dir)
        lines.append(f"  admin token:  {settings.admin_token}   (kept in {token_file})")
    lines.append(f"  inbox:        {base}{INBOX_PATH}/   (receives {INBOX_PATH}{WEBHOOK_PATH})")
    if settings.isograd_env is IsogradEnvironment.SIMULATOR:
        simulator = settings.simulator_url.rstrip("/")
        lines.append(f"  simulator:    {simulator}/_simulator/   (Isograd simulator, no credits)")
    else:
        lines += [
            f"  isograd:      REAL {settings.isograd_env} API at {settings.isograd_api_url}"
            " (credentials from ISOGRAD_CLIENT_ID/SECRET; invitations spend credits)",
            f"                Isograd calls back {settings.public_url}: it must be reachable",
        ]
    broker = "embedded Redis" if embedded_broker else "BROKER_URL/REDIS_URL"
    database = settings.database_url.split(":", 1)[0]
    lines += [
        f"  broker:       {broker}   database: {database}   subscriptions: "
        f"{len(settings.subscriptions)} from {settings.config_path}",
        "",
        "Try it in another terminal:  isograd-relay demo"
        if settings.isograd_env is IsogradEnvironment.SIMULATOR
        else "`isograd-relay demo` needs the simulator (unset ISOGRAD_ENV).",
        "",
    ]
    print("\n".join(lines), file=out, flush=True)
