"""The simulator's control API: test life, callbacks to a real receiver, counters, faults, reset."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from starlette.testclient import TestClient

from tests.fixtures.simulator import (
    CANDIDATE,
    CLIENT_ID,
    CLIENT_SECRET,
    EMAIL,
    TOKEN_PATH,
    IsogradCaller,
    make_config,
)
from tests.receiver import RecordingReceiver, ScriptedResponse
from worker.simulator import create_simulator_app
from worker.simulator.faults import SimulatorFaults


@pytest.fixture
def receiver() -> Iterator[RecordingReceiver]:
    with RecordingReceiver() as started:
        yield started


def invited(api: IsogradCaller, callback_url: str | None = None, tst_frm_id: int = 101) -> int:
    """A candidate with one test (and its cal_bac_pag); returns the pla_tst_id."""
    options = {} if callback_url is None else {"cal_bac_pag": callback_url}
    return int(api.ok(8, **CANDIDATE, tst_frm_id=tst_frm_id, **options)["pla_tst_id"])


def move(api: IsogradCaller, pla_tst_id: int, step: str, **body: Any) -> dict[str, Any]:
    response = api.control("POST", f"/tests/{pla_tst_id}/{step}", **body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


# --- test life ------------------------------------------------------------------------------


def test_start_moves_a_test_to_started(api: IsogradCaller) -> None:
    pla_tst_id = invited(api)

    answer = move(api, pla_tst_id, "start")

    assert answer["test"]["sta_id"] == 2
    assert answer["test"]["started_at"] is not None


def test_start_of_a_finished_test_answers_409(api: IsogradCaller) -> None:
    pla_tst_id = invited(api)
    move(api, pla_tst_id, "complete")

    response = api.control("POST", f"/tests/{pla_tst_id}/start")

    assert response.status_code == 409


@pytest.mark.parametrize("step", ["start", "complete", "pending", "mark", "callback"])
def test_moving_an_unknown_test_answers_404(api: IsogradCaller, step: str) -> None:
    assert api.control("POST", f"/tests/424242/{step}").status_code == 404


def test_unknown_test_is_404_on_read(api: IsogradCaller) -> None:
    assert api.control("GET", "/tests/424242").status_code == 404


def test_completing_twice_answers_409(api: IsogradCaller) -> None:
    pla_tst_id = invited(api)
    move(api, pla_tst_id, "complete")

    assert api.control("POST", f"/tests/{pla_tst_id}/complete").status_code == 409


def test_elapsed_seconds_default_to_the_simulated_time_between_start_and_end(
    api: IsogradCaller,
) -> None:
    pla_tst_id = invited(api)
    move(api, pla_tst_id, "start")
    api.control("POST", "/clock/advance", seconds=1834)

    answer = move(api, pla_tst_id, "complete")

    assert answer["test"]["result"]["no_sto_tim_spe"] == 1834


def test_marking_pending_then_mark_completes_with_the_grade_given(api: IsogradCaller) -> None:
    pla_tst_id = invited(api)
    move(api, pla_tst_id, "pending")

    move(api, pla_tst_id, "mark", value=640)

    assert api.ok(10, pla_tst_id=pla_tst_id)["sta_id"] == 3
    assert api.ok(4, tst_frm_id=101, ema=EMAIL)["num_val"] == 640


def test_mark_of_a_test_not_pending_answers_409(api: IsogradCaller) -> None:
    pla_tst_id = invited(api)

    assert api.control("POST", f"/tests/{pla_tst_id}/mark").status_code == 409


@pytest.mark.parametrize(
    "body",
    [
        {"value": "high"},
        {"grade_type": 2.5},
        {"skills": [1, 2]},
        {"skills": {"45": "good"}},
        {"text": 5},
        {"elapsed_seconds": True},
    ],
)
def test_complete_with_a_bad_grading_answers_400(api: IsogradCaller, body: dict[str, Any]) -> None:
    pla_tst_id = invited(api)

    response = api.control("POST", f"/tests/{pla_tst_id}/complete", **body)

    assert response.status_code == 400
    assert api.ok(10, pla_tst_id=pla_tst_id)["sta_id"] == 1


def test_complete_with_a_body_that_is_not_json_answers_400(api: IsogradCaller) -> None:
    pla_tst_id = invited(api)

    response = api.client.post(f"/_simulator/tests/{pla_tst_id}/complete", content=b"{nope")

    assert response.status_code == 400


# --- callbacks ------------------------------------------------------------------------------


def test_completion_sends_a_get_to_cal_bac_pag(
    api: IsogradCaller, receiver: RecordingReceiver
) -> None:
    pla_tst_id = invited(api, receiver.url("/callbacks/isograd/k1.inv.mac?x=1"))

    answer = move(api, pla_tst_id, "complete")

    [request] = receiver.requests
    assert (request.method, request.path) == ("GET", "/callbacks/isograd/k1.inv.mac?x=1")
    [attempt] = answer["callbacks"]
    assert (attempt["outcome"], attempt["status_code"]) == ("sent", 200)
    assert api.control("GET", "/counters").json()["callbacks_sent"] == 1


def test_the_receiver_sees_the_test_completed_when_the_callback_arrives() -> None:
    seen: list[int] = []

    def receive(request: httpx2.Request) -> httpx2.Response:
        seen.append(simulator.state.assessments[pla_tst_id].status)
        return httpx2.Response(200)

    app = create_simulator_app(make_config(), callback_transport=httpx2.MockTransport(receive))
    simulator = app.state.simulator
    with TestClient(app) as client:
        api = IsogradCaller(client)
        pla_tst_id = invited(api, "https://relay.test/cb")

        move(api, pla_tst_id, "complete")

    assert seen == [3]


def test_marking_pending_sends_the_callback_and_marking_sends_none(
    api: IsogradCaller, receiver: RecordingReceiver
) -> None:
    pla_tst_id = invited(api, receiver.url("/cb"))

    move(api, pla_tst_id, "pending")
    marked = move(api, pla_tst_id, "mark")

    assert len(receiver.requests) == 1
    assert marked["callbacks"] == []


def test_mark_can_send_the_callback_again(api: IsogradCaller, receiver: RecordingReceiver) -> None:
    pla_tst_id = invited(api, receiver.url("/cb"))
    move(api, pla_tst_id, "pending")

    move(api, pla_tst_id, "mark", callback=True)

    assert len(receiver.requests) == 2


def test_a_test_without_cal_bac_pag_sends_no_callback(api: IsogradCaller) -> None:
    pla_tst_id = invited(api)

    assert move(api, pla_tst_id, "complete")["callbacks"] == []


def test_callback_can_be_sent_again_on_demand(
    api: IsogradCaller, receiver: RecordingReceiver
) -> None:
    pla_tst_id = invited(api, receiver.url("/cb"))

    answer = move(api, pla_tst_id, "callback")

    assert answer["test"]["sta_id"] == 1  # a premature callback: the test is not finished
    assert len(receiver.requests) == 1


def test_resending_without_cal_bac_pag_answers_409(api: IsogradCaller) -> None:
    pla_tst_id = invited(api)

    assert api.control("POST", f"/tests/{pla_tst_id}/callback").status_code == 409


def test_a_callback_answered_5xx_is_counted_failed(
    api: IsogradCaller, receiver: RecordingReceiver
) -> None:
    receiver.script(ScriptedResponse(status=503))
    pla_tst_id = invited(api, receiver.url("/cb"))

    [attempt] = move(api, pla_tst_id, "complete")["callbacks"]

    assert (attempt["outcome"], attempt["status_code"]) == ("failed", 503)
    assert api.control("GET", "/counters").json()["callbacks_failed"] == 1


def test_a_callback_redirect_is_not_followed(
    api: IsogradCaller, receiver: RecordingReceiver
) -> None:
    receiver.script(ScriptedResponse(status=302, headers=(("location", receiver.url("/x")),)))
    pla_tst_id = invited(api, receiver.url("/cb"))

    [attempt] = move(api, pla_tst_id, "complete")["callbacks"]

    assert attempt["status_code"] == 302
    assert len(receiver.requests) == 1


def test_a_callback_to_a_closed_port_is_counted_failed(api: IsogradCaller) -> None:
    with RecordingReceiver() as gone:
        url = gone.url("/cb")
    pla_tst_id = invited(api, url)

    [attempt] = move(api, pla_tst_id, "complete")["callbacks"]

    assert attempt["outcome"] == "failed"
    assert attempt["error"].startswith("ConnectError")


def test_a_callback_that_times_out_is_counted_failed(receiver: RecordingReceiver) -> None:
    receiver.script(ScriptedResponse(delay=5.0))
    app = create_simulator_app(make_config(callback_timeout_seconds=0.2))
    with TestClient(app) as client:
        api = IsogradCaller(client)
        pla_tst_id = invited(api, receiver.url("/cb"))
        started = time.monotonic()

        [attempt] = move(api, pla_tst_id, "complete")["callbacks"]

    assert attempt["outcome"] == "failed"
    assert "Timeout" in attempt["error"]
    assert time.monotonic() - started < 4


def test_dropped_callbacks_are_never_sent(api: IsogradCaller, receiver: RecordingReceiver) -> None:
    api.control("POST", "/faults", drop_callback_rate=1)
    pla_tst_id = invited(api, receiver.url("/cb"))

    [attempt] = move(api, pla_tst_id, "complete")["callbacks"]

    assert attempt["outcome"] == "dropped"
    assert receiver.requests == []
    assert api.control("GET", "/counters").json()["callbacks_dropped"] == 1


def test_duplicated_callbacks_arrive_as_many_times_as_configured(
    api: IsogradCaller, receiver: RecordingReceiver
) -> None:
    api.control("POST", "/faults", callback_copies=3)
    pla_tst_id = invited(api, receiver.url("/cb"))

    answer = move(api, pla_tst_id, "complete")

    assert [r.path for r in receiver.requests] == ["/cb"] * 3
    assert [a["outcome"] for a in answer["callbacks"]] == ["sent"] * 3


def test_callback_history_lists_every_attempt(
    api: IsogradCaller, receiver: RecordingReceiver
) -> None:
    pla_tst_id = invited(api, receiver.url("/cb"))
    move(api, pla_tst_id, "complete")

    [attempt] = api.control("GET", "/callbacks").json()

    assert (attempt["pla_tst_id"], attempt["url"]) == (pla_tst_id, receiver.url("/cb"))


# --- counters, state, reset -----------------------------------------------------------------


def test_counters_count_token_requests_and_calls_per_act(api: IsogradCaller) -> None:
    api.ok(14)
    api.ok(14)
    api.call(10, pla_tst_id=1)
    api.client.post(TOKEN_PATH, data={"client_id": CLIENT_ID, "client_secret": "bad"})

    counters = api.control("GET", "/counters").json()

    assert counters["token_requests"] == 2
    assert counters["tokens_issued"] == 1
    assert counters["token_rejections"] == 1
    assert counters["api_calls"] == 3
    assert counters["api_calls_by_act"] == {"10": 1, "14": 2}
    assert counters["errors_by_code"] == {"501": 1}


def test_counters_count_unauthorized_calls(api: IsogradCaller) -> None:
    api.client.post("/api/usage", data={"act_id": "14"})

    counters = api.control("GET", "/counters").json()

    assert (counters["unauthorized"], counters["api_calls"]) == (1, 0)


def test_reset_forgets_state_counters_tokens_and_faults(api: IsogradCaller) -> None:
    invited(api)
    api.control("POST", "/faults", latency_ms=5)

    api.control("POST", "/reset")

    state = api.control("GET", "/state").json()
    assert (state["candidates"], state["tests"]) == ([], [])
    assert api.control("GET", "/counters").json()["api_calls"] == 0
    assert api.control("GET", "/faults").json()["latency_ms"] == 0
    assert api.post(14).status_code == 401  # the cached token is gone too


def test_reset_starts_ids_again(api: IsogradCaller) -> None:
    first = api.candidate()
    api.control("POST", "/reset")
    api.renew_token()

    assert api.candidate() == first


def test_index_documents_the_control_api(api: IsogradCaller) -> None:
    documentation = api.control("GET", "/").json()["documentation"]

    assert "/_simulator/tests/{id}/complete" in documentation


# --- faults ---------------------------------------------------------------------------------


def test_an_error_rate_of_one_answers_every_call_with_the_chosen_5xx(api: IsogradCaller) -> None:
    api.token()
    api.control("POST", "/faults", error_rate=1, error_status=502)

    response = api.post(14)

    assert response.status_code == 502
    assert response.headers["content-type"].startswith("text/html")
    assert api.control("GET", "/counters").json()["injected_errors"] == 1


def test_fail_next_fails_exactly_that_many_calls(api: IsogradCaller) -> None:
    api.token()
    api.control("POST", "/faults", fail_next=2)

    statuses = [api.post(14).status_code for _ in range(3)]

    assert statuses == [503, 503, 200]


def test_fail_next_applies_to_the_token_endpoint(api: IsogradCaller) -> None:
    api.control("POST", "/faults", fail_next=1)
    data = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}

    first = api.client.post(TOKEN_PATH, data=data)
    second = api.client.post(TOKEN_PATH, data=data)

    assert (first.status_code, second.status_code) == (503, 200)


def _failures(api: IsogradCaller, seed: int) -> list[int]:
    api.control("POST", "/faults", error_rate=0.5, seed=seed)
    return [api.post(14).status_code for _ in range(30)]


def test_a_seeded_error_rate_is_reproducible(api: IsogradCaller) -> None:
    api.token()

    first = _failures(api, seed=7)
    again = _failures(api, seed=7)

    assert first == again
    assert 503 in first
    assert 200 in first


def test_latency_delays_every_answer(api: IsogradCaller) -> None:
    api.token()
    api.control("POST", "/faults", latency_ms=150)
    started = time.monotonic()

    api.ok(14)

    assert time.monotonic() - started >= 0.15


def test_faults_can_be_set_in_the_configuration() -> None:
    app = create_simulator_app(make_config(faults=SimulatorFaults(fail_next=1)))
    with TestClient(app) as client:
        response = client.post(
            TOKEN_PATH, data={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
        )

    assert response.status_code == 503


def test_a_short_token_lifetime_expires_tokens(api: IsogradCaller) -> None:
    api.control("POST", "/faults", token_ttl_seconds=5)
    api.token()
    api.control("POST", "/clock/advance", seconds=5)

    assert api.post(14).status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        {"error_rate": 1.5},
        {"latency_ms": -1},
        {"error_status": 404},
        {"callback_copies": 0},
        {"fail_next": 1.5},
        {"latency": 10},
        {"error_rate": "high"},
    ],
)
def test_a_bad_fault_answers_400_and_changes_nothing(
    api: IsogradCaller, body: dict[str, Any]
) -> None:
    response = api.control("POST", "/faults", **body)

    assert response.status_code == 400
    assert api.control("GET", "/faults").json() == SimulatorFaults().as_json()


def test_the_clock_only_moves_forward(api: IsogradCaller) -> None:
    assert api.control("POST", "/clock/advance", seconds=-1).status_code == 400


@pytest.mark.parametrize("credits", [{"Assessment": -1}, {"Assessment": "x"}, None])
def test_bad_credits_answer_400(api: IsogradCaller, credits: Any) -> None:
    assert api.control("PUT", "/credits", credits=credits).status_code == 400


# --- the pages behind tst_url ---------------------------------------------------------------


def test_opening_the_test_url_starts_the_test(api: IsogradCaller) -> None:
    api.candidate()
    url = api.ok(2, tst_frm_id=101, ema=EMAIL)["tst_url"]

    page = api.client.get(url.removeprefix("http://simulator.test"))

    pla_tst_id = int(url.rsplit("/", 1)[1])
    assert "Submit the test" in page.text
    assert api.ok(10, pla_tst_id=pla_tst_id)["sta_id"] == 2


def test_submitting_the_test_page_completes_it_calls_back_and_returns(
    api: IsogradCaller, receiver: RecordingReceiver
) -> None:
    api.candidate()
    answer = api.ok(
        2, tst_frm_id=101, ema=EMAIL, cal_bac_pag=receiver.url("/cb"), rtn_pag="https://lms.test/"
    )
    pla_tst_id = answer["pla_tst_id"]

    response = api.client.post(
        f"/_simulator/pages/tests/{pla_tst_id}/finish",
        data={"value": "810"},
        follow_redirects=False,
    )

    assert response.headers["location"] == "https://lms.test/"
    assert len(receiver.requests) == 1
    assert api.ok(4, tst_frm_id=101, ema=EMAIL)["num_val"] == 810
