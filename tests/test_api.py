"""Tests of the admin API, the health probes and the error mapping of the web app."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest
from starlette.testclient import TestClient
from structlog.testing import capture_logs

from tests.fakes import RecordingEnqueuer
from tests.fixtures.pipeline import EMAIL, EXCEL, Simulated
from tests.fixtures.web import ADMIN_TOKEN, KEYS, PUBLIC_URL, edge_settings
from webhooks.app import MAX_BODY_BYTES, create_app
from worker.runtime import Runtime
from worker.storage.records import AttemptOutcome, AttemptRecord, DeliveryStatus, NewInvitation
from worker.storage.store import SqlStore
from worker.tokens import verify_callback_token

UNKNOWN_TEST = 999_999


def body(**overrides: Any) -> dict[str, Any]:
    return {
        "email": EMAIL,
        "first_name": "Ada",
        "last_name": "Lovelace",
        "tst_frm_id": EXCEL,
        **overrides,
    }


def simulator_test(simulated: Simulated, pla_tst_id: int) -> dict[str, Any]:
    response = simulated.control.get(f"/_simulator/tests/{pla_tst_id}")
    response.raise_for_status()
    answer: dict[str, Any] = response.json()
    return answer


# -- POST /api/invitations -------------------------------------------------------------------


def test_invitation_is_created_with_201_and_stored(admin: TestClient, store: SqlStore) -> None:
    response = admin.post("/api/invitations", json=body(context={"ats": "42"}))

    assert response.status_code == 201
    answer = response.json()
    assert set(answer) == {"invitation_id", "pla_tst_id", "can_id", "test_url"}
    stored = store.get_invitation(answer["invitation_id"])
    assert stored is not None
    assert (stored.pla_tst_id, stored.can_id) == (answer["pla_tst_id"], answer["can_id"])
    assert stored.context == {"ats": "42"}


def test_callback_url_given_to_isograd_verifies_back_to_the_invitation(
    admin: TestClient, simulated: Simulated
) -> None:
    answer = admin.post("/api/invitations", json=body(return_url="https://hr.example/x")).json()

    options = simulator_test(simulated, answer["pla_tst_id"])["options"]
    prefix = f"{PUBLIC_URL}/callbacks/isograd/"
    assert options["cal_bac_pag"].startswith(prefix)
    token = options["cal_bac_pag"].removeprefix(prefix)
    assert verify_callback_token(KEYS, token) == answer["invitation_id"]
    assert options["rtn_pag"] == "https://hr.example/x"


def test_existing_candidate_falls_back_to_adding_the_test(
    admin: TestClient, simulated: Simulated
) -> None:
    first = admin.post("/api/invitations", json=body()).json()
    simulated.move(first["pla_tst_id"], "complete")

    response = admin.post("/api/invitations", json=body())

    assert response.status_code == 201
    second = response.json()
    assert second["can_id"] == first["can_id"]
    assert second["pla_tst_id"] != first["pla_tst_id"]
    assert simulated.calls(2) == 1


def test_unfinished_test_returned_by_isograd_answers_the_stored_invitation(
    admin: TestClient,
) -> None:
    first = admin.post("/api/invitations", json=body()).json()

    second = admin.post("/api/invitations", json=body()).json()

    assert second == first


def test_invalid_invitation_answers_422_with_a_message_per_field(admin: TestClient) -> None:
    response = admin.post("/api/invitations", json={"email": "nope", "tst_frm_id": 0})

    assert response.status_code == 422
    assert set(response.json()["errors"]) == {"email", "first_name", "last_name", "tst_frm_id"}


def test_body_that_is_not_json_answers_422(admin: TestClient) -> None:
    response = admin.post("/api/invitations", content=b"{not json")

    assert response.status_code == 422
    assert response.json()["errors"] == {"body": "must be valid JSON"}


def test_body_over_the_limit_answers_413(admin: TestClient) -> None:
    response = admin.post("/api/invitations", content=b"{" + b" " * MAX_BODY_BYTES + b"}")

    assert response.status_code == 413


def test_isograd_error_answers_502_with_its_code(admin: TestClient, store: SqlStore) -> None:
    response = admin.post("/api/invitations", json=body(tst_frm_id=UNKNOWN_TEST))

    assert response.status_code == 502
    answer = response.json()
    assert answer["error"] == "isograd_error"
    assert answer["isograd_code"] == 106
    assert answer["message"]


def test_isograd_unavailable_answers_503(admin: TestClient, simulated: Simulated) -> None:
    simulated.faults(error_rate=1.0)

    response = admin.post("/api/invitations", json=body())

    assert response.status_code == 503
    assert response.json()["error"] == "unavailable"


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", f"Basic {ADMIN_TOKEN}", "Bearer"])
def test_missing_or_wrong_token_answers_401(
    web: TestClient, simulated: Simulated, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}

    response = web.post("/api/invitations", json=body(), headers=headers)

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert simulated.calls(8) == 0


def test_api_refuses_everything_when_no_admin_token_is_configured(runtime: Runtime) -> None:
    settings = edge_settings()
    app = create_app(
        type(settings)(callback_keys=settings.callback_keys, public_url=PUBLIC_URL),
        runtime=runtime,
    )
    with TestClient(app, base_url=PUBLIC_URL) as client:
        response = client.get("/api/deliveries", headers={"Authorization": "Bearer "})

    assert response.status_code == 401


def test_same_idempotency_key_gives_the_same_invitation_without_a_second_call(
    admin: TestClient, simulated: Simulated
) -> None:
    headers = {"Idempotency-Key": "order-17"}
    first = admin.post("/api/invitations", json=body(), headers=headers)

    second = admin.post("/api/invitations", json=body(), headers=headers)

    assert second.status_code == 201
    assert second.json() == first.json()
    assert simulated.calls(8) == 1


def test_email_never_appears_in_logs(admin: TestClient) -> None:
    with capture_logs() as logs:
        admin.post("/api/invitations", json=body())
        admin.post("/api/invitations", json=body(email="bad@", tst_frm_id=UNKNOWN_TEST))

    assert logs
    assert EMAIL not in repr(logs)
    assert "bad@" not in repr(logs)


# -- GET endpoints ---------------------------------------------------------------------------


def test_stored_invitation_is_returned(admin: TestClient, store: SqlStore) -> None:
    invitation = store.create_invitation(NewInvitation(tst_frm_id=EXCEL, email=EMAIL))

    response = admin.get(f"/api/invitations/{invitation.id}")

    assert response.status_code == 200
    assert response.json()["id"] == invitation.id
    assert response.json()["status"] == "pending"


def test_unknown_ids_answer_404_json(admin: TestClient) -> None:
    for path in ("/api/invitations/inv_x", "/api/events/evt_x", "/api/deliveries/dlv_x"):
        response = admin.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"] == "not_found"


def test_unknown_api_route_and_wrong_method_answer_json(admin: TestClient) -> None:
    missing = admin.get("/api/nothing-here")
    wrong_method = admin.delete("/api/invitations")

    assert (missing.status_code, missing.json()["error"]) == (404, "not_found")
    assert (wrong_method.status_code, wrong_method.json()["error"]) == (405, "method_not_allowed")


def stored_delivery(store: SqlStore, invitation_id: str) -> tuple[str, str]:
    event, deliveries, _ = store.create_event(
        "evt_1", invitation_id, 4242, "assessment.completed", {"type": "x"}, ["hr"]
    )
    return event.id, deliveries[0].id


def test_event_and_delivery_with_attempts_are_returned(admin: TestClient, store: SqlStore) -> None:
    invitation = store.create_invitation(NewInvitation(tst_frm_id=EXCEL, email=EMAIL))
    event_id, delivery_id = stored_delivery(store, invitation.id)
    store.claim_delivery(delivery_id)
    store.record_attempt(
        delivery_id,
        AttemptRecord(
            started_at=store.get_delivery(delivery_id).created_at,  # type: ignore[union-attr]
            duration_ms=12,
            outcome=AttemptOutcome.FAILED,
            status_code=400,
        ),
    )

    event = admin.get(f"/api/events/{event_id}")
    delivery = admin.get(f"/api/deliveries/{delivery_id}")

    assert event.json()["payload"] == {"type": "x"}
    assert [attempt["status_code"] for attempt in delivery.json()["attempts"]] == [400]


def test_failed_deliveries_are_listed_and_replayed(
    admin: TestClient, store: SqlStore, enqueuer: RecordingEnqueuer
) -> None:
    invitation = store.create_invitation(NewInvitation(tst_frm_id=EXCEL, email=EMAIL))
    _, delivery_id = stored_delivery(store, invitation.id)
    store.claim_delivery(delivery_id)
    store.mark_failed(delivery_id, "410 gone")

    listed = admin.get("/api/deliveries", params={"status": "failed"})
    replayed = admin.post(f"/api/deliveries/{delivery_id}/replay")

    assert [item["id"] for item in listed.json()["deliveries"]] == [delivery_id]
    assert replayed.status_code == 202
    assert replayed.json()["status"] == DeliveryStatus.PENDING.value
    assert [job.id for job in enqueuer.of_kind("delivery")] == [delivery_id]


def test_unknown_delivery_status_filter_answers_422(admin: TestClient) -> None:
    response = admin.get("/api/deliveries", params={"status": "lost"})

    assert response.status_code == 422
    assert "status" in response.json()["errors"]


# -- health ----------------------------------------------------------------------------------


def test_healthz_answers_ok(web: TestClient) -> None:
    response = web.get("/healthz")

    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_readyz_answers_ok_when_database_and_broker_answer(web: TestClient) -> None:
    response = web.get("/readyz")

    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "broker": "ok"}


def test_readyz_answers_503_naming_the_unreachable_database(
    simulated: Simulated, enqueuer: RecordingEnqueuer
) -> None:
    # Port 1 on the loopback refuses connections: a database that is down.
    unreachable = SqlStore.from_url("postgresql+psycopg://postgres@127.0.0.1:1/test")
    http = httpx2.Client()
    down = Runtime(
        store=unreachable, client=simulated.client, http=http, subscriptions=(), enqueuer=enqueuer
    )
    app = create_app(edge_settings(), runtime=down, broker_ping=lambda: None)
    with TestClient(app, base_url=PUBLIC_URL) as client:
        response = client.get("/readyz")
    http.close()
    unreachable.close()

    assert response.status_code == 503
    assert response.json()["checks"] == {"database": "unavailable", "broker": "ok"}


def test_readyz_answers_503_when_the_broker_probe_fails(runtime: Runtime) -> None:
    def broker_down() -> None:
        raise ConnectionError("refused")

    app = create_app(edge_settings(), runtime=runtime, broker_ping=broker_down)
    with TestClient(app, base_url=PUBLIC_URL) as client:
        response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["checks"] == {"database": "ok", "broker": "unavailable"}


def test_replaying_an_unknown_delivery_answers_404(admin: TestClient) -> None:
    answer = admin.post("/api/deliveries/dlv_nope/replay")

    assert (answer.status_code, answer.json()["error"]) == (404, "not_found")


def test_a_delivered_delivery_is_replayed_only_with_force(
    admin: TestClient, store: SqlStore, enqueuer: RecordingEnqueuer
) -> None:
    invitation = store.create_invitation(NewInvitation(tst_frm_id=EXCEL, email=EMAIL))
    _, delivery_id = stored_delivery(store, invitation.id)
    store.claim_delivery(delivery_id)
    store.mark_delivered(delivery_id)

    refused = admin.post(f"/api/deliveries/{delivery_id}/replay")
    forced = admin.post(f"/api/deliveries/{delivery_id}/replay", params={"force": "true"})

    assert (refused.status_code, refused.json()["error"]) == (409, "conflict")
    assert (forced.status_code, forced.json()["status"]) == (202, DeliveryStatus.PENDING.value)
    assert [job.id for job in enqueuer.of_kind("delivery")] == [delivery_id]


def test_a_delivery_being_sent_is_not_replayed(
    admin: TestClient, store: SqlStore, enqueuer: RecordingEnqueuer
) -> None:
    invitation = store.create_invitation(NewInvitation(tst_frm_id=EXCEL, email=EMAIL))
    _, delivery_id = stored_delivery(store, invitation.id)
    store.claim_delivery(delivery_id)

    answer = admin.post(f"/api/deliveries/{delivery_id}/replay")

    assert answer.status_code == 409
    assert enqueuer.of_kind("delivery") == []
