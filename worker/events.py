"""Events: the `assessment.completed` document we deliver and its JSON Schema."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from worker.grades import Grade
from worker.isograd.models import AssessmentResult, ResultDetails, SkillResult
from worker.sinks.base import EventEnvelope
from worker.storage.records import Invitation
from worker.subscriptions import ASSESSMENT_COMPLETED, EVENT_TYPES

__all__ = ["ASSESSMENT_COMPLETED", "EVENT_TYPES", "build_completion_event", "event_schema"]


def build_completion_event(
    *,
    event_id: str,
    invitation: Invitation,
    pla_tst_id: int,
    result: AssessmentResult,
    details: ResultDetails,
    grade: Grade,
    pdf_url: str | None,
    occurred_at: datetime,
    test_name: str | None = None,
) -> dict[str, Any]:
    """The full `{"type", "timestamp", "data"}` document, as stored in events.payload.

    `occurred_at` (timezone-aware) is when we confirmed the completion; act 10 gives no time.
    The candidate's email is part of the event on purpose: it is what the receivers match on.
    `test_name` (act 14's, when known) is data.test.name; without one the key is left out.
    """
    test: dict[str, Any] = {
        "tst_frm_id": invitation.tst_frm_id,
        "pla_tst_id": pla_tst_id,
        "status": "completed",
    }
    if test_name:
        test["name"] = test_name
    return {
        "type": ASSESSMENT_COMPLETED,
        "timestamp": format_timestamp(occurred_at),
        "data": {
            "event_id": event_id,
            "invitation_id": invitation.id,
            "sub_com_id": invitation.sub_com_id,
            "candidate": {
                "email": invitation.email,
                "first_name": invitation.first_name,
                "last_name": invitation.last_name,
                "can_id": invitation.can_id,
                "ext_id": invitation.ext_id,
            },
            "test": test,
            "grade": grade.as_payload(),
            "duration_seconds": result.elapsed_seconds,
            "skills": [_skill(skill) for skill in details.skills],
            "report": {"pdf_url": pdf_url},
            "context": dict(invitation.context),
        },
    }


def envelope_from_payload(event_id: str, payload: dict[str, Any]) -> EventEnvelope:
    """The sink envelope of a stored event document; KeyError if the document is not one."""
    return EventEnvelope(
        event_id=event_id,
        type=str(payload["type"]),
        timestamp=str(payload["timestamp"]),
        data=payload["data"],
    )


def format_timestamp(moment: datetime) -> str:
    """ISO 8601 in UTC to the second with a `Z`, as Standard Webhooks examples write it."""
    if moment.tzinfo is None:
        raise ValueError("event timestamps must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def event_schema(event_type: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) shipped for `event_type`; KeyError if there is none."""
    if event_type not in EVENT_TYPES:
        raise KeyError(event_type)
    text = resources.files("worker").joinpath("schemas", f"{event_type}.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def _skill(skill: SkillResult) -> dict[str, Any]:
    return {
        "id": skill.id,
        "description": skill.description,
        "level": _number(skill.level),
        "level_description": skill.level_description,
        "scale_min": _number(skill.scale_min),
        "scale_max": _number(skill.scale_max),
        "success_rate": _number(skill.success_rate),
    }


def _number(value: float | None) -> float | int | None:
    """1.0 as 1 so the payload reads like Isograd's numbers; NaN/inf as null (JSON has none)."""
    if value is None or not math.isfinite(value):
        return None
    return int(value) if value == int(value) else value
