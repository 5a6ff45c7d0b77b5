"""Vendor API calls: one JSON request to an ATS's API, its answer classified as an attempt.

The ATS sinks (teamtailor, kombo) and the order path call vendor APIs with a JSON body and an
API key, where the webhook sink POSTs signed events; the request itself is the shared HTTP
attempt (worker.sinks.http_attempt.perform_attempt).

One difference from a webhook target, which is the user's own endpoint: a vendor's 404, 409 or
410 names one resource (a deleted partner result, an order already closed), never the whole
subscription, so no status disables it (GONE is never answered here).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx2

from worker.sinks.base import AttemptOutcome, AttemptResult
from worker.sinks.http_attempt import classify_status, perform_attempt

_MAX_ERROR_CHARS = 300


@dataclass(frozen=True, slots=True)
class VendorRequest:
    """One request: `document` is sent as compact UTF-8 JSON with `content_type`; `secrets`
    are removed from any transport error's text."""

    method: str
    url: str
    headers: Mapping[str, str]
    document: Any
    content_type: str = "application/json"
    secrets: tuple[str, ...] = ()


def classify_vendor_status(status_code: int, body: str) -> AttemptOutcome:
    """classify_status, except that 410 fails this request instead of disabling the sink."""
    outcome = classify_status(status_code)
    return AttemptOutcome.FAILED if outcome is AttemptOutcome.GONE else outcome


def call_vendor(
    client: httpx2.Client, request: VendorRequest, *, timeout: float, attempt_at: datetime
) -> AttemptResult:
    """Send `request` once and classify the answer; never raises for HTTP or network trouble.

    2xx delivered; 408/425/429/5xx, timeouts and connection errors retried (with the
    Retry-After hint); every other status, 410 included, is a permanent failure of this one
    request. `error` never holds the URL (it names a candidate's resource) or a secret.
    """
    try:
        body = json.dumps(
            request.document, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode("utf-8")
    except (TypeError, ValueError) as exc:
        return failed(f"request body is not valid JSON ({type(exc).__name__})")
    return perform_attempt(
        client,
        request.method,
        request.url,
        content=body,
        headers={**request.headers, "content-type": request.content_type},
        timeout=timeout,
        attempt_at=attempt_at,
        classify=classify_vendor_status,
        redact=request.secrets,
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
