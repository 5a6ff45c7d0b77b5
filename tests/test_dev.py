"""`isograd-relay dev`: the embedded Redis, the one-process server, the demo, and clean stops."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import psutil
import pytest
import redis
from structlog.testing import capture_logs

from tests.harness.processes import free_port
from tests.polling import wait_until
from worker.dev import DevStartError
from worker.dev.demo import DemoError, DemoOptions, run_demo
from worker.dev.embedded_redis import EmbeddedRedis
from worker.dev.keys import ensure_admin_token, read_admin_token
from worker.dev.server import (
    START_FAILED_EXIT,
    DevOptions,
    ExtraComponents,
    dev_environ,
    run_dev,
)

INBOX_SECRET = "whsec_zyrpscMQtWeYlVxdjm0ysnN4zbosRW11WEBZLfouaTQ="
CLI = str(Path(sys.executable).with_name("isograd-relay"))
BANNER = "isograd-relay dev is running"


def answers_ready(url: str) -> bool:
    try:
        return httpx2.get(f"{url}/readyz", timeout=1.0).status_code == 200
    except httpx2.TransportError:
        return False


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def redis_children(pid: int) -> list[psutil.Process]:
    return [
        child
        for child in psutil.Process(pid).children(recursive=True)
        if "redis-server" in child.name() and child.status() != psutil.STATUS_ZOMBIE
    ]


@dataclass(frozen=True)
class DevSite:
    """A directory `dev` runs in: its relay.toml (inbox on `port`), environment and URLs."""

    root: Path
    port: int
    simulator_port: int
    environ: dict[str, str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def simulator_url(self) -> str:
        return f"http://127.0.0.1:{self.simulator_port}"

    @property
    def var_dir(self) -> Path:
        return self.root / "var"


@pytest.fixture
def site(tmp_path: Path) -> DevSite:
    port, simulator_port = free_port(), free_port()
    config = tmp_path / "relay.toml"
    config.write_text(
        "[[subscriptions]]\n"
        'name = "dev-inbox"\n'
        'kind = "webhook"\n'
        f'url = "http://127.0.0.1:{port}/inbox/webhook"\n'
        f'secrets = ["{INBOX_SECRET}"]\n'
    )
    environ = {
        "VAR_DIR": str(tmp_path / "var"),
        "RELAY_CONFIG": str(config),
        "SIMULATOR_URL": f"http://127.0.0.1:{simulator_port}",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "WARNING",
    }
    return DevSite(tmp_path, port, simulator_port, environ)


@dataclass
class RunningDev:
    site: DevSite
    out: io.StringIO
    stop: threading.Event
    thread: threading.Thread
    result: list[int]


def launch_dev(
    site: DevSite,
    environ: dict[str, str] | None = None,
    extra_components: ExtraComponents | None = None,
) -> RunningDev:
    """`run_dev` started in a thread; returns at once (start_dev waits until it is up)."""
    out, stop, result = io.StringIO(), threading.Event(), []
    options = DevOptions(port=site.port, threads=2)

    def run() -> None:
        code = run_dev(
            environ or site.environ, options, out=out, stop=stop, extra_components=extra_components
        )
        result.append(code)

    thread = threading.Thread(target=run, name="test-dev")
    thread.start()
    return RunningDev(site, out, stop, thread, result)


def start_dev(site: DevSite, environ: dict[str, str] | None = None) -> RunningDev:
    running = launch_dev(site, environ)
    # The web answers /readyz as soon as it listens, before the simulator and the scheduler have
    # started; dev is up once it prints its banner, after every component.
    wait_until(
        lambda: (
            (BANNER in running.out.getvalue() and answers_ready(site.url))
            or not running.thread.is_alive()
        ),
        what="dev to print its banner and be ready",
    )
    return running


def stop_dev(running: RunningDev) -> int:
    running.stop.set()
    running.thread.join(30)
    assert not running.thread.is_alive()
    return running.result[0]


@pytest.fixture
def dev(site: DevSite, restore_logging: None) -> Iterator[RunningDev]:
    running = start_dev(site)
    yield running
    if running.thread.is_alive():
        stop_dev(running)


# -- the embedded Redis ---------------------------------------------------------------------


def test_the_embedded_redis_answers_on_its_unix_socket(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "redis") as server:
        client = redis.Redis.from_url(server.url)
        try:
            pong = client.ping()
        finally:
            client.close()

    assert pong is True


def test_the_embedded_redis_keeps_its_data_across_a_restart(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "redis") as first:
        client = redis.Redis.from_url(first.url)
        client.set("queued", "job-1")
        client.close()

    with EmbeddedRedis(tmp_path / "redis") as second:
        client = redis.Redis.from_url(second.url)
        kept = client.get("queued")
        client.close()

    assert kept == b"job-1"


def test_the_embedded_redis_runs_with_an_append_only_file_and_no_eviction(
    tmp_path: Path,
) -> None:
    with EmbeddedRedis(tmp_path / "redis") as server:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        config = {**client.config_get("appendonly"), **client.config_get("maxmemory-policy")}
        client.close()

    assert config == {"appendonly": "yes", "maxmemory-policy": "noeviction"}


def test_stopping_the_embedded_redis_ends_its_process(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis")
    server.start()
    pid = server.pid

    server.stop()

    assert pid is not None
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_an_embedded_redis_that_cannot_start_is_reported(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis", executable="/bin/false")

    with pytest.raises(DevStartError, match="exited at start"):
        server.start()


def kill_server(server: EmbeddedRedis) -> int:
    """SIGKILL the server as the OOM killer would; returns the pid it had."""
    pid = server.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    return pid


def answers_ping(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_timeout=1.0)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def test_a_killed_embedded_redis_is_restarted_from_its_data_on_the_same_socket(
    tmp_path: Path,
) -> None:
    with EmbeddedRedis(tmp_path / "redis") as server:
        client = redis.Redis.from_url(server.url)
        client.set("queued", "job-1")
        killed = kill_server(server)

        wait_until(lambda: server.pid != killed and answers_ping(server.url), what="a restart")
        kept = client.get("queued")  # the same client: the socket path did not change
        client.close()

    assert kept == b"job-1"
    assert server.restarts == 1


def test_an_embedded_redis_that_keeps_dying_is_given_up_with_the_reason(tmp_path: Path) -> None:
    lost: list[str] = []
    with EmbeddedRedis(tmp_path / "redis", on_lost=lost.append, max_restarts=1) as server:
        first = kill_server(server)
        # `restarts` counts a restart once the supervisor saw the new server answer: killing it
        # before then would be a death at start, a different outcome.
        wait_until(
            lambda: server.restarts == 1 and server.pid != first and answers_ping(server.url),
            what="a restart",
        )
        kill_server(server)

        wait_until(lambda: lost, what="the supervisor to give up")

    assert lost == [
        f"the embedded Redis died 2 times within 60 s (last exit code -9);"
        f" see {tmp_path / 'redis' / 'redis.log'}"
    ]


def test_an_embedded_redis_whose_data_cannot_load_is_given_up(tmp_path: Path) -> None:
    lost: list[str] = []
    with EmbeddedRedis(tmp_path / "redis", on_lost=lost.append) as server:
        (tmp_path / "redis" / "appendonly.aof").write_bytes(b"not an append only file\n")
        kill_server(server)

        wait_until(lambda: lost, what="the supervisor to give up")

    assert lost[0].startswith("the embedded Redis could not be restarted: ")
    assert "exited at start" in lost[0]


def test_stopping_the_embedded_redis_does_not_restart_it(tmp_path: Path) -> None:
    lost: list[str] = []
    server = EmbeddedRedis(tmp_path / "redis", on_lost=lost.append)
    server.start()

    server.stop()

    assert server.pid is None
    assert server.restarts == 0
    assert lost == []


# -- the environment dev reads --------------------------------------------------------------


def test_dev_defaults_the_public_url_to_its_own_address(tmp_path: Path) -> None:
    environ = dev_environ({"VAR_DIR": str(tmp_path)}, DevOptions(host="0.0.0.0", port=8123))  # noqa: S104

    assert environ["PUBLIC_URL"] == "http://127.0.0.1:8123"


def test_dev_keeps_a_public_url_that_is_set(tmp_path: Path) -> None:
    given = {"VAR_DIR": str(tmp_path), "PUBLIC_URL": "https://relay.example.com"}

    environ = dev_environ(given, DevOptions())

    assert environ["PUBLIC_URL"] == "https://relay.example.com"


def test_dev_makes_an_admin_token_once_and_keeps_it_in_var(tmp_path: Path) -> None:
    first = dev_environ({"VAR_DIR": str(tmp_path)}, DevOptions())["ADMIN_TOKEN"]
    second = dev_environ({"VAR_DIR": str(tmp_path)}, DevOptions())["ADMIN_TOKEN"]

    assert first == second == read_admin_token(tmp_path)
    assert len(first) >= 16
    assert (tmp_path / "admin.token").stat().st_mode & 0o777 == 0o600


def test_dev_uses_the_admin_token_that_is_set(tmp_path: Path) -> None:
    given = {"VAR_DIR": str(tmp_path), "ADMIN_TOKEN": "a-token-of-the-operator"}

    environ = dev_environ(given, DevOptions())

    assert environ["ADMIN_TOKEN"] == "a-token-of-the-operator"
    assert read_admin_token(tmp_path) is None


# -- the dev server -------------------------------------------------------------------------


def test_dev_is_ready_with_database_and_broker(dev: RunningDev) -> None:
    body = httpx2.get(f"{dev.site.url}/readyz").json()

    assert body == {"status": "ok", "checks": {"database": "ok", "broker": "ok"}}


def test_the_demo_ends_with_the_verified_event_in_the_inbox(dev: RunningDev) -> None:
    token = read_admin_token(dev.site.var_dir)
    assert token is not None
    options = DemoOptions(
        admin_token=token, relay_url=dev.site.url, simulator_url=dev.site.simulator_url
    )

    payload = run_demo(options, out=io.StringIO())

    assert payload["type"] == "assessment.completed"
    assert payload["data"]["grade"]["text"] == "720/1000"
    assert payload["data"]["candidate"]["first_name"] == "Ada"


def test_dev_prints_its_urls_token_and_the_demo_command(dev: RunningDev) -> None:
    printed = dev.out.getvalue()

    assert f"{dev.site.url}/inbox/" in printed
    assert f"{dev.site.url}/api" in printed
    assert f"{dev.site.simulator_url}/_simulator/" in printed
    assert str(read_admin_token(dev.site.var_dir)) in printed
    assert "isograd-relay demo" in printed


def test_dev_runs_web_worker_simulator_and_scheduler(dev: RunningDev) -> None:
    assert "running:      worker, simulator, scheduler, web" in dev.out.getvalue()


class HeldComponent:
    """A component whose start waits for `release`: dev is caught halfway through starting."""

    name = "held"

    def __init__(self) -> None:
        self.starting = threading.Event()
        self.release = threading.Event()

    def start(self) -> None:
        self.starting.set()
        self.release.wait(30)

    def stop(self) -> None:
        self.release.set()


def test_the_web_starts_last_so_a_ready_relay_has_its_simulator_and_scheduler_running(
    site: DevSite, restore_logging: None
) -> None:
    held = HeldComponent()
    running = launch_dev(site, extra_components=lambda *_: [held])
    try:
        assert held.starting.wait(30)
        simulator_while_held, web_while_held = listening(site.simulator_port), listening(site.port)
        held.release.set()
        wait_until(lambda: answers_ready(site.url), what="dev to be ready")
    finally:
        held.release.set()
        code = stop_dev(running)

    assert simulator_while_held
    assert not web_while_held
    assert "running:      worker, simulator, scheduler, held, web" in running.out.getvalue()
    assert code == 0


def test_dev_migrates_its_sqlite_database_under_var(dev: RunningDev) -> None:
    assert (dev.site.var_dir / "relay.db").is_file()


def test_dev_runs_an_embedded_redis_with_its_data_under_var(dev: RunningDev) -> None:
    assert len(redis_children(os.getpid())) == 1
    assert (dev.site.var_dir / "redis" / "appendonly.aof").is_file()


def test_stopping_dev_returns_zero_and_leaves_no_redis_running(dev: RunningDev) -> None:
    code = stop_dev(dev)

    assert code == 0
    assert redis_children(os.getpid()) == []


def test_dev_restarts_its_killed_embedded_redis_logs_it_and_is_ready_again(
    dev: RunningDev,
) -> None:
    [embedded] = redis_children(os.getpid())

    with capture_logs() as logged:
        embedded.kill()
        wait_until(
            lambda: (
                [child.pid for child in redis_children(os.getpid())] not in ([], [embedded.pid])
            ),
            what="a new embedded Redis",
        )
        wait_until(lambda: answers_ready(dev.site.url), what="dev to be ready again")

    events = [entry["event"] for entry in logged if entry["event"].startswith("embedded_redis")]
    assert events == ["embedded_redis_died", "embedded_redis_restarted"]
    assert dev.thread.is_alive()


def test_dev_whose_embedded_redis_cannot_come_back_stops_with_exit_status_1(
    dev: RunningDev, capsys: pytest.CaptureFixture[str]
) -> None:
    [embedded] = redis_children(os.getpid())
    (dev.site.var_dir / "redis" / "appendonly.aof").write_bytes(b"not an append only file\n")

    embedded.kill()
    dev.thread.join(30)

    assert not dev.thread.is_alive()
    assert dev.result == [1]
    assert "isograd-relay dev: stopped: the embedded Redis could not be restarted" in (
        capsys.readouterr().err
    )
    assert redis_children(os.getpid()) == []


def test_dev_with_redis_url_uses_that_redis_and_starts_none(
    site: DevSite, redis_url: str, restore_logging: None
) -> None:
    running = start_dev(site, {**site.environ, "REDIS_URL": redis_url})
    try:
        embedded = redis_children(os.getpid())
        ready = answers_ready(site.url)
    finally:
        code = stop_dev(running)

    assert ready
    assert embedded == []
    assert "BROKER_URL/REDIS_URL" in running.out.getvalue()
    assert code == 0


def test_dev_with_real_isograd_credentials_uses_them_says_so_and_runs_no_simulator(
    site: DevSite, restore_logging: None
) -> None:
    real = {
        "ISOGRAD_ENV": "testing",
        "ISOGRAD_CLIENT_ID": "our-client",
        "ISOGRAD_CLIENT_SECRET": "our-client-secret",
        "CALLBACK_KEYS": "k1:" + "s" * 32,
    }
    running = start_dev(site, {**site.environ, **real})
    try:
        simulator_listens = listening(site.simulator_port)
    finally:
        stop_dev(running)

    printed = running.out.getvalue()
    assert "REAL testing API" in printed
    assert "running:      worker, scheduler, web" in printed
    assert not simulator_listens


def test_dev_that_cannot_listen_fails_and_leaves_no_redis_running(
    site: DevSite, restore_logging: None
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", site.port))
        taken.listen()

        code = run_dev(site.environ, DevOptions(port=site.port), out=io.StringIO())

    assert code == START_FAILED_EXIT
    assert redis_children(os.getpid()) == []


def test_dev_with_an_invalid_configuration_reports_it_and_starts_nothing(
    site: DevSite, restore_logging: None
) -> None:
    environ = {**site.environ, "ISOGRAD_ENV": "production"}

    code = run_dev(environ, DevOptions(port=site.port), out=io.StringIO())

    assert code != 0
    assert redis_children(os.getpid()) == []


def test_the_demo_without_a_running_dev_says_to_start_it(site: DevSite) -> None:
    token = ensure_admin_token(site.var_dir)
    options = DemoOptions(admin_token=token, relay_url=site.url, simulator_url=site.url)

    with pytest.raises(DemoError, match="start `isograd-relay dev`"):
        run_demo(options, out=io.StringIO())


def test_the_demo_with_a_wrong_token_says_where_the_token_is(dev: RunningDev) -> None:
    options = DemoOptions(
        admin_token="not-the-dev-token", relay_url=dev.site.url, simulator_url=dev.site.url
    )

    with pytest.raises(DemoError, match=r"admin\.token"):
        run_demo(options, out=io.StringIO())


# -- the command, as a process --------------------------------------------------------------


def start_dev_process(site: DevSite) -> subprocess.Popen[bytes]:
    log = (site.root / "dev.log").open("wb")
    try:
        process = subprocess.Popen(
            [CLI, "dev", "--port", str(site.port)],
            cwd=site.root,
            env={"PATH": os.environ.get("PATH", ""), **site.environ},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    finally:
        log.close()
    wait_until(
        lambda: (
            (BANNER in (site.root / "dev.log").read_text() and answers_ready(site.url))
            or process.poll() is not None
        ),
        what="the dev process to print its banner and be ready",
    )
    assert process.poll() is None, (site.root / "dev.log").read_text()
    return process


@pytest.mark.e2e
@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_the_dev_process_cleanly_with_nothing_left_running(
    site: DevSite, stop_signal: signal.Signals
) -> None:
    process = start_dev_process(site)
    [embedded] = redis_children(process.pid)

    process.send_signal(stop_signal)
    code = process.wait(30)

    assert code == 0, (site.root / "dev.log").read_text()
    wait_until(lambda: not embedded.is_running(), timeout=5, what="redis-server to end")


@pytest.mark.e2e
@pytest.mark.skipif(sys.platform != "linux", reason="uses Linux's parent-death signal")
def test_a_killed_dev_process_takes_its_embedded_redis_with_it(site: DevSite) -> None:
    process = start_dev_process(site)
    [embedded] = redis_children(process.pid)

    process.kill()
    process.wait(10)

    wait_until(lambda: not embedded.is_running(), timeout=10, what="redis-server to end")
