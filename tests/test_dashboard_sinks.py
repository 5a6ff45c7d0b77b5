"""The dashboard with chat and http subscriptions: hosts shown, URLs' secrets and keys never."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator

import httpx2
import pytest
from starlette.testclient import TestClient

from tests.fakes import FakeClock, RecordingEnqueuer
from tests.fixtures.dashboard import sign_in
from tests.fixtures.pipeline import Simulated
from tests.fixtures.web import ADMIN_TOKEN, PUBLIC_URL, edge_settings
from webhooks.app import create_app
from worker.runtime import Runtime
from worker.storage.store import SqlStore
from worker.subscriptions import parse_subscriptions

SLACK_PATH = "/services/T0SLACK/B0SLACK/sl4ck-secret-path"
TEAMS_SIG = "t3ams-signature-value"
API_TOKEN = "http-api-t0ken-value"
CONFIG = f"""
[[subscriptions]]
name = "chat"
kind = "slack"
url = "https://hooks.slack.com{SLACK_PATH}"

[[subscriptions]]
name = "team"
kind = "teams"
url = "https://prod-01.westeurope.logic.azure.com/workflows/1/triggers/manual?sig={TEAMS_SIG}"

[[subscriptions]]
name = "hris"
kind = "http"
url = "https://api.hris.example/v1/people/{{{{ data.context.id }}}}"
body = "{{}}"
auth = {{ type = "bearer", token = "env:API_TOKEN" }}
"""


@pytest.fixture
def page(
    store: SqlStore, simulated: Simulated, enqueuer: RecordingEnqueuer, clock: FakeClock
) -> Iterator[str]:
    subscriptions = parse_subscriptions(tomllib.loads(CONFIG), {"API_TOKEN": API_TOKEN})
    with httpx2.Client() as http:
        runtime = Runtime(
            store=store,
            client=simulated.client,
            http=http,
            subscriptions=subscriptions,
            enqueuer=enqueuer,
            clock=clock,
        )
        app = create_app(edge_settings(), runtime=runtime, broker_ping=lambda: None)
        with TestClient(app, base_url=PUBLIC_URL, follow_redirects=False) as browser:
            assert sign_in(browser, ADMIN_TOKEN).status_code == 303
            yield browser.get("/dashboard/").text


def test_the_overview_shows_each_kinds_host(page: str) -> None:
    for host in ("hooks.slack.com", "prod-01.westeurope.logic.azure.com", "api.hris.example"):
        assert host in page


@pytest.mark.parametrize("secret", [SLACK_PATH, "sl4ck-secret-path", TEAMS_SIG, API_TOKEN])
def test_the_overview_never_shows_a_chat_url_secret_or_an_api_key(page: str, secret: str) -> None:
    assert secret not in page
