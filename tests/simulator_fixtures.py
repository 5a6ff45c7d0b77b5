"""Fixtures and helpers for the simulator's tests: an in-process app, an authenticated caller,
and the simulator served by uvicorn on a free port."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.testclient import TestClient

from worker.simulator import SimulatorConfig, create_simulator_app
from worker.simulator.runtime import Simulator

CLIENT_ID = "sim-client"
CLIENT_SECRET = "sim-secret"
PUBLIC_URL = "http://simulator.test"
TOKEN_PATH = "/oauth2/token?grant_type=client_credentials&scopes=usage"
EMAIL = "ada.lovelace@example.org"
CANDIDATE = {"gen_id": "3", "ema": EMAIL, "fst_nam": "Ada", "lst_nam": "Lovelace"}


def make_config(**changes: Any) -> SimulatorConfig:
    return SimulatorConfig(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, public_url=PUBLIC_URL, **changes
    )


class IsogradCaller:
    """Speaks the reference's protocol to an app: form-encoded POSTs with a bearer token."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self._token: str | None = None

    @property
    def simulator(self) -> Simulator:
        app: Starlette = self.client.app  # type: ignore[assignment]
        simulator: Simulator = app.state.simulator
        return simulator

    def token(self) -> str:
        if self._token is None:
            response = self.client.post(
                TOKEN_PATH, data={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
            )
            response.raise_for_status()
            self._token = str(response.json()["access_token"])
        return self._token

    def renew_token(self) -> None:
        self._token = None
        self.token()

    def post(self, act_id: int | str, **params: Any) -> httpx2.Response:
        data = {"act_id": str(act_id), **{k: str(v) for k, v in params.items()}}
        return self.client.post(
            "/api/usage",
            data=data,
            headers={"Authorization": f"Bearer {self.token()}"},
            follow_redirects=False,
        )

    def call(self, act_id: int | str, **params: Any) -> dict[str, Any]:
        response = self.post(act_id, **params)
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    def ok(self, act_id: int | str, **params: Any) -> dict[str, Any]:
        answer = self.call(act_id, **params)
        assert answer["success"] is True, answer
        return answer

    def candidate(self, **changes: Any) -> int:
        return int(self.ok(1, **{**CANDIDATE, **changes})["can_id"])

    def assessment(self, tst_frm_id: int = 101, email: str = EMAIL, **options: Any) -> int:
        answer = self.ok(2, tst_frm_id=tst_frm_id, ema=email, **options)
        return int(answer["pla_tst_id"])

    def control(self, method: str, path: str, **body: Any) -> httpx2.Response:
        return self.client.request(method, f"/_simulator{path}", json=body or None)


@pytest.fixture
def simulator_app() -> Starlette:
    return create_simulator_app(make_config())


@pytest.fixture
def api(simulator_app: Starlette) -> Iterator[IsogradCaller]:
    with TestClient(simulator_app) as client:
        yield IsogradCaller(client)


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


class ServedSimulator:
    """The simulator under uvicorn in a thread, on 127.0.0.1 and a free port."""

    def __init__(
        self, *, callback_transport: httpx2.BaseTransport | None = None, **config_changes: Any
    ) -> None:
        self._socket = _free_socket()
        self.port = int(self._socket.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        config = SimulatorConfig(
            client_id=CLIENT_ID, client_secret=CLIENT_SECRET, public_url=self.url, **config_changes
        )
        self.app = create_simulator_app(config, callback_transport=callback_transport)
        self._server = uvicorn.Server(
            uvicorn.Config(self.app, log_level="warning", lifespan="off", access_log=False)
        )
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    def __enter__(self) -> ServedSimulator:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            assert self._thread.is_alive(), "uvicorn stopped while starting"
            assert time.monotonic() < deadline, "uvicorn did not start within 10 s"
            time.sleep(0.01)  # polling a flag with a deadline, not synchronising on time
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._socket.close()


@pytest.fixture
def served_simulator() -> Iterator[ServedSimulator]:
    with ServedSimulator() as served:
        yield served
