"""The simulator's Isograd API: token endpoint, /api/usage and every action and error code,
checked against the reference (../shared/isograd-api.txt)."""

from __future__ import annotations

import base64
from typing import Any

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
from worker.simulator import create_simulator_app
from worker.simulator.catalogue import PROCTORING_CREDIT, Catalogue, CatalogueTest, SkillSpec
from worker.simulator.faults import SimulatorFaults
from worker.simulator.state import ExistingCandidatePolicy

OTHER_EMAIL = "grace.hopper@example.org"


def error(code: int, message: str, **extra: Any) -> dict[str, Any]:
    return {"success": False, "error_code": code, "error_message": message, **extra}


def credits_of(api: IsogradCaller, **params: Any) -> dict[str, int]:
    return {c["des"]: c["amount"] for c in api.ok(15, **params)["credits"]}


def complete(api: IsogradCaller, pla_tst_id: int, **grading: Any) -> None:
    response = api.control("POST", f"/tests/{pla_tst_id}/complete", **grading)
    assert response.status_code == 200, response.text


# --- token endpoint -------------------------------------------------------------------------


def test_token_endpoint_issues_an_expiring_bearer_token(api: IsogradCaller) -> None:
    response = api.client.post(
        TOKEN_PATH, data={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    )

    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert len(body["access_token"]) >= 32


@pytest.mark.parametrize(
    ("client_id", "client_secret"),
    [(CLIENT_ID, "wrong"), ("someone-else", CLIENT_SECRET), (CLIENT_ID, "")],
)
def test_token_endpoint_rejects_bad_credentials_with_401(
    api: IsogradCaller, client_id: str, client_secret: str
) -> None:
    response = api.client.post(
        TOKEN_PATH, data={"client_id": client_id, "client_secret": client_secret}
    )

    assert response.status_code == 401
    assert response.json() == {"error": "invalid_client"}


def test_token_endpoint_accepts_credentials_in_basic_auth(api: IsogradCaller) -> None:
    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()

    response = api.client.post(TOKEN_PATH, headers={"Authorization": f"Basic {basic}"})

    assert response.status_code == 200


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("?grant_type=password&scopes=usage", "unsupported_grant_type"),
        ("?scopes=usage", "invalid_request"),
        ("?grant_type=client_credentials&scopes=admin", "invalid_scope"),
    ],
)
def test_token_endpoint_rejects_a_bad_grant_or_scope_with_400(
    api: IsogradCaller, query: str, expected: str
) -> None:
    response = api.client.post(
        f"/oauth2/token{query}", data={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    )

    assert response.status_code == 400
    assert response.json() == {"error": expected}


def test_token_lifetime_follows_the_configured_fault() -> None:
    app = create_simulator_app(make_config(faults=SimulatorFaults(token_ttl_seconds=5)))
    with TestClient(app) as client:
        response = client.post(
            TOKEN_PATH, data={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
        )

    assert response.json()["expires_in"] == 5


# --- bearer authentication on /api/usage ----------------------------------------------------


def test_api_without_a_token_answers_401(api: IsogradCaller) -> None:
    response = api.client.post("/api/usage", data={"act_id": "14"})

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


def test_api_with_an_unknown_token_answers_401(api: IsogradCaller) -> None:
    response = api.client.post(
        "/api/usage", data={"act_id": "14"}, headers={"Authorization": "Bearer forged"}
    )

    assert response.status_code == 401
    assert "invalid_token" in response.headers["www-authenticate"]


def test_api_accepts_a_token_until_it_expires(api: IsogradCaller) -> None:
    api.token()
    api.control("POST", "/clock/advance", seconds=3599)

    assert api.post(14).status_code == 200


def test_api_rejects_a_token_once_it_expired(api: IsogradCaller) -> None:
    api.token()
    api.control("POST", "/clock/advance", seconds=3600)

    assert api.post(14).status_code == 401


def test_expiring_all_tokens_makes_a_valid_token_answer_401(api: IsogradCaller) -> None:
    api.token()

    api.control("POST", "/tokens/expire")

    assert api.post(14).status_code == 401


# --- generic errors -------------------------------------------------------------------------


@pytest.mark.parametrize("act_id", ["99", "abc", "0", "-1"])
def test_an_unknown_act_id_answers_103(api: IsogradCaller, act_id: str) -> None:
    assert api.call(act_id) == error(103, "The property act_id is not valid")


def test_a_missing_act_id_answers_105(api: IsogradCaller) -> None:
    response = api.client.post(
        "/api/usage", data={"ema": EMAIL}, headers={"Authorization": f"Bearer {api.token()}"}
    )

    assert response.json() == error(105, 'Property "act_id" is requested')


def test_a_json_body_is_not_read_so_act_id_is_missing(api: IsogradCaller) -> None:
    response = api.client.post(
        "/api/usage", json={"act_id": 14}, headers={"Authorization": f"Bearer {api.token()}"}
    )

    assert response.json()["error_code"] == 105


REQUIRED = [
    (1, {"ema": EMAIL, "fst_nam": "A", "lst_nam": "B"}, "gen_id"),
    (1, {"gen_id": 3, "fst_nam": "A", "lst_nam": "B"}, "ema"),
    (1, {"gen_id": 3, "ema": EMAIL, "lst_nam": "B"}, "fst_nam"),
    (1, {"gen_id": 3, "ema": EMAIL, "fst_nam": "A"}, "lst_nam"),
    (2, {"ema": EMAIL}, "tst_frm_id"),
    (2, {"tst_frm_id": 101}, "ema"),
    (9, {"ema": EMAIL}, "tst_frm_id"),
    (8, {"gen_id": 3, "ema": EMAIL, "fst_nam": "A", "lst_nam": "B"}, "tst_frm_id"),
    (16, {}, "pla_tst_id"),
    (17, {}, "pla_tst_id"),
    (23, {}, "pla_tst_id"),
    (58, {}, "pla_tst_id"),
    (51, {}, "can_id"),
    (24, {}, "can_id"),
    (42, {"can_id": 1}, "mai_tem_id"),
    (42, {"mai_tem_id": 7}, "can_id"),
    (6, {"ema": EMAIL}, "tst_frm_id"),
    (6, {"tst_frm_id": 101}, "ema"),
    (4, {"ema": EMAIL}, "tst_frm_id"),
    (4, {"tst_frm_id": 101}, "ema"),
    (5, {"tst_frm_id": 101}, "ema"),
    (10, {}, "pla_tst_id"),
    (11, {"sta_dat": "2026-01-01 09:00", "end_dat": "2026-01-02 09:00"}, "des"),
    (11, {"des": "S", "end_dat": "2026-01-02 09:00"}, "sta_dat"),
    (11, {"des": "S", "sta_dat": "2026-01-01 09:00"}, "end_dat"),
    (12, {}, "ema"),
    (13, {"use_ema_for_adm": 1}, "ema"),
    (38, {}, "ema"),
]


@pytest.mark.parametrize(("act_id", "params", "missing"), REQUIRED)
def test_a_missing_required_parameter_answers_105_naming_it(
    api: IsogradCaller, act_id: int, params: dict[str, Any], missing: str
) -> None:
    assert api.call(act_id, **params) == error(105, f'Property "{missing}" is requested')


def test_an_empty_required_parameter_counts_as_missing(api: IsogradCaller) -> None:
    assert api.call(10, pla_tst_id="")["error_code"] == 105


# --- act 1: create a candidate --------------------------------------------------------------


def test_create_candidate_answers_can_id_and_login_url(api: IsogradCaller) -> None:
    answer = api.ok(1, **CANDIDATE)

    assert answer["can_id"] == 1381134
    assert answer["lgn_url"].startswith("http://simulator.test/")
    assert answer["error_message"] is None


def test_create_candidate_with_a_known_email_answers_202_with_its_can_id(
    api: IsogradCaller,
) -> None:
    can_id = api.candidate()

    answer = api.call(1, **{**CANDIDATE, "ema": EMAIL.upper()})

    assert answer == error(
        202, "There is already a candidate with this email on your account.", can_id=can_id
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"ema": "not-an-email"},
        {"gen_id": 4},
        {"lan_id": 9},
        {"lan_id": "fr"},
        {"xtr_tim_fac": -50},
        {"dep_id": 1, "ext_dep_id": "sales"},
    ],
)
def test_create_candidate_with_an_invalid_parameter_answers_201(
    api: IsogradCaller, changes: dict[str, Any]
) -> None:
    answer = api.call(1, **{**CANDIDATE, **changes})

    assert answer["error_code"] == 201
    assert answer["error_message"].startswith("The candidate could not be created")


