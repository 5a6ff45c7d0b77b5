"""Vendor API calls: one JSON request to an ATS's API, its answer classified as an attempt.

The ATS sinks (teamtailor, kombo) and the order path call vendor APIs with a JSON body and an
API key, where the webhook sink POSTs signed events. Status classification, Retry-After and the
bounded reading of the answer are the webhook sink's public functions (worker.sinks.webhook),
not a second copy; once the shared HTTP attempt module lands (worker/sinks/http_attempt.py, on
branch sinks1), the transport ladder below moves there.

Differences from a webhook target, which is the user's own endpoint: a vendor's 404, 409 or 410
names one resource (a deleted partner result, an order already closed), never the whole
subscription, so no status disables it (GONE is never answered here).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx2

from worker.sinks.base import AttemptOutcome, AttemptResult
from worker.sinks.webhook import classify_status, parse_retry_after, read_response_body

_MAX_ERROR_CHARS = 300


@dataclass(frozen=True, slots=True)
class VendorRequest:
    """One request: `document` is sent as compact UTF-8 JSON with `content_type`."""

    method: str
    url: str
    headers: Mapping[str, str]
    document: Any
    content_type: str = "application/json"


def call_vendor(
    client: httpx2.Client, request: VendorRequest, *, timeout: float, attempt_at: datetime
) -> AttemptResult:
    """Send `request` once and classify the answer; never raises for HTTP or network trouble.

    2xx delivered; 408/425/429/5xx, timeouts and connection errors retried (with the
    Retry-After hint); every other status, 410 included, is a permanent failure of this one
    request. `error` holds a one-line description, never the URL (it may name a candidate's
    resource) or a header value.
    """
    try:
        body = json.dumps(
            request.document, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode("utf-8")
    except (TypeError, ValueError) as exc:
        return AttemptResult(
            AttemptOutcome.FAILED,
            status_code=None,
            duration_ms=0.0,
            error=f"request body is not valid JSON ({type(exc).__name__})",
        )
    headers = {**request.headers, "content-type": request.content_type}
    started = time.perf_counter()
    try:
        with client.stream(
            request.method,
            request.url,
            content=body,
            headers=headers,
            timeout=httpx2.Timeout(timeout),
            follow_redirects=False,
        ) as response:
            text, read_error = read_response_body(response, deadline=started + timeout)
            status = response.status_code
            retry_after_header = response.headers.get("retry-after")
    except httpx2.TimeoutException as exc:
        return AttemptResult(
            AttemptOutcome.RETRY,
            status_code=None,
            duration_ms=_elapsed_ms(started),
            error=f"timed out after {timeout:g} s ({type(exc).__name__})",
            timed_out=True,
        )
    except httpx2.TransportError as exc:
        outcome = (
            AttemptOutcome.FAILED
            if isinstance(exc, httpx2.UnsupportedProtocol)
            else AttemptOutcome.RETRY
        )
        return _transport_failure(outcome, exc, request.url, started)
    except (httpx2.HTTPError, httpx2.InvalidURL) as exc:
        return _transport_failure(AttemptOutcome.FAILED, exc, request.url, started)
    outcome = classify_status(status)
    if outcome is AttemptOutcome.GONE:
        outcome = AttemptOutcome.FAILED
    retry_after = None
    if outcome is AttemptOutcome.RETRY:
        retry_after = parse_retry_after(retry_after_header, now=attempt_at)
    return AttemptResult(
        outcome,
        status_code=status,
        duration_ms=_elapsed_ms(started),
        response_body=text,
        error=read_error,
        retry_after=retry_after,
    )


def with_error(result: AttemptResult, error: str | None) -> AttemptResult:
    """`result` with `error` (cut to one short line) when it had none of its own."""
    if error is None or result.error is not None:
        return result
    line = " ".join(error.split())[:_MAX_ERROR_CHARS]
    return AttemptResult(
        result.outcome,
        status_code=result.status_code,
        duration_ms=result.duration_ms,
        response_body=result.response_body,
        error=line,
        retry_after=result.retry_after,
        timed_out=result.timed_out,
    )


def failed(error: str) -> AttemptResult:
    """A permanent failure found before any request was sent (missing routing data, say)."""
    return AttemptResult(AttemptOutcome.FAILED, status_code=None, duration_ms=0.0, error=error)


def decode_json(text: str) -> Any:
    """The answer's JSON, or None when it is not JSON (or was truncated)."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _transport_failure(
    outcome: AttemptOutcome, exc: Exception, url: str, started: float
) -> AttemptResult:
    message = " ".join(str(exc).split()).replace(url, "<url>")
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return AttemptResult(
        outcome, status_code=None, duration_ms=_elapsed_ms(started), error=text[:_MAX_ERROR_CHARS]
    )


def _elapsed_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0
