"""Events for the record sinks' tests: a completed event carrying routing context."""

from __future__ import annotations

from typing import Any

from worker.sinks.base import EventEnvelope

EMAIL = "jeanne.martin@example.org"


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
