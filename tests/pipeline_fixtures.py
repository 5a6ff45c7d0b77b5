"""Fixtures for the pipeline and actor tests: a real SqlStore on SQLite, the Isograd client against
the in-process simulator, and helpers to invite a candidate and drive the test's status."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from starlette.testclient import TestClient

from tests.fakes import FakeClock, RecordingEnqueuer
from worker.isograd.client import IsogradClient
from worker.isograd.models import NewCandidate
from worker.simulator.app import create_simulator_app
from worker.simulator.state import SimulatorConfig
from worker.sinks.webhook import WebhookTarget
from worker.storage.records import Invitation, NewInvitation
from worker.storage.store import SqlStore
from worker.subscriptions import Subscription

SIM_CLIENT_ID = "sim-client"
SIM_SECRET = "sim-secret"
SIM_URL = "http://testserver"
EXCEL = 101  # simulator catalogue: TOSA Excel, IRT score on 1000, skills 45-48
CERTIFICATION = 107  # simulator catalogue: not an assessment (act 6 answers 601)
EMAIL = "ada.lovelace@example.org"
SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()


def subscription(
    name: str = "hr", url: str = "https://hooks.example/hr", **changes: Any
) -> Subscription:
    return Subscription(name=name, kind="webhook", target=WebhookTarget(url, (SECRET,)), **changes)


@dataclass
class Simulated:
    """The simulator in-process: `client` speaks the API, `control` drives the tests' lives."""

    client: IsogradClient
    control: TestClient

    def move(self, pla_tst_id: int, step: str, **body: Any) -> dict[str, Any]:
        response = self.control.post(f"/_simulator/tests/{pla_tst_id}/{step}", json=body or None)
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        return answer

    def faults(self, **faults: Any) -> None:
        self.control.post("/_simulator/faults", json=faults).raise_for_status()

    def calls(self, act: int) -> int:
        counters = self.control.get("/_simulator/counters").json()
        return int(counters["api_calls_by_act"].get(str(act), 0))


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> Iterator[SqlStore]:
    sql_store = SqlStore.from_url(f"sqlite:///{tmp_path / 'relay.db'}", clock=clock)
    sql_store.migrate()
    yield sql_store
    sql_store.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def enqueuer() -> RecordingEnqueuer:
    return RecordingEnqueuer()


@pytest.fixture
def simulated() -> Iterator[Simulated]:
    config = SimulatorConfig(client_id=SIM_CLIENT_ID, client_secret=SIM_SECRET, public_url=SIM_URL)
    with TestClient(create_simulator_app(config), base_url=SIM_URL) as control:
        client = IsogradClient(
            api_url=f"{SIM_URL}/api/usage",
            auth_url=f"{SIM_URL}/oauth2/token",
            client_id=SIM_CLIENT_ID,
            client_secret=SIM_SECRET,
            transport=control._transport,
            read_attempts=1,  # the client's own retries are tested elsewhere; fail fast here
        )
        yield Simulated(client, control)
        client.close()


def invite(
    simulated: Simulated,
    store: SqlStore,
    tst_frm_id: int = EXCEL,
    *,
    context: dict[str, Any] | None = None,
) -> Invitation:
    """Act 8 on the simulator, then the invitations row, as worker.invitations does."""
    created = simulated.client.create_candidate_and_add_test(
        NewCandidate(email=EMAIL, first_name="Ada", last_name="Lovelace", ext_id="emp-7"),
        tst_frm_id,
    )
    return store.create_invitation(
        NewInvitation(
            tst_frm_id=tst_frm_id,
            email=EMAIL,
            first_name="Ada",
            last_name="Lovelace",
            ext_id="emp-7",
            pla_tst_id=created.pla_tst_id,
            can_id=created.can_id,
            context=context or {},
        )
    )


class ScriptedTarget:
    """A webhook target behind httpx2.MockTransport: answers scripted responses (or raises
    scripted transport errors) in turn, then 200, and records every request."""

    def __init__(self, *answers: httpx2.Response | Exception) -> None:
        self._answers = list(answers)
        self.requests: list[httpx2.Request] = []
        self.transport = httpx2.MockTransport(self._handle)

    def _handle(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        answer = self._answers.pop(0) if self._answers else httpx2.Response(200, text="ok")
        if isinstance(answer, Exception):
            raise answer
        return answer