def test_create_candidate_with_an_unknown_dep_id_answers_203(api: IsogradCaller) -> None:
    answer = api.call(1, **CANDIDATE, dep_id=424242)

    assert answer["error_code"] == 203


def test_create_candidate_with_an_ext_dep_id_reuses_the_group_it_created(
    api: IsogradCaller,
) -> None:
    first = api.candidate(ext_dep_id="sales")
    second = api.candidate(ema=OTHER_EMAIL, ext_dep_id="sales")

    candidates = {c["can_id"]: c for c in api.control("GET", "/state").json()["candidates"]}
    assert candidates[first]["dep_id"] == candidates[second]["dep_id"] is not None


def test_create_candidate_keeps_its_optional_fields(api: IsogradCaller) -> None:
    can_id = api.candidate(lan_id=1, ext_id="emp-42", dep_id=1, job_id=3, xtr_tim_fac=50)

    [candidate] = api.control("GET", "/state").json()["candidates"]
    assert candidate["can_id"] == can_id
    assert (candidate["lan_id"], candidate["ext_id"], candidate["dep_id"]) == (1, "emp-42", 1)
    assert (candidate["job_id"], candidate["xtr_tim_fac"]) == (3, 50)


# --- acts 2 and 9: add a test ---------------------------------------------------------------


