"""The Teamtailor sink: its relay.toml keys, the partner result it writes, and each answer."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest
from starlette.testclient import TestClient

from tests.vendors.teamtailor import API_VERSION, MEDIA_TYPE, FakeTeamtailor, ScriptedAnswer
from worker.errors import ConfigurationError
from worker.sinks.base import AttemptOutcome, EventEnvelope
from worker.sinks.registry import make_sink
from worker.sinks.teamtailor import TeamtailorSink, TeamtailorTarget, completed_attributes
from worker.subscriptions import Subscription, parse_subscriptions

API_KEY = "tt-api-key-0123456789"
NOW = datetime(2026, 11, 27, 10, 15, tzinfo=UTC)
TABLE = {
    "name": "tt",
    "kind": "teamtailor",
    "api_key": API_KEY,
    "provider_key": "provider-key-0123456789",
    "tst_frm_id": 101,
    "mail_template_id": 7,
}


def event_data(
    fake: FakeTeamtailor | None = None, result_id: str = "r-1", **changes: Any
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "event_id": "evt_1",
        "invitation_id": "inv_1",
        "candidate": {"email": "ada@example.org", "first_name": "Ada", "last_name": "L"},
        "test": {"tst_frm_id": 101, "pla_tst_id": 5000001, "status": "completed"},
        "grade": {"text": "720/1000", "percent": 72.4, "value": 720, "max": 1000},
        "duration_seconds": 1834,
        "skills": [
            {
                "id": "45",
                "description": "Formulas",
                "level": 3.9,
                "level_description": "Level 4",
                "scale_min": 1,
                "scale_max": 5,
                "success_rate": None,
            },
            {
                "id": "46",
                "description": "Charts",
                "level": -1,
                "level_description": None,
                "scale_min": 1,
                "scale_max": 5,
                "success_rate": None,
            },
            {
                "id": "47",
                "description": "Macros",
                "level": None,
                "level_description": None,
                "scale_min": None,
                "scale_max": None,
                "success_rate": 0.625,
            },
        ],
        "report": {"pdf_url": "https://recette.isograd.com/report/abc.pdf"},
        "context": {
            "teamtailor": {
                "partner_result_id": result_id,
                "update_url": fake.update_url(result_id) if fake else None,
                "subscription": "tt",
            }
        },
    }
    data.update(changes)
    return data


def envelope(data: dict[str, Any]) -> EventEnvelope:
    return EventEnvelope("evt_1", "assessment.completed", "2026-11-27T10:15:00Z", data)


def parse(**changes: Any) -> Subscription:
    table = {key: value for key, value in {**TABLE, **changes}.items() if value is not None}
    [subscription] = parse_subscriptions({"subscriptions": [table]}, {"TT_KEY": "from-env-0123"})
    return subscription


def problems(**changes: Any) -> list[str]:
    with pytest.raises(ConfigurationError) as caught:
        parse(**changes)
    return caught.value.problems


@pytest.fixture
def fake() -> FakeTeamtailor:
    return FakeTeamtailor(API_KEY)


@pytest.fixture
def http(fake: FakeTeamtailor) -> Iterator[httpx2.Client]:
    with TestClient(fake.app, base_url=fake.base_url) as control:
        client = httpx2.Client(transport=control._transport)
        yield client
        client.close()


@pytest.fixture
def sink(fake: FakeTeamtailor, http: httpx2.Client) -> TeamtailorSink:
    target = TeamtailorTarget(
        api_key=API_KEY, provider_key="p" * 16, base_url=fake.base_url, tst_frm_id=101
    )
    return TeamtailorSink(target, client=http, timeout=5.0, name="tt")


# relay.toml


def test_a_minimal_table_parses_with_the_documented_defaults() -> None:
    subscription = parse(api_key="env:TT_KEY")

    target = subscription.target
    assert isinstance(target, TeamtailorTarget)
    assert target.api_key == "from-env-0123"
    assert target.base_url == "https://api.teamtailor.com"
    assert (target.send_email, target.mail_template_id, target.signature_key) == (True, 7, None)
    assert target.describe() == "api.teamtailor.com"
    assert "from-env-0123" in target.secret_values()
    assert "from-env-0123" not in repr(subscription)


def test_missing_keys_and_a_test_choice_are_each_a_problem() -> None:
    found = problems(api_key=None, provider_key=None, tst_frm_id=None, mail_template_id=None)

    text = "\n".join(found)
    assert "api_key: is required" in text
    assert "provider_key: is required" in text
    assert "needs tst_frm_id or test_field" in text
    assert "mail_template_id: is required" in text


def test_send_email_false_needs_no_mail_template() -> None:
    target = parse(send_email=False, mail_template_id=None).target

    assert isinstance(target, TeamtailorTarget)
    assert (target.send_email, target.mail_template_id) == (False, None)


def test_a_tests_table_needs_test_field_and_positive_ids() -> None:
    found = problems(tests={"excel": 101, "word": "102"})

    text = "\n".join(found)
    assert "tests.word: must be a tst_frm_id" in text
    assert "tests: needs test_field" in text


def test_a_mapped_webhook_data_field_chooses_the_test() -> None:
    target = parse(tst_frm_id=None, test_field="test_id", tests={"excel": 101, "word": 102}).target
    assert isinstance(target, TeamtailorTarget)

    # Teamtailor sends field ids with "_" as "-" (webhook_config, "Serialization").
    assert target.choose_test({"test-id": "word"}) == 102
    with pytest.raises(ValueError, match="unknown test"):
        target.choose_test({"test-id": "powerpoint"})
    with pytest.raises(ValueError, match="no 'test_id'"):
        target.choose_test({})


def test_an_unmapped_field_carries_the_tst_frm_id_itself_with_a_fallback() -> None:
    target = parse(test_field="test").target
    assert isinstance(target, TeamtailorTarget)

    assert target.choose_test({"test": "105"}) == 105
    assert target.choose_test({}) == 101
    with pytest.raises(ValueError, match="must be an Isograd tst_frm_id"):
        target.choose_test({"test": "excel"})


# The partner result


def test_completed_attributes_follow_the_update_rules() -> None:
    attributes = completed_attributes(event_data())

    assert attributes == {
        "status": "completed",
        "summary": "Isograd test 101: 720/1000",
        "url": "https://recette.isograd.com/report/abc.pdf",
        "assessment": {"score": 72, "duration": 1834},
        "details": {
            "Grade": "720/1000",
            "Skills": {"Formulas": "3.9/5 (Level 4)", "Charts": "not tested", "Macros": "62 %"},
        },
    }


@pytest.mark.parametrize(("percent", "score"), [(99.6, 100), (100.0, 100), (0.2, 0), (105.0, 100)])
def test_the_score_is_an_integer_between_0_and_100(percent: float, score: int) -> None:
    data = event_data(grade={"text": "x", "percent": percent})

    assert completed_attributes(data)["assessment"]["score"] == score


def test_an_unknown_grade_type_sends_no_score_and_no_pdf_sends_no_url() -> None:
    data = event_data(grade={"text": "raw", "percent": None}, report={"pdf_url": None})

    attributes = completed_attributes(data)

    assert attributes["assessment"] == {"duration": 1834}
    assert "url" not in attributes


# Attempts against the fake


def test_the_result_is_put_with_the_api_key_version_and_media_type(
    fake: FakeTeamtailor, sink: TeamtailorSink
) -> None:
    result_id = fake.create_result()

    result = sink.send(envelope(event_data(fake, result_id)), attempt_at=NOW)

    assert result.outcome is AttemptOutcome.DELIVERED, result
    [update] = fake.updates_of(result_id)
    assert update.headers["authorization"] == f"Bearer {API_KEY}"
    assert update.headers["x-api-version"] == API_VERSION
    assert update.headers["content-type"] == MEDIA_TYPE
    assert fake.results[result_id]["status"] == "completed"
    assert fake.results[result_id]["assessment"]["score"] == 72


def test_a_refused_update_is_permanent_with_teamtailors_errors_recorded(
    fake: FakeTeamtailor, sink: TeamtailorSink
) -> None:
    result_id = fake.create_result()
    data = event_data(fake, result_id, report={"pdf_url": "https://x.example/a.pdf"})
    data["skills"] = []
    fake.script(
        ScriptedAnswer(
            422,
            {"content-type": MEDIA_TYPE},
            '{"errors":[{"status":"422","source":{"pointer":"/data/attributes/url"},'
            '"detail":"is invalid"}]}',
        )
    )

    result = sink.send(envelope(data), attempt_at=NOW)

    assert result.outcome is AttemptOutcome.FAILED
    assert result.status_code == 422
    assert result.error == "Teamtailor answered 422: /data/attributes/url: is invalid"


@pytest.mark.parametrize(
    ("answer", "outcome", "retry_after"),
    [
        (ScriptedAnswer(429, {"Retry-After": "30"}), AttemptOutcome.RETRY, 30.0),
        (ScriptedAnswer(503), AttemptOutcome.RETRY, None),
        (
            ScriptedAnswer(409, {}, '{"errors":[{"detail":"conflict"}]}'),
            AttemptOutcome.FAILED,
            None,
        ),
        (ScriptedAnswer(410), AttemptOutcome.FAILED, None),
    ],
)
def test_each_answer_is_classified(
    fake: FakeTeamtailor,
    sink: TeamtailorSink,
    answer: ScriptedAnswer,
    outcome: AttemptOutcome,
    retry_after: float | None,
) -> None:
    result_id = fake.create_result()
    fake.script(answer)

    result = sink.send(envelope(event_data(fake, result_id)), attempt_at=NOW)

    assert (result.outcome, result.retry_after) == (outcome, retry_after)


def test_an_unknown_partner_result_is_a_permanent_failure(sink: TeamtailorSink) -> None:
    result = sink.send(envelope(event_data(None, "deleted-result")), attempt_at=NOW)

    assert (result.outcome, result.status_code) == (AttemptOutcome.FAILED, 404)
    assert result.error == "Teamtailor answered 404: /data/id: partner result not found"


def test_an_event_not_ordered_from_teamtailor_fails_naming_the_key(
    fake: FakeTeamtailor, sink: TeamtailorSink
) -> None:
    result = sink.send(envelope(event_data(context={"ats_id": "42"})), attempt_at=NOW)

    assert result.outcome is AttemptOutcome.FAILED
    assert result.error is not None
    assert "context.teamtailor" in result.error
    assert fake.updates == []


def test_an_event_ordered_through_another_subscription_is_not_sent(
    fake: FakeTeamtailor, sink: TeamtailorSink
) -> None:
    data = event_data(fake, fake.create_result())
    data["context"]["teamtailor"]["subscription"] = "other-company"

    result = sink.send(envelope(data), attempt_at=NOW)

    assert result.outcome is AttemptOutcome.FAILED
    assert "other-company" in (result.error or "")
    assert fake.updates == []


def test_an_update_url_off_the_base_url_is_replaced_so_the_key_stays_home(
    fake: FakeTeamtailor, sink: TeamtailorSink
) -> None:
    result_id = fake.create_result()
    data = event_data(fake, result_id)
    data["context"]["teamtailor"]["update_url"] = (
        "https://evil.example/partner/v1/partner-results/x"
    )

    result = sink.send(envelope(data), attempt_at=NOW)

    assert result.outcome is AttemptOutcome.DELIVERED
    assert len(fake.updates_of(result_id)) == 1


def test_the_registry_builds_a_teamtailor_sink(http: httpx2.Client) -> None:
    sink = make_sink(parse(), http)

    assert isinstance(sink, TeamtailorSink)
    assert API_KEY not in repr(sink)


def test_the_readme_relay_toml_block_is_a_valid_subscription() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```toml\n(.*?)```", readme, flags=re.DOTALL)
    [block] = [b for b in blocks if 'kind = "teamtailor"' in b]
    environ = {
        "TEAMTAILOR_API_KEY": "a" * 20,
        "TEAMTAILOR_PROVIDER_KEY": "p" * 20,
        "TEAMTAILOR_SIGNATURE_KEY": "s" * 20,
    }

    [subscription] = parse_subscriptions(tomllib.loads(block), environ)

    assert subscription.kind == "teamtailor"


def test_the_summary_names_the_test_when_the_event_does() -> None:
    data = event_data(test={"tst_frm_id": 101, "name": "TOSA Excel", "pla_tst_id": 1})

    assert completed_attributes(data)["summary"] == "TOSA Excel: 720/1000"
