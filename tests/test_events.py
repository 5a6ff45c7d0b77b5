"""The assessment.completed payload and its shipped JSON Schema, checked on real built payloads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import jsonschema
import pytest

from tests.fakes import FakeClock, RecordingEnqueuer
from tests.fixtures.pipeline import CERTIFICATION, Simulated, invite, subscription
from worker.events import (
    ASSESSMENT_COMPLETED,
    build_completion_event,
    envelope_from_payload,
    event_schema,
    format_timestamp,
)
from worker.grades import convert_grade
from worker.isograd.models import AssessmentResult, ResultDetails, SkillResult
from worker.jobs.completions import process_completion
from worker.storage.records import Invitation, InvitationSource, InvitationStatus
from worker.storage.store import SqlStore

MOMENT = datetime(2026, 11, 27, 10, 15, tzinfo=UTC)


def an_invitation(**changes: Any) -> Invitation:
    values: dict[str, Any] = {
        "id": "inv_abc",
        "pla_tst_id": 456,
        "tst_frm_id": 123,
        "can_id": 1381134,
        "email": "ada@example.org",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "ext_id": "emp-7",
        "sub_com_id": None,
        "context": {"team": "data"},
        "test_url": None,
        "status": InvitationStatus.PENDING,
        "source": InvitationSource.INVITED,
        "idempotency_key": None,
        "created_at": MOMENT,
        "completed_at": None,
        "next_check_at": None,
        "last_checked_at": None,
        "check_count": 0,
        "last_status": None,
        "purged_at": None,
    }
    values.update(changes)
    return Invitation(**values)


def a_payload(
    invitation: Invitation | None = None,
    skills: tuple[SkillResult, ...] = (),
    grade_type: int = 2,
    pdf_url: str | None = "https://isograd.example/report.pdf",
    test_name: str | None = None,
) -> dict[str, Any]:
    return build_completion_event(
        event_id="evt_123",
        invitation=invitation or an_invitation(),
        pla_tst_id=456,
        result=AssessmentResult(grade_type, 550.0, 1000.0, "550/1000", 1834),
        details=ResultDetails(language=2, skills=skills),
        grade=convert_grade(grade_type, 550.0, 1000.0, "550/1000"),
        pdf_url=pdf_url,
        occurred_at=MOMENT,
        test_name=test_name,
    )


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return event_schema(ASSESSMENT_COMPLETED)


def test_the_shipped_schema_is_a_valid_json_schema(schema: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator.check_schema(schema)


def test_a_built_payload_follows_the_design_shape() -> None:
    payload = a_payload()

    assert payload["type"] == "assessment.completed"
    assert payload["timestamp"] == "2026-11-27T10:15:00Z"
    assert payload["data"]["test"] == {"tst_frm_id": 123, "pla_tst_id": 456, "status": "completed"}
    assert payload["data"]["candidate"]["can_id"] == 1381134
    assert payload["data"]["grade"]["type"] == "irt_score_1000"
    assert payload["data"]["context"] == {"team": "data"}


def test_a_built_payload_validates_against_the_schema(schema: dict[str, Any]) -> None:
    skills = (SkillResult("45", "Formulas", 3.5, "Advanced", 1.0, 5.0, None),)

    jsonschema.validate(a_payload(skills=skills), schema)


def test_a_payload_without_pdf_or_candidate_details_validates(schema: dict[str, Any]) -> None:
    invitation = an_invitation(email=None, first_name=None, last_name=None, ext_id=None)

    jsonschema.validate(a_payload(invitation, pdf_url=None), schema)


def test_a_known_test_name_is_carried_as_data_test_name(schema: dict[str, Any]) -> None:
    payload = a_payload(test_name="Excel 2019")

    assert payload["data"]["test"]["name"] == "Excel 2019"
    jsonschema.validate(payload, schema)


def test_without_a_test_name_the_key_is_left_out() -> None:
    assert "name" not in a_payload(test_name=None)["data"]["test"]


def test_the_schema_rejects_an_empty_test_name(schema: dict[str, Any]) -> None:
    payload = a_payload()
    payload["data"]["test"]["name"] = ""

    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(payload, schema)


def test_a_payload_with_an_unknown_grade_type_validates(schema: dict[str, Any]) -> None:
    jsonschema.validate(a_payload(grade_type=42), schema)


def test_the_schema_rejects_a_payload_missing_the_grade(schema: dict[str, Any]) -> None:
    payload = a_payload()
    del payload["data"]["grade"]

    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(payload, schema)


def test_the_schema_rejects_a_fractional_pla_tst_id(schema: dict[str, Any]) -> None:
    payload = a_payload()
    payload["data"]["test"]["pla_tst_id"] = 4.5

    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(payload, schema)


@pytest.mark.parametrize("tst_frm_id", [101, CERTIFICATION])
def test_payloads_stored_from_the_simulator_validate_against_the_schema(
    schema: dict[str, Any],
    store: SqlStore,
    simulated: Simulated,
    enqueuer: RecordingEnqueuer,
    clock: FakeClock,
    tst_frm_id: int,
) -> None:
    invitation = invite(simulated, store, tst_frm_id, context={"ats": {"id": 7}})
    simulated.move(invitation.pla_tst_id or 0, "complete")
    outcome = process_completion(
        invitation.id,
        store=store,
        client=simulated.client,
        subscriptions=(subscription(),),
        enqueuer=enqueuer,
        clock=clock,
    )
    event = store.get_event(outcome.event_id or "")
    assert event is not None

    jsonschema.validate(event.payload, schema)


def test_skill_numbers_that_are_whole_read_as_integers() -> None:
    skills = (SkillResult("45", "Formulas", 3.0, None, 1.0, 5.0, None),)

    [skill] = a_payload(skills=skills)["data"]["skills"]

    assert (skill["level"], skill["scale_min"], skill["scale_max"]) == (3, 1, 5)
    assert isinstance(skill["level"], int)


def test_the_timestamp_is_utc_with_a_z_whatever_the_zone() -> None:
    paris = timezone(timedelta(hours=1))

    assert format_timestamp(datetime(2026, 11, 27, 11, 15, 30, tzinfo=paris)) == (
        "2026-11-27T10:15:30Z"
    )


def test_a_naive_timestamp_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        format_timestamp(datetime(2026, 11, 27, 10, 15))


def test_the_envelope_of_a_stored_payload_keeps_its_id_type_time_and_data() -> None:
    payload = a_payload()

    envelope = envelope_from_payload("evt_123", payload)

    assert (envelope.event_id, envelope.type, envelope.timestamp) == (
        "evt_123",
        "assessment.completed",
        "2026-11-27T10:15:00Z",
    )
    assert envelope.data == payload["data"]


def test_there_is_no_schema_for_an_unknown_event_type() -> None:
    with pytest.raises(KeyError):
        event_schema("assessment.started")
