"""The development inbox: signature verification, the bounded list, the page and JSON views."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook
from starlette.testclient import TestClient

from worker.dev.inbox import Inbox, create_inbox_app, inbox_secrets
from worker.sinks.webhook import WebhookTarget
from worker.subscriptions import Subscription

SECRET = "whsec_zyrpscMQtWeYlVxdjm0ysnN4zbosRW11WEBZLfouaTQ="
OTHER_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def _event(first_name: str = "Ada", pla_tst_id: int = 5000001) -> bytes:
    return json.dumps(
        {
            "type": "assessment.completed",
            "timestamp": "2026-11-27T10:15:00Z",
            "data": {
                "candidate": {"first_name": first_name, "last_name": "Demo"},
                "test": {"tst_frm_id": 101, "pla_tst_id": pla_tst_id},
                "grade": {"text": "720/1000"},
            },
        }
    ).encode()


def _signed(body: bytes, *secrets: str, msg_id: str = "evt_1") -> dict[str, str]:
    now = datetime.now(UTC)
    signatures = " ".join(
        Webhook(secret).sign(msg_id=msg_id, timestamp=now, data=body.decode()) for secret in secrets
    )
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signatures,
        "content-type": "application/json",
    }


@pytest.fixture
def inbox() -> Inbox:
    return Inbox([SECRET])


@pytest.fixture
def client(inbox: Inbox) -> Iterator[TestClient]:
    with TestClient(create_inbox_app(inbox)) as client:
        yield client


def test_a_delivery_signed_with_the_inbox_secret_is_accepted_with_204(client: TestClient) -> None:
    body = _event()

    response = client.post("/webhook", content=body, headers=_signed(body, SECRET))

    assert response.status_code == 204


def test_an_accepted_delivery_is_listed_as_verified_with_its_summary(client: TestClient) -> None:
    body = _event()
    client.post("/webhook", content=body, headers=_signed(body, SECRET, msg_id="evt_42"))

    [listed] = client.get("/deliveries").json()["deliveries"]

    assert listed["verified"] is True
    assert listed["webhook_id"] == "evt_42"
    assert listed["event_type"] == "assessment.completed"
    assert listed["candidate"] == "Ada Demo"
    assert listed["grade"] == "720/1000"
    assert listed["payload"]["data"]["test"]["pla_tst_id"] == 5000001


def test_a_delivery_signed_with_another_secret_is_refused_with_401(client: TestClient) -> None:
    body = _event()

    response = client.post("/webhook", content=body, headers=_signed(body, OTHER_SECRET))

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_signature"


def test_a_refused_delivery_is_still_listed_as_not_verified(client: TestClient) -> None:
    body = _event()
    client.post("/webhook", content=body, headers=_signed(body, OTHER_SECRET))

    [listed] = client.get("/deliveries").json()["deliveries"]

    assert listed["verified"] is False
    assert listed["error"]


def test_a_body_changed_after_signing_is_refused(client: TestClient) -> None:
    headers = _signed(_event("Ada"), SECRET)

    response = client.post("/webhook", content=_event("Eve"), headers=headers)

    assert response.status_code == 401


def test_a_delivery_without_signature_headers_is_refused(client: TestClient) -> None:
    response = client.post("/webhook", content=_event())

    assert response.status_code == 401


def test_a_malformed_signature_header_is_refused_not_crashed(client: TestClient) -> None:
    body = _event()
    headers = {**_signed(body, SECRET), "webhook-signature": "garbage-without-comma"}

    response = client.post("/webhook", content=body, headers=headers)

    assert response.status_code == 401


def test_one_matching_signature_among_several_is_enough_for_rotation() -> None:
    inbox = Inbox([OTHER_SECRET])
    body = _event()

    received = inbox.receive(body, _signed(body, SECRET, OTHER_SECRET))

    assert received.verified is True


def test_an_inbox_without_secrets_verifies_nothing() -> None:
    inbox = Inbox([])
    body = _event()

    received = inbox.receive(body, _signed(body, SECRET))

    assert received.verified is False


def test_only_the_last_deliveries_up_to_the_capacity_are_kept_newest_first() -> None:
    inbox = Inbox([SECRET], capacity=2)
    for number in range(3):
        body = _event(pla_tst_id=number)
        inbox.receive(body, _signed(body, SECRET))

    kept = [d.payload["data"]["test"]["pla_tst_id"] for d in inbox.deliveries()]

    assert kept == [2, 1]


def test_a_body_that_is_not_json_is_kept_without_payload() -> None:
    inbox = Inbox([SECRET])
    body = b"not json"

    received = inbox.receive(body, _signed(body, SECRET))

    assert received.payload is None
    assert received.event_type is None


def test_the_page_lists_deliveries_with_names_escaped(client: TestClient) -> None:
    body = _event(first_name="<script>x</script>")
    client.post("/webhook", content=body, headers=_signed(body, SECRET))

    page = client.get("/").text

    assert "&lt;script&gt;x&lt;/script&gt; Demo" in page
    assert "<script>x" not in page
    assert "verified" in page


def test_the_empty_page_suggests_the_demo(client: TestClient) -> None:
    page = client.get("/").text

    assert "isograd-relay demo" in page


def _subscription(name: str, url: str, secrets: tuple[str, ...]) -> Subscription:
    return Subscription(name=name, kind="webhook", target=WebhookTarget(url, secrets))


def test_inbox_secrets_are_those_of_subscriptions_pointing_at_the_inbox_on_any_host() -> None:
    subscriptions = [
        _subscription("local", "http://127.0.0.1:8000/inbox/webhook", (SECRET,)),
        _subscription("named", "http://localhost:9000/inbox/webhook/", (OTHER_SECRET,)),
        _subscription("elsewhere", "https://example.com/hooks", ("whsec_elsewhere",)),
    ]

    assert inbox_secrets(subscriptions) == [SECRET, OTHER_SECRET]
