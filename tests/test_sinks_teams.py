"""The Teams sink: its Adaptive Card message, the Workflows answers, and its secret URL."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx2
import pytest
from structlog.testing import capture_logs

from tests.vendors.chat_hris import FakeTeams, transport
from tests.vendors.events import envelope, subscription
from worker.sinks.base import AttemptOutcome, AttemptResult, EventEnvelope
from worker.sinks.registry import make_sink

NOW = datetime(2026, 11, 27, 10, 15, tzinfo=UTC)
TEAMS = FakeTeams()
URL = "https://prod-01.westeurope.logic.azure.com" + TEAMS.url_path()
CONFIG = f"""
[[subscriptions]]
name = "hr-team"
kind = "teams"
url = "{URL}"
"""


def send(
    handler: httpx2.MockTransport, event: EventEnvelope | None = None, config: str = CONFIG
) -> AttemptResult:
    with httpx2.Client(transport=handler) as client:
        return make_sink(subscription(config), client).send(event or envelope(), attempt_at=NOW)


def answer(status: int, **headers: str) -> httpx2.MockTransport:
    return httpx2.MockTransport(lambda request: httpx2.Response(status, headers=headers))


def test_the_workflow_accepts_the_card_with_202_and_it_is_delivered() -> None:
    fake = FakeTeams()

    result = send(transport(fake))

    assert (result.outcome, result.status_code) == (AttemptOutcome.DELIVERED, 202)
    assert len(fake.cards) == 1


def test_the_card_is_adaptive_card_1_4_with_the_facts_and_the_report_link() -> None:
    fake = FakeTeams()

    send(transport(fake))

    (card,) = fake.cards
    assert card["version"] == "1.4"
    facts = next(element["facts"] for element in card["body"] if element["type"] == "FactSet")
    assert facts == [
        {"title": "Candidate", "value": "Jeanne Martin"},
        {"title": "Test", "value": "Excel 2019"},
        {"title": "Result", "value": "550/1000 (55 %)"},
    ]
    assert card["actions"] == [
        {
            "type": "Action.OpenUrl",
            "title": "Report (PDF)",
            "url": "https://isograd.example/report.pdf?k=1&t=2",
        }
    ]


def test_without_a_report_or_candidate_the_card_has_neither() -> None:
    fake = FakeTeams()

    send(
        transport(fake),
        envelope(report={"pdf_url": None}),
        config=CONFIG + "include_candidate = false\n",
    )

    (card,) = fake.cards
    assert "actions" not in card
    assert "Jeanne" not in json.dumps(card)


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, AttemptOutcome.DELIVERED),
        (202, AttemptOutcome.DELIVERED),
        (400, AttemptOutcome.FAILED),
        (401, AttemptOutcome.FAILED),
        (404, AttemptOutcome.FAILED),
        (429, AttemptOutcome.RETRY),
        (500, AttemptOutcome.RETRY),
        (502, AttemptOutcome.RETRY),
    ],
)
def test_each_workflows_answer_has_its_outcome(status: int, outcome: AttemptOutcome) -> None:
    assert send(answer(status)).outcome is outcome


def test_a_429_honours_retry_after() -> None:
    result = send(answer(429, **{"retry-after": "12"}))

    assert (result.outcome, result.retry_after) == (AttemptOutcome.RETRY, 12.0)


def test_a_wrong_signature_is_a_permanent_failure_at_the_fake() -> None:
    config = CONFIG.replace(TEAMS.sig, "stale")

    assert send(transport(FakeTeams()), config=config).outcome is AttemptOutcome.FAILED


def test_the_signed_url_is_shown_by_host_only_and_never_logged() -> None:
    found = subscription(CONFIG)

    def refuse(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError(f"cannot connect to {request.url}")

    with capture_logs() as logs:
        result = send(httpx2.MockTransport(refuse))

    assert found.target.describe() == "prod-01.westeurope.logic.azure.com"
    assert TEAMS.sig in found.target.secret_values()
    assert result.error is not None
    assert TEAMS.sig not in result.error
    assert TEAMS.sig not in repr(logs)
