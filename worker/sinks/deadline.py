"""Attempt deadline: one total time limit for a sink's HTTP attempt (connect, send, answer).

httpx2's timeouts bound each network operation, not the request: a receiver that sends its status
line one byte at a time, each within the read timeout, holds an attempt for as long as it likes
(an audit saw 400 s with 5 s configured). `attempt_deadline(seconds)` sets a deadline for the
requests made inside it, in this thread; `DeadlineTransport` is an httpx2 transport whose every
connect, TLS handshake, send and receive gets at most the time left, and fails with a timeout
once it is gone. The sink then classifies it as it does any timeout.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from worker.transports import HttpClientTransport

_deadline: ContextVar[float | None] = ContextVar("sink_attempt_deadline", default=None)


@contextmanager
def attempt_deadline(seconds: float) -> Iterator[None]:
    """Requests through a DeadlineTransport inside this block end within `seconds` in total."""
    token = _deadline.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


def time_left(timeout: float | None) -> float | None:
    """`timeout` (seconds; None: none) shortened to the time left before the attempt's deadline;
    unchanged outside `attempt_deadline`. TimeoutError once the deadline has passed."""
    deadline = _deadline.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the attempt's deadline has passed")
    return left if timeout is None else min(timeout, left)


class DeadlineTransport(HttpClientTransport):
    """worker.transports.HttpClientTransport with every socket operation bounded by `time_left`.

    Not thread-safe (one kept-alive connection per origin): the runtime makes one per thread with
    ThreadTransports.
    """

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__(ssl_context=ssl_context, limit=time_left)
