"""HTTP attempts shared by the sink kinds: classification hooks, redaction, what is sent."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx2

from worker.sinks.base import AttemptOutcome, AttemptResult
from worker.sinks.http_attempt import describe_error, perform_attempt

NOW = datetime(2026, 11, 27, 10, 15, tzinfo=UTC)
URL = "https://api.example.com/v1/people/7?key=k3y"


def attempt(handler: httpx2.MockTransport, **overrides: object) -> AttemptResult:
    with httpx2.Client(transport=handler) as client:
        arguments: dict[str, object] = {
            "content": b"{}",
            "headers": {"content-type": "application/json"},
            "timeout": 5.0,
            "attempt_at": NOW,
        }
        arguments.update(overrides)
        return perform_attempt(client, "PATCH", URL, **arguments)  # type: ignore[arg-type]


def test_the_method_url_headers_and_body_are_sent_as_given() -> None:
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(204)

    result = attempt(httpx2.MockTransport(handler), content=b'{"a":1}')

    assert result.outcome is AttemptOutcome.DELIVERED
    (request,) = seen
    assert (request.method, str(request.url), request.content) == ("PATCH", URL, b'{"a":1}')
    assert request.headers["content-type"] == "application/json"


def test_a_custom_classifier_sees_the_status_and_body() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, text="channel_is_archived")

    def classify(status: int, body: str) -> AttemptOutcome:
        return AttemptOutcome.GONE if body == "channel_is_archived" else AttemptOutcome.DELIVERED

    result = attempt(httpx2.MockTransport(handler), classify=classify)

    assert result.outcome is AttemptOutcome.GONE
    assert result.response_body == "channel_is_archived"


def test_retry_after_is_read_when_a_custom_classifier_says_retry() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"retry-after": "30"}, text="busy")

    result = attempt(
        httpx2.MockTransport(handler), classify=lambda status, body: AttemptOutcome.RETRY
    )

    assert result.retry_after == 30.0


def test_transport_errors_hide_the_url_and_the_secrets_given() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError(f"cannot reach {URL} with token t0ken")

    result = attempt(httpx2.MockTransport(handler), redact=("t0ken",))

    assert result.outcome is AttemptOutcome.RETRY
    assert result.error == "ConnectError: cannot reach <url> with token <redacted>"


def test_describe_error_replaces_the_longest_secret_first() -> None:
    error = describe_error(ValueError("abc abcdef"), redact=("abc", "abcdef", ""))

    assert error == "ValueError: <redacted> <redacted>"


def test_an_explainer_reason_becomes_the_error_on_one_line() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(400, headers={"x-reason": "bad\n  date"}, text="ignored")

    def explain(status: int, headers: httpx2.Headers, body: str) -> str | None:
        return f"{status}: {headers['x-reason']}"

    result = attempt(httpx2.MockTransport(handler), explain=explain)

    assert (result.outcome, result.error) == (AttemptOutcome.FAILED, "400: bad date")
    assert result.response_body == "ignored"


def test_an_explainer_without_a_reason_leaves_the_error_unset() -> None:
    result = attempt(
        httpx2.MockTransport(lambda request: httpx2.Response(204)),
        explain=lambda status, headers, body: None,
    )

    assert (result.outcome, result.error) == (AttemptOutcome.DELIVERED, None)
