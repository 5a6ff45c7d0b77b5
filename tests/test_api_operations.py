"""Tests of the admin API's operator endpoints: invitations and events listings with filters and
cursors, bulk replay, subscriptions enable/disable, and erasure (Isograd is the simulator)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import httpx2
import pytest
from starlette.testclient import TestClient

from tests.fakes import FakeClock, RecordingEnqueuer
from tests.fixtures.dashboard import EMAIL, fail_delivery, store_event, store_invitation
from tests.fixtures.pipeline import Simulated, subscription
from tests.test_openapi import assert_documented
from worker.runtime import Runtime
from worker.storage.records import DeliveryStatus, InvitationStatus
from worker.storage.store import SqlStore


@pytest.fixture
def runtime(
    store: SqlStore, simulated: Simulated, enqueuer: RecordingEnqueuer, clock: FakeClock
) -> Iterator[Runtime]:
    """The edge runtime, with two subscriptions configured (hr, and crm disabled in config)."""
    http = httpx2.Client()
    yield Runtime(
        store=store,
        client=simulated.client,
        http=http,
        subscriptions=(subscription("hr"), subscription("crm", enabled=False)),
        enqueuer=enqueuer,
        clock=clock,
    )
    http.close()


# -- invitations and events ---------------------------------------------------------------------


def test_invitations_are_listed_newest_first_a_page_at_a_time(
    admin: TestClient, store: SqlStore, clock: FakeClock
) -> None:
    ids = []
    for pla_tst_id in range(1, 6):
        ids.append(store_invitation(store, pla_tst_id).id)
        clock.advance(60)

    pages = [admin.get("/api/invitations", params={"limit": 2}).json()]
    while pages[-1]["next_cursor"] is not None:
        cursor = pages[-1]["next_cursor"]
        pages.append(admin.get("/api/invitations", params={"limit": 2, "cursor": cursor}).json())

    listed = [invitation["id"] for page in pages for invitation in page["invitations"]]
    assert listed == ids[::-1]
    assert [len(page["invitations"]) for page in pages] == [2, 2, 1]


def test_invitations_are_filtered_by_status_email_and_time(
    admin: TestClient, store: SqlStore, clock: FakeClock
) -> None:
    start = clock()
    done = store_invitation(store, 1).id
    store.mark_invitation(done, InvitationStatus.COMPLETED)
    clock.advance(3600)
    waiting = store_invitation(store, 2, email="bob@example.com").id

    def ids(**params: str) -> list[str]:
        answer = admin.get("/api/invitations", params=params)
        assert answer.status_code == 200, answer.text
        return [invitation["id"] for invitation in answer.json()["invitations"]]

    assert ids(status="pending") == [waiting]
    assert ids(email="BOB@example.com") == [waiting]
    assert ids(pla_tst_id="1") == [done]
    assert ids(created_until=(start + timedelta(minutes=30)).isoformat()) == [done]
    assert ids(created_from=(start + timedelta(minutes=30)).isoformat(), status="") == [waiting]


def test_invalid_filters_are_all_reported_at_once(admin: TestClient) -> None:
    answer = admin.get(
        "/api/invitations",
        params={
            "status": "lost",
            "limit": "0",
            "created_from": "yesterday",
            "created_until": "2026-12-03T10:00:00",
            "colour": "red",
        },
    )

    assert answer.status_code == 422
    assert answer.json()["error"] == "invalid_request"
    assert set(answer.json()["errors"]) == {
        "status",
        "limit",
        "created_from",
        "created_until",
        "colour",
    }


def test_a_limit_above_the_maximum_and_a_forged_cursor_are_refused(admin: TestClient) -> None:
    too_many = admin.get("/api/events", params={"limit": "201"})
    forged = admin.get("/api/events", params={"cursor": "not-a-cursor"})

    assert too_many.status_code == 422
    assert too_many.json()["errors"] == {"limit": "must be at most 200"}
    assert forged.status_code == 422
    assert forged.json()["errors"] == {"cursor": "is not a cursor of this listing"}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"pla_tst_id": str(2**63)}, "pla_tst_id"),
        ({"tst_frm_id": "99999999999999999999"}, "tst_frm_id"),
        ({"email": "ada\x00@example.org"}, "email"),
        ({"subscription": "hr\x01"}, "subscription"),
    ],
)
def test_values_the_database_cannot_hold_are_refused_before_the_query(
    admin: TestClient, params: dict[str, str], field: str
) -> None:
    answer = admin.get("/api/events", params=params)

    assert answer.status_code == 422
    assert list(answer.json()["errors"]) == [field]


def test_events_are_filtered_by_delivery_status_and_subscription(
    admin: TestClient, store: SqlStore
) -> None:
    failing, [to_fail] = store_event(store, 1)
    fail_delivery(store, to_fail.id)
    fine, _ = store_event(store, 2, subscriptions=("crm",), email="bob@example.com")

    def ids(**params: str) -> list[str]:
        return [event["id"] for event in admin.get("/api/events", params=params).json()["events"]]

    assert ids(status="failed") == [failing.id]
    assert ids(subscription="crm") == [fine.id]
    assert ids(email="bob@example.com") == [fine.id]
    assert ids(tst_frm_id="101", pla_tst_id="1") == [failing.id]


def test_the_listings_need_the_bearer_token(web: TestClient) -> None:
    for path in ("/api/invitations", "/api/events", "/api/subscriptions"):
        assert web.get(path).status_code == 401, path
    assert web.post("/api/erasure", json={"email": EMAIL}).status_code == 401


# -- bulk replay ---------------------------------------------------------------------------------


def test_a_bulk_replay_requeues_the_matching_failed_deliveries_once(
    admin: TestClient, store: SqlStore, clock: FakeClock, enqueuer: RecordingEnqueuer
) -> None:
    start = clock()
    _, [first] = store_event(store, 1)
    fail_delivery(store, first.id)
    clock.advance(7200)
    _, [later] = store_event(store, 2)
    fail_delivery(store, later.id)
    body = {
        "subscription": "hr",
        "created_from": start.isoformat(),
        "created_until": (start + timedelta(hours=1)).isoformat(),
    }

    answer = admin.post("/api/deliveries/replay", json=body)
    again = admin.post("/api/deliveries/replay", json=body)

    assert answer.status_code == 200
    assert answer.json() == {"matched": 1, "requeued": 1, "enqueued": 1, "skipped": 0}
    assert again.json() == {"matched": 0, "requeued": 0, "enqueued": 0, "skipped": 0}
    assert [job.id for job in enqueuer.of_kind("delivery")] == [first.id]
    still_failed = store.get_delivery(later.id)
    assert still_failed is not None
    assert still_failed.status is DeliveryStatus.FAILED


def test_a_bulk_replay_takes_cancelled_ones_when_asked(admin: TestClient, store: SqlStore) -> None:
    _, [cancelled] = store_event(store, 1)
    store.cancel_delivery(cancelled.id, "subscription disabled")

    failed_only = admin.post("/api/deliveries/replay", json={})
    both = admin.post("/api/deliveries/replay", json={"status": ["failed", "cancelled"]})

    assert failed_only.json()["requeued"] == 0
    assert both.json()["requeued"] == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"status": "delivered"}, "status"),
        ({"status": []}, "status"),
        ({"created_from": "2026-12-02", "created_until": "2026-12-01"}, "created_until"),
        ({"subscriptions": "hr"}, "subscriptions"),
        (["hr"], "body"),
    ],
)
def test_a_bulk_replay_with_a_bad_filter_is_refused_and_changes_nothing(
    admin: TestClient, store: SqlStore, body: object, field: str
) -> None:
    _, [delivery] = store_event(store, 1)
    fail_delivery(store, delivery.id)

    answer = admin.post("/api/deliveries/replay", json=body)

    assert answer.status_code == 422
    assert list(answer.json()["errors"]) == [field]
    unchanged = store.get_delivery(delivery.id)
    assert unchanged is not None
    assert unchanged.status is DeliveryStatus.FAILED


def test_a_bulk_replay_body_that_is_not_json_is_refused(admin: TestClient) -> None:
    answer = admin.post("/api/deliveries/replay", content=b"{nope")

    assert answer.status_code == 422
    assert answer.json()["errors"] == {"body": "must be valid JSON"}


# -- subscriptions -------------------------------------------------------------------------------


def test_subscriptions_are_listed_with_state_and_counts(
    admin: TestClient, store: SqlStore, clock: FakeClock
) -> None:
    _, [delivery] = store_event(store, 1)
    fail_delivery(store, delivery.id)
    store.record_subscription_failure("hr", clock())

    answer = admin.get("/api/subscriptions")

    assert answer.status_code == 200
    hr, crm = answer.json()["subscriptions"]
    assert (hr["name"], hr["kind"], hr["active"], hr["configured"]) == ("hr", "webhook", True, True)
    assert hr["failing_since"] == clock().isoformat().replace("+00:00", "Z")
    assert hr["deliveries"]["failed"] == 1
    assert (crm["name"], crm["active"], crm["enabled_in_config"]) == ("crm", False, False)


def test_an_operator_disables_then_enables_a_subscription(
    admin: TestClient, store: SqlStore
) -> None:
    disabled = admin.post("/api/subscriptions/hr/disable")
    state_while_disabled = store.subscription_state("hr")
    enabled = admin.post("/api/subscriptions/hr/enable")

    assert disabled.status_code == 200
    assert disabled.json()["active"] is False
    assert disabled.json()["disabled_reason"] == "disabled by an operator"
    assert state_while_disabled.disabled
    assert enabled.json()["active"] is True
    assert not store.subscription_state("hr").disabled


def test_the_switched_subscriptions_fit_the_documented_schema(admin: TestClient) -> None:
    document = admin.get("/api/openapi.json").json()

    disabled = admin.post("/api/subscriptions/hr/disable")
    enabled = admin.post("/api/subscriptions/hr/enable")
    listed = admin.get("/api/subscriptions")

    assert_documented(document, "/api/subscriptions/{name}/disable", "post", disabled)
    assert_documented(document, "/api/subscriptions/{name}/enable", "post", enabled)
    assert_documented(document, "/api/subscriptions", "get", listed)


def test_enabling_an_unknown_subscription_is_404_and_stores_nothing(
    admin: TestClient, store: SqlStore
) -> None:
    answer = admin.post("/api/subscriptions/nope/enable")

    assert answer.status_code == 404
    assert answer.json()["error"] == "not_found"
    assert store.list_subscription_states() == []


# -- erasure ---------------------------------------------------------------------------------------


def test_an_erasure_blanks_the_candidate_and_answers_the_audit_row(
    admin: TestClient, store: SqlStore, capsys: pytest.CaptureFixture[str]
) -> None:
    event, [delivery] = store_event(store, 1)

    answer = admin.post("/api/erasure", json={"email": EMAIL, "requested_by": "dpo@example.com"})

    assert answer.status_code == 200
    record = answer.json()
    assert (record["invitations"], record["events"], record["deliveries_cancelled"]) == (1, 1, 1)
    assert record["requested_by"] == "dpo@example.com"
    assert record["isograd"] is None
    assert record["isograd_failed"] is False
    assert EMAIL not in answer.text
    erased = store.get_event(event.id)
    assert erased is not None
    assert erased.payload["data"]["candidate"]["email"] is None
    cancelled = store.get_delivery(delivery.id)
    assert cancelled is not None
    assert cancelled.status is DeliveryStatus.CANCELLED
    assert EMAIL not in capsys.readouterr().out


def test_an_erasure_with_isograd_anonymizes_the_candidate_at_isograd(
    admin: TestClient, store: SqlStore, simulated: Simulated
) -> None:
    invitation = admin.post(
        "/api/invitations",
        json={"email": EMAIL, "first_name": "Ada", "last_name": "Lovelace", "tst_frm_id": 101},
    )
    assert invitation.status_code == 201

    answer = admin.post("/api/erasure", json={"email": EMAIL, "isograd": True})

    assert answer.json()["isograd"] == "anonymized"
    state = simulated.control.get("/_simulator/state").json()
    assert [candidate["anonymized"] for candidate in state["candidates"]] == [True]


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, {"email"}),
        ({"email": "not-an-email"}, {"email"}),
        ({"email": EMAIL, "isograd": "yes"}, {"isograd"}),
        ({"email": EMAIL, "requested_by": ""}, {"requested_by"}),
        ({"email": EMAIL, "mail": EMAIL}, {"mail"}),
        ({"email": "ada\x00@example.org"}, {"email"}),
        ("ada", {"body"}),
    ],
)
def test_a_bad_erasure_request_is_refused_and_records_nothing(
    admin: TestClient, store: SqlStore, body: object, fields: set[str]
) -> None:
    store_invitation(store, 1)

    answer = admin.post("/api/erasure", json=body)

    assert answer.status_code == 422
    assert set(answer.json()["errors"]) == fields
    assert store.list_erasures() == []
    assert store.list_invitations().items[0].email == EMAIL
