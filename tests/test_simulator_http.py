"""The simulator over real HTTP (uvicorn on a free port): the reference's worked example with the
requests library, a whole test life with a real callback, and concurrent callers."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
import requests

from tests.fixtures.simulator import CLIENT_ID, CLIENT_SECRET, ServedSimulator
from tests.receiver import RecordingReceiver


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as opened:
        yield opened


def _token(session: requests.Session, base: str) -> dict[str, str]:
    auth_url = f"{base}/oauth2/token?grant_type=client_credentials&scopes=usage"
    credentials = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    access_token = session.post(auth_url, data=credentials, timeout=10).json()["access_token"]
    return {"Authorization": "Bearer " + access_token}


def test_the_reference_worked_example_creates_a_candidate(
    served_simulator: ServedSimulator, session: requests.Session
) -> None:
    # The reference's Python example, verbatim but for the URLs and the credentials.
    credentials = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    auth_url = f"{served_simulator.url}/oauth2/token?grant_type=client_credentials&scopes=usage"
    r_token = session.post(auth_url, data=credentials, timeout=10)
    access_token = r_token.json()["access_token"]
    headers = {"Authorization": "Bearer " + access_token}
    url_dev = f"{served_simulator.url}/api/usage"
    payload = {
        "act_id": 1,
        "gen_id": 3,
        "ema": "test@isograd.com",
        "fst_nam": "John",
        "lst_nam": "Doe",
    }
    r_action = session.post(url_dev, data=payload, headers=headers, timeout=10)

    answer = r_action.json()
    assert answer["success"] is True
    assert answer["error_message"] is None
    assert isinstance(answer["can_id"], int)
    assert answer["lgn_url"].startswith(served_simulator.url + "/")


def test_a_whole_test_life_over_http_calls_the_receiver_back(
    served_simulator: ServedSimulator, session: requests.Session
) -> None:
    base = served_simulator.url
    headers = _token(session, base)
    with RecordingReceiver() as receiver:
        created = session.post(
            f"{base}/api/usage",
            data={
                "act_id": 8,
                "gen_id": 3,
                "ema": "test@isograd.com",
                "fst_nam": "John",
                "lst_nam": "Doe",
                "tst_frm_id": 101,
                "cal_bac_pag": receiver.url("/callbacks/isograd/k1.abc.mac"),
            },
            headers=headers,
            timeout=10,
        ).json()
        pla_tst_id = created["pla_tst_id"]

        completed = session.post(
            f"{base}/_simulator/tests/{pla_tst_id}/complete", json={"value": 720}, timeout=15
        ).json()

        [request] = receiver.wait_for_requests(1)
    assert (request.method, request.path) == ("GET", "/callbacks/isograd/k1.abc.mac")
    assert completed["callbacks"][0]["outcome"] == "sent"
    status = session.post(
        f"{base}/api/usage",
        data={"act_id": 10, "pla_tst_id": pla_tst_id},
        headers=headers,
        timeout=10,
    ).json()
    assert status["sta_id"] == 3


def test_a_receiver_may_call_the_api_while_its_callback_is_pending() -> None:
    # A relay checks act 10 when the callback arrives: the simulator must not hold its lock
    # (or block its event loop) while it waits for the receiver's answer.
    served_url: list[str] = []
    pla_tst_ids: list[int] = []
    statuses: list[int] = []

    def receive(request: httpx2.Request) -> httpx2.Response:
        with requests.Session() as session:
            answer = session.post(
                f"{served_url[0]}/api/usage",
                data={"act_id": 10, "pla_tst_id": pla_tst_ids[0]},
                headers=_token(session, served_url[0]),
                timeout=5,
            ).json()
        statuses.append(answer["sta_id"])
        return httpx2.Response(200)

    with (
        ServedSimulator(callback_transport=httpx2.MockTransport(receive)) as served,
        requests.Session() as session,
    ):
        served_url.append(served.url)
        created = session.post(
            f"{served.url}/api/usage",
            data={
                "act_id": 8,
                "gen_id": 3,
                "ema": "a@example.org",
                "fst_nam": "A",
                "lst_nam": "B",
                "tst_frm_id": 101,
                "cal_bac_pag": "https://relay.test/callbacks/isograd/k1.abc.mac",
            },
            headers=_token(session, served.url),
            timeout=10,
        ).json()
        pla_tst_ids.append(created["pla_tst_id"])

        session.post(f"{served.url}/_simulator/tests/{pla_tst_ids[0]}/complete", timeout=15)

    assert statuses == [3]


def test_concurrent_callers_get_distinct_ids(served_simulator: ServedSimulator) -> None:
    base = served_simulator.url
    results: list[Any] = []
    lock = threading.Lock()

    def invite(worker: int) -> None:
        with httpx2.Client(base_url=base, timeout=10) as client:
            token = client.post(
                "/oauth2/token?grant_type=client_credentials&scopes=usage",
                data={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
            ).json()["access_token"]
            for index in range(20):
                answer = client.post(
                    "/api/usage",
                    data={
                        "act_id": "8",
                        "gen_id": "3",
                        "ema": f"c{worker}-{index}@example.org",
                        "fst_nam": "A",
                        "lst_nam": "B",
                        "tst_frm_id": "101",
                    },
                    headers={"Authorization": f"Bearer {token}"},
                ).json()
                with lock:
                    results.append(answer)

    threads = [threading.Thread(target=invite, args=(worker,)) for worker in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert len(results) == 120
    assert all(answer["success"] for answer in results)
    assert len({answer["pla_tst_id"] for answer in results}) == 120
    assert len({answer["can_id"] for answer in results}) == 120
