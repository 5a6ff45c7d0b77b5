"""Real relay processes (simulator, web, worker) for end-to-end tests and benchmarks.

`relay_stack(...)` writes a relay.toml, claims a Redis database of its own, runs `isograd-relay
migrate`, starts `isograd-relay simulator`, `web` and `worker` as subprocesses, waits until each
is ready (by polling, with a deadline) and always stops them: SIGTERM, then SIGKILL after a
deadline, whatever happened in between. Each process's stdout and stderr go to files under the
stack's directory, so nothing blocks on a full pipe and the logs can be scanned afterwards.

The benchmarks in bench/ use it too (run them from the repository root).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

import httpx2
import redis

from tests import polling

STARTUP_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
POLL_INTERVAL = 0.05
# The broker namespace `make_broker` uses by default: the relay's processes have no setting for
# another one, so each stack gets a Redis database of its own instead (see claim_redis_db).
RELAY_NAMESPACE = "isograd-relay"
_LOCK_KEY = "isograd-relay-e2e:lock"
_LOCK_SECONDS = 900
# Database 0 is where the other Redis tests work (in namespaces of their own); the e2e stacks
# take the highest free index, so two test runs on one machine never share a database.
_DB_INDEXES = range(15, 0, -1)


def relay_command() -> str:
    """The `isograd-relay` console script next to the running interpreter (the venv's)."""
    beside = Path(sys.executable).parent / "isograd-relay"
    if beside.exists():
        return str(beside)
    found = shutil.which("isograd-relay")
    if found is None:
        raise RuntimeError("isograd-relay is not installed (run `make install`)")
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def new_webhook_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def wait_until(
    check: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    watch: Sequence[RelayProcess] = (),
) -> None:
    """Poll `check` until it is true; AssertionError after `timeout` s or if a watched process
    exits (with the end of its output, to say why)."""

    def ready() -> bool:
        if check():
            return True
        for process in watch:
            if process.exited():
                raise AssertionError(
                    f"{process.name} exited ({process.returncode}) while waiting for {what}:\n"
                    + process.output()[-3000:]
                )
        return False

    polling.wait_until(ready, timeout, what, interval=POLL_INTERVAL)


class RelayProcess:
    """One subprocess whose stdout and stderr are written to `<directory>/<name>.out|err`."""

    def __init__(
        self, name: str, argv: Sequence[str], env: Mapping[str, str], directory: Path
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env)
        self.stdout_path = directory / f"{name}.out"
        self.stderr_path = directory / f"{name}.err"
        self._files: list[IO[bytes]] = []
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> RelayProcess:
        stdout = self.stdout_path.open("wb")
        stderr = self.stderr_path.open("wb")
        self._files = [stdout, stderr]
        self._process = subprocess.Popen(
            self.argv, env=self.env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr
        )
        return self

    @property
    def pid(self) -> int:
        """The running process's id (for /proc readings in benchmarks)."""
        if self._process is None:
            raise RuntimeError(f"{self.name} is not started")
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def exited(self) -> bool:
        return self._process is not None and self._process.poll() is not None

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM, then SIGKILL if still running after `timeout` s; always reaps and closes."""
        process = self._process
        try:
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout)
        finally:
            for file in self._files:
                file.close()
            self._files = []

    def kill(self) -> None:
        """SIGKILL (no chance to clean up, as in a crash) and reap; `stop` still closes files."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(STOP_TIMEOUT)

    def output(self) -> str:
        """Everything the process wrote so far, stdout then stderr."""
        parts = []
        for path in (self.stdout_path, self.stderr_path):
            if path.exists():
                parts.append(path.read_text(encoding="utf-8", errors="replace"))
        return "".join(parts)


@contextmanager
def claim_redis_db(redis_url: str) -> Iterator[str]:
    """A Redis URL on a database index nobody else holds, emptied of the relay's keys.

    The claim is a lock key (SET NX with a TTL) in that database, released on exit; the
    database's other keys are deleted at start, so a crashed earlier run leaves nothing behind.
    """
    parts = urlsplit(redis_url)
    token = uuid.uuid4().hex
    for index in _DB_INDEXES:
        url = urlunsplit(parts._replace(path=f"/{index}"))
        client = redis.Redis.from_url(url, socket_timeout=5)
        try:
            if not client.set(_LOCK_KEY, token, nx=True, ex=_LOCK_SECONDS):
                continue
            for key in list(client.scan_iter(count=1000)):
                if key != _LOCK_KEY.encode():
                    client.delete(key)
            try:
                yield url
            finally:
                if client.get(_LOCK_KEY) == token.encode():
                    client.delete(_LOCK_KEY)
            return
        finally:
            client.close()
    raise RuntimeError("every Redis database index is claimed by another e2e run")


@dataclass(frozen=True)
class WebhookTarget:
    """A webhook subscription of the stack, delivering to `<receiver>/hooks/<name>`."""

    name: str
    secrets: tuple[str, ...]
    retry_schedule: tuple[float, ...] = (1, 2, 5)

    @property
    def path(self) -> str:
        return f"/hooks/{self.name}"


def relay_toml(targets: Sequence[WebhookTarget], receiver_url: str) -> str:
    blocks = []
    for target in targets:
        blocks.append(
            "\n".join(
                [
                    "[[subscriptions]]",
                    f'name = "{target.name}"',
                    'kind = "webhook"',
                    f'url = "{receiver_url.rstrip("/")}{target.path}"',
                    f"secrets = {json.dumps(list(target.secrets))}",
                    'event_types = ["assessment.completed"]',
                    "timeout_seconds = 5",
                    f"retry_schedule = {json.dumps(list(target.retry_schedule))}",
                ]
            )
        )
    return "\n\n".join(blocks) + "\n"


@dataclass
class RelayStack:
    """Running relay processes and what a test needs to talk to them."""

    directory: Path
    simulator_url: str
    web_url: str
    database_url: str
    redis_url: str
    admin_token: str
    callback_secret: str
    targets: tuple[WebhookTarget, ...]
    processes: dict[str, RelayProcess] = field(default_factory=dict)
    # Starts one more relay process (name, then `isograd-relay` arguments), stopped on exit.
    spawn: Callable[..., RelayProcess] | None = None

    @property
    def relay_processes(self) -> list[RelayProcess]:
        """The relay's own processes (not the simulator, which plays Isograd)."""
        return [p for name, p in self.processes.items() if name != "simulator"]

    @property
    def services(self) -> list[RelayProcess]:
        """The long-running processes (every one but `migrate`), to watch while waiting."""
        return [p for name, p in self.processes.items() if name != "migrate"]

    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    def invite(self, http: httpx2.Client, **fields: Any) -> dict[str, Any]:
        """POST /api/invitations; the 201 body (invitation_id, pla_tst_id, can_id, test_url)."""
        response = http.post(
            f"{self.web_url}/api/invitations", json=fields, headers=self.admin_headers()
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    def complete(self, http: httpx2.Client, pla_tst_id: int, **grading: Any) -> dict[str, Any]:
        """Complete a test in the simulator; it sends the callback before answering."""
        response = http.post(
            f"{self.simulator_url}/_simulator/tests/{pla_tst_id}/complete",
            json=grading,
            timeout=30,
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def simulator(self, http: httpx2.Client, path: str, **kwargs: Any) -> Any:
        """A control-API call (`POST` when `json` is given, else `GET`); its decoded JSON."""
        url = f"{self.simulator_url}/_simulator{path}"
        response = http.post(url, **kwargs) if "json" in kwargs else http.get(url, **kwargs)
        assert response.status_code == 200, response.text
        return response.json()

    def logs(self) -> str:
        return "".join(process.output() for process in self.relay_processes)


def _base_env() -> dict[str, str]:
    # Only what a process needs from ours: an inherited BROKER_URL (which wins over REDIS_URL)
    # or DATABASE_URL must not redirect the stack to shared infrastructure.
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")
    return {name: os.environ[name] for name in keep if name in os.environ}


def _logged(process: RelayProcess, event: str) -> Callable[[], bool]:
    return lambda: event in process.output()


def responds(http: httpx2.Client, url: str) -> bool:
    """Whether a server answers `GET url` at all, whatever the status (polling one until it is
    up, with `wait_until`)."""
    try:
        http.get(url, timeout=2)
    except httpx2.TransportError:
        return False
    return True


def _answers_200(http: httpx2.Client, url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return http.get(url, timeout=2).status_code == 200
        except httpx2.TransportError:
            return False

    return check


@contextmanager
def relay_stack(
    directory: Path,
    *,
    redis_url: str,
    receiver_url: str,
    targets: Sequence[WebhookTarget],
    database_url: str | None = None,
    worker_threads: int = 8,
    log_level: str = "INFO",
    workers: int = 1,
    scheduler: bool = False,
    extra_env: Mapping[str, str] | None = None,
    config: str | None = None,
) -> Iterator[RelayStack]:
    """Start simulator, web and worker on free ports (SQLite in `directory` unless
    `database_url`); yield once all are ready; stop them all on exit, even after a failure.

    `workers` > 1 starts more worker processes ("worker", "worker-2", ...); `scheduler` starts
    `isograd-relay scheduler` too; `extra_env` is added to every process's environment;
    `config` is a relay.toml written instead of the one made from `targets`."""
    directory.mkdir(parents=True, exist_ok=True)
    command = relay_command()
    with ExitStack() as cleanup:
        broker_url = cleanup.enter_context(claim_redis_db(redis_url))
        simulator_port, web_port = free_port(), free_port()
        config_path = directory / "relay.toml"
        config_path.write_text(config or relay_toml(targets, receiver_url), encoding="utf-8")
        stack = RelayStack(
            directory=directory,
            simulator_url=f"http://127.0.0.1:{simulator_port}",
            web_url=f"http://127.0.0.1:{web_port}",
            database_url=database_url or f"sqlite:///{directory / 'relay.db'}",
            redis_url=broker_url,
            admin_token=secrets.token_urlsafe(24),
            callback_secret=secrets.token_urlsafe(32),
            targets=tuple(targets),
        )
        env = {
            **_base_env(),
            "ISOGRAD_ENV": "simulator",
            "SIMULATOR_URL": stack.simulator_url,
            "PUBLIC_URL": stack.web_url,
            "CALLBACK_KEYS": f"e2e:{stack.callback_secret}",
            "ADMIN_TOKEN": stack.admin_token,
            "DATABASE_URL": stack.database_url,
            "REDIS_URL": stack.redis_url,
            "RELAY_CONFIG": str(config_path),
            "VAR_DIR": str(directory / "var"),
            "LOG_FORMAT": "json",
            "LOG_LEVEL": log_level,
            "PYTHONUNBUFFERED": "1",  # so the logs can be read while the processes run
            **(extra_env or {}),
        }

        def start(name: str, *args: str) -> RelayProcess:
            process = RelayProcess(name, [command, *args], env, directory)
            cleanup.callback(process.stop)
            stack.processes[name] = process
            return process.start()

        stack.spawn = start
        simulator = start("simulator", "simulator", "--port", str(simulator_port))
        migrate = start("migrate", "migrate")
        wait_until(migrate.exited, timeout=STARTUP_TIMEOUT, what="migrate")
        assert migrate.returncode == 0, migrate.output()
        web = start("web", "web", "--port", str(web_port))
        worker = start("worker", "worker", "--threads", str(worker_threads))
        more_workers = [
            start(f"worker-{number}", "worker", "--threads", str(worker_threads))
            for number in range(2, workers + 1)
        ]
        extra = [start("scheduler", "scheduler")] if scheduler else []
        processes = (simulator, web, worker, *more_workers, *extra)
        with httpx2.Client() as http:
            wait_until(
                _answers_200(http, f"{stack.simulator_url}/_simulator/"),
                timeout=STARTUP_TIMEOUT,
                what="the simulator",
                watch=processes,
            )
            for probe in ("/healthz", "/readyz"):
                wait_until(
                    _answers_200(http, stack.web_url + probe),
                    timeout=STARTUP_TIMEOUT,
                    what=f"web {probe}",
                    watch=processes,
                )
        for each in (worker, *more_workers):
            wait_until(
                _logged(each, "worker_ready"),
                timeout=STARTUP_TIMEOUT,
                what=f"the {each.name}",
                watch=processes,
            )
        for each in extra:
            wait_until(
                _logged(each, "scheduler_ready"),
                timeout=STARTUP_TIMEOUT,
                what="the scheduler",
                watch=processes,
            )
        yield stack
