"""Fixtures for the web edge's tests: the app on a real SQLite store, the Isograd client against
the in-process simulator, a recording enqueuer and a fake clock."""

from __future__ import annotations

from collections.abc import Iterator

import httpx2
import pytest
from starlette.testclient import TestClient

from tests.fakes import FakeClock, RecordingEnqueuer
from tests.pipeline_fixtures import Simulated
from webhooks.app import create_app
from worker.runtime import Runtime
from worker.settings import Settings
from worker.storage.store import SqlStore
from worker.tokens import CallbackKey

ADMIN_TOKEN = "admin-token-for-tests-0123456789"
PUBLIC_URL = "https://relay.example"
OLD_KEY = CallbackKey("k1", b"o" * 32)
NEW_KEY = CallbackKey("k2", b"n" * 32)
KEYS = (OLD_KEY, NEW_KEY)


def edge_settings() -> Settings:
    return Settings(callback_keys=KEYS, admin_token=ADMIN_TOKEN, public_url=PUBLIC_URL)


@pytest.fixture
def runtime(
    store: SqlStore, simulated: Simulated, enqueuer: RecordingEnqueuer, clock: FakeClock
) -> Iterator[Runtime]:
    http = httpx2.Client()
    yield Runtime(
        store=store,
        client=simulated.client,
        http=http,
        subscriptions=(),
        enqueuer=enqueuer,
        clock=clock,
    )
    http.close()


@pytest.fixture
def web(runtime: Runtime) -> Iterator[TestClient]:
    app = create_app(edge_settings(), runtime=runtime, broker_ping=lambda: None)
    with TestClient(app, base_url=PUBLIC_URL) as client:
        yield client


@pytest.fixture
def admin(web: TestClient) -> TestClient:
    web.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
    return web
