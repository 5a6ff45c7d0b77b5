"""The admin API's bearer check: failures logged without the token, throttled per address."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient
from structlog.testing import capture_logs

from tests.fixtures.web import ADMIN_TOKEN, PUBLIC_URL, edge_settings
from webhooks.app import create_app
from webhooks.auth import AUTH_FAILURES_PER_ADDRESS
from worker.runtime import Runtime

GUESS = "a-wrong-guess-of-the-admin-token"


def test_a_failed_authentication_is_logged_with_the_address_and_never_the_token(
    web: TestClient,
) -> None:
    with capture_logs() as logs:
        response = web.get("/api/deliveries", headers={"Authorization": f"Bearer {GUESS}"})

    assert response.status_code == 401
    [failure] = [entry for entry in logs if entry["event"] == "api_auth_failed"]
    assert failure["client"] == "testclient"
    assert failure["reason"] == "invalid"
    assert GUESS not in repr(logs)


def test_a_missing_token_is_logged_as_missing(web: TestClient) -> None:
    with capture_logs() as logs:
        web.get("/api/deliveries")

    assert [entry["reason"] for entry in logs if entry["event"] == "api_auth_failed"] == ["missing"]


def test_an_address_past_the_failure_limit_waits_even_with_the_right_token(
    web: TestClient,
) -> None:
    for _ in range(AUTH_FAILURES_PER_ADDRESS):
        assert web.get("/api/deliveries", headers={"Authorization": "Bearer x"}).status_code == 401

    response = web.get("/api/deliveries", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})

    assert response.status_code == 429
    assert response.json()["error"] == "too_many_requests"
    assert int(response.headers["retry-after"]) > 0


def test_other_addresses_are_not_slowed_by_one_that_guesses(runtime: Runtime) -> None:
    app = create_app(edge_settings(), runtime=runtime, broker_ping=lambda: None)
    guesser = TestClient(app, base_url=PUBLIC_URL, client=("198.51.100.7", 5000))
    operator = TestClient(app, base_url=PUBLIC_URL, client=("198.51.100.8", 5000))
    for _ in range(AUTH_FAILURES_PER_ADDRESS + 1):
        guesser.get("/api/deliveries", headers={"Authorization": "Bearer x"})

    response = operator.get("/api/deliveries", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})

    assert response.status_code == 200


@pytest.mark.parametrize("requests", [AUTH_FAILURES_PER_ADDRESS * 3])
def test_successful_requests_are_never_counted(web: TestClient, requests: int) -> None:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    answers = {web.get("/api/deliveries", headers=headers).status_code for _ in range(requests)}

    assert answers == {200}
