"""Event envelopes and a config reader shared by the sink kinds' tests.

`envelope()` is a chat-style event (test 123, 550/1000); `completed_event()` carries routing
context for the record sinks (test 101, 815/1000).
"""

from __future__ import annotations

import copy
import tomllib
from typing import Any

from worker.sinks.base import EventEnvelope
from worker.subscriptions import Subscription, parse_subscriptions

EMAIL = "jeanne.martin@example.org"
DATA: dict[str, Any] = {
    "event_id": "evt_01",
    "invitation_id": "inv_01",
    "sub_com_id": None,
    "candidate": {
        "email": EMAIL,
        "first_name": "Jeanne",
        "last_name": "Martin",
        "can_id": 1381134,
        "ext_id": "emp-7",
    },
    "test": {"tst_frm_id": 123, "pla_tst_id": 456, "status": "completed", "name": "Excel 2019"},
    "grade": {
        "gra_typ_id": 2,
        "type": "irt_score_1000",
        "value": 550,
        "max": 1000,
        "text": "550/1000",
        "normalized": 0.55,
        "lti_outcome": 0.55,
        "percent": 55.0,
    },
    "duration_seconds": 1834,
    "skills": [],
    "report": {"pdf_url": "https://isograd.example/report.pdf?k=1&t=2"},
    "context": {"hibob_employee_id": "3332883884017713238", "personio_person_id": "12345"},
}


def envelope(**changes: Any) -> EventEnvelope:
    """The sample event with top-level data keys replaced (`test={...}`)."""
    data = copy.deepcopy(DATA)
    data.update(changes)
    return EventEnvelope("evt_01", "assessment.completed", "2026-11-27T10:15:00Z", data)


def subscription(toml: str, environ: dict[str, str] | None = None) -> Subscription:
    (found,) = parse_subscriptions(tomllib.loads(toml), environ or {})
    return found


def completed_event(
    context: dict[str, Any] | None = None,
    *,
    grade: dict[str, Any] | None = None,
    ext_id: str | None = None,
    timestamp: str = "2026-11-27T10:15:00Z",
) -> EventEnvelope:
    """An event of test 101 graded 815/1000, with `context` as given."""
    data: dict[str, Any] = {
        "event_id": "evt_01",
        "invitation_id": "inv_01",
        "sub_com_id": None,
        "candidate": {
            "email": EMAIL,
            "first_name": "Jeanne",
            "last_name": "Martin",
            "can_id": 1381134,
            "ext_id": ext_id,
        },
        "test": {"tst_frm_id": 101, "pla_tst_id": 5000001, "status": "completed"},
        "grade": grade
        or {
            "gra_typ_id": 2,
            "type": "irt_score_1000",
            "value": 815,
            "max": 1000,
            "text": "815/1000",
            "normalized": 0.815,
            "lti_outcome": 0.815,
            "percent": 81.5,
        },
        "duration_seconds": 1834,
        "skills": [],
        "report": {"pdf_url": "https://reports.example.com/r/5000001.pdf"},
        "context": context or {},
    }
    return EventEnvelope("evt_01", "assessment.completed", timestamp, data)
