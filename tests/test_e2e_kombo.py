"""End to end, Kombo: the scheduler publishes our packages, an order reaches `isograd-relay web` by
webhook and another only through the scheduler's poll of open orders; the simulator completes
both tests and the worker writes each result, with its PDF, to the (fake) Kombo exactly once.

Real processes (simulator, web, worker, scheduler on real Redis) and the Kombo fake served over
HTTP; replayed and forged webhooks along the way change nothing.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlalchemy import func, select

from tests.harness.processes import RelayStack, relay_stack, wait_until
from tests.harness.served_app import ServedApp
from tests.vendors.kombo import FakeKombo, sign
from worker.storage.store import SqlStore
from worker.storage.tables import attempts, deliveries, events, invitations

pytestmark = pytest.mark.e2e

API_KEY = "kombo-e2e-api-key-0123456789"
INTEGRATION = "recruitee:E2E0123456789"
SECRET = "kombo-e2e-webhook-secret-0123456789"
TIMEOUT = 30.0


def kombo_toml(base_url: str) -> str:
    return f"""
[[subscriptions]]
name = "kombo"
kind = "kombo"
api_key = "{API_KEY}"
integration_id = "{INTEGRATION}"
webhook_secret = "{SECRET}"
base_url = "{base_url}"
packages = [{{ id = "tosa-excel", tst_frm_id = 101, name = "TOSA Excel" }}]
mail_template_id = 7
poll_interval_seconds = 1
requests_per_second = 20
timeout_seconds = 5
retry_schedule = [1, 1, 2]
"""


@dataclass
class Loop:
    stack: RelayStack
    fake: FakeKombo
    http: httpx2.Client
    store: SqlStore

    def post(self, body: bytes, headers: dict[str, str]) -> httpx2.Response:
        return self.http.post(
            f"{self.stack.web_url}/integrations/kombo/kombo/webhook", content=body, headers=headers
        )

    def order(self) -> dict[str, Any]:
        return self.fake.create_order("tosa-excel", email=f"k-{uuid.uuid4().hex[:10]}@example.org")

    def invitation(self, order_id: str) -> dict[str, Any] | None:
        query = select(invitations.c.id, invitations.c.pla_tst_id).where(
            invitations.c.idempotency_key == f"kombo:kombo:{order_id}"
        )
        with self.store.engine.connect() as connection:
            row = connection.execute(query).first()
        return None if row is None or row.pla_tst_id is None else dict(row._mapping)

    def count(self, table: Any) -> int:
        with self.store.engine.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(table)).scalar_one())

    def delivered_once(self, invitation_id: str) -> Callable[[], bool]:
        """A poll: the invitation's delivery is delivered, at its first attempt."""
        return lambda: self.delivery(invitation_id) == ("delivered", 1)

    def delivery(self, invitation_id: str) -> tuple[str, int] | None:
        query = (
            select(deliveries.c.status, func.count(attempts.c.id).label("attempts"))
            .join(events, events.c.id == deliveries.c.event_id)
            .outerjoin(attempts, attempts.c.delivery_id == deliveries.c.id)
            .where(events.c.invitation_id == invitation_id)
            .group_by(deliveries.c.id, deliveries.c.status)
        )
        with self.store.engine.connect() as connection:
            row = connection.execute(query).first()
        return None if row is None else (str(row.status), int(row.attempts))


@pytest.fixture(scope="module")
def loop(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loop]:
    directory: Path = tmp_path_factory.mktemp("e2e-kombo")
    fake = FakeKombo(API_KEY, INTEGRATION, SECRET)
    with (
        ServedApp(lambda url: fake.app) as served,
        relay_stack(
            directory,
            redis_url=redis_url,
            receiver_url=served.url,
            targets=(),
            scheduler=True,
            config=kombo_toml(f"{served.url}/v1"),
        ) as stack,
        httpx2.Client(timeout=15) as http,
    ):
        store = SqlStore.from_url(stack.database_url)
        try:
            yield Loop(stack, fake, http, store)
        finally:
            store.close()


def test_the_scheduler_publishes_the_packages_at_start(loop: Loop) -> None:
    wait_until(lambda: loop.fake.package_puts >= 1, timeout=TIMEOUT, what="the packages")

    assert loop.fake.packages["tosa-excel"]["name"] == "TOSA Excel"


def test_webhook_and_missed_webhook_orders_each_get_one_result(loop: Loop) -> None:
    by_webhook, missed = loop.order(), loop.order()
    body, headers = loop.fake.order_received(by_webhook)
    before = loop.count(invitations)

    first = loop.post(body, headers)
    replayed = loop.post(body, headers)
    forged = loop.post(body, {**headers, "x-kombo-signature": sign("not-the-secret", body)})

    assert first.status_code == 200, first.text
    assert replayed.json()["created"] is False
    assert forged.status_code == 401
    wait_until(
        lambda: loop.invitation(missed["id"]) is not None,
        timeout=TIMEOUT,
        what="the poll to invite the order whose webhook never came",
        watch=loop.stack.services,
    )
    assert loop.count(invitations) == before + 2

    for order in (by_webhook, missed):
        invitation = loop.invitation(order["id"])
        assert invitation is not None
        loop.stack.complete(loop.http, invitation["pla_tst_id"], value=640)
    for order in (by_webhook, missed):
        invitation = loop.invitation(order["id"])
        assert invitation is not None
        wait_until(
            loop.delivered_once(invitation["id"]),
            timeout=TIMEOUT,
            what="the result at Kombo",
            watch=loop.stack.services,
        )
        [result] = loop.fake.results_of(order["id"])
        assert (result.body["status"], result.body["score"], result.body["max_score"]) == (
            "COMPLETED",
            640,
            1000,
        )
        [attachment] = result.body["attachments"]
        assert base64.b64decode(attachment["data"]).startswith(b"%PDF-")
        assert loop.fake.orders[order["id"]]["status"] == "COMPLETED"
    assert loop.count(invitations) == before + 2


def test_secrets_and_candidate_emails_never_reach_the_logs(loop: Loop) -> None:
    logs = loop.stack.logs()

    assert logs
    for secret in (API_KEY, SECRET):
        assert secret not in logs
    assert "@example.org" not in logs