def test_add_test_answers_a_start_url_and_pla_tst_id(api: IsogradCaller) -> None:
    api.candidate()

    answer = api.ok(2, tst_frm_id=101, ema=EMAIL)

    assert isinstance(answer["pla_tst_id"], int)
    assert answer["tst_url"].startswith("http://simulator.test/")


def test_add_test_returns_the_unfinished_test_of_that_tst_frm_id(api: IsogradCaller) -> None:
    api.candidate()
    first = api.assessment(101)

    assert api.assessment(101) == first
    assert api.assessment(102) != first


def test_add_test_creates_a_new_test_once_the_previous_one_is_finished(
    api: IsogradCaller,
) -> None:
    api.candidate()
    first = api.assessment(101)
    complete(api, first)

    assert api.assessment(101) != first


def test_act_9_creates_a_test_even_when_one_is_unfinished(api: IsogradCaller) -> None:
    api.candidate()
    first = api.assessment(101)

    second = api.ok(9, tst_frm_id=101, ema=EMAIL)["pla_tst_id"]

    assert second != first


@pytest.mark.parametrize("act_id", [2, 9])
@pytest.mark.parametrize("tst_frm_id", ["999", "abc"])
def test_add_test_with_an_unknown_tst_frm_id_answers_106(
    api: IsogradCaller, act_id: int, tst_frm_id: str
) -> None:
    api.candidate()

    answer = api.call(act_id, tst_frm_id=tst_frm_id, ema=EMAIL)

    assert answer == error(106, "This tst_frm_id is not allowed")


@pytest.mark.parametrize("act_id", [2, 9])
def test_add_test_for_an_unknown_candidate_answers_107(api: IsogradCaller, act_id: int) -> None:
    assert api.call(act_id, tst_frm_id=101, ema=EMAIL) == error(
        107, "This candidate does not exist"
    )


def test_add_test_accepts_the_old_parameter_name_rea_tst_id(api: IsogradCaller) -> None:
    api.candidate()

    pla_tst_id = api.ok(2, rea_tst_id=103, ema=EMAIL)["pla_tst_id"]

    assert api.control("GET", f"/tests/{pla_tst_id}").json()["tst_frm_id"] == 103


def test_add_test_beyond_max_num_tst_answers_402(api: IsogradCaller) -> None:
    api.candidate()
    api.ok(9, tst_frm_id=101, ema=EMAIL, max_num_tst=2)
    api.ok(9, tst_frm_id=101, ema=EMAIL, max_num_tst=2)

    answer = api.call(9, tst_frm_id=101, ema=EMAIL, max_num_tst=2)

    assert answer == error(402, "The candidate has already taken max_num_tst for this tst_frm_id")


def test_max_num_tst_per_only_counts_tests_of_the_last_days(api: IsogradCaller) -> None:
    api.candidate()
    api.ok(9, tst_frm_id=101, ema=EMAIL, max_num_tst=1, max_num_tst_per=7)
    api.control("POST", "/clock/advance", seconds=8 * 86_400)
    api.renew_token()

    answer = api.call(9, tst_frm_id=101, ema=EMAIL, max_num_tst=1, max_num_tst_per=7)

    assert answer["success"] is True


def test_add_test_without_credits_answers_301(api: IsogradCaller) -> None:
    api.candidate()
    api.control("PUT", "/credits", credits={"Assessment": 0})

    answer = api.call(2, tst_frm_id=101, ema=EMAIL)

    assert answer == error(301, "You have no more credits for this type of test")


