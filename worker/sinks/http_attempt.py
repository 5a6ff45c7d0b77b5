"""HTTP attempts: one request to a sink's target, its answer classified and bounded for storage.

Every HTTP sink kind makes its attempts through `perform_attempt`, so they all classify answers
(`classify_status`, after Svix's rules), honour Retry-After and store response bodies (at most
20 kB) the same way:

    result = perform_attempt(
        client, "POST", url, content=body, headers=headers, timeout=15.0, attempt_at=now,
        redact=(url, token),
    )

A kind with its own answer rules passes `classify` (status and body text → outcome); Retry-After
is read whenever the outcome is RETRY. A kind whose target says why it refused (an error header,
a status description in the body) passes `explain` (status, headers, body → reason or None): the
reason becomes the attempt's error, on one line.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx2

from worker.sinks.base import (
    MAX_RESPONSE_BODY_BYTES,
    TRUNCATION_MARKER,
    AttemptOutcome,
    AttemptResult,
)
from worker.sinks.deadline import attempt_deadline

__all__ = [
    "Classifier",
    "Explainer",
    "classify_status",
    "describe_error",
    "elapsed_ms",
    "parse_retry_after",
    "perform_attempt",
    "read_response_body",
]

Classifier = Callable[[int, str], AttemptOutcome]
"""Maps (status code, response body text) to an outcome."""

Explainer = Callable[[int, httpx2.Headers, str], str | None]
"""The target's reason for its answer (status code, headers, body text), or None."""

_RETRYABLE_STATUSES = frozenset({408, 425, 429})
_MAX_ERROR_CHARS = 200
_DELTA_SECONDS = re.compile(r"[0-9]+")


def perform_attempt(
    client: httpx2.Client,
    method: str,
    url: str,
    *,
    content: bytes,
    headers: Mapping[str, str],
    timeout: float,
    attempt_at: datetime,
    classify: Classifier | None = None,
    explain: Explainer | None = None,
    redact: Sequence[str] = (),
) -> AttemptResult:
    """Send one request and classify its answer; never raises for HTTP or network trouble.

    `timeout` (seconds) bounds the whole attempt: each phase of the request, and, as a deadline
    from the start, all of them together (connect, send, status line, headers, body). Redirects
    are never followed (a 3xx is a failure). Error text names the exception, `url` replaced by
    `<url>` and each string of `redact` by `<redacted>`.
    `attempt_at` (aware) is the time Retry-After dates are measured from.
    """
    started = time.perf_counter()
    try:
        with (
            # Through a DeadlineTransport (the runtime's sink client), connect, send and the
            # answer's status line and headers share one deadline too: see worker.sinks.deadline.
            attempt_deadline(timeout),
            client.stream(
                method,
                url,
                content=content,
                headers=dict(headers),
                timeout=httpx2.Timeout(timeout),
                # A 3xx is a failure, never followed: a redirect must not move a signed payload
                # (or an API's credentials) to another address.
                follow_redirects=False,
            ) as response,
        ):
            body, read_error = read_response_body(response, deadline=started + timeout)
            status = response.status_code
            retry_after_header = response.headers.get("retry-after")
            reason = explain(status, response.headers, body) if explain is not None else None
    except httpx2.TimeoutException as exc:
        return AttemptResult(
            AttemptOutcome.RETRY,
            status_code=None,
            duration_ms=elapsed_ms(started),
            error=f"timed out after {timeout:g} s ({type(exc).__name__})",
            timed_out=True,
        )
    except httpx2.UnsupportedProtocol as exc:
        return _transport_failure(AttemptOutcome.FAILED, exc, started, url, redact)
    except httpx2.TransportError as exc:  # connection refused/reset, DNS, TLS, protocol errors
        return _transport_failure(AttemptOutcome.RETRY, exc, started, url, redact)
    except (httpx2.HTTPError, httpx2.InvalidURL) as exc:
        return _transport_failure(AttemptOutcome.FAILED, exc, started, url, redact)
    outcome = classify(status, body) if classify is not None else classify_status(status)
    retry_after = None
    if outcome is AttemptOutcome.RETRY:
        retry_after = parse_retry_after(retry_after_header, now=attempt_at.astimezone(UTC))
    return AttemptResult(
        outcome,
        status_code=status,
        duration_ms=elapsed_ms(started),
        response_body=body,
        error=_one_line(reason) if reason else read_error,
        retry_after=retry_after,
    )


