"""Benchmark: how long one webhook attempt lasts against a receiver trickling its answer.

Run from the repository root:

    .venv/bin/python -m bench.slow_receiver

The receiver (tests/test_sink_deadline.TricklingReceiver, loopback) sends its status line one byte
every 0.25 s (~10 s in all). The sink's timeout_seconds is 1. Prints the attempt's duration and
outcome through httpx2's plain transport (per-read timeouts only) and through the relay's
DeadlineTransport (one deadline per attempt).
"""

from __future__ import annotations

from datetime import UTC, datetime

import httpx2

from tests.fixtures.pipeline import SECRET
from tests.test_sink_deadline import TricklingReceiver, envelope
from worker.sinks.deadline import DeadlineTransport
from worker.sinks.webhook import WebhookSink


def main() -> None:
    transports: list[tuple[str, httpx2.BaseTransport]] = [
        ("httpx2.HTTPTransport", httpx2.HTTPTransport()),
        ("DeadlineTransport", DeadlineTransport()),
    ]
    for label, transport in transports:
        with httpx2.Client(transport=transport) as http:
            receiver = TricklingReceiver()
            sink = WebhookSink(receiver.url, (SECRET,), client=http, timeout=1.0, name="slow")
            try:
                result = sink.send(envelope(), attempt_at=datetime.now(UTC))
            finally:
                receiver.close()
        print(
            f"{label}: timeout_seconds=1, attempt {result.duration_ms / 1000:.2f} s, "
            f"outcome {result.outcome.value}, timed_out={result.timed_out}"
        )


if __name__ == "__main__":
    main()
