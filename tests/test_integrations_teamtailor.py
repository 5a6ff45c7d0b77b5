"""The Teamtailor partner webhook: verified events become one invitation; others store nothing."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient
from structlog.testing import capture_logs

from tests.fakes import FakeClock, RecordingEnqueuer
from tests.fixtures.pipeline import Simulated
from tests.fixtures.web import KEYS, PUBLIC_URL, edge_settings
from tests.vendors.teamtailor import FakeTeamtailor, sign_partner_event
from webhooks.app import create_app
from webhooks.integrations.teamtailor import verify_signature
from worker.runtime import Runtime
from worker.sinks.teamtailor import TeamtailorTarget
from worker.storage.records import InvitationSource
from worker.storage.store import SqlStore
from worker.storage.tables import callbacks, deliveries, events, invitations
from worker.subscriptions import Subscription
from worker.tokens import verify_callback_token

API_KEY = "tt-api-key-0123456789"
PROVIDER_KEY = "tt-provider-key-0123456789"
SIGNATURE_KEY = "tt-signature-key-0123456789"
URL = "/integrations/teamtailor/tt/webhook"
EMAIL = "juston.becker@example.org"


@pytest.fixture
def fake() -> FakeTeamtailor:
    return FakeTeamtailor(API_KEY)


def target(fake: FakeTeamtailor, **changes: Any) -> TeamtailorTarget:
    settings: dict[str, Any] = {
        "api_key": API_KEY,
        "provider_key": PROVIDER_KEY,
        "signature_key": SIGNATURE_KEY,
        "base_url": fake.base_url,
        "tst_frm_id": 101,
        "test_field": "test",
        "mail_template_id": 7,
    }
    return TeamtailorTarget(**{**settings, **changes})


def make_web(
    fake: FakeTeamtailor,
    store: SqlStore,
    simulated: Simulated,
    enqueuer: RecordingEnqueuer,
    clock: FakeClock,
    **changes: Any,
) -> Iterator[TestClient]:
    with TestClient(fake.app, base_url=fake.base_url) as fake_client:
        http = httpx2.Client(transport=fake_client._transport)
        subscription = Subscription(name="tt", kind="teamtailor", target=target(fake, **changes))
        runtime = Runtime(
            store=store,
            client=simulated.client,
            http=http,
            subscriptions=(subscription,),
            enqueuer=enqueuer,
            clock=clock,
        )
        app = create_app(edge_settings(), runtime=runtime, broker_ping=lambda: None)
        with TestClient(app, base_url=PUBLIC_URL) as client:
            yield client
        http.close()


@pytest.fixture
def web(
    fake: FakeTeamtailor,
    store: SqlStore,
    simulated: Simulated,
    enqueuer: RecordingEnqueuer,
    clock: FakeClock,
) -> Iterator[TestClient]:
    yield from make_web(fake, store, simulated, enqueuer, clock)


def post(
    web: TestClient,
    body: dict[str, Any],
    clock: FakeClock,
    *,
    provider_key: str = PROVIDER_KEY,
    signature: str | None = None,
    url: str = URL,
) -> httpx2.Response:
    event_id = body["partner-event"]["id"]
    headers = {"Authorization": f"Bearer {provider_key}", "Content-Type": "application/json"}
    headers["Teamtailor-Signature"] = (
        signature
        if signature is not None
        else sign_partner_event(SIGNATURE_KEY, event_id, int(clock().timestamp()))
    )
    return web.post(url, content=json.dumps(body), headers=headers)


def rows(store: SqlStore) -> dict[str, int]:
    with store.engine.connect() as connection:
        return {
            table.name: int(
                connection.execute(select(func.count()).select_from(table)).scalar_one()
            )
            for table in (invitations, callbacks, events, deliveries)
        }


def test_a_verified_event_creates_the_invitation_with_its_routing(
    web: TestClient, fake: FakeTeamtailor, store: SqlStore, simulated: Simulated, clock: FakeClock
) -> None:
    result_id = fake.create_result()
    body = fake.partner_event(result_id, email=EMAIL, webhook_data={"test": "102"})

    response = post(web, body, clock)

    assert response.status_code == 200, response.text
    assert response.json()["created"] is True
    invitation = store.get_invitation(response.json()["invitation_id"])
    assert invitation is not None
    assert (invitation.email, invitation.first_name, invitation.tst_frm_id) == (
        EMAIL,
        "Juston",
        102,
    )
    assert invitation.source is InvitationSource.INVITED
    assert invitation.context == {
        "teamtailor": {
            "partner_result_id": result_id,
            "update_url": fake.update_url(result_id),
            "subscription": "tt",
        }
    }
    # Created exactly as POST /api/invitations does: act 8 with our signed callback URL.
    [test] = simulated.control.get("/_simulator/state").json()["tests"]
    assert (
        verify_callback_token(KEYS, test["options"]["cal_bac_pag"].rsplit("/", 1)[1])
        == invitation.id
    )


def test_the_candidate_is_emailed_and_the_partner_result_marked_sent_with_the_test_url(
    web: TestClient, fake: FakeTeamtailor, store: SqlStore, simulated: Simulated, clock: FakeClock
) -> None:
    result_id = fake.create_result()

    response = post(web, fake.partner_event(result_id, email=EMAIL), clock)

    invitation = store.get_invitation(response.json()["invitation_id"])
    assert invitation is not None
    [email] = simulated.control.get("/_simulator/emails").json()
    assert email["mai_tem_id"] == "7"
    [update] = fake.updates_of(result_id)
    assert update.attributes == {"status": "sent", "url": invitation.test_url}


def test_a_repeated_event_creates_nothing_new_and_sends_no_second_email(
    web: TestClient, fake: FakeTeamtailor, store: SqlStore, simulated: Simulated, clock: FakeClock
) -> None:
    body = fake.partner_event(fake.create_result(), email=EMAIL)
    first = post(web, body, clock)
    before = rows(store)

    clock.advance(60)
    again = post(web, body, clock)

    assert again.status_code == 200
    assert again.json() == {"invitation_id": first.json()["invitation_id"], "created": False}
    assert rows(store) == before
    assert simulated.calls(8) == 1
    assert simulated.calls(42) == 1


def test_send_email_false_sends_no_registration_email(
    fake: FakeTeamtailor,
    store: SqlStore,
    simulated: Simulated,
    enqueuer: RecordingEnqueuer,
    clock: FakeClock,
) -> None:
    for web in make_web(
        fake, store, simulated, enqueuer, clock, send_email=False, mail_template_id=None
    ):
        response = post(web, fake.partner_event(fake.create_result(), email=EMAIL), clock)

        assert response.status_code == 200
        assert simulated.calls(42) == 0


@pytest.mark.parametrize(
    "forgery",
    [
        "wrong_provider_key",
        "no_signature",
        "wrong_signature",
        "signed_other_event",
        "stale",
        "future",
    ],
)
def test_a_forged_or_replayed_out_of_window_event_answers_401_and_stores_nothing(
    web: TestClient,
    fake: FakeTeamtailor,
    store: SqlStore,
    simulated: Simulated,
    clock: FakeClock,
    forgery: str,
) -> None:
    body = fake.partner_event(fake.create_result(), email=EMAIL)
    event_id = body["partner-event"]["id"]
    now = int(clock().timestamp())
    kwargs: dict[str, Any] = {
        "wrong_provider_key": {"provider_key": "not-the-provider-key"},
        "no_signature": {"signature": ""},
        "wrong_signature": {"signature": sign_partner_event("another-key", event_id, now)},
        "signed_other_event": {"signature": sign_partner_event(SIGNATURE_KEY, "other-id", now)},
        "stale": {"signature": sign_partner_event(SIGNATURE_KEY, event_id, now - 301)},
        "future": {"signature": sign_partner_event(SIGNATURE_KEY, event_id, now + 301)},
    }[forgery]
    before = rows(store)

    response = post(web, body, clock, **kwargs)

    assert response.status_code == 401
    assert rows(store) == before
    assert simulated.calls(8) == 0
    assert fake.updates == []


def test_a_body_that_is_not_a_partner_event_is_refused_without_storing(
    web: TestClient, store: SqlStore, clock: FakeClock
) -> None:
    before = rows(store)

    response = web.post(
        URL, content=b"{not json", headers={"Authorization": f"Bearer {PROVIDER_KEY}"}
    )

    assert response.status_code == 401  # with a signature key, an unsigned body is unverifiable
    assert rows(store) == before


def test_an_unusable_event_answers_422_with_a_sentence_for_the_recruiter(
    web: TestClient, fake: FakeTeamtailor, store: SqlStore, clock: FakeClock
) -> None:
    body = fake.partner_event(fake.create_result(), email="not-an-email")
    before = rows(store)

    with capture_logs() as logs:
        response = post(web, body, clock)

    assert response.status_code == 422
    assert response.text == "candidate email must be an email address"
    assert rows(store) == before
    assert "not-an-email" not in repr(logs)


def test_an_unknown_test_in_webhook_data_answers_422(
    web: TestClient, fake: FakeTeamtailor, clock: FakeClock
) -> None:
    body = fake.partner_event(fake.create_result(), email=EMAIL, webhook_data={"test": "excel"})

    response = post(web, body, clock)

    assert response.status_code == 422
    assert "tst_frm_id" in response.text


def test_an_unknown_subscription_answers_404(
    web: TestClient, fake: FakeTeamtailor, clock: FakeClock
) -> None:
    body = fake.partner_event(fake.create_result(), email=EMAIL)

    response = post(web, body, clock, url="/integrations/teamtailor/nobody/webhook")

    assert response.status_code == 404


def test_isograd_unavailable_answers_503_so_teamtailor_retries(
    web: TestClient, fake: FakeTeamtailor, simulated: Simulated, clock: FakeClock
) -> None:
    simulated.faults(fail_next=5, error_status=503)

    response = post(web, fake.partner_event(fake.create_result(), email=EMAIL), clock)

    assert response.status_code == 503
    assert fake.updates == []


def test_the_email_never_appears_in_logs(
    web: TestClient, fake: FakeTeamtailor, clock: FakeClock
) -> None:
    with capture_logs() as logs:
        post(web, fake.partner_event(fake.create_result(), email=EMAIL), clock)

    assert logs
    assert EMAIL not in repr(logs)


def test_verify_signature_takes_any_v1_entry_and_ignores_v0(clock: FakeClock) -> None:
    now = int(clock().timestamp())
    good = hmac.new(b"k", f"{now}.ev".encode(), hashlib.sha256).hexdigest()

    assert verify_signature(f"t={now},\n  v1={'0' * 64},\n  v1={good}", "ev", "k", now=clock())
    assert not verify_signature(f"t={now},v0={good}", "ev", "k", now=clock())
    assert not verify_signature(f"v1={good}", "ev", "k", now=clock())
    assert not verify_signature(None, "ev", "k", now=clock())