def test_add_test_spends_one_credit_of_the_test_type(api: IsogradCaller) -> None:
    api.candidate()
    before = credits_of(api)

    api.assessment(107)

    after = credits_of(api)
    assert after["Certification"] == before["Certification"] - 1
    assert after["Assessment"] == before["Assessment"]


def test_add_test_with_proctoring_and_no_proctoring_credit_answers_303(
    api: IsogradCaller,
) -> None:
    api.candidate()
    api.control("PUT", "/credits", credits={PROCTORING_CREDIT: 0})

    answer = api.call(2, tst_frm_id=101, ema=EMAIL, add_pro=1)

    assert answer == error(303, "You have no proctoring credit left")


def test_add_test_with_html_answers_a_start_button_tag(api: IsogradCaller) -> None:
    api.candidate()

    response = api.post(2, tst_frm_id=101, ema=EMAIL, html=1)

    assert response.headers["content-type"].startswith("text/html")
    assert response.text.startswith('<a class="isograd_start_test_button" href="http://')
    assert response.text.endswith("</a>")


@pytest.mark.parametrize("extra", [{}, {"html": 1}])
def test_add_test_with_redirect_answers_302_to_the_start_page(
    api: IsogradCaller, extra: dict[str, Any]
) -> None:
    api.candidate()

    response = api.post(2, tst_frm_id=101, ema=EMAIL, redirect=1, **extra)

    assert response.status_code == 302
    assert response.headers["location"].startswith("http://simulator.test/_simulator/pages/tests/")


def test_add_test_keeps_the_callback_url_and_options(api: IsogradCaller) -> None:
    api.candidate()

    pla_tst_id = api.assessment(101, cal_bac_pag="https://relay.test/cb/x", ses_id=9001)

    options = api.control("GET", f"/tests/{pla_tst_id}").json()["options"]
    assert options == {"cal_bac_pag": "https://relay.test/cb/x", "ses_id": "9001"}


# --- act 8: create a candidate and add a test -----------------------------------------------


def test_act_8_creates_the_candidate_and_the_test(api: IsogradCaller) -> None:
    answer = api.ok(8, **CANDIDATE, tst_frm_id=101)

    assert answer["can_id"] == 1381134
    assert api.ok(10, pla_tst_id=answer["pla_tst_id"])["sta_id"] == 1
    assert answer["tst_url"].startswith("http://simulator.test/")


def test_act_8_with_a_known_email_answers_202_and_adds_no_test(api: IsogradCaller) -> None:
    can_id = api.candidate()

    answer = api.call(8, **CANDIDATE, tst_frm_id=101)

    assert answer["error_code"] == 202
    assert answer["can_id"] == can_id
    assert api.control("GET", "/state").json()["tests"] == []


def test_act_8_can_be_configured_to_continue_with_a_known_candidate() -> None:
    config = make_config(act8_existing_candidate=ExistingCandidatePolicy.CONTINUE)
    with TestClient(create_simulator_app(config)) as client:
        api = IsogradCaller(client)
        can_id = api.candidate()

        answer = api.ok(8, **CANDIDATE, tst_frm_id=101)

    assert answer["can_id"] == can_id


def test_act_8_with_an_unknown_test_answers_106_and_keeps_the_candidate(
    api: IsogradCaller,
) -> None:
    answer = api.call(8, **CANDIDATE, tst_frm_id=999)

    assert answer["error_code"] == 106
    assert api.call(1, **CANDIDATE)["error_code"] == 202


def test_act_8_with_redirect_answers_302(api: IsogradCaller) -> None:
    response = api.post(8, **CANDIDATE, tst_frm_id=101, redirect=1)

    assert response.status_code == 302


# --- acts 16 and 17: proctoring -------------------------------------------------------------


def test_adding_proctoring_spends_a_credit_and_removing_gives_it_back(
    api: IsogradCaller,
) -> None:
    api.candidate()
    pla_tst_id = api.assessment()
    before = credits_of(api)[PROCTORING_CREDIT]

    api.ok(16, pla_tst_id=pla_tst_id)
    during = credits_of(api)[PROCTORING_CREDIT]
    api.ok(17, pla_tst_id=pla_tst_id)

    assert (during, credits_of(api)[PROCTORING_CREDIT]) == (before - 1, before)


