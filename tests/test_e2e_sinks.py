"""End to end with real processes: one completion delivered at once to a webhook, a Slack fake, a
Teams fake and an http sink (Personio fake, OAuth2), each filtered by min_percent, each once.

The fakes (tests/vendors/chat_hris.py) listen on real ports; the relay's simulator, web and worker
run as processes on real Redis (tests/harness/processes.py).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest

from tests.harness.processes import RelayStack, new_webhook_secret, relay_stack, wait_until
from tests.receiver import RecordingReceiver
from tests.vendors.chat_hris import FakePersonio, FakeSlack, FakeTeams
from worker.storage.records import DeliveryStatus
from worker.storage.store import SqlStore

pytestmark = pytest.mark.e2e

DELIVERY_TIMEOUT = 20.0
SUBSCRIPTIONS = ("hook", "slack", "teams", "personio")
WEBHOOK_SECRET = new_webhook_secret()


@dataclass
class Stack:
    relay: RelayStack
    http: httpx2.Client
    store: SqlStore
    hook: RecordingReceiver
    slack: FakeSlack
    teams: FakeTeams
    personio: FakePersonio


def relay_toml(hook: str, personio: str) -> str:
    """Four subscriptions wanting 50 % or more; chat URLs and credentials come from env:."""
    common = "min_percent = 50\ntimeout_seconds = 5\nretry_schedule = [1, 2, 5]\n"
    return f"""
[[subscriptions]]
name = "hook"
kind = "webhook"
url = "{hook}/hooks/results"
secrets = ["{WEBHOOK_SECRET}"]
{common}
[[subscriptions]]
name = "slack"
kind = "slack"
url = "env:SLACK_WEBHOOK_URL"
{common}
[[subscriptions]]
name = "teams"
kind = "teams"
url = "env:TEAMS_WORKFLOW_URL"
{common}
[[subscriptions]]
name = "personio"
kind = "http"
url = "{personio}/v2/persons/{{{{ data.context.personio_person_id | urlencode }}}}"
method = "PATCH"
body = '''{{"custom_attributes": [
  {{"id": "dynamic_1", "value": {{{{ data.grade.text | tojson }}}}}}
]}}'''
{common}
[subscriptions.auth]
type = "oauth2_client_credentials"
token_url = "{personio}/v2/auth/token"
client_id = "env:PERSONIO_CLIENT_ID"
client_secret = "env:PERSONIO_CLIENT_SECRET"
"""


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    directory: Path = tmp_path_factory.mktemp("e2e-sinks")
    slack, teams, personio = FakeSlack(), FakeTeams(), FakePersonio()
    with (
        RecordingReceiver() as hook,
        RecordingReceiver(responder=slack) as slack_server,
        RecordingReceiver(responder=teams) as teams_server,
        RecordingReceiver(responder=personio) as personio_server,
    ):
        environ = {
            "SLACK_WEBHOOK_URL": slack_server.url(slack.path),
            "TEAMS_WORKFLOW_URL": teams_server.url(teams.url_path()),
            "PERSONIO_CLIENT_ID": personio.client_id,
            "PERSONIO_CLIENT_SECRET": personio.client_secret,
        }
        config = relay_toml(hook.url().rstrip("/"), personio_server.url().rstrip("/"))
        with (
            relay_stack(
                directory,
                redis_url=redis_url,
                receiver_url=hook.url(),
                targets=(),
                config=config,
                extra_env=environ,
            ) as relay,
            httpx2.Client(timeout=10) as http,
        ):
            store = SqlStore.from_url(relay.database_url)
            try:
                yield Stack(relay, http, store, hook, slack, teams, personio)
            finally:
                store.close()


def complete(stack: Stack, value: int) -> int:
    """Invite and complete a test (simulator test 101: score out of 1000); its pla_tst_id."""
    invitation = stack.relay.invite(
        stack.http,
        email=f"e2e-{uuid.uuid4().hex[:8]}@example.org",
        first_name="Grace",
        last_name="Hopper",
        tst_frm_id=101,
        context={"personio_person_id": "12345"},
    )
    stack.relay.complete(stack.http, invitation["pla_tst_id"], value=value, max_value=1000)
    return int(invitation["pla_tst_id"])


def delivered(stack: Stack, pla_tst_id: int) -> dict[str, DeliveryStatus]:
    event = stack.store.get_event_by_pla_tst_id(pla_tst_id)
    if event is None:
        return {}
    return {d.subscription: d.status for d in stack.store.list_deliveries(event_id=event.id)}


def test_a_passing_completion_reaches_every_kind_exactly_once(stack: Stack) -> None:
    pla_tst_id = complete(stack, 815)

    wait_until(
        lambda: (
            set(delivered(stack, pla_tst_id).values()) == {DeliveryStatus.DELIVERED}
            and len(delivered(stack, pla_tst_id)) == len(SUBSCRIPTIONS)
        ),
        timeout=DELIVERY_TIMEOUT,
        what="four deliveries",
        watch=stack.relay.services,
    )

    assert sorted(delivered(stack, pla_tst_id)) == sorted(SUBSCRIPTIONS)
    assert len(stack.hook.requests) == 1
    assert json.loads(stack.hook.requests[0].body)["data"]["grade"]["percent"] == 81.5
    (message,) = stack.slack.messages
    assert "Grace Hopper" in message["text"]
    assert "815/1000 (81.5 %)" in message["text"]
    (card,) = stack.teams.cards
    assert "815/1000" in json.dumps(card)
    assert stack.personio.updates == [("12345", [{"id": "dynamic_1", "value": "815/1000"}])]


def test_a_completion_below_min_percent_is_delivered_nowhere(stack: Stack) -> None:
    before = (len(stack.hook.requests), len(stack.slack.messages), len(stack.teams.cards))
    pla_tst_id = complete(stack, 300)

    wait_until(
        lambda: stack.store.get_event_by_pla_tst_id(pla_tst_id) is not None,
        timeout=DELIVERY_TIMEOUT,
        what="the event",
        watch=stack.relay.services,
    )

    assert delivered(stack, pla_tst_id) == {}
    after = (len(stack.hook.requests), len(stack.slack.messages), len(stack.teams.cards))
    assert after == before
    assert len(stack.personio.updates) == 1


def test_no_chat_url_or_credential_appears_in_logs_or_attempts(stack: Stack) -> None:
    secrets = (
        stack.slack.path,
        stack.teams.sig,
        stack.personio.client_secret,
        WEBHOOK_SECRET.removeprefix("whsec_"),
    )
    attempts = [
        attempt
        for delivery in stack.store.list_deliveries(limit=100)
        for attempt in stack.store.list_attempts(delivery.id)
    ]
    recorded = repr(attempts)

    assert attempts
    for secret in secrets:
        assert secret not in stack.relay.logs()
        assert secret not in recorded
