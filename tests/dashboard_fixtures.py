"""Fixtures for the dashboard and OpenAPI tests: the web app on a real SQLite store with one
configured subscription, a browser signed in or not, and stored events, deliveries and attempts."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx2
import pytest
from starlette.testclient import TestClient

from tests.edge_fixtures import ADMIN_TOKEN, PUBLIC_URL, edge_settings
from tests.fakes import FakeClock, RecordingEnqueuer
from tests.pipeline_fixtures import SECRET, Simulated, subscription
from webhooks.app import create_app
from worker.runtime import Runtime
from worker.storage.records import (
    AttemptOutcome,
    AttemptRecord,
    Delivery,
    Event,
    Invitation,
    NewInvitation,
)
from worker.storage.store import SqlStore

# A chat-style webhook URL whose path is a secret: the dashboard must show the host only.
HOOK_URL = "https://hooks.example/services/T0SECRETPATH"
HR = subscription("hr", url=HOOK_URL)
EMAIL = "ada.lovelace@example.org"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')

__all__ = ["ADMIN_TOKEN", "PUBLIC_URL", "SECRET"]


@pytest.fixture
def dashboard_runtime(
    store: SqlStore, simulated: Simulated, enqueuer: RecordingEnqueuer, clock: FakeClock
) -> Iterator[Runtime]:
    http = httpx2.Client()
    yield Runtime(
        store=store,
        client=simulated.client,
        http=http,
        subscriptions=(HR,),
        enqueuer=enqueuer,
        clock=clock,
    )
    http.close()


@pytest.fixture
def browser(dashboard_runtime: Runtime) -> Iterator[TestClient]:
    """A browser that has not signed in (it does not follow redirects)."""
    app = create_app(edge_settings(), runtime=dashboard_runtime, broker_ping=lambda: None)
    with TestClient(app, base_url=PUBLIC_URL, follow_redirects=False) as client:
        yield client


@pytest.fixture
def signed_in(browser: TestClient) -> TestClient:
    """The same browser after signing in with the right token (it keeps the cookie)."""
    assert sign_in(browser, ADMIN_TOKEN).status_code == 303
    return browser


def sign_in(browser: TestClient, token: str, next_path: str = "/dashboard/") -> httpx2.Response:
    return browser.post("/dashboard/login", data={"token": token, "next": next_path})


def csrf_token(page: str) -> str:
    found = _CSRF.search(page)
    assert found is not None, "the page has no form with a CSRF token"
    return found.group(1)


def store_invitation(store: SqlStore, pla_tst_id: int, **changes: Any) -> Invitation:
    values: dict[str, Any] = {
        "tst_frm_id": 101,
        "email": EMAIL,
        "first_name": "Ada",
        "last_name": "Lovelace",
        "ext_id": "emp-7",
        "pla_tst_id": pla_tst_id,
        "can_id": 5000 + pla_tst_id,
        "context": {"ats": "42"},
        **changes,
    }
    return store.create_invitation(NewInvitation(**values))


def completion_payload(event_id: str, invitation: Invitation) -> dict[str, Any]:
    """An assessment.completed document as worker.events builds it (IRT score 720/1000)."""
    assert invitation.pla_tst_id is not None
    return {
        "type": "assessment.completed",
        "timestamp": "2026-11-27T10:15:00Z",
        "data": {
            "event_id": event_id,
            "invitation_id": invitation.id,
            "sub_com_id": None,
            "candidate": {
                "email": invitation.email,
                "first_name": invitation.first_name,
                "last_name": invitation.last_name,
                "can_id": invitation.can_id,
                "ext_id": invitation.ext_id,
            },
            "test": {
                "tst_frm_id": invitation.tst_frm_id,
                "pla_tst_id": invitation.pla_tst_id,
                "status": "completed",
            },
            "grade": {
                "gra_typ_id": 2,
                "type": "irt_score_1000",
                "value": 720,
                "max": 1000,
                "text": None,
                "normalized": 0.72,
                "lti_outcome": 0.72,
                "percent": 72.0,
            },
            "duration_seconds": 1800,
            "skills": [],
            "report": {"pdf_url": None},
            "context": dict(invitation.context),
        },
    }


def store_event(
    store: SqlStore,
    pla_tst_id: int = 1001,
    *,
    subscriptions: tuple[str, ...] = ("hr",),
    now: datetime | None = None,
    **candidate: Any,
) -> tuple[Event, list[Delivery]]:
    """An invitation, its completion event and one pending delivery per subscription."""
    invitation = store_invitation(store, pla_tst_id, **candidate)
    event_id = f"evt_test{pla_tst_id}"
    event, deliveries, _ = store.create_event(
        event_id,
        invitation.id,
        pla_tst_id,
        "assessment.completed",
        completion_payload(event_id, invitation),
        list(subscriptions),
        now,
    )
    return event, deliveries


def fail_delivery(
    store: SqlStore,
    delivery_id: str,
    *,
    status_code: int = 410,
    body: str = "gone for good",
    error: str = "HTTP 410",
) -> Delivery:
    """One failed attempt, then dead-lettered, as the deliver job does for a 410."""
    claimed = store.claim_delivery(delivery_id)
    assert claimed is not None
    store.record_attempt(
        delivery_id,
        AttemptRecord(
            started_at=claimed.updated_at,
            duration_ms=87.4,
            outcome=AttemptOutcome.FAILED,
            status_code=status_code,
            error=error,
            response_body=body,
        ),
    )
    return store.mark_failed(delivery_id, error)