def test_adding_proctoring_without_credit_answers_303(api: IsogradCaller) -> None:
    api.candidate()
    pla_tst_id = api.assessment()
    api.control("PUT", "/credits", credits={PROCTORING_CREDIT: 0})

    assert api.call(16, pla_tst_id=pla_tst_id) == error(303, "You have no proctoring credit left")


@pytest.mark.parametrize("act_id", [16, 17])
def test_proctoring_an_unknown_test_answers_501(api: IsogradCaller, act_id: int) -> None:
    assert api.call(act_id, pla_tst_id=123)["error_code"] == 501


# --- act 23: delete a test ------------------------------------------------------------------


def test_deleting_a_test_not_started_removes_it_and_refunds_the_credit(
    api: IsogradCaller,
) -> None:
    api.candidate()
    before = credits_of(api)["Assessment"]
    pla_tst_id = api.assessment()

    api.ok(23, pla_tst_id=pla_tst_id)

    assert api.call(10, pla_tst_id=pla_tst_id)["error_code"] == 501
    assert credits_of(api)["Assessment"] == before


@pytest.mark.parametrize("move", ["start", "complete"])
def test_deleting_a_started_test_answers_304(api: IsogradCaller, move: str) -> None:
    api.candidate()
    pla_tst_id = api.assessment()
    api.control("POST", f"/tests/{pla_tst_id}/{move}")

    assert api.call(23, pla_tst_id=pla_tst_id) == error(
        304, "The test is already started or does not exist"
    )


def test_deleting_an_unknown_test_answers_304(api: IsogradCaller) -> None:
    assert api.call(23, pla_tst_id=42)["error_code"] == 304


# --- act 58: confirmation test --------------------------------------------------------------


def test_confirmation_test_on_a_completed_test_answers_a_start_url(api: IsogradCaller) -> None:
    api.candidate()
    pla_tst_id = api.assessment()
    complete(api, pla_tst_id)

    answer = api.ok(58, pla_tst_id=pla_tst_id)

    tests = api.control("GET", "/state").json()["tests"]
    assert answer["tst_url"].startswith("http://simulator.test/")
    assert tests[-1]["confirmation_of"] == pla_tst_id


def test_confirmation_test_with_redirect_answers_302(api: IsogradCaller) -> None:
    api.candidate()
    pla_tst_id = api.assessment()
    complete(api, pla_tst_id)

    assert api.post(58, pla_tst_id=pla_tst_id, redirect=1).status_code == 302


def test_confirmation_test_on_an_unfinished_test_answers_502(api: IsogradCaller) -> None:
    api.candidate()
    pla_tst_id = api.assessment()

    assert api.call(58, pla_tst_id=pla_tst_id)["error_code"] == 502


# --- acts 51, 24, 12, 38: candidates --------------------------------------------------------


def test_update_candidate_changes_the_email_used_to_find_them(api: IsogradCaller) -> None:
    can_id = api.candidate()

    api.ok(51, can_id=can_id, ema=OTHER_EMAIL, fst_nam="Grace", lan_id=2)

    assert api.ok(2, tst_frm_id=101, ema=OTHER_EMAIL)["pla_tst_id"]
    assert api.call(2, tst_frm_id=101, ema=EMAIL)["error_code"] == 107


def test_update_an_unknown_candidate_answers_107(api: IsogradCaller) -> None:
    assert api.call(51, can_id=99, fst_nam="X")["error_code"] == 107


def test_update_candidate_to_a_taken_email_answers_202(api: IsogradCaller) -> None:
    can_id = api.candidate()
    other = api.candidate(ema=OTHER_EMAIL)

    answer = api.call(51, can_id=can_id, ema=OTHER_EMAIL)

    assert (answer["error_code"], answer["can_id"]) == (202, other)


@pytest.mark.parametrize("by", ["can_id", "ema"])
def test_delete_candidate_removes_them_and_their_tests(api: IsogradCaller, by: str) -> None:
    can_id = api.candidate()
    pla_tst_id = api.assessment()

    answer = api.call(24, **({"can_id": can_id} if by == "can_id" else {"ema": EMAIL}))

    assert answer == {"success": True}
    assert api.call(10, pla_tst_id=pla_tst_id)["error_code"] == 501
    assert api.call(1, **CANDIDATE)["success"] is True


def test_delete_an_unknown_candidate_answers_107(api: IsogradCaller) -> None:
    assert api.call(24, ema=EMAIL)["error_code"] == 107


