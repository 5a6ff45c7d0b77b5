"""Attempt deadline: one total time limit for a sink's HTTP attempt (connect, send, answer).

httpx2's timeouts bound each network operation, not the request: a receiver that sends its status
line one byte at a time, each within the read timeout, holds an attempt for as long as it likes
(an audit saw 400 s with 5 s configured). `attempt_deadline(seconds)` sets a deadline for the
requests made inside it, in this thread; `DeadlineTransport` is an httpx2 transport whose sockets
give every read, write and connect at most the time left, and fail with a timeout once it is gone.
The sink then classifies it as it does any timeout.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import httpcore2
import httpx2

DEFAULT_LIMITS = httpx2.Limits()

_deadline: ContextVar[float | None] = ContextVar("sink_attempt_deadline", default=None)


@contextmanager
def attempt_deadline(seconds: float) -> Iterator[None]:
    """Requests through a DeadlineTransport inside this block end within `seconds` in total."""
    token = _deadline.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


def _time_left(timeout: float | None, expired: type[Exception]) -> float | None:
    deadline = _deadline.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise expired("the attempt's deadline has passed")
    return left if timeout is None else min(timeout, left)


class DeadlineStream(httpcore2.NetworkStream):
    """A network stream whose every operation is bounded by the attempt's time left."""

    def __init__(self, stream: httpcore2.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _time_left(timeout, httpcore2.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _time_left(timeout, httpcore2.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore2.NetworkStream:
        left = _time_left(timeout, httpcore2.ConnectTimeout)
        return DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, left))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class DeadlineBackend(httpcore2.NetworkBackend):
    """httpcore2's socket backend, with streams bounded by the attempt deadline."""

    def __init__(self, backend: httpcore2.NetworkBackend | None = None) -> None:
        self._backend = backend if backend is not None else httpcore2.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.NetworkStream:
        left = _time_left(timeout, httpcore2.ConnectTimeout)
        stream = self._backend.connect_tcp(host, port, left, local_address, socket_options)
        return DeadlineStream(stream)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.NetworkStream:
        left = _time_left(timeout, httpcore2.ConnectTimeout)
        return DeadlineStream(self._backend.connect_unix_socket(path, left, socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


class DeadlineTransport(httpx2.HTTPTransport):
    """httpx2's HTTP transport on a DeadlineBackend: same pool, TLS and exception mapping.

    httpx2.HTTPTransport takes no network backend, so its connection pool is built again with
    one, from the same public httpcore2 arguments (httpx2/_transports/default.py builds it so).
    """

    def __init__(
        self, *, limits: httpx2.Limits = DEFAULT_LIMITS, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        # One context for both pools (and, given one, for every transport of a process: each new
        # context parses the whole CA bundle again, ~1 MB each).
        context = ssl_context or httpx2.create_ssl_context()
        super().__init__(limits=limits, verify=context)
        self._pool = httpcore2.ConnectionPool(
            ssl_context=context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=DeadlineBackend(),
        )
