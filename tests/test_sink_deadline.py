"""The attempt deadline: timeout_seconds bounds a whole webhook attempt, even a slow one."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx2
import pytest

from tests.fixtures.pipeline import SECRET
from worker.sinks.base import AttemptOutcome, EventEnvelope
from worker.sinks.deadline import DeadlineTransport
from worker.sinks.webhook import WebhookSink

STATUS_LINE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
TRICKLE_SECONDS = 0.25  # between two bytes: each read returns well within any read timeout


class TricklingReceiver:
    """An HTTP server on loopback that reads the request, then sends its answer one byte every
    TRICKLE_SECONDS (about 10 s for the whole answer), or at once when `trickle` is False."""

    def __init__(self, *, trickle: bool = True) -> None:
        self.trickle = trickle
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}/hook"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        connection, _ = self._server.accept()
        with connection:
            connection.recv(65536)
            if not self.trickle:
                connection.sendall(STATUS_LINE)
                connection.recv(1)  # until the client closes
                return
            for byte in STATUS_LINE:
                if self._stop.wait(TRICKLE_SECONDS):
                    return
                try:
                    connection.sendall(bytes([byte]))
                except OSError:  # the client gave up: what the deadline is for
                    return

    def close(self) -> None:
        self._stop.set()
        self._server.close()
        self._thread.join(5)


@pytest.fixture
def http() -> Iterator[httpx2.Client]:
    with httpx2.Client(transport=DeadlineTransport()) as client:
        yield client


def envelope() -> EventEnvelope:
    return EventEnvelope("evt_1", "assessment.completed", "2026-12-01T10:00:00Z", {"n": 1})


def test_a_receiver_trickling_its_status_line_costs_at_most_the_timeout(
    http: httpx2.Client,
) -> None:
    receiver = TricklingReceiver()
    sink = WebhookSink(receiver.url, (SECRET,), client=http, timeout=1.0, name="slow")
    try:
        result = sink.send(envelope(), attempt_at=datetime.now(UTC))
    finally:
        receiver.close()

    assert result.outcome is AttemptOutcome.RETRY
    assert result.timed_out
    # The answer takes ~10 s to trickle in; the attempt ends at its 1 s deadline (margin for
    # a loaded machine, far below the trickle).
    assert result.duration_ms < 5000


def test_a_prompt_receiver_is_delivered_through_the_deadline_transport(
    http: httpx2.Client,
) -> None:
    receiver = TricklingReceiver(trickle=False)
    sink = WebhookSink(receiver.url, (SECRET,), client=http, timeout=5.0, name="fast")
    try:
        result = sink.send(envelope(), attempt_at=datetime.now(UTC))
    finally:
        receiver.close()

    assert result.outcome is AttemptOutcome.DELIVERED
    assert result.response_body == "ok"