def classify_status(status_code: int) -> AttemptOutcome:
    """Map an HTTP status to an attempt outcome (after Svix's rules, docs.svix.com/retries).

    2xx delivered; 410 gone (disable the subscription); 408/425/429/5xx retry; everything else,
    3xx redirects included, is a permanent failure.
    """
    if 200 <= status_code < 300:
        return AttemptOutcome.DELIVERED
    if status_code == 410:
        return AttemptOutcome.GONE
    if status_code in _RETRYABLE_STATUSES or 500 <= status_code < 600:
        return AttemptOutcome.RETRY
    return AttemptOutcome.FAILED


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header (RFC 9110 §10.2.3), measured from aware `now`.

    Accepts delay-seconds ("120") or an HTTP-date (a date in the past means 0). Anything else,
    like a negative or fractional number, is ignored (None).
    """
    if value is None:
        return None
    value = value.strip()
    if _DELTA_SECONDS.fullmatch(value):
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" means UTC with no claim about local time (RFC 5322)
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def read_response_body(response: httpx2.Response, *, deadline: float) -> tuple[str, str | None]:
    """Read at most MAX_RESPONSE_BODY_BYTES of a streamed response, decoded leniently.

    Returns `(text, error)`. Reading stops at the byte limit or once `deadline` (a
    `time.perf_counter()` value) has passed; a cut body ends with TRUNCATION_MARKER. A body that
    fails to arrive yields what was read and a one-line error: the status line has already been
    received, so it still decides the outcome.
    """
    buffer = bytearray()
    truncated = False
    error = None
    try:
        for chunk in response.iter_bytes():
            buffer += chunk
            if len(buffer) > MAX_RESPONSE_BODY_BYTES or time.perf_counter() > deadline:
                truncated = True
                break
    except httpx2.HTTPError as exc:
        error = f"response body unreadable ({type(exc).__name__})"
        truncated = True
    if truncated:
        keep = max(0, MAX_RESPONSE_BODY_BYTES - len(TRUNCATION_MARKER.encode("utf-8")))
        text = _decode(bytes(buffer[:keep]), response.charset_encoding) + TRUNCATION_MARKER
    else:
        text = _decode(bytes(buffer), response.charset_encoding)
    return text, error


def describe_error(exc: Exception, *, url: str | None = None, redact: Sequence[str] = ()) -> str:
    """One line naming the exception; `url` becomes `<url>` and each of `redact` `<redacted>`."""
    message = " ".join(str(exc).split())
    if url:
        message = message.replace(url, "<url>")
    for secret in sorted((value for value in redact if value), key=len, reverse=True):
        message = message.replace(secret, "<redacted>")
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return text[:_MAX_ERROR_CHARS]


def _one_line(text: str) -> str:
    return " ".join(text.split())[:_MAX_ERROR_CHARS]


def elapsed_ms(started: float) -> float:
    """Milliseconds since `started`, a `time.perf_counter()` value."""
    return (time.perf_counter() - started) * 1000.0


def _transport_failure(
    outcome: AttemptOutcome, exc: Exception, started: float, url: str, redact: Sequence[str]
) -> AttemptResult:
    return AttemptResult(
        outcome,
        status_code=None,
        duration_ms=elapsed_ms(started),
        error=describe_error(exc, url=url, redact=redact),
    )


def _decode(data: bytes, charset: str | None) -> str:
    try:
        text = data.decode(charset or "utf-8", errors="replace")
    except LookupError:  # an unknown charset, or a codec that is not a text encoding ("base64")
        text = data.decode("utf-8", errors="replace")
    # NUL cannot be stored in a PostgreSQL text column.
    return text.replace("\x00", "\ufffd")
