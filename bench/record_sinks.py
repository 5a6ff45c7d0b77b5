"""Benchmark of the record sinks: attempts/s of bamboohr, lti11 and lti13, in-process.

Each sink sends N events through `httpx2.MockTransport` to a handler answering success at once,
so the figure is the sink's own cost per attempt (body, signing, classification) with no network:
OAuth 1.0a HMAC-SHA1 + body hash for lti11; for lti13 once with the token cached (the normal
case) and once with a new token per attempt (an RS256 client assertion signed every time).

    .venv/bin/python -m bench.record_sinks [--count 2000]
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime

import httpx2
import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.vendors.events import completed_event
from worker.sinks.bamboohr import BambooHRSink, BambooHRTarget
from worker.sinks.base import AttemptOutcome, Sink
from worker.sinks.lti11 import Lti11Sink, Lti11Target
from worker.sinks.lti13 import Lti13Sink, Lti13Target

POX_SUCCESS = (
    '<imsx_POXEnvelopeResponse xmlns="http://www.imsglobal.org/services/ltiv1p1/xsd/imsoms_v1p0">'
    "<imsx_POXHeader><imsx_POXResponseHeaderInfo><imsx_statusInfo>"
    "<imsx_codeMajor>success</imsx_codeMajor></imsx_statusInfo></imsx_POXResponseHeaderInfo>"
    "</imsx_POXHeader></imsx_POXEnvelopeResponse>"
)
CONTEXT = {
    "bamboohr_employee_id": "42",
    "lti": {"lis_outcome_service_url": "https://lms/outcomes", "lis_result_sourcedid": "s"},
    "lti13": {"lineitem": "https://lms/lineitems/1", "user_id": "u"},
}


def answer(token_lifetime: int) -> Callable[[httpx2.Request], httpx2.Response]:
    def handler(request: httpx2.Request) -> httpx2.Response:
        if request.url.path == "/token":
            return httpx2.Response(200, json={"access_token": "t", "expires_in": token_lifetime})
        if request.url.path == "/outcomes":
            return httpx2.Response(200, text=POX_SUCCESS)
        return httpx2.Response(201)

    return handler


def run(
    name: str,
    make: Callable[[httpx2.Client], Sink],
    handler: Callable[..., httpx2.Response],
    count: int,
) -> None:
    event = completed_event(CONTEXT)
    with httpx2.Client(transport=httpx2.MockTransport(handler)) as client:
        sink = make(client)
        started = time.perf_counter()
        for _ in range(count):
            result = sink.send(event, attempt_at=datetime.now(UTC))
            assert result.outcome is AttemptOutcome.DELIVERED, result
        elapsed = time.perf_counter() - started
    print(f"{name:<22} {count / elapsed:8.0f} attempts/s  {elapsed / count * 1e6:7.0f} µs/attempt")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=2000)
    count = parser.parse_args().count
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    lti13 = Lti13Target("tool", "https://lms/token", pem, "kid", "https://lms/token")
    print(f"load1 {os.getloadavg()[0]:.2f}")
    run(
        "bamboohr (training)",
        lambda c: BambooHRSink(
            BambooHRTarget("acme", "k", training_type_id=7), client=c, timeout=5, name="b"
        ),
        answer(3600),
        count,
    )
    run(
        "lti11",
        lambda c: Lti11Sink(Lti11Target("k", "s"), client=c, timeout=5, name="l"),
        answer(3600),
        count,
    )
    run(
        "lti13 (token cached)",
        lambda c: Lti13Sink(lti13, client=c, timeout=5, name="t"),
        answer(3600),
        count,
    )
    # expires_in below the 30 s margin: every attempt signs an assertion and fetches a token.
    run(
        "lti13 (new token each)",
        lambda c: Lti13Sink(lti13, client=c, timeout=5, name="t"),
        answer(1),
        count // 4,
    )


if __name__ == "__main__":
    main()