def test_anonymize_replaces_names_and_email_by_numbers(api: IsogradCaller) -> None:
    can_id = api.candidate()

    api.ok(12, ema=EMAIL)

    [candidate] = api.control("GET", "/state").json()["candidates"]
    assert candidate["ema"] == candidate["fst_nam"] == candidate["lst_nam"] == str(can_id)
    assert api.call(2, tst_frm_id=101, ema=EMAIL)["error_code"] == 107


def test_anonymize_an_unknown_candidate_answers_107(api: IsogradCaller) -> None:
    assert api.call(12, ema=EMAIL)["error_code"] == 107


def test_login_as_candidate_redirects_to_their_page(api: IsogradCaller) -> None:
    can_id = api.candidate()

    response = api.post(38, ema=EMAIL)

    assert response.status_code == 302
    assert f"/_simulator/pages/candidates/{can_id}" in response.headers["location"]


def test_login_as_an_unknown_candidate_answers_107(api: IsogradCaller) -> None:
    assert api.call(38, ema=EMAIL)["error_code"] == 107


# --- act 42: registration email -------------------------------------------------------------


def test_registration_email_for_tests_is_recorded(api: IsogradCaller) -> None:
    can_id = api.candidate()
    pla_tst_id = api.assessment()

    answer = api.call(
        42, pla_tst_ids=str(pla_tst_id), can_id=999, mai_tem_id=7, sen_dat="2026-12-01"
    )

    [email] = api.control("GET", "/emails").json()
    assert answer == {"success": True}
    assert (email["can_ids"], email["pla_tst_ids"]) == ([can_id], [pla_tst_id])
    assert (email["mai_tem_id"], email["sen_dat"]) == ("7", "2026-12-01")


def test_registration_email_for_a_candidate_lists_their_pending_tests(
    api: IsogradCaller,
) -> None:
    can_id = api.candidate()
    pending = api.assessment(101)
    complete(api, api.assessment(102))

    assert api.call(42, can_id=can_id, mai_tem_id=7) == {"success": True}

    [email] = api.control("GET", "/emails").json()
    assert email["pla_tst_ids"] == [pending]


@pytest.mark.parametrize(("params", "code"), [({"pla_tst_ids": "77"}, 501), ({"can_id": 77}, 107)])
def test_registration_email_for_unknown_targets_answers_an_error(
    api: IsogradCaller, params: dict[str, Any], code: int
) -> None:
    assert api.call(42, mai_tem_id=7, **params)["error_code"] == code


# --- acts 6, 4, 5: results ------------------------------------------------------------------


def test_pdf_results_answer_a_pdf_url_that_serves_a_pdf(api: IsogradCaller) -> None:
    api.candidate()
    pla_tst_id = api.assessment()
    complete(api, pla_tst_id)

    url = api.ok(6, tst_frm_id=101, ema=EMAIL, pla_tst_id=pla_tst_id)["pdf_url"]

    pdf = api.client.get(url.removeprefix("http://simulator.test"))
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF-")


def test_pdf_results_with_redirect_answer_302(api: IsogradCaller) -> None:
    api.candidate()
    complete(api, api.assessment())

    response = api.post(6, tst_frm_id=101, ema=EMAIL, redirect=1)

    assert response.status_code == 302
    assert response.headers["location"].endswith(".pdf?lan_id=2")


@pytest.mark.parametrize("act_id", [6, 4, 5])
def test_results_of_an_unknown_tst_frm_id_answer_106(api: IsogradCaller, act_id: int) -> None:
    api.candidate()

    assert api.call(act_id, tst_frm_id=999, ema=EMAIL) == error(
        106, "This value for tst_frm_id is not authorized"
    )


@pytest.mark.parametrize("act_id", [6, 4, 5])
def test_results_of_an_unknown_candidate_answer_107(api: IsogradCaller, act_id: int) -> None:
    assert api.call(act_id, tst_frm_id=101, ema=EMAIL) == error(107, "Candidate does not exist")


@pytest.mark.parametrize("act_id", [6, 4, 5])
def test_results_of_a_test_not_taken_answer_501(api: IsogradCaller, act_id: int) -> None:
    api.candidate()
    other = api.assessment(102)

    without_id = api.call(act_id, tst_frm_id=101, ema=EMAIL)
    wrong_id = api.call(act_id, tst_frm_id=101, ema=EMAIL, pla_tst_id=other)

    assert without_id == wrong_id == error(501, "Candidate has not taken this test")


