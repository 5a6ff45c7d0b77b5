"""A vendor exchange: one request to a vendor API, read within bounds, classified like a webhook.

The record sinks (BambooHR, LTI 1.1, LTI 1.3) post to vendor APIs rather than to a receiver of
ours, but an attempt is judged by the same rules (DESIGN §3.4): the status classification,
Retry-After and the bounded body read are the webhook sink's (worker.sinks.webhook); this module
adds the transport-error mapping around them and leaves the vendor's own verdict (an XML
codeMajor, an error header) to each sink.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

import httpx2

from worker.sinks.base import AttemptOutcome, AttemptResult
from worker.sinks.webhook import classify_status, parse_retry_after, read_response_body

_MAX_ERROR_CHARS = 200


@dataclass(frozen=True, slots=True)
class Reply:
    """A vendor's answer: status, the body as read (bounded, decoded leniently), headers."""

    status_code: int
    body: str
    headers: httpx2.Headers
    read_error: str | None
    duration_ms: float


def exchange(
    client: httpx2.Client,
    method: str,
    url: str,
    *,
    timeout: float,
    content: bytes,
    headers: Mapping[str, str],
    hide: Iterable[str] = (),
) -> Reply | AttemptResult:
    """Send one request; a Reply, or the AttemptResult of a transport failure (never raises).

    Timeouts and connection trouble are RETRY (a timeout marked `timed_out`); a URL the client
    cannot use is FAILED. `hide` lists values (URLs, tokens) removed from any error text.
    """
    started = time.perf_counter()
    try:
        with client.stream(
            method,
            url,
            content=content,
            headers=dict(headers),
            timeout=httpx2.Timeout(timeout),
            follow_redirects=False,  # DESIGN §3.4: a 3xx is a failure, never followed
        ) as response:
            body, read_error = read_response_body(response, deadline=started + timeout)
            return Reply(
                response.status_code, body, response.headers, read_error, _elapsed_ms(started)
            )
    except httpx2.TimeoutException as exc:
        return AttemptResult(
            AttemptOutcome.RETRY,
            status_code=None,
            duration_ms=_elapsed_ms(started),
            error=f"timed out after {timeout:g} s ({type(exc).__name__})",
            timed_out=True,
        )
    except httpx2.UnsupportedProtocol as exc:
        return _transport_failure(AttemptOutcome.FAILED, exc, started, (url, *hide))
    except httpx2.TransportError as exc:  # connection refused/reset, DNS, TLS, protocol errors
        return _transport_failure(AttemptOutcome.RETRY, exc, started, (url, *hide))
    except (httpx2.HTTPError, httpx2.InvalidURL) as exc:
        return _transport_failure(AttemptOutcome.FAILED, exc, started, (url, *hide))


def result_of(
    reply: Reply,
    *,
    attempt_at: datetime,
    outcome: AttemptOutcome | None = None,
    error: str | None = None,
) -> AttemptResult:
    """The AttemptResult of a reply: its status classified unless the sink decided `outcome`.

    Retry-After is read for a RETRY; `error` (the vendor's reason) wins over a body read error.
    """
    decided = classify_status(reply.status_code) if outcome is None else outcome
    retry_after = None
    if decided is AttemptOutcome.RETRY:
        retry_after = parse_retry_after(reply.headers.get("retry-after"), now=attempt_at)
    return AttemptResult(
        decided,
        status_code=reply.status_code,
        duration_ms=reply.duration_ms,
        response_body=reply.body,
        error=one_line(error) if error is not None else reply.read_error,
        retry_after=retry_after,
    )


def failed(error: str) -> AttemptResult:
    """A permanent failure decided before anything was sent (missing routing data, no grade)."""
    return AttemptResult(AttemptOutcome.FAILED, status_code=None, duration_ms=0.0, error=error)


def one_line(text: str, hide: Iterable[str] = ()) -> str:
    """`text` on one line, at most 200 characters, with each of `hide` replaced by <hidden>."""
    line = " ".join(text.split())
    for value in hide:
        if value:
            line = line.replace(value, "<hidden>")
    return line[:_MAX_ERROR_CHARS]


def _transport_failure(
    outcome: AttemptOutcome, exc: Exception, started: float, hide: Iterable[str]
) -> AttemptResult:
    message = one_line(str(exc), hide)
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return AttemptResult(
        outcome, status_code=None, duration_ms=_elapsed_ms(started), error=text[:_MAX_ERROR_CHARS]
    )


def _elapsed_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0
