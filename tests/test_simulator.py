"""The simulator's Isograd API: token endpoint, /api/usage and every action and error code,
checked against the reference (../shared/isograd-api.txt)."""

from __future__ import annotations

import pytest

from tests.simulator_fixtures import (
    CANDIDATE,
    CLIENT_ID,
    CLIENT_SECRET,
    EMAIL,
    TOKEN_PATH,
    IsogradCaller,
    api,
    simulator_app,
)

__all__ = ["api", "simulator_app"]  # fixtures


def test_token_endpoint_issues_an_expiring_bearer_token(api: IsogradCaller) -> None:
    response = api.client.post(
        TOKEN_PATH, data={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    )

    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert len(body["access_token"]) >= 32


def test_create_candidate_answers_can_id_and_login_url(api: IsogradCaller) -> None:
    answer = api.ok(1, **CANDIDATE)

    assert answer["can_id"] == 1381134
    assert answer["lgn_url"].startswith("http://simulator.test/")
    assert answer["error_message"] is None


def test_completed_test_reports_its_status_and_result(api: IsogradCaller) -> None:
    api.candidate()
    pla_tst_id = api.assessment(101)

    api.control("POST", f"/tests/{pla_tst_id}/complete", value=700, elapsed_seconds=1834)

    assert api.ok(10, pla_tst_id=pla_tst_id)["sta_id"] == 3
    result = api.ok(4, tst_frm_id=101, ema=EMAIL, pla_tst_id=pla_tst_id)
    assert result["gra_typ_id"] == 2
    assert result["num_val"] == 700
    assert result["no_sto_tim_spe"] == 1834


@pytest.mark.parametrize("act_id", ["99", "abc", "0"])
def test_an_unknown_act_id_answers_103(api: IsogradCaller, act_id: str) -> None:
    answer = api.call(act_id)

    assert answer == {
        "success": False,
        "error_code": 103,
        "error_message": "The property act_id is not valid",
    }
