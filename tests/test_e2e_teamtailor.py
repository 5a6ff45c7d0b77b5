"""End to end, Teamtailor: a partner-event webhook to `isograd-relay web` orders a test, the
simulator completes it, the worker writes the result to the (fake) Partner API exactly once.

Real processes (simulator, web, worker on real Redis) and the Teamtailor fake served over HTTP;
replayed and forged webhooks along the way change nothing.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlalchemy import func, select

from tests.harness.processes import RelayStack, relay_stack, wait_until
from tests.harness.served_app import ServedApp
from tests.vendors.teamtailor import FakeTeamtailor, ScriptedAnswer, sign_partner_event
from worker.storage.store import SqlStore
from worker.storage.tables import attempts, deliveries, events, invitations

pytestmark = pytest.mark.e2e

API_KEY = "tt-e2e-api-key-0123456789"
PROVIDER_KEY = "tt-e2e-provider-key-0123456789"
SIGNATURE_KEY = "tt-e2e-signature-key-0123456789"
MAIL_TEMPLATE = 7
TIMEOUT = 20.0


def teamtailor_toml(base_url: str) -> str:
    return f"""
[[subscriptions]]
name = "tt"
kind = "teamtailor"
api_key = "{API_KEY}"
provider_key = "{PROVIDER_KEY}"
signature_key = "{SIGNATURE_KEY}"
base_url = "{base_url}"
tst_frm_id = 101
mail_template_id = {MAIL_TEMPLATE}
timeout_seconds = 5
retry_schedule = [1, 1, 2]
"""


@dataclass
class Loop:
    stack: RelayStack
    fake: FakeTeamtailor
    http: httpx2.Client
    store: SqlStore

    @property
    def webhook_url(self) -> str:
        return f"{self.stack.web_url}/integrations/teamtailor/tt/webhook"

    def order(self) -> tuple[str, dict[str, Any]]:
        result_id = self.fake.create_result()
        email = f"cand-{uuid.uuid4().hex[:12]}@example.org"
        return result_id, self.fake.partner_event(result_id, email=email)

    def post(self, body: dict[str, Any], *, signature: str | None = None) -> httpx2.Response:
        event_id = body["partner-event"]["id"]
        return self.http.post(
            self.webhook_url,
            content=json.dumps(body),
            headers={
                "Authorization": f"Bearer {PROVIDER_KEY}",
                "Content-Type": "application/json",
                "Teamtailor-Signature": signature or sign_partner_event(SIGNATURE_KEY, event_id),
            },
        )

    def count(self, table: Any) -> int:
        with self.store.engine.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(table)).scalar_one())

    def delivery(self, invitation_id: str) -> tuple[str, int] | None:
        """The invitation's delivery to "tt": its status and how many attempts it took."""
        query = (
            select(deliveries.c.status, func.count(attempts.c.id).label("attempts"))
            .join(events, events.c.id == deliveries.c.event_id)
            .outerjoin(attempts, attempts.c.delivery_id == deliveries.c.id)
            .where(events.c.invitation_id == invitation_id, deliveries.c.subscription == "tt")
            .group_by(deliveries.c.id, deliveries.c.status)
        )
        with self.store.engine.connect() as connection:
            row = connection.execute(query).first()
        return None if row is None else (str(row.status), int(row.attempts))

    def statuses(self, result_id: str) -> list[str]:
        return [str(u.attributes.get("status")) for u in self.fake.updates_of(result_id)]

    def emails(self) -> list[dict[str, Any]]:
        response = self.http.get(f"{self.stack.simulator_url}/_simulator/emails")
        emails: list[dict[str, Any]] = response.json()
        return emails


@pytest.fixture(scope="module")
def loop(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loop]:
    directory: Path = tmp_path_factory.mktemp("e2e-teamtailor")
    fake = FakeTeamtailor(API_KEY)

    def serve(url: str) -> Any:
        fake.base_url = url
        return fake.app

    with (
        ServedApp(serve) as served,
        relay_stack(
            directory,
            redis_url=redis_url,
            receiver_url=served.url,
            targets=(),
            config=teamtailor_toml(served.url),
        ) as stack,
        httpx2.Client(timeout=15) as http,
    ):
        store = SqlStore.from_url(stack.database_url)
        try:
            yield Loop(stack, fake, http, store)
        finally:
            store.close()


def test_an_ordered_test_is_invited_once_and_its_result_written_back_once(loop: Loop) -> None:
    result_id, body = loop.order()
    event_id = body["partner-event"]["id"]
    now = int(time.time())
    invitations_before, emails_before = loop.count(invitations), len(loop.emails())

    first = loop.post(body)
    replayed = loop.post(body)  # Teamtailor retries; a fresh signature, the same event
    forged = loop.post(body, signature=sign_partner_event("not-the-key", event_id))
    stale = loop.post(body, signature=sign_partner_event(SIGNATURE_KEY, event_id, now - 600))

    assert first.status_code == 200, first.text
    assert first.json()["created"] is True
    assert replayed.json() == {"invitation_id": first.json()["invitation_id"], "created": False}
    assert (forged.status_code, stale.status_code) == (401, 401)
    assert loop.count(invitations) == invitations_before + 1
    assert len(loop.emails()) == emails_before + 1
    wait_until(lambda: "sent" in loop.statuses(result_id), timeout=TIMEOUT, what="status sent")

    invitation = loop.http.get(
        f"{loop.stack.web_url}/api/invitations/{first.json()['invitation_id']}",
        headers=loop.stack.admin_headers(),
    ).json()
    assert loop.fake.updates_of(result_id)[0].attributes["url"] == invitation["test_url"]
    loop.stack.complete(loop.http, invitation["pla_tst_id"], value=720)

    wait_until(
        lambda: loop.delivery(invitation["id"]) == ("delivered", 1),
        timeout=TIMEOUT,
        what="the delivery to Teamtailor",
        watch=loop.stack.services,
    )
    completed = [
        u for u in loop.fake.updates_of(result_id) if u.attributes["status"] == "completed"
    ]
    assert len(completed) == 1
    assert completed[0].attributes["assessment"]["score"] == 72
    assert completed[0].attributes["summary"] == "Isograd test 101: 720/1000"
    assert loop.fake.results[result_id]["status"] == "completed"


def test_an_update_teamtailor_could_not_take_is_retried_once(loop: Loop) -> None:
    result_id, body = loop.order()
    answer = loop.post(body).json()
    wait_until(lambda: "sent" in loop.statuses(result_id), timeout=TIMEOUT, what="status sent")
    invitation = loop.http.get(
        f"{loop.stack.web_url}/api/invitations/{answer['invitation_id']}",
        headers=loop.stack.admin_headers(),
    ).json()
    # A 503: a 429 waits at least 60 s (worker.retries); test_sinks_teamtailor classifies it.
    loop.fake.script(ScriptedAnswer(503))

    loop.stack.complete(loop.http, invitation["pla_tst_id"], value=450)

    wait_until(
        lambda: loop.delivery(answer["invitation_id"]) == ("delivered", 2),
        timeout=TIMEOUT,
        what="the retried delivery to Teamtailor",
        watch=loop.stack.services,
    )
    assert loop.statuses(result_id).count("completed") == 1


def test_secrets_and_candidate_emails_never_reach_the_logs(loop: Loop) -> None:
    logs = loop.stack.logs()

    assert logs
    for secret in (API_KEY, PROVIDER_KEY, SIGNATURE_KEY):
        assert secret not in logs
    assert "@example.org" not in logs