@pytest.mark.parametrize("act_id", [6, 4, 5])
@pytest.mark.parametrize("move", [None, "start", "pending"])
def test_results_of_an_unfinished_test_answer_502(
    api: IsogradCaller, act_id: int, move: str | None
) -> None:
    api.candidate()
    pla_tst_id = api.assessment()
    if move:
        api.control("POST", f"/tests/{pla_tst_id}/{move}")

    answer = api.call(act_id, tst_frm_id=101, ema=EMAIL, pla_tst_id=pla_tst_id)

    assert answer == error(502, "Test is not finished")


def test_pdf_results_of_a_test_that_is_not_an_assessment_answer_601(api: IsogradCaller) -> None:
    api.candidate()
    complete(api, api.assessment(107))

    assert api.call(6, tst_frm_id=107, ema=EMAIL) == error(601, "Test must be an assessment")


@pytest.mark.parametrize(
    ("tst_frm_id", "grade_type", "num_val", "max_val", "txt_des"),
    [
        (102, 1, 3, 5, "Intermediate \u2013 3/5"),
        (101, 2, 550, 1000, "550/1000"),
        (104, 3, 620, 1000, "620/1000"),
        (105, 4, 30, 40, "30/40"),
        (103, 5, 520, 1000, "350-700"),
        (106, 15, 72, 100, "72/100"),
    ],
)
def test_results_have_a_default_grade_for_each_grade_type(
    api: IsogradCaller,
    tst_frm_id: int,
    grade_type: int,
    num_val: int,
    max_val: int,
    txt_des: str,
) -> None:
    api.candidate()
    complete(api, api.assessment(tst_frm_id), elapsed_seconds=600)

    answer = api.ok(4, tst_frm_id=tst_frm_id, ema=EMAIL)

    assert {k: answer[k] for k in ("gra_typ_id", "num_val", "max_val", "txt_des")} == {
        "gra_typ_id": grade_type,
        "num_val": num_val,
        "max_val": max_val,
        "txt_des": txt_des,
    }
    assert answer["no_sto_tim_spe"] == 600


def test_results_use_the_grade_chosen_at_completion(api: IsogradCaller) -> None:
    api.candidate()
    pla_tst_id = api.assessment(101)
    complete(api, pla_tst_id, grade_type=99, value=12.5, max_value=20, text="12.5 on 20")

    answer = api.ok(4, tst_frm_id=101, ema=EMAIL, pla_tst_id=pla_tst_id)

    assert (answer["gra_typ_id"], answer["num_val"], answer["max_val"]) == (99, 12.5, 20)
    assert answer["txt_des"] == "12.5 on 20"


def test_results_without_pla_tst_id_are_those_of_the_last_test_taken(api: IsogradCaller) -> None:
    api.candidate()
    complete(api, api.assessment(101), value=300)
    complete(api, api.assessment(101), value=800)
    api.assessment(101)  # a third one, not finished yet

    assert api.ok(4, tst_frm_id=101, ema=EMAIL)["num_val"] == 800


def test_result_details_of_an_irt_test_give_levels_on_the_skill_scale(
    api: IsogradCaller,
) -> None:
    api.candidate()
    complete(api, api.assessment(101), value=500, skills={"45": 3.5, "46": None})

    answer = api.ok(5, tst_frm_id=101, ema=EMAIL)

    details = answer["result_details"]
    assert answer["des_lan_id"] == 2
    assert set(details) == {"45", "46", "47", "48"}
    assert details["45"] == {
        "des": "Environment and methods",
        "level": 3.5,
        "level_des": "Level 4",
        "scalemin": 1,
        "scalemax": 5,
    }
    assert details["46"]["level"] == -1


def test_result_details_of_a_non_irt_test_give_success_rates(api: IsogradCaller) -> None:
    api.candidate()
    complete(api, api.assessment(104), value=800, skills={"202": None})

    details = api.ok(5, tst_frm_id=104, ema=EMAIL)["result_details"]

    assert details == {
        "201": {"des": "Numerical reasoning", "successrate": 0.8},
        "202": {"des": "Verbal reasoning", "successrate": -1},
    }


@pytest.mark.parametrize(("requested", "used", "text"), [(1, 1, "Calculs"), (3, 2, "Calculations")])
def test_result_details_fall_back_to_english(
    api: IsogradCaller, requested: int, used: int, text: str
) -> None:
    api.candidate()
    complete(api, api.assessment(101))

    answer = api.ok(5, tst_frm_id=101, ema=EMAIL, des_lan_id=requested)

    assert answer["des_lan_id"] == used
    assert answer["result_details"]["46"]["des"].startswith(text)


