"""The BambooHR sink: its relay.toml keys, what it writes, and how BambooHR's answers map."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx2
import pytest
from structlog.testing import capture_logs

from tests.vendors.bamboohr import FakeBambooHR
from tests.vendors.events import EMAIL, completed_event
from worker.errors import ConfigurationError
from worker.sinks.bamboohr import BambooHRSink, BambooHRTarget
from worker.sinks.base import AttemptOutcome
from worker.sinks.registry import make_sink
from worker.subscriptions import Subscription, parse_subscriptions

NOW = datetime(2026, 11, 27, 10, 16, tzinfo=UTC)
KEY = "bamboo-api-key-0123456789"
TRAINING = """
[[subscriptions]]
name = "hr"
kind = "bamboohr"
company_domain = "acme"
api_key = "env:BAMBOO_KEY"
training_type_id = 7
"""
TABLE = """
[[subscriptions]]
name = "hr-table"
kind = "bamboohr"
company_domain = "acme"
api_key = "env:BAMBOO_KEY"
mode = "table"
table = "customCertifications"
employee_id_from = "ext_id"

[subscriptions.fields]
completed_date = "customDate"
"grade.percent" = "customScore"
"test.tst_frm_id" = "customTest"
"report.pdf_url" = "customReport"
"""


def parse(text: str) -> Subscription:
    [subscription] = parse_subscriptions(tomllib.loads(text), {"BAMBOO_KEY": KEY})
    return subscription


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigurationError) as caught:
        parse_subscriptions(tomllib.loads(text), {"BAMBOO_KEY": KEY})
    return caught.value.problems


@pytest.fixture
def fake() -> FakeBambooHR:
    return FakeBambooHR(
        "acme",
        KEY,
        frozenset({42}),
        tables={
            "customCertifications": frozenset(
                {"customDate", "customScore", "customTest", "customReport"}
            )
        },
    )


@pytest.fixture
def http(fake: FakeBambooHR) -> Iterator[httpx2.Client]:
    with httpx2.Client(transport=httpx2.MockTransport(fake.handle)) as client:
        yield client


def sink_for(text: str, http: httpx2.Client) -> BambooHRSink:
    sink = make_sink(parse(text), http)
    assert isinstance(sink, BambooHRSink)
    return sink


# ---------------------------------------------------------------- configuration


def test_a_training_subscription_is_parsed_with_its_defaults() -> None:
    target = parse(TRAINING).target

    assert target == BambooHRTarget("acme", KEY, "https://api.bamboohr.com", "training", 7)
    assert target.describe() == "api.bamboohr.com"
    assert KEY in target.secret_values()


def test_a_table_subscription_keeps_its_field_mapping_in_order() -> None:
    target = parse(TABLE).target

    assert isinstance(target, BambooHRTarget)
    assert (target.mode, target.table, target.employee_id_from) == (
        "table",
        "customCertifications",
        "ext_id",
    )
    assert target.fields[:2] == (("completed_date", "customDate"), ("grade.percent", "customScore"))


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ('company_domain = "acme.bamboohr.com"', "company_domain: must be the company's subdomain"),
        ('mode = "file"', "mode: must be one of 'training', 'table'"),
        ("training_type_id = 0", "training_type_id: must be >= 1"),
        ('employee_id_from = "email"', "employee_id_from: must be one of 'context', 'ext_id'"),
        ('table = "x"', "table: is only for mode = 'table'"),
        ('base_url = "ftp://x"', "base_url: must be an http(s) URL"),
    ],
)
def test_invalid_training_settings_are_reported(change: str, problem: str) -> None:
    key = change.split(" ")[0]
    lines = [line for line in TRAINING.splitlines() if not line.startswith(key + " ")]

    found = problems("\n".join([*lines, change]))

    assert any(problem in p for p in found), found


def test_a_table_needs_a_table_name_and_valid_fields() -> None:
    text = """
