"""The Kombo webhook, order polling and `kombo sync-packages`: every order invited exactly once."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx2
import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient
from structlog.testing import capture_logs

from tests.fakes import FakeClock, RecordingEnqueuer
from tests.fixtures.pipeline import Simulated
from tests.fixtures.web import KEYS, PUBLIC_URL, edge_settings
from tests.polling import wait_until
from tests.vendors.kombo import FakeKombo, ScriptedAnswer, sign
from webhooks.app import create_app
from webhooks.integrations.kombo import verify_signature
from worker.cli.kombo import sync_packages
from worker.runtime import Runtime
from worker.scheduler.orders import KomboOrderPoller, PollReport
from worker.settings import Settings
from worker.sinks.kombo import KomboApi, KomboPackage, KomboTarget
from worker.storage.store import SqlStore
from worker.storage.tables import callbacks, deliveries, events, invitations
from worker.subscriptions import Subscription

API_KEY = "kombo-api-key-0123456789"
INTEGRATION = "workday:HWUTwvyx2wLoSUHphiWVrp28"
SECRET = "kombo-webhook-secret-0123456789"
URL = "/integrations/kombo/kombo/webhook"
EMAIL = "john.doe@example.org"


def subscription(name: str = "kombo", **changes: Any) -> Subscription:
    settings: dict[str, Any] = {
        "api_key": API_KEY,
        "integration_id": INTEGRATION,
        "webhook_secret": SECRET,
        "packages": (KomboPackage("tosa-excel", 101, "TOSA Excel"),),
        "base_url": "http://kombo.test/v1",
        "mail_template_id": 7,
        "requests_per_second": 100.0,
    }
    return Subscription(name=name, kind="kombo", target=KomboTarget(**{**settings, **changes}))


@pytest.fixture
def fake() -> FakeKombo:
    fake = FakeKombo(API_KEY, INTEGRATION, SECRET)
    fake.packages["tosa-excel"] = {"id": "tosa-excel"}
    return fake


@pytest.fixture
def kombo_transport(fake: FakeKombo) -> Iterator[httpx2.BaseTransport]:
    with TestClient(fake.app, base_url="http://kombo.test") as client:
        yield client._transport


@pytest.fixture
def http(kombo_transport: httpx2.BaseTransport) -> Iterator[httpx2.Client]:
    client = httpx2.Client(transport=kombo_transport)
    yield client
    client.close()


def make_web(
    http: httpx2.Client,
    store: SqlStore,
    simulated: Simulated,
    enqueuer: RecordingEnqueuer,
    clock: FakeClock,
    *subscriptions: Subscription,
) -> Iterator[TestClient]:
    runtime = Runtime(
        store=store,
        client=simulated.client,
        http=http,
        subscriptions=subscriptions or (subscription(),),
        enqueuer=enqueuer,
        clock=clock,
    )
    app = create_app(edge_settings(), runtime=runtime, broker_ping=lambda: None)
    with TestClient(app, base_url=PUBLIC_URL) as client:
        yield client


@pytest.fixture
def web(
    http: httpx2.Client,
    store: SqlStore,
    simulated: Simulated,
    enqueuer: RecordingEnqueuer,
    clock: FakeClock,
) -> Iterator[TestClient]:
    yield from make_web(http, store, simulated, enqueuer, clock)


@pytest.fixture
def poller(
    http: httpx2.Client, store: SqlStore, simulated: Simulated, clock: FakeClock
) -> KomboOrderPoller:
    return make_poller(http, store, simulated, clock)


def make_poller(
    http: httpx2.Client,
    store: SqlStore,
    simulated: Simulated,
    clock: FakeClock,
    *,
    page_size: int = 2,
    **changes: Any,
) -> KomboOrderPoller:
    sub = subscription(**changes)
    assert isinstance(sub.target, KomboTarget)
    api = KomboApi(sub.target, client=http, timeout=5.0, name=sub.name, page_size=page_size)
    return KomboOrderPoller(
        sub,
        api=api,
        client=simulated.client,
        store=store,
        callback_keys=KEYS,
        public_url=PUBLIC_URL,
        clock=clock,
        first_check_after=timedelta(hours=1),
    )


def rows(store: SqlStore) -> dict[str, int]:
    with store.engine.connect() as connection:
        return {
            table.name: int(
                connection.execute(select(func.count()).select_from(table)).scalar_one()
            )
            for table in (invitations, callbacks, events, deliveries)
        }


def post(web: TestClient, body: bytes, headers: dict[str, str]) -> httpx2.Response:
    return web.post(URL, content=body, headers=headers)


# The webhook


def test_an_order_webhook_creates_the_invitation_with_its_routing(
    web: TestClient, fake: FakeKombo, store: SqlStore, simulated: Simulated
) -> None:
    order = fake.create_order("tosa-excel", email=EMAIL)

    response = post(web, *fake.order_received(order))

    assert response.status_code == 200, response.text
    assert response.json()["created"] is True
    invitation = store.get_invitation(response.json()["invitation_id"])
    assert invitation is not None
    assert (invitation.email, invitation.tst_frm_id) == (EMAIL, 101)
    assert invitation.context == {"kombo": {"order_id": order["id"], "subscription": "kombo"}}
    assert simulated.calls(42) == 1


def test_a_repeated_order_webhook_creates_nothing_new(
    web: TestClient, fake: FakeKombo, store: SqlStore, simulated: Simulated
) -> None:
    order = fake.create_order("tosa-excel", email=EMAIL)
    first = post(web, *fake.order_received(order))
    before = rows(store)

    again = post(web, *fake.order_received(order))

    assert again.json() == {"invitation_id": first.json()["invitation_id"], "created": False}
    assert rows(store) == before
    assert (simulated.calls(8), simulated.calls(42)) == (1, 1)


@pytest.mark.parametrize("forgery", ["missing", "other_secret", "tampered_body"])
def test_a_forged_order_webhook_answers_401_and_stores_nothing(
    web: TestClient, fake: FakeKombo, store: SqlStore, simulated: Simulated, forgery: str
) -> None:
    body, headers = fake.order_received(fake.create_order("tosa-excel", email=EMAIL))
    if forgery == "missing":
        del headers["x-kombo-signature"]
    elif forgery == "other_secret":
        headers["x-kombo-signature"] = sign("another-secret", body)
    else:
        body = body.replace(EMAIL.encode(), b"mallory@example.org")
    before = rows(store)

    response = post(web, body, headers)

    assert response.status_code == 401
    assert rows(store) == before
    assert simulated.calls(8) == 0


def test_other_webhook_types_and_closed_orders_order_nothing(
    web: TestClient, fake: FakeKombo, store: SqlStore
) -> None:
    sync = b'{"id":"x","type":"sync-finished","data":{}}'
    order = {**fake.create_order("tosa-excel", email=EMAIL), "status": "CANCELLED"}
    body, headers = fake.order_received(order)

    first = post(web, sync, {"x-kombo-signature": sign(SECRET, sync)})
    second = post(web, body, headers)

    assert (first.status_code, second.status_code) == (200, 200)
    assert "ignored" in first.json()
    assert "ignored" in second.json()
    assert rows(store)["invitations"] == 0


def test_an_order_for_an_unknown_package_answers_422(
    web: TestClient, fake: FakeKombo, store: SqlStore
) -> None:
    fake.packages["tosa-word"] = {"id": "tosa-word"}
    body, headers = fake.order_received(fake.create_order("tosa-word", email=EMAIL))

    response = post(web, body, headers)

    assert response.status_code == 422
    assert response.text == "unknown package 'tosa-word'"
    assert rows(store)["invitations"] == 0


def test_a_candidate_without_names_is_invited_with_stand_ins(
    web: TestClient, fake: FakeKombo, store: SqlStore
) -> None:
    order = fake.create_order("tosa-excel", email=EMAIL, first_name=None, last_name=None)

    response = post(web, *fake.order_received(order))

    invitation = store.get_invitation(response.json()["invitation_id"])
    assert invitation is not None
    assert (invitation.first_name, invitation.last_name) == ("john.doe", "-")


def test_the_orders_integration_picks_the_subscription(
    http: httpx2.Client,
    fake: FakeKombo,
    store: SqlStore,
    simulated: Simulated,
    enqueuer: RecordingEnqueuer,
    clock: FakeClock,
) -> None:
    other = subscription("kombo-other", integration_id="greenhouse:OTHER")
    for web in make_web(http, store, simulated, enqueuer, clock, subscription(), other):
        order = {
            **fake.create_order("tosa-excel", email=EMAIL),
            "integration_id": "greenhouse:OTHER",
        }
        unknown = {**order, "id": "zzz", "integration_id": "lever:NOBODY"}

        routed = post(web, *fake.order_received(order))
        ignored = post(web, *fake.order_received(unknown))

        invitation = store.get_invitation(routed.json()["invitation_id"])
        assert invitation is not None
        assert invitation.context["kombo"]["subscription"] == "kombo-other"
        assert ignored.json() == {"ignored": "no subscription for this integration"}


def test_the_email_never_appears_in_logs(web: TestClient, fake: FakeKombo) -> None:
    with capture_logs() as logs:
        post(web, *fake.order_received(fake.create_order("tosa-excel", email=EMAIL)))

    assert logs
    assert EMAIL not in repr(logs)


def test_verify_signature_tolerates_padding_and_refuses_others() -> None:
    good = sign(SECRET, b"body")

    assert verify_signature(good, b"body", SECRET)
    assert verify_signature(good + "=", b"body", SECRET)
    assert not verify_signature(good, b"body!", SECRET)
    assert not verify_signature(None, b"body", SECRET)


# Polling


def test_the_first_poll_publishes_the_packages_and_invites_every_open_order(
    poller: KomboOrderPoller, fake: FakeKombo, store: SqlStore
) -> None:
    for index in range(5):
        fake.create_order("tosa-excel", email=f"c{index}@example.org")

    report = poller.run(threading.Event())

    assert report == PollReport("kombo", packages_published=True, pages=3, orders=5, created=5)
    assert fake.package_puts == 1
    assert rows(store)["invitations"] == 5


def test_a_poll_after_the_webhook_creates_nothing_and_packages_are_published_once(
    web: TestClient,
    poller: KomboOrderPoller,
    fake: FakeKombo,
    store: SqlStore,
    simulated: Simulated,
) -> None:
    order = fake.create_order("tosa-excel", email=EMAIL)
    post(web, *fake.order_received(order))

    first = poller.run(threading.Event())
    second = poller.run(threading.Event())

    assert (first.created, second.created) == (0, 0)
    assert (first.packages_published, second.packages_published) == (True, None)
    assert fake.package_puts == 1
    assert rows(store)["invitations"] == 1
    assert simulated.calls(8) == 1


def test_a_rate_limited_poll_stops_and_the_next_run_recovers(
    poller: KomboOrderPoller, fake: FakeKombo, store: SqlStore
) -> None:
    fake.create_order("tosa-excel", email=EMAIL)
    fake.script(ScriptedAnswer(429, {"Retry-After": "5"}, path_suffix="/open"))

    stopped = poller.run(threading.Event())
    recovered = poller.run(threading.Event())

    assert stopped.interrupted
    assert stopped.created == 0
    assert (recovered.interrupted, recovered.created) == (False, 1)


def test_an_unusable_order_is_counted_and_the_others_invited(
    poller: KomboOrderPoller, fake: FakeKombo, store: SqlStore
) -> None:
    fake.packages["tosa-word"] = {"id": "tosa-word"}
    poller.run(threading.Event())  # publishes, which drops tosa-word from the fake's catalogue
    fake.packages["tosa-word"] = {"id": "tosa-word"}
    fake.create_order("tosa-word", email="w@example.org")
    fake.create_order("tosa-excel", email=EMAIL)

    report = poller.run(threading.Event())

    assert (report.unusable, report.created) == (1, 1)


def test_a_halted_poll_makes_no_request(poller: KomboOrderPoller, fake: FakeKombo) -> None:
    halt = threading.Event()
    halt.set()

    report = poller.run(halt)

    assert report.interrupted
    assert (fake.package_puts, fake.open_order_requests) == (0, [])


def test_the_rate_limit_spaces_requests(
    http: httpx2.Client, store: SqlStore, simulated: Simulated, clock: FakeClock, fake: FakeKombo
) -> None:
    slow = make_poller(http, store, simulated, clock, requests_per_second=0.05)
    halt = threading.Event()
    finished: list[PollReport] = []
    thread = threading.Thread(target=lambda: finished.append(slow.run(halt)))

    thread.start()
    # The package PUT takes the only token; the GET must wait 20 s, so it has not happened.
    wait_until(lambda: fake.package_puts == 1, 5, "the package PUT")
    halt.set()
    thread.join(5)

    assert finished[0].interrupted
    assert fake.open_order_requests == []


# kombo sync-packages


def test_sync_packages_publishes_each_kombo_subscription(
    kombo_transport: httpx2.BaseTransport, fake: FakeKombo
) -> None:
    settings = Settings(subscriptions=(subscription(),))
    out = io.StringIO()

    code = sync_packages(settings, out=out, transport=kombo_transport)

    assert code == 0
    assert out.getvalue() == "kombo: 1 package(s) published\n"
    assert list(fake.packages) == ["tosa-excel"]


def test_sync_packages_reports_a_refusal_and_an_unknown_name(
    kombo_transport: httpx2.BaseTransport,
) -> None:
    settings = Settings(subscriptions=(subscription(api_key="wrong-key-0123456789"),))
    out = io.StringIO()

    refused = sync_packages(settings, out=out, transport=kombo_transport)
    unknown = sync_packages(settings, ["nobody"], out=out, transport=kombo_transport)

    assert (refused, unknown) == (1, 2)
    assert "kombo: not published" in out.getvalue()
    assert "no kombo subscription nobody" in out.getvalue()