def test_result_details_of_a_test_without_skills_are_empty(api: IsogradCaller) -> None:
    api.candidate()
    complete(api, api.assessment(105))

    answer = api.ok(5, tst_frm_id=105, ema=EMAIL, des_lan_id=7)

    assert (answer["des_lan_id"], answer["result_details"]) == (2, [])


def test_result_details_keyed_0_to_n_are_a_list_as_php_encodes_them() -> None:
    skills = (SkillSpec("0", {2: "First"}), SkillSpec("1", {2: "Second"}))
    catalogue = Catalogue(tests=(CatalogueTest(1, "Quiz", 3, skills=skills),))
    with TestClient(create_simulator_app(make_config(catalogue=catalogue))) as client:
        api = IsogradCaller(client)
        api.candidate()
        complete(api, api.assessment(1), value=500)

        details = api.ok(5, tst_frm_id=1, ema=EMAIL)["result_details"]

    assert details == [{"des": "First", "successrate": 0.5}, {"des": "Second", "successrate": 0.5}]


# --- act 10: status -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("moves", "sta_id"), [((), 1), (("start",), 2), (("complete",), 3), (("pending",), 4)]
)
def test_status_follows_the_test_life(
    api: IsogradCaller, moves: tuple[str, ...], sta_id: int
) -> None:
    api.candidate()
    pla_tst_id = api.assessment()
    for move in moves:
        api.control("POST", f"/tests/{pla_tst_id}/{move}")

    assert api.ok(10, pla_tst_id=pla_tst_id)["sta_id"] == sta_id


@pytest.mark.parametrize("pla_tst_id", ["424242", "x"])
def test_status_of_an_unknown_test_answers_501(api: IsogradCaller, pla_tst_id: str) -> None:
    assert api.call(10, pla_tst_id=pla_tst_id) == error(501, "This pla_tst_id does not exist")


# --- acts 11, 13, 14, 15: administration ----------------------------------------------------


def test_create_session_answers_a_ses_id(api: IsogradCaller) -> None:
    answer = api.ok(11, des="Autumn", sta_dat="2026-11-01 09:00", end_dat="2026-11-30 18:00")

    assert isinstance(answer["ses_id"], int)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, "/_simulator/pages/admin"),
        ({"sub_com_id": 12}, "/_simulator/pages/admin?sub_com_id=12"),
    ],
)
def test_login_as_admin_redirects_to_the_admin_module(
    api: IsogradCaller, params: dict[str, Any], expected: str
) -> None:
    response = api.post(13, **params)

    assert response.status_code == 302
    assert response.headers["location"] == "http://simulator.test" + expected


def test_tests_list_gives_the_catalogue_ids(api: IsogradCaller) -> None:
    assert api.ok(14)["tests"] == [101, 102, 103, 104, 105, 106, 107]
    assert api.ok(14, lan_id=3)["tests"] == []


def test_credits_list_gives_each_credit_type_and_amount(api: IsogradCaller) -> None:
    credits = api.ok(15)["credits"]

    assert {"des": "Assessment", "amount": 1000} in credits
    assert {c["des"] for c in credits} == {"Assessment", "Certification", PROCTORING_CREDIT}


# --- sub accounts ---------------------------------------------------------------------------


def test_sub_accounts_have_their_own_candidates(api: IsogradCaller) -> None:
    master = api.candidate()

    in_sub = api.ok(1, **CANDIDATE, sub_com_id=12)["can_id"]

    assert in_sub != master


def test_a_test_of_a_sub_account_is_not_visible_from_another(api: IsogradCaller) -> None:
    api.candidate(sub_com_id=12)
    pla_tst_id = api.assessment(sub_com_id=12)

    assert api.ok(10, pla_tst_id=pla_tst_id, sub_com_id=12)["sta_id"] == 1
    assert api.call(10, pla_tst_id=pla_tst_id)["error_code"] == 501
    assert api.call(10, pla_tst_id=pla_tst_id, sub_com_id=13)["error_code"] == 501


def test_a_sub_com_id_that_is_not_an_integer_answers_105(api: IsogradCaller) -> None:
    assert api.call(14, sub_com_id="acme") == error(105, 'Property "sub_com_id" is requested')


def test_sub_accounts_have_their_own_credits(api: IsogradCaller) -> None:
    api.control("PUT", "/credits", sub_com_id=12, credits={"Assessment": 3})

    assert credits_of(api, sub_com_id=12)["Assessment"] == 3
    assert credits_of(api)["Assessment"] == 1000
