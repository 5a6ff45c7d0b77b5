"""The Slack sink: its Block Kit message, Slack's documented answers, and its secret URL."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx2
import pytest
from structlog.testing import capture_logs

from tests.vendors.chat_hris import FakeSlack, transport
from tests.vendors.events import EMAIL, envelope, subscription
from worker.errors import ConfigurationError
from worker.sinks.base import AttemptOutcome, AttemptResult, EventEnvelope
from worker.sinks.registry import make_sink

NOW = datetime(2026, 11, 27, 10, 15, tzinfo=UTC)
SLACK = FakeSlack()
URL = "https://hooks.slack.com" + SLACK.path
CONFIG = f"""
[[subscriptions]]
name = "hr-channel"
kind = "slack"
url = "{URL}"
"""


def send(
    handler: httpx2.MockTransport, event: EventEnvelope | None = None, config: str = CONFIG
) -> AttemptResult:
    with httpx2.Client(transport=handler) as client:
        sink = make_sink(subscription(config), client)
        return sink.send(event or envelope(), attempt_at=NOW)


def answer(status: int, body: str, **headers: str) -> httpx2.MockTransport:
    return httpx2.MockTransport(lambda request: httpx2.Response(status, text=body, headers=headers))


def test_slack_accepts_the_message_and_it_is_delivered() -> None:
    fake = FakeSlack()

    result = send(transport(fake))

    assert (result.outcome, result.status_code, result.response_body) == (
        AttemptOutcome.DELIVERED,
        200,
        "ok",
    )
    assert len(fake.messages) == 1


def test_the_message_names_candidate_test_grade_and_links_the_report() -> None:
    fake = FakeSlack()

    send(transport(fake))

    (message,) = fake.messages
    assert message["text"] == "Jeanne Martin completed Excel 2019: 550/1000 (55 %)"
    body = json.dumps(message["blocks"])
    for fact in ("Jeanne Martin", "Excel 2019", "550/1000 (55 %)"):
        assert fact in body
    assert "<https://isograd.example/report.pdf?k=1&amp;t=2|Report (PDF)>" in body


def test_without_a_test_name_the_message_shows_the_tst_frm_id() -> None:
    fake = FakeSlack()

    send(transport(fake), envelope(test={"tst_frm_id": 123, "pla_tst_id": 456}))

    assert "test 123" in fake.messages[0]["text"]


def test_include_candidate_false_leaves_the_candidate_out() -> None:
    fake = FakeSlack()

    send(transport(fake), config=CONFIG + "include_candidate = false\n")

    sent = json.dumps(fake.messages)
    assert "Jeanne" not in sent
    assert "Martin" not in sent
    assert EMAIL not in sent


def test_mrkdwn_control_characters_in_names_are_escaped() -> None:
    fake = FakeSlack()
    candidate = {"first_name": "<!channel>", "last_name": "A&B", "email": EMAIL}

    send(transport(fake), envelope(candidate=candidate))

    (message,) = fake.messages
    assert "&lt;!channel&gt; A&amp;B" in message["text"]
    assert "<!channel>" not in json.dumps(message)


@pytest.mark.parametrize(
    ("status", "body", "outcome"),
    [
        (400, "invalid_payload", AttemptOutcome.FAILED),
        (400, "no_text", AttemptOutcome.FAILED),
        (403, "action_prohibited", AttemptOutcome.FAILED),
        (404, "channel_not_found", AttemptOutcome.FAILED),
        (410, "channel_is_archived", AttemptOutcome.GONE),
        (500, "rollup_error", AttemptOutcome.RETRY),
        (503, "", AttemptOutcome.RETRY),
    ],
)
def test_each_documented_slack_answer_has_its_outcome(
    status: int, body: str, outcome: AttemptOutcome
) -> None:
    result = send(answer(status, body))

    assert (result.outcome, result.status_code, result.response_body) == (outcome, status, body)


def test_a_429_is_retried_after_slacks_retry_after() -> None:
    result = send(answer(429, "rate_limited", **{"retry-after": "30"}))

    assert (result.outcome, result.retry_after) == (AttemptOutcome.RETRY, 30.0)


def test_an_archived_channel_from_the_fake_disables_the_subscription() -> None:
    assert send(transport(FakeSlack(archived=True))).outcome is AttemptOutcome.GONE


def test_the_url_may_come_from_the_environment_and_is_shown_by_host_only() -> None:
    found = subscription(
        '[[subscriptions]]\nname = "s"\nkind = "slack"\nurl = "env:SLACK_URL"\n',
        {"SLACK_URL": URL},
    )

    assert found.target.describe() == "hooks.slack.com"
    assert URL in found.target.secret_values()
    assert SLACK.path not in repr(found)


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("", "url: is required"),
        ('url = "ftp://hooks.slack.com/x"', "url: must be an http(s) URL"),
        ('url = "env:NOPE"', "url: environment variable NOPE is not set"),
        (
            'url = "https://hooks.slack.com/x"\ninclude_candidate = "no"',
            "include_candidate: must be true or false",
        ),
    ],
)
def test_bad_slack_settings_are_reported(line: str, problem: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        subscription(f'[[subscriptions]]\nname = "s"\nkind = "slack"\n{line}\n')

    assert caught.value.problems == [f"relay.toml: subscriptions[0].{problem}"]


def test_transport_errors_and_logs_never_show_the_url() -> None:
    def refuse(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError(f"cannot connect to {request.url}")

    with capture_logs() as logs:
        result = send(httpx2.MockTransport(refuse))

    assert result.outcome is AttemptOutcome.RETRY
    assert result.error is not None
    assert SLACK.path not in result.error
    assert SLACK.path not in repr(logs)
