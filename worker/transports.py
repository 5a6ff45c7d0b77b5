"""Per-thread connection pools: an httpx2 transport that gives each thread a pool of its own.

httpcore2's ConnectionPool walks every connection it holds twice per request (when the request
is queued and when it ends: `_assign_requests_to_connections`) and asks each idle one whether
its socket became readable (`has_expired`, one poll() system call each). A worker that has many
requests in flight keeps that many connections, so every request pays for all of them: on this
project's 2-core machine a POST cost 459 us of client CPU with 2 idle connections in one shared
pool and 516 us with 32, against 444 us with a pool per thread (`bench/connection_pool.py`;
bench/README.md has the runs).

A thread sends one request at a time, so a pool per thread holds about one connection and each
request checks only that one. The connections are as many as before (one per thread that talks
to the host), each reused by its thread while kept alive. The threads' transports share one TLS
context: each new context parses the whole CA bundle again (~1 MB; three per thread had made a
worker 166 MB).
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable
from types import TracebackType

import httpx2


class ThreadTransports(httpx2.BaseTransport):
    """Sends each request through the calling thread's own transport, made on the thread's first
    request by `make`, which is handed the TLS context all of them share (created once, on the
    first request); `close()` closes them all. Thread-safe."""

    def __init__(self, make: Callable[[ssl.SSLContext], httpx2.BaseTransport]) -> None:
        self._make = make
        self._ssl_context: ssl.SSLContext | None = None
        self._local = threading.local()
        self._lock = threading.Lock()
        self._made: list[httpx2.BaseTransport] = []
        self._closed = False

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        transport: httpx2.BaseTransport | None = getattr(self._local, "transport", None)
        if transport is None:
            transport = self._made_for_this_thread()
        return transport.handle_request(request)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            made, self._made = self._made, []
        for transport in made:
            transport.close()

    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        self.close()

    def _made_for_this_thread(self) -> httpx2.BaseTransport:
        with self._lock:
            if self._closed:
                raise RuntimeError("the transport is closed")
            if self._ssl_context is None:
                self._ssl_context = httpx2.create_ssl_context()
            transport = self._make(self._ssl_context)
            self._made.append(transport)
        self._local.transport = transport
        return transport