[[subscriptions]]
name = "t"
kind = "bamboohr"
company_domain = "acme"
api_key = "k"
mode = "table"
fields = { "grade.value" = "", "candidate;email" = "x", "nowhere.x" = "y" }
"""
    found = problems(text)

    assert any("table: is required" in p for p in found)
    assert any("fields.'grade.value': must be a BambooHR field name" in p for p in found)
    assert any("fields.'candidate;email': must be 'completed_date' or a path" in p for p in found)
    assert any("fields.'nowhere.x'" in p for p in found)


def test_a_training_subscription_without_its_type_or_key_is_reported() -> None:
    found = problems('[[subscriptions]]\nname = "t"\nkind = "bamboohr"\ncompany_domain = "acme"')

    assert any("api_key: is required" in p for p in found)
    assert any("training_type_id: is required" in p for p in found)


# ---------------------------------------------------------------- sending


def test_a_training_record_reaches_the_employee_with_date_type_and_note(
    fake: FakeBambooHR, http: httpx2.Client
) -> None:
    sink = sink_for(TRAINING, http)

    result = sink.send(completed_event({"bamboohr_employee_id": "42"}), attempt_at=NOW)

    assert (result.outcome, result.status_code) == (AttemptOutcome.DELIVERED, 201)
    [stored] = fake.records()
    assert (stored.employee_id, stored.kind) == (42, "training")
    assert stored.body == {
        "completed": "2026-11-27",
        "type": 7,
        "notes": "Isograd test 101 (pla_tst_id 5000001): 815/1000. "
        "Report: https://reports.example.com/r/5000001.pdf",
    }


def test_the_completed_date_is_the_events_utc_date() -> None:
    sent: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        sent.append(request)
        return httpx2.Response(201)

    with httpx2.Client(transport=httpx2.MockTransport(handler)) as client:
        event = completed_event({"bamboohr_employee_id": 42}, timestamp="2026-11-27T23:59:59Z")
        sink_for(TRAINING, client).send(event, attempt_at=NOW)

    assert b'"completed": "2026-11-27"' in sent[0].content


def test_a_table_row_maps_event_paths_to_fields_with_the_employee_from_ext_id(
    fake: FakeBambooHR, http: httpx2.Client
) -> None:
    sink = sink_for(TABLE, http)

    result = sink.send(completed_event(ext_id="42"), attempt_at=NOW)

    assert result.outcome is AttemptOutcome.DELIVERED
    [stored] = fake.records()
    assert (stored.employee_id, stored.kind) == (42, "customCertifications")
    assert stored.body == {
        "customDate": "2026-11-27",
        "customScore": 81.5,
        "customTest": 101,
        "customReport": "https://reports.example.com/r/5000001.pdf",
    }


@pytest.mark.parametrize(
    ("context", "ext_id", "config", "error"),
    [
        ({}, None, TRAINING, "context.bamboohr_employee_id is missing"),
        ({"bamboohr_employee_id": "../42"}, None, TRAINING, "must be a BambooHR employee id"),
        ({"bamboohr_employee_id": True}, None, TRAINING, "must be a non-empty string"),
        ({}, None, TABLE, "candidate.ext_id is missing"),
    ],
    ids=["missing", "not-digits", "not-text", "no-ext-id"],
)
def test_an_event_without_a_usable_employee_id_fails_naming_the_key_and_sends_nothing(
    fake: FakeBambooHR,
    http: httpx2.Client,
    context: dict[str, Any],
    ext_id: str | None,
    config: str,
    error: str,
) -> None:
    result = sink_for(config, http).send(completed_event(context, ext_id=ext_id), attempt_at=NOW)

    assert result.outcome is AttemptOutcome.FAILED
    assert result.error is not None
    assert error in result.error
    assert fake.records() == []


@pytest.mark.parametrize("status", [429, 503])
def test_throttling_is_retried_after_bamboohrs_retry_after(status: int) -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(status, headers={"Retry-After": "42"})

    with httpx2.Client(transport=httpx2.MockTransport(handler)) as client:
        result = sink_for(TRAINING, client).send(
            completed_event({"bamboohr_employee_id": "42"}), attempt_at=NOW
        )

    assert (result.outcome, result.retry_after) == (AttemptOutcome.RETRY, 42.0)


def test_the_fakes_503_throttle_then_success(fake: FakeBambooHR, http: httpx2.Client) -> None:
    fake.throttle(1, retry_after="5")
    sink = sink_for(TRAINING, http)
    event = completed_event({"bamboohr_employee_id": "42"})

    first, second = sink.send(event, attempt_at=NOW), sink.send(event, attempt_at=NOW)

    assert (first.outcome, first.retry_after) == (AttemptOutcome.RETRY, 5.0)
    assert second.outcome is AttemptOutcome.DELIVERED


@pytest.mark.parametrize(
    ("context", "config", "status", "reason"),
    [
        ({"bamboohr_employee_id": "43"}, TRAINING, 404, "BambooHR: Employee 43 not found"),
        ({"bamboohr_employee_id": "42"}, TRAINING.replace("= 7", "= 9"), 400, "BambooHR: Type"),
    ],
    ids=["unknown-employee", "unknown-training-type"],
)
def test_bamboohr_refusals_are_permanent_with_its_reason_recorded(
    http: httpx2.Client, context: dict[str, Any], config: str, status: int, reason: str
) -> None:
    result = sink_for(config, http).send(completed_event(context), attempt_at=NOW)

    assert (result.outcome, result.status_code) == (AttemptOutcome.FAILED, status)
    assert result.error is not None
    assert result.error.startswith(reason)


def test_an_unknown_table_field_is_a_permanent_406(fake: FakeBambooHR, http: httpx2.Client) -> None:
    config = TABLE.replace('= "customTest"', '= "customNope"')

    result = sink_for(config, http).send(completed_event(ext_id="42"), attempt_at=NOW)

    assert (result.outcome, result.status_code) == (AttemptOutcome.FAILED, 406)
    assert result.error == "BambooHR: Invalid field(s): customNope"


def test_a_wrong_key_is_a_permanent_401(http: httpx2.Client) -> None:
    wrong = BambooHRSink(
        BambooHRTarget("acme", "another-key", training_type_id=7), client=http, timeout=5, name="x"
    )

    result = wrong.send(completed_event({"bamboohr_employee_id": "42"}), attempt_at=NOW)

    assert (result.outcome, result.status_code) == (AttemptOutcome.FAILED, 401)
    assert result.error == "BambooHR: Invalid API key"


def test_neither_the_key_nor_the_email_appear_in_logs_or_errors(http: httpx2.Client) -> None:
    sink = sink_for(TRAINING, http)

    with capture_logs() as logs:
        results = [
            sink.send(completed_event({"bamboohr_employee_id": e}), attempt_at=NOW)
            for e in ("42", "43")
        ]

    text = repr(logs) + repr(results) + repr(sink)
    assert KEY not in text
    assert EMAIL not in text
    assert [entry["event"] for entry in logs] == ["bamboohr_attempt"] * 2


def test_a_naive_attempt_time_is_refused(http: httpx2.Client) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        sink_for(TRAINING, http).send(completed_event(), attempt_at=datetime(2026, 11, 27))


def test_an_event_that_cannot_be_written_fails_without_sending(
    fake: FakeBambooHR, http: httpx2.Client
) -> None:
    event = completed_event({"bamboohr_employee_id": "42"}, timestamp="27/11/2026")

    result = sink_for(TRAINING, http).send(event, attempt_at=NOW)

    assert result.outcome is AttemptOutcome.FAILED
    assert result.error == "the event cannot be written as a BambooHR record (ValueError)"
    assert fake.records() == []
