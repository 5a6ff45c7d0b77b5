"""Tests of the Isograd client: what it sends and how it reads answers (MockTransport), then
every action and error code against the simulator, in-process and over real HTTP."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from urllib.parse import parse_qsl

import httpx2
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.testclient import TestClient
from structlog.testing import capture_logs

from worker.errors import (
    IsogradApiError,
    IsogradProtocolError,
    IsogradUnavailableError,
)
from worker.isograd import IsogradClient, IsogradEnvironment, isograd_urls
from worker.isograd.errors import (
    ERROR_CLASSES,
    AssessmentNotAllowedError,
    AssessmentNotDeletableError,
    AssessmentNotFinishedError,
    AssessmentNotFoundError,
    CandidateExistsError,
    CandidateNotCreatedError,
    CandidateNotFoundError,
    GroupNotFoundError,
    InvalidActionError,
    IsogradAuthError,
    MaxAttemptsReachedError,
    MissingParameterError,
    NoCreditsError,
    NoProctoringCreditsError,
    NotAnAssessmentError,
    error_for_code,
)
from worker.isograd.models import (
    AssessmentCreated,
    AssessmentOptions,
    AssessmentResult,
    AssessmentStatus,
    CandidateCreated,
    Credit,
    Gender,
    Language,
    NewCandidate,
    ResultDetails,
    SkillResult,
)
from worker.simulator.app import create_simulator_app
from worker.simulator.catalogue import ASSESSMENT_CREDIT, PROCTORING_CREDIT
from worker.simulator.state import SimulatorConfig

API_URL = "https://isograd.example.test/api/usage"
AUTH_URL = "https://isograd.example.test/oauth2/token"
EMAIL = "ada.lovelace@example.org"
SECRET = "client-secret-value"
CANDIDATE = NewCandidate(email=EMAIL, first_name="Ada", last_name="Lovelace")

Answer = httpx2.Response | Exception


def ok(**fields: object) -> httpx2.Response:
    return httpx2.Response(200, json={"error_message": None, "success": True, **fields})


def failure(code: object, message: str | None = "boom", **fields: object) -> httpx2.Response:
    return httpx2.Response(
        200, json={"success": False, "error_code": code, "error_message": message, **fields}
    )


def redirect(location: str) -> httpx2.Response:
    return httpx2.Response(302, headers={"location": location})


@dataclass
class FakeIsograd:
    """A MockTransport handler: tokens token-1, token-2, …; API answers taken in order (the last
    one repeats)."""

    answers: list[Answer]
    api_requests: list[httpx2.Request] = field(default_factory=list)
    token_requests: list[httpx2.Request] = field(default_factory=list)

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        if request.url.path.endswith("/oauth2/token"):
            self.token_requests.append(request)
            token = f"token-{len(self.token_requests)}"
            return httpx2.Response(200, json={"access_token": token, "expires_in": 3600})
        self.api_requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def form(self, index: int = -1) -> dict[str, str]:
        return dict(parse_qsl(self.api_requests[index].content.decode()))


MakeClient = Callable[..., tuple[IsogradClient, FakeIsograd]]


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def make_client(sleeps: list[float]) -> Iterator[MakeClient]:
    clients: list[IsogradClient] = []

    def make(*answers: Answer, **options: Any) -> tuple[IsogradClient, FakeIsograd]:
        fake = FakeIsograd(list(answers) or [ok()])
        client = IsogradClient(
            api_url=API_URL,
            auth_url=AUTH_URL,
            client_id="client-1",
            client_secret=SECRET,
            transport=httpx2.MockTransport(fake),
            sleep=sleeps.append,
            **options,
        )
        clients.append(client)
        return client, fake

    yield make
    for client in clients:
        client.close()


# Every action: the call, its act_id, a successful answer, and the typed result expected.


@dataclass(frozen=True)
class Action:
    name: str
    act: int
    call: Callable[[IsogradClient, dict[str, Any]], object]
    answer: httpx2.Response
    expected: object


ACTIONS = [
    Action(
        "create_candidate",
        1,
        lambda c, kw: c.create_candidate(CANDIDATE, **kw),
        ok(can_id=1381134, lgn_url="https://i.test/login"),
        CandidateCreated(can_id=1381134, login_url="https://i.test/login"),
    ),
    Action(
        "add_test",
        2,
        lambda c, kw: c.add_test(EMAIL, 55, **kw),
        ok(pla_tst_id=9001, tst_url="https://i.test/start"),
        AssessmentCreated(pla_tst_id=9001, test_url="https://i.test/start"),
    ),
    Action(
        "add_test_force_new",
        9,
        lambda c, kw: c.add_test(EMAIL, 55, force_new=True, **kw),
        ok(pla_tst_id=9002, tst_url="https://i.test/start"),
        AssessmentCreated(pla_tst_id=9002, test_url="https://i.test/start"),
    ),
    Action(
        "add_test_redirect_url",
        2,
        lambda c, kw: c.add_test_redirect_url(EMAIL, 55, **kw),
        redirect("https://i.test/start?t=1"),
        "https://i.test/start?t=1",
    ),
    Action(
        "add_test_html",
        2,
        lambda c, kw: c.add_test_html(EMAIL, 55, **kw),
        httpx2.Response(200, text='<a class="isograd_start_test_button" href="u">Go</a>'),
        '<a class="isograd_start_test_button" href="u">Go</a>',
    ),
    Action(
        "create_candidate_and_add_test",
        8,
        lambda c, kw: c.create_candidate_and_add_test(CANDIDATE, 55, **kw),
        ok(pla_tst_id=9003, tst_url="https://i.test/start", can_id=77),
        AssessmentCreated(pla_tst_id=9003, test_url="https://i.test/start", can_id=77),
    ),
    Action(
        "create_candidate_and_add_test_redirect_url",
        8,
        lambda c, kw: c.create_candidate_and_add_test_redirect_url(CANDIDATE, 55, **kw),
        redirect("https://i.test/start?t=2"),
        "https://i.test/start?t=2",
    ),
    Action("add_proctoring", 16, lambda c, kw: c.add_proctoring(9001, **kw), ok(), None),
    Action("remove_proctoring", 17, lambda c, kw: c.remove_proctoring(9001, **kw), ok(), None),
    Action("delete_test", 23, lambda c, kw: c.delete_test(9001, **kw), ok(), None),
    Action(
        "add_confirmation_test",
        58,
        lambda c, kw: c.add_confirmation_test(9001, **kw),
        ok(tst_url="https://i.test/confirm"),
        "https://i.test/confirm",
    ),
    Action(
        "add_confirmation_test_redirect_url",
        58,
        lambda c, kw: c.add_confirmation_test_redirect_url(9001, **kw),
        redirect("https://i.test/confirm"),
        "https://i.test/confirm",
    ),
    Action(
        "update_candidate",
        51,
        lambda c, kw: c.update_candidate(77, first_name="Augusta", **kw),
        ok(),
        None,
    ),
    Action("delete_candidate", 24, lambda c, kw: c.delete_candidate(can_id=77, **kw), ok(), None),
    Action(
        "send_registration_email",
        42,
        lambda c, kw: c.send_registration_email(3, can_id=77, **kw),
        ok(),
        None,
    ),
    Action(
        "get_pdf_url",
        6,
        lambda c, kw: c.get_pdf_url(55, EMAIL, 9001, **kw),
        ok(pdf_url="https://i.test/r.pdf"),
        "https://i.test/r.pdf",
    ),
    Action(
        "get_pdf_redirect_url",
        6,
        lambda c, kw: c.get_pdf_redirect_url(55, EMAIL, 9001, **kw),
        redirect("https://i.test/r.pdf"),
        "https://i.test/r.pdf",
    ),
    Action(
        "get_result",
        4,
        lambda c, kw: c.get_result(55, EMAIL, 9001, **kw),
        ok(gra_typ_id=2, num_val=550, max_val=1000, txt_des="550/1000", no_sto_tim_spe=1834),
        AssessmentResult(
            grade_type=2, value=550.0, max_value=1000.0, text="550/1000", elapsed_seconds=1834
        ),
    ),
    Action(
        "get_result_details",
        5,
        lambda c, kw: c.get_result_details(55, EMAIL, 9001, **kw),
        ok(des_lan_id=2, result_details={"45": {"des": "Formulas", "successrate": 0.5}}),
        ResultDetails(
            language=2, skills=(SkillResult(id="45", description="Formulas", success_rate=0.5),)
        ),
    ),
    Action(
        "get_test_status",
        10,
        lambda c, kw: c.get_test_status(9001, **kw),
        ok(sta_id=3),
        AssessmentStatus.COMPLETED,
    ),
    Action(
        "create_session",
        11,
        lambda c, kw: c.create_session(
            "June", datetime(2026, 6, 1, 9, 0), datetime(2026, 6, 1, 17, 30), **kw
        ),
        ok(ses_id=12),
        12,
    ),
    Action("anonymize_candidate", 12, lambda c, kw: c.anonymize_candidate(EMAIL, **kw), ok(), None),
    Action(
        "admin_login_url",
        13,
        lambda c, kw: c.admin_login_url(**kw),
        redirect("https://i.test/admin"),
        "https://i.test/admin",
    ),
    Action(
        "candidate_login_url",
        38,
        lambda c, kw: c.candidate_login_url(EMAIL, **kw),
        redirect("https://i.test/me"),
        "https://i.test/me",
    ),
    Action(
        "list_available_tests",
        14,
        lambda c, kw: c.list_available_tests(**kw),
        ok(tests=[55, 56]),
        (55, 56),
    ),
    Action(
        "get_credits",
        15,
        lambda c, kw: c.get_credits(**kw),
        ok(credits=[{"des": "TOSA", "amount": 10}]),
        (Credit(description="TOSA", amount=10),),
    ),
]
ACTION_IDS = [action.name for action in ACTIONS]


@pytest.mark.parametrize("action", ACTIONS, ids=ACTION_IDS)
def test_every_action_is_a_form_post_with_its_act_id_and_bearer_token(
    make_client: MakeClient, action: Action
) -> None:
    client, fake = make_client(action.answer)

    action.call(client, {})

    request = fake.api_requests[0]
    assert (request.method, str(request.url)) == ("POST", API_URL)
    assert request.headers["authorization"] == "Bearer token-1"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert fake.form()["act_id"] == str(action.act)


@pytest.mark.parametrize("action", ACTIONS, ids=ACTION_IDS)
def test_every_action_returns_its_typed_result(make_client: MakeClient, action: Action) -> None:
    client, _ = make_client(action.answer)

    assert action.call(client, {}) == action.expected


@pytest.mark.parametrize("action", ACTIONS, ids=ACTION_IDS)
def test_every_action_accepts_sub_com_id(make_client: MakeClient, action: Action) -> None:
    client, fake = make_client(action.answer)

    action.call(client, {"sub_com_id": 4242})

    assert fake.form()["sub_com_id"] == "4242"


@pytest.mark.parametrize("action", ACTIONS, ids=ACTION_IDS)
def test_every_action_raises_the_documented_error_for_its_code(
    make_client: MakeClient, action: Action
) -> None:
    client, _ = make_client(failure(107, "This candidate does not exist"))

    with pytest.raises(CandidateNotFoundError) as caught:
        action.call(client, {})

    assert (caught.value.code, caught.value.action) == (107, action.act)
    assert caught.value.error_message == "This candidate does not exist"


def test_client_default_sub_com_id_is_sent(make_client: MakeClient) -> None:
    client, fake = make_client(ok(sta_id=1), sub_com_id=31)

    client.get_test_status(9001)

    assert fake.form()["sub_com_id"] == "31"


def test_sub_com_id_keyword_overrides_the_client_default(make_client: MakeClient) -> None:
    client, fake = make_client(ok(sta_id=1), sub_com_id=31)

    client.get_test_status(9001, sub_com_id=32)

    assert fake.form()["sub_com_id"] == "32"


def test_no_sub_com_id_is_sent_without_one(make_client: MakeClient) -> None:
    client, fake = make_client(ok(sta_id=1))

    client.get_test_status(9001)

    assert "sub_com_id" not in fake.form()


# What each action sends


def test_create_candidate_sends_the_candidate_fields(make_client: MakeClient) -> None:
    client, fake = make_client(ok(can_id=1))
    candidate = NewCandidate(
        email=EMAIL,
        first_name="Ada",
        last_name="Lovelace",
        gender=Gender.FEMALE,
        language=Language.ENGLISH,
        ext_id="hr-17",
        ext_dep_id="team-a",
        password="pw",
        no_password_reset=True,
        job_id=4,
        extra_time_percent=50,
    )

    client.create_candidate(candidate)

    assert fake.form() == {
        "act_id": "1",
        "gen_id": "2",
        "ema": EMAIL,
        "fst_nam": "Ada",
        "lst_nam": "Lovelace",
        "lan_id": "2",
        "ext_id": "hr-17",
        "ext_dep_id": "team-a",
        "psw": "pw",
        "no_psw_rst": "1",
        "job_id": "4",
        "xtr_tim_fac": "50",
    }


def test_create_candidate_leaves_unset_optional_fields_out(make_client: MakeClient) -> None:
    client, fake = make_client(ok(can_id=1))

    client.create_candidate(CANDIDATE)

    assert fake.form() == {
        "act_id": "1",
        "gen_id": "3",
        "ema": EMAIL,
        "fst_nam": "Ada",
        "lst_nam": "Lovelace",
    }


def test_add_test_sends_tst_frm_id_and_the_options(make_client: MakeClient) -> None:
    client, fake = make_client(ok(pla_tst_id=1))
    options = AssessmentOptions(
        full_screen=True,
        session_id=12,
        proctoring=True,
        max_tests=2,
        max_tests_period_days=30,
        return_url="https://lms.test/back",
        callback_url="https://relay.test/callbacks/isograd/k1.abc.mac",
        cpf_id="cpf-1",
        tests_per_credit=3,
    )

    client.add_test(EMAIL, 55, options)

    assert fake.form() == {
        "act_id": "2",
        "tst_frm_id": "55",
        "ema": EMAIL,
        "nee_ful_scr": "1",
        "ses_id": "12",
        "add_pro": "1",
        "max_num_tst": "2",
        "max_num_tst_per": "30",
        "rtn_pag": "https://lms.test/back",
        "cal_bac_pag": "https://relay.test/callbacks/isograd/k1.abc.mac",
        "cpf_id": "cpf-1",
        "nb_test_by_credit": "3",
    }


def test_create_candidate_and_add_test_sends_both_sets_of_fields(make_client: MakeClient) -> None:
    client, fake = make_client(ok(pla_tst_id=1))

    client.create_candidate_and_add_test(
        CANDIDATE, 55, AssessmentOptions(callback_url="https://relay.test/cb")
    )

    assert fake.form() == {
        "act_id": "8",
        "gen_id": "3",
        "ema": EMAIL,
        "fst_nam": "Ada",
        "lst_nam": "Lovelace",
        "tst_frm_id": "55",
        "cal_bac_pag": "https://relay.test/cb",
    }


@pytest.mark.parametrize(
    ("call", "flag"),
    [
        (lambda c: c.add_test_redirect_url(EMAIL, 55), "redirect"),
        (lambda c: c.add_test_html(EMAIL, 55), "html"),
        (lambda c: c.create_candidate_and_add_test_redirect_url(CANDIDATE, 55), "redirect"),
        (lambda c: c.add_confirmation_test_redirect_url(9001), "redirect"),
        (lambda c: c.get_pdf_redirect_url(55, EMAIL), "redirect"),
    ],
    ids=["add_test_redirect", "add_test_html", "act8_redirect", "act58_redirect", "pdf_redirect"],
)
def test_redirect_and_html_variants_set_their_flag(
    make_client: MakeClient, call: Callable[[IsogradClient], object], flag: str
) -> None:
    answer = (
        redirect("https://i.test/x") if flag == "redirect" else httpx2.Response(200, text="<a>")
    )
    client, fake = make_client(answer)

    call(client)

    assert fake.form()[flag] == "1"


def test_results_actions_send_tst_frm_id_email_and_pla_tst_id(make_client: MakeClient) -> None:
    client, fake = make_client(ok(gra_typ_id=1, num_val=3))

    client.get_result(55, EMAIL, 9001)

    assert fake.form() == {"act_id": "4", "tst_frm_id": "55", "ema": EMAIL, "pla_tst_id": "9001"}


def test_result_details_send_the_description_language(make_client: MakeClient) -> None:
    client, fake = make_client(ok(result_details={}))

    client.get_result_details(55, EMAIL, language=Language.FRENCH)

    assert fake.form() == {"act_id": "5", "tst_frm_id": "55", "ema": EMAIL, "des_lan_id": "1"}


def test_pdf_url_sends_the_report_language(make_client: MakeClient) -> None:
    client, fake = make_client(ok(pdf_url="https://i.test/r.pdf"))

    client.get_pdf_url(55, EMAIL, language=Language.GERMAN)

    assert fake.form() == {"act_id": "6", "tst_frm_id": "55", "ema": EMAIL, "lan_id": "3"}


def test_update_candidate_sends_only_the_given_fields(make_client: MakeClient) -> None:
    client, fake = make_client()

    client.update_candidate(77, last_name="King", gender=Gender.FEMALE)

    assert fake.form() == {"act_id": "51", "can_id": "77", "gen_id": "2", "lst_nam": "King"}


def test_delete_candidate_by_email(make_client: MakeClient) -> None:
    client, fake = make_client()

    client.delete_candidate(email=EMAIL)

    assert fake.form() == {"act_id": "24", "ema": EMAIL}


def test_delete_candidate_needs_an_id_or_an_email(make_client: MakeClient) -> None:
    client, fake = make_client()

    with pytest.raises(ValueError, match="can_id or email"):
        client.delete_candidate()

    assert fake.api_requests == []


def test_registration_email_sends_test_ids_comma_separated_and_the_date(
    make_client: MakeClient,
) -> None:
    client, fake = make_client()

    client.send_registration_email(
        3,
        pla_tst_ids=[9001, 9002],
        send_on=date(2026, 12, 1),
        send_now_if_due=True,
        sender_email="hr@example.org",
    )

    assert fake.form() == {
        "act_id": "42",
        "mai_tem_id": "3",
        "pla_tst_ids": "9001,9002",
        "sen_dat": "2026-12-01",
        "for_sen": "1",
        "ema_sen": "hr@example.org",
    }


def test_registration_email_needs_tests_or_a_candidate(make_client: MakeClient) -> None:
    client, fake = make_client()

    with pytest.raises(ValueError, match="pla_tst_ids or can_id"):
        client.send_registration_email(3)

    assert fake.api_requests == []


def test_create_session_sends_dates_to_the_minute(make_client: MakeClient) -> None:
    client, fake = make_client(ok(ses_id=1))

    client.create_session(
        "June", datetime(2026, 6, 1, 9, 5, 59), datetime(2026, 6, 2, 17, 30), password="pw"
    )

    assert fake.form() == {
        "act_id": "11",
        "des": "June",
        "sta_dat": "2026-06-01 09:05",
        "end_dat": "2026-06-02 17:30",
        "psw": "pw",
    }


def test_admin_login_as_a_given_administrator(make_client: MakeClient) -> None:
    client, fake = make_client(redirect("https://i.test/admin"))

    client.admin_login_url(admin_email="admin@example.org")

    assert fake.form() == {"act_id": "13", "use_ema_for_adm": "1", "ema": "admin@example.org"}


def test_available_tests_send_the_language(make_client: MakeClient) -> None:
    client, fake = make_client(ok(tests=[]))

    client.list_available_tests(language=Language.SPANISH)

    assert fake.form() == {"act_id": "14", "lan_id": "5"}


def test_the_documented_act_14_answer_of_ids_gives_no_test_names(make_client: MakeClient) -> None:
    client, fake = make_client(ok(tests=[55, 56]))

    assert client.list_test_names(sub_com_id=42) == {}
    assert fake.form() == {"act_id": "14", "sub_com_id": "42"}


def test_act_14_entries_with_a_name_are_read_and_others_skipped(make_client: MakeClient) -> None:
    tests = [55, {"tst_frm_id": "56", "name": " Word 2019 "}, {"name": "no id"}, {"tst_frm_id": 7}]
    client, _ = make_client(ok(tests=tests))

    assert client.list_test_names() == {56: "Word 2019"}


# Redirects and HTML


def test_redirect_is_returned_not_followed(make_client: MakeClient) -> None:
    client, fake = make_client(redirect("https://i.test/start"))

    client.candidate_login_url(EMAIL)

    assert len(fake.api_requests) == 1


def test_relative_redirect_is_made_absolute(make_client: MakeClient) -> None:
    client, _ = make_client(redirect("/candidate/home?x=1"))

    assert client.candidate_login_url(EMAIL) == "https://isograd.example.test/candidate/home?x=1"


def test_redirect_action_answered_by_an_error_raises_it(make_client: MakeClient) -> None:
    client, _ = make_client(failure(106))

    with pytest.raises(AssessmentNotAllowedError):
        client.add_test_redirect_url(EMAIL, 55)


def test_redirect_action_answered_by_json_success_is_a_protocol_error(
    make_client: MakeClient,
) -> None:
    client, _ = make_client(ok(tst_url="https://i.test/start"))

    with pytest.raises(IsogradProtocolError, match="act 38"):
        client.candidate_login_url(EMAIL)


def test_html_action_answered_by_json_success_is_a_protocol_error(
    make_client: MakeClient,
) -> None:
    client, _ = make_client(ok(tst_url="https://i.test/start"))

    with pytest.raises(IsogradProtocolError, match="HTML"):
        client.add_test_html(EMAIL, 55)


def test_html_action_answered_by_an_http_error_is_a_protocol_error(
    make_client: MakeClient,
) -> None:
    client, _ = make_client(httpx2.Response(404, text="<h1>Not found</h1>"))

    with pytest.raises(IsogradProtocolError, match="HTTP 404"):
        client.add_test_html(EMAIL, 55)


# Errors


ERROR_CODES = [
    (103, InvalidActionError),
    (105, MissingParameterError),
    (106, AssessmentNotAllowedError),
    (107, CandidateNotFoundError),
    (201, CandidateNotCreatedError),
    (202, CandidateExistsError),
    (203, GroupNotFoundError),
    (301, NoCreditsError),
    (303, NoProctoringCreditsError),
    (304, AssessmentNotDeletableError),
    (402, MaxAttemptsReachedError),
    (501, AssessmentNotFoundError),
    (502, AssessmentNotFinishedError),
    (601, NotAnAssessmentError),
]


@pytest.mark.parametrize(("code", "error_class"), ERROR_CODES)
def test_each_documented_code_raises_its_own_class(
    make_client: MakeClient, code: int, error_class: type[IsogradApiError]
) -> None:
    client, _ = make_client(failure(code, "documented message"))

    with pytest.raises(error_class) as caught:
        client.get_test_status(9001)

    assert (type(caught.value), caught.value.code, caught.value.action) == (error_class, code, 10)
    assert caught.value.error_message == "documented message"


def test_every_documented_code_has_a_distinct_class() -> None:
    assert sorted(ERROR_CLASSES) == [code for code, _ in ERROR_CODES]
    assert len(set(ERROR_CLASSES.values())) == len(ERROR_CODES)


def test_candidate_exists_error_carries_the_existing_can_id(make_client: MakeClient) -> None:
    client, _ = make_client(failure(202, "exists", can_id="1381134"))

    with pytest.raises(CandidateExistsError) as caught:
        client.create_candidate(CANDIDATE)

    assert caught.value.can_id == 1381134


def test_candidate_exists_error_without_can_id_has_none() -> None:
    error = error_for_code(202, "exists", 1, {})

    assert isinstance(error, CandidateExistsError)
    assert error.can_id is None


def test_unknown_code_raises_the_base_api_error(make_client: MakeClient) -> None:
    client, _ = make_client(failure(999, "new in v2"))

    with pytest.raises(IsogradApiError) as caught:
        client.get_credits()

    assert (type(caught.value), caught.value.code) == (IsogradApiError, 999)


@pytest.mark.parametrize(("code", "expected"), [("301", 301), ("301.0", 301), (None, None)])
def test_error_code_sent_as_string_or_missing_is_read(
    make_client: MakeClient, code: object, expected: int | None
) -> None:
    client, _ = make_client(failure(code))

    with pytest.raises(IsogradApiError) as caught:
        client.get_credits()

    assert caught.value.code == expected


def test_null_error_message_becomes_empty(make_client: MakeClient) -> None:
    client, _ = make_client(failure(304, None))

    with pytest.raises(AssessmentNotDeletableError) as caught:
        client.delete_test(9001)

    assert caught.value.error_message == ""


@pytest.mark.parametrize("success", [True, "true", 1, "1"])
def test_success_given_as_bool_string_or_number_is_accepted(
    make_client: MakeClient, success: object
) -> None:
    client, _ = make_client(httpx2.Response(200, json={"success": success, "sta_id": "2"}))

    assert client.get_test_status(9001) == AssessmentStatus.STARTED


@pytest.mark.parametrize("success", [False, "false", 0, "0"])
def test_success_false_given_as_bool_string_or_number_is_an_error(
    make_client: MakeClient, success: object
) -> None:
    client, _ = make_client(httpx2.Response(200, json={"success": success, "error_code": 501}))

    with pytest.raises(AssessmentNotFoundError):
        client.get_test_status(9001)


def test_error_code_without_success_field_is_an_error(make_client: MakeClient) -> None:
    client, _ = make_client(httpx2.Response(200, json={"error_code": 502}))

    with pytest.raises(AssessmentNotFinishedError):
        client.get_result(55, EMAIL)


def test_error_json_with_an_http_error_status_is_the_documented_error(
    make_client: MakeClient,
) -> None:
    client, _ = make_client(httpx2.Response(400, json={"success": False, "error_code": 105}))

    with pytest.raises(MissingParameterError):
        client.get_credits()


@pytest.mark.parametrize(
    "response",
    [
        httpx2.Response(200, text="<html>maintenance</html>"),
        httpx2.Response(200, json=[1, 2]),
        httpx2.Response(200, json={"sta_id": 3}),
        httpx2.Response(200, json={"success": "maybe"}),
        httpx2.Response(404, text="not found"),
        httpx2.Response(404, json={"success": True, "sta_id": 3}),
        redirect("https://i.test/login"),
    ],
    ids=[
        "html",
        "array",
        "no-success",
        "odd-success",
        "404-text",
        "404-success",
        "unexpected-redirect",
    ],
)
def test_answer_that_is_not_the_documented_json_is_a_protocol_error_naming_the_action(
    make_client: MakeClient, response: httpx2.Response
) -> None:
    client, _ = make_client(response)

    with pytest.raises(IsogradProtocolError, match="act 10") as caught:
        client.get_test_status(9001)

    assert caught.value.action == 10


@pytest.mark.parametrize(
    "answer",
    [
        ok(),
        ok(sta_id="three"),
        ok(sta_id=9),
        ok(sta_id=True),
        ok(sta_id=2.5),
    ],
    ids=["missing", "word", "undocumented", "bool", "fraction"],
)
def test_malformed_status_is_a_protocol_error(make_client: MakeClient, answer: Answer) -> None:
    client, _ = make_client(answer)

    with pytest.raises(IsogradProtocolError, match="malformed"):
        client.get_test_status(9001)


@pytest.mark.parametrize(
    ("call", "answer"),
    [
        (lambda c: c.create_candidate(CANDIDATE), ok(lgn_url="u")),
        (lambda c: c.add_test(EMAIL, 55), ok(tst_url="u")),
        (lambda c: c.get_pdf_url(55, EMAIL), ok(pdf_url="")),
        (lambda c: c.add_confirmation_test(1), ok(tst_url=None)),
        (lambda c: c.get_result(55, EMAIL), ok(gra_typ_id=2)),
        (lambda c: c.get_result_details(55, EMAIL), ok(result_details="45")),
        (lambda c: c.get_result_details(55, EMAIL), ok(result_details={"45": "Excel"})),
        (lambda c: c.get_result_details(55, EMAIL), ok(result_details={"45": {"level": True}})),
        (lambda c: c.list_available_tests(), ok(tests="55")),
        (lambda c: c.get_credits(), ok(credits=[{"des": "TOSA"}])),
        (lambda c: c.create_session("s", datetime(2026, 1, 1), datetime(2026, 1, 2)), ok()),
    ],
    ids=[
        "act1",
        "act2",
        "act6",
        "act58",
        "act4",
        "act5-string",
        "act5-entry",
        "act5-bool-level",
        "act14",
        "act15",
        "act11",
    ],
)
def test_answer_missing_a_required_field_is_a_protocol_error(
    make_client: MakeClient, call: Callable[[IsogradClient], object], answer: Answer
) -> None:
    client, _ = make_client(answer)

    with pytest.raises(IsogradProtocolError, match="malformed"):
        call(client)


# Robustness to what a real API sends


def test_numbers_sent_as_strings_are_read(make_client: MakeClient) -> None:
    client, _ = make_client(
        ok(gra_typ_id="2", num_val="550.0", max_val="1000", txt_des="550/1000", no_sto_tim_spe="60")
    )

    assert client.get_result(55, EMAIL) == AssessmentResult(
        grade_type=2, value=550.0, max_value=1000.0, text="550/1000", elapsed_seconds=60
    )


def test_missing_optional_fields_become_none(make_client: MakeClient) -> None:
    client, _ = make_client(ok(gra_typ_id=1, num_val=3.5, max_val=""))

    assert client.get_result(55, EMAIL) == AssessmentResult(
        grade_type=1, value=3.5, max_value=None, text=None, elapsed_seconds=None
    )


def test_extra_fields_are_ignored(make_client: MakeClient) -> None:
    client, _ = make_client(ok(can_id="12", lgn_url="https://i.test/l", new_field={"a": 1}))

    assert client.create_candidate(CANDIDATE) == CandidateCreated(12, "https://i.test/l")


def test_result_details_keyed_by_skill_id(make_client: MakeClient) -> None:
    client, _ = make_client(
        ok(
            des_lan_id="1",
            result_details={
                "45": {
                    "des": "Formulas",
                    "level": "3.5",
                    "level_des": "Intermediate",
                    "scalemin": "1",
                    "scalemax": 5,
                },
                "46": {"des": "Charts", "level": -1, "scalemin": 1, "scalemax": 5},
            },
        )
    )

    assert client.get_result_details(55, EMAIL) == ResultDetails(
        language=1,
        skills=(
            SkillResult("45", "Formulas", 3.5, "Intermediate", 1.0, 5.0, None),
            SkillResult("46", "Charts", None, None, 1.0, 5.0, None),
        ),
    )


def test_result_details_as_a_list_use_the_position_or_the_given_id(
    make_client: MakeClient,
) -> None:
    client, _ = make_client(
        ok(
            result_details=[
                {"des": "Formulas", "successrate": "0.75"},
                {"id": 12, "des": "Charts", "successrate": "-1"},
            ]
        )
    )

    assert client.get_result_details(55, EMAIL).skills == (
        SkillResult(id="0", description="Formulas", success_rate=0.75),
        SkillResult(id="12", description="Charts", success_rate=None),
    )


@pytest.mark.parametrize("details", [None, [], {}])
def test_empty_result_details_give_no_skills(make_client: MakeClient, details: object) -> None:
    client, _ = make_client(ok(result_details=details))

    assert client.get_result_details(55, EMAIL) == ResultDetails(language=None, skills=())


def test_credits_and_tests_sent_as_strings_or_objects_are_read(make_client: MakeClient) -> None:
    client, _ = make_client(
        ok(tests={"0": "55", "1": "56"}, credits={"a": {"des": "TOSA", "amount": "7"}})
    )

    assert client.list_available_tests() == (55, 56)
    assert client.get_credits() == (Credit("TOSA", 7),)


@pytest.mark.parametrize("field_value", [None, []])
def test_null_or_empty_lists_give_empty_tuples(
    make_client: MakeClient, field_value: object
) -> None:
    client, _ = make_client(ok(tests=field_value, credits=field_value))

    assert (client.list_available_tests(), client.get_credits()) == ((), ())


# Availability, retries and token refresh


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408, 429])
def test_server_errors_raise_a_retryable_error_with_the_status(
    make_client: MakeClient, status: int
) -> None:
    client, _ = make_client(httpx2.Response(status), read_attempts=1)

    with pytest.raises(IsogradUnavailableError) as caught:
        client.get_test_status(9001)

    assert (caught.value.status_code, caught.value.action) == (status, 10)


def test_retry_after_header_is_kept_on_the_error(make_client: MakeClient) -> None:
    client, _ = make_client(httpx2.Response(503, headers={"retry-after": "7"}), read_attempts=1)

    with pytest.raises(IsogradUnavailableError) as caught:
        client.get_test_status(9001)

    assert caught.value.retry_after == 7.0


def test_retry_after_as_an_http_date_is_ignored(make_client: MakeClient) -> None:
    client, _ = make_client(
        httpx2.Response(503, headers={"retry-after": "Wed, 21 Oct 2026 07:28:00 GMT"}),
        read_attempts=1,
    )

    with pytest.raises(IsogradUnavailableError) as caught:
        client.get_test_status(9001)

    assert caught.value.retry_after is None


@pytest.mark.parametrize(
    "exception",
    [
        httpx2.ConnectTimeout("connect"),
        httpx2.ReadTimeout("read"),
        httpx2.ConnectError("refused"),
        httpx2.RemoteProtocolError("reset"),
    ],
)
def test_timeouts_and_connection_errors_raise_a_retryable_error(
    make_client: MakeClient, exception: Exception
) -> None:
    client, _ = make_client(exception, read_attempts=1)

    with pytest.raises(IsogradUnavailableError) as caught:
        client.get_test_status(9001)

    assert caught.value.__cause__ is exception
    assert caught.value.action == 10


def test_undecodable_answer_is_a_protocol_error(make_client: MakeClient) -> None:
    client, _ = make_client(httpx2.DecodingError("bad gzip"))

    with pytest.raises(IsogradProtocolError, match="act 10"):
        client.get_test_status(9001)


def test_read_action_is_retried_with_exponential_backoff(
    make_client: MakeClient, sleeps: list[float]
) -> None:
    client, fake = make_client(httpx2.Response(503), httpx2.ReadTimeout("slow"), ok(sta_id=3))

    status = client.get_test_status(9001)

    assert (status, len(fake.api_requests), sleeps) == (AssessmentStatus.COMPLETED, 3, [0.5, 1.0])


def test_read_action_gives_up_after_its_attempts(
    make_client: MakeClient, sleeps: list[float]
) -> None:
    client, fake = make_client(httpx2.Response(502))

    with pytest.raises(IsogradUnavailableError):
        client.get_result(55, EMAIL)

    assert (len(fake.api_requests), len(sleeps)) == (3, 2)


def test_backoff_honours_retry_after_within_the_cap(
    make_client: MakeClient, sleeps: list[float]
) -> None:
    client, _ = make_client(
        httpx2.Response(429, headers={"retry-after": "3"}),
        httpx2.Response(429, headers={"retry-after": "120"}),
        ok(credits=[]),
    )

    client.get_credits()

    assert sleeps == [3.0, 8.0]


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.create_candidate(CANDIDATE),
        lambda c: c.add_test(EMAIL, 55),
        lambda c: c.create_candidate_and_add_test(CANDIDATE, 55),
        lambda c: c.delete_test(9001),
        lambda c: c.send_registration_email(3, can_id=7),
    ],
    ids=["act1", "act2", "act8", "act23", "act42"],
)
def test_write_actions_are_never_retried(
    make_client: MakeClient, sleeps: list[float], call: Callable[[IsogradClient], object]
) -> None:
    client, fake = make_client(httpx2.ReadTimeout("slow"), ok(can_id=1, pla_tst_id=2))

    with pytest.raises(IsogradUnavailableError):
        call(client)

    assert (len(fake.api_requests), sleeps) == (1, [])


def test_api_errors_are_not_retried(make_client: MakeClient, sleeps: list[float]) -> None:
    client, fake = make_client(failure(501), ok(sta_id=3))

    with pytest.raises(AssessmentNotFoundError):
        client.get_test_status(9001)

    assert (len(fake.api_requests), sleeps) == (1, [])


def test_one_token_serves_many_calls(make_client: MakeClient) -> None:
    client, fake = make_client(ok(sta_id=1))

    for _ in range(5):
        client.get_test_status(9001)

    assert len(fake.token_requests) == 1
    assert {r.headers["authorization"] for r in fake.api_requests} == {"Bearer token-1"}


def test_refused_token_is_refreshed_once_and_the_call_repeated(make_client: MakeClient) -> None:
    client, fake = make_client(httpx2.Response(401), ok(pla_tst_id=5))

    created = client.add_test(EMAIL, 55)

    assert created.pla_tst_id == 5
    assert [r.headers["authorization"] for r in fake.api_requests] == [
        "Bearer token-1",
        "Bearer token-2",
    ]


def test_fresh_token_refused_too_raises_an_auth_error(make_client: MakeClient) -> None:
    client, fake = make_client(httpx2.Response(401))

    with pytest.raises(IsogradAuthError):
        client.get_test_status(9001)

    assert (len(fake.api_requests), len(fake.token_requests)) == (2, 2)


def test_threads_share_the_client_and_one_token(make_client: MakeClient) -> None:
    client, fake = make_client(ok(sta_id=2))
    results: list[AssessmentStatus] = []

    def work() -> None:
        results.extend(client.get_test_status(9001) for _ in range(20))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert (len(results), len(fake.token_requests)) == (160, 1)


# Logging, lifecycle, environments


def test_each_request_is_logged_with_act_outcome_and_duration(make_client: MakeClient) -> None:
    client, _ = make_client(httpx2.Response(503), failure(107))

    with capture_logs() as logs, pytest.raises(CandidateNotFoundError):
        client.get_result(55, EMAIL)

    requests = [entry for entry in logs if entry["event"] == "isograd_request"]
    assert [(e["act"], e["attempt"], e["outcome"]) for e in requests] == [
        (4, 1, "unavailable"),
        (4, 2, "api_error"),
    ]
    assert all(isinstance(entry["duration_ms"], float) for entry in requests)


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [(ok(sta_id=1), "ok"), (httpx2.Response(200, text="x"), "protocol_error")],
)
def test_request_log_outcome(make_client: MakeClient, answer: Answer, outcome: str) -> None:
    client, _ = make_client(answer)

    with capture_logs() as logs, contextlib.suppress(IsogradProtocolError):
        client.get_test_status(9001)

    assert [e["outcome"] for e in logs if e["event"] == "isograd_request"] == [outcome]


def test_a_request_that_worked_logs_at_debug_and_a_failed_one_at_info(
    make_client: MakeClient,
) -> None:
    client, _ = make_client(httpx2.Response(503), ok(sta_id=3))

    with capture_logs() as logs:
        client.get_test_status(9001)

    levels = [(e["outcome"], e["log_level"]) for e in logs if e["event"] == "isograd_request"]
    assert levels == [("unavailable", "info"), ("ok", "debug")]


def test_logs_never_contain_the_email_token_or_secret(make_client: MakeClient) -> None:
    client, _ = make_client(httpx2.Response(401), failure(202, f"{EMAIL} exists", can_id=1))

    with capture_logs() as logs, pytest.raises(CandidateExistsError):
        client.create_candidate(CANDIDATE)

    assert [e["outcome"] for e in logs if e["event"] == "isograd_request"] == ["api_error"]
    text = repr(logs)
    assert EMAIL not in text
    assert SECRET not in text
    assert "token-1" not in text


def test_client_and_values_repr_hide_credentials_and_personal_data(
    make_client: MakeClient,
) -> None:
    client, _ = make_client()
    options = AssessmentOptions(callback_url="https://relay.test/cb/k1.x.mac")

    text = repr(client) + repr(CANDIDATE) + repr(options)

    assert SECRET not in text
    assert EMAIL not in text
    assert "k1.x.mac" not in text


def test_context_manager_closes_the_client() -> None:
    fake = FakeIsograd([ok(sta_id=1)])
    with IsogradClient(
        api_url=API_URL,
        auth_url=AUTH_URL,
        client_id="c",
        client_secret=SECRET,
        transport=httpx2.MockTransport(fake),
    ) as client:
        client.get_test_status(1)

    with pytest.raises(RuntimeError):
        client.get_test_status(1)


@pytest.mark.parametrize(
    ("env", "base", "expected"),
    [
        (
            "testing",
            None,
            ("https://recette.isograd.com/api/usage", "https://auth.isograd.com/oauth2/token"),
        ),
        (
            IsogradEnvironment.PRODUCTION,
            None,
            ("https://app.isograd.com/api/usage", "https://auth.isograd.com/oauth2/token"),
        ),
        (
            "simulator",
            None,
            ("http://127.0.0.1:8100/api/usage", "http://127.0.0.1:8100/oauth2/token"),
        ),
        (
            "simulator",
            "http://127.0.0.1:9999/",
            ("http://127.0.0.1:9999/api/usage", "http://127.0.0.1:9999/oauth2/token"),
        ),
    ],
)
def test_isograd_urls_per_environment(
    env: str, base: str | None, expected: tuple[str, str]
) -> None:
    assert isograd_urls(env, base) == expected


def test_isograd_urls_rejects_an_unknown_environment() -> None:
    with pytest.raises(ValueError, match="staging"):
        isograd_urls("staging")


# Against the simulator, in-process (Starlette TestClient as the transport) and over real HTTP
# (uvicorn on a free port in a thread).

SIM_CLIENT_ID = "sim-client"
SIM_SECRET = "sim-secret"
EXCEL = 101  # simulator catalogue: TOSA Excel, IRT score on 1000, skills 45-48
TYPING = 105  # simulator catalogue: correct answers, no skills
CERTIFICATION = 107  # simulator catalogue: not an assessment


def simulator_app(public_url: str) -> Starlette:
    return create_simulator_app(
        SimulatorConfig(client_id=SIM_CLIENT_ID, client_secret=SIM_SECRET, public_url=public_url)
    )


@dataclass
class SimulatorServer:
    base_url: str
    transport: httpx2.BaseTransport | None  # None: the network
    control: httpx2.Client


@contextlib.contextmanager
def serving(make_app: Callable[[str], Starlette]) -> Iterator[str]:
    """Serve the app with uvicorn on a free 127.0.0.1 port in a thread; yields its base URL."""
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted sockets only when the
    # listening socket says TCP; with proto 0 every keep-alive request waits ~40 ms (Nagle vs
    # delayed ACK).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)  # connections queue from now on, so the first request waits, not fails
    base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(
        uvicorn.Config(make_app(base_url), log_level="warning", ws="none", lifespan="off")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive(), "uvicorn stopped while starting"
            assert time.monotonic() < deadline, "uvicorn did not start within 10 s"
            thread.join(0.01)
        yield base_url
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture(scope="module")
def in_process_simulator() -> Iterator[SimulatorServer]:
    base_url = "http://testserver"
    with TestClient(simulator_app(base_url), base_url=base_url) as control:
        yield SimulatorServer(base_url, control._transport, control)


@pytest.fixture(scope="module")
def http_simulator() -> Iterator[SimulatorServer]:
    with serving(simulator_app) as base_url, httpx2.Client(base_url=base_url) as control:
        yield SimulatorServer(base_url, None, control)


@dataclass
class Simulated:
    client: IsogradClient
    server: SimulatorServer

    def control(self, method: str, path: str, body: object = None) -> Any:
        response = self.server.control.request(method, f"/_simulator{path}", json=body)
        response.raise_for_status()
        return response.json()

    def counters(self) -> dict[str, Any]:
        counters: dict[str, Any] = self.control("GET", "/counters")
        return counters


@pytest.fixture(params=["in_process", "http"])
def sim(request: pytest.FixtureRequest, sleeps: list[float]) -> Iterator[Simulated]:
    server: SimulatorServer = request.getfixturevalue(f"{request.param}_simulator")
    server.control.post("/_simulator/reset").raise_for_status()
    api_url, auth_url = isograd_urls(IsogradEnvironment.SIMULATOR, server.base_url)
    client = IsogradClient(
        api_url=api_url,
        auth_url=auth_url,
        client_id=SIM_CLIENT_ID,
        client_secret=SIM_SECRET,
        transport=server.transport,
        sleep=sleeps.append,
    )
    yield Simulated(client, server)
    client.close()


def invite(sim: Simulated, tst_frm_id: int = EXCEL, **options: Any) -> AssessmentCreated:
    return sim.client.create_candidate_and_add_test(
        CANDIDATE, tst_frm_id, AssessmentOptions(**options)
    )


def test_sim_create_candidate_and_find_it_again_by_its_error(sim: Simulated) -> None:
    created = sim.client.create_candidate(CANDIDATE)

    with pytest.raises(CandidateExistsError) as caught:
        sim.client.create_candidate(CANDIDATE)

    assert created.login_url
    assert caught.value.can_id == created.can_id


def test_sim_completed_test_gives_status_result_details_and_report(sim: Simulated) -> None:
    created = invite(sim)
    grading = {
        "value": 550,
        "max_value": 1000,
        "elapsed_seconds": 1834,
        "skills": {"45": 3.5, "46": None},
    }

    sim.control("POST", f"/tests/{created.pla_tst_id}/complete", grading)

    assert sim.client.get_test_status(created.pla_tst_id) is AssessmentStatus.COMPLETED
    result = sim.client.get_result(EXCEL, EMAIL, created.pla_tst_id)
    assert (result.grade_type, result.value, result.max_value) == (2, 550.0, 1000.0)
    assert result.elapsed_seconds == 1834
    details = sim.client.get_result_details(EXCEL, EMAIL, created.pla_tst_id)
    skills = {skill.id: skill for skill in details.skills}
    assert skills["45"].level == 3.5
    assert skills["46"].level is None  # not tested: -1 in the answer
    assert sim.client.get_pdf_url(EXCEL, EMAIL, created.pla_tst_id).startswith("http")
    assert sim.client.get_pdf_redirect_url(EXCEL, EMAIL).startswith(sim.server.base_url)


def test_sim_status_follows_the_test_life(sim: Simulated) -> None:
    created = invite(sim)
    seen = [sim.client.get_test_status(created.pla_tst_id)]

    sim.control("POST", f"/tests/{created.pla_tst_id}/start")
    seen.append(sim.client.get_test_status(created.pla_tst_id))
    sim.control("POST", f"/tests/{created.pla_tst_id}/pending")
    seen.append(sim.client.get_test_status(created.pla_tst_id))

    assert seen == [
        AssessmentStatus.NOT_STARTED,
        AssessmentStatus.STARTED,
        AssessmentStatus.MARKING_PENDING,
    ]


def test_sim_add_test_returns_the_unfinished_test_unless_forced(sim: Simulated) -> None:
    sim.client.create_candidate(CANDIDATE)

    first = sim.client.add_test(EMAIL, EXCEL)
    again = sim.client.add_test(EMAIL, EXCEL)
    forced = sim.client.add_test(EMAIL, EXCEL, force_new=True)

    assert again.pla_tst_id == first.pla_tst_id
    assert forced.pla_tst_id != first.pla_tst_id


def test_sim_start_urls_by_redirect_and_html(sim: Simulated) -> None:
    sim.client.create_candidate(CANDIDATE)

    by_redirect = sim.client.add_test_redirect_url(EMAIL, EXCEL)
    html = sim.client.add_test_html(EMAIL, EXCEL)
    other = NewCandidate(email="grace@example.org", first_name="Grace", last_name="Hopper")
    by_act8 = sim.client.create_candidate_and_add_test_redirect_url(other, EXCEL)

    assert by_redirect.startswith(sim.server.base_url)
    assert 'class="isograd_start_test_button"' in html
    assert by_act8.startswith(sim.server.base_url)


def test_sim_callback_url_and_options_reach_the_platform(sim: Simulated) -> None:
    created = invite(sim, callback_url="https://relay.test/cb/k1.x.mac", max_tests=3)

    test = sim.control("GET", f"/tests/{created.pla_tst_id}")

    assert test["options"]["cal_bac_pag"] == "https://relay.test/cb/k1.x.mac"
    assert test["options"]["max_num_tst"] == "3"


def test_sim_proctoring_added_and_removed(sim: Simulated) -> None:
    created = invite(sim)

    sim.client.add_proctoring(created.pla_tst_id)
    proctored = sim.control("GET", f"/tests/{created.pla_tst_id}")["proctored"]
    sim.client.remove_proctoring(created.pla_tst_id)

    assert (proctored, sim.control("GET", f"/tests/{created.pla_tst_id}")["proctored"]) == (
        True,
        False,
    )


def test_sim_deleted_test_is_gone(sim: Simulated) -> None:
    created = invite(sim)

    sim.client.delete_test(created.pla_tst_id)

    with pytest.raises(AssessmentNotFoundError):
        sim.client.get_test_status(created.pla_tst_id)


def test_sim_confirmation_test_of_a_completed_test(sim: Simulated) -> None:
    created = invite(sim)
    sim.control("POST", f"/tests/{created.pla_tst_id}/complete")

    url = sim.client.add_confirmation_test(created.pla_tst_id)
    redirected = sim.client.add_confirmation_test_redirect_url(created.pla_tst_id)

    assert url.startswith(sim.server.base_url)
    assert redirected.startswith(sim.server.base_url)


def test_sim_candidate_updated_then_deleted(sim: Simulated) -> None:
    created = sim.client.create_candidate(CANDIDATE)

    sim.client.update_candidate(created.can_id, last_name="King", language=Language.FRENCH)
    stored = sim.control("GET", "/state")["candidates"]
    sim.client.delete_candidate(can_id=created.can_id)

    assert [(c["lst_nam"], c["lan_id"]) for c in stored] == [("King", 1)]
    with pytest.raises(CandidateNotFoundError):
        sim.client.add_test(EMAIL, EXCEL)


def test_sim_registration_email_is_recorded(sim: Simulated) -> None:
    created = invite(sim)

    sim.client.send_registration_email(
        3, pla_tst_ids=[created.pla_tst_id], send_on=date(2026, 12, 1)
    )

    emails = sim.control("GET", "/emails")
    assert [(e["pla_tst_ids"], e["sen_dat"]) for e in emails] == [
        ([created.pla_tst_id], "2026-12-01")
    ]


def test_sim_administration_actions(sim: Simulated) -> None:
    sim.client.create_candidate(CANDIDATE)

    session = sim.client.create_session(
        "June", datetime(2026, 6, 1, 9, 0), datetime(2026, 6, 1, 17, 0)
    )
    admin = sim.client.admin_login_url()
    login = sim.client.candidate_login_url(EMAIL)
    tests = sim.client.list_available_tests()
    credits = sim.client.get_credits()
    sim.client.anonymize_candidate(EMAIL)

    assert session > 0
    assert admin.startswith(sim.server.base_url)
    assert login.startswith(sim.server.base_url)
    assert EXCEL in tests
    assert any(credit.amount > 0 for credit in credits)
    assert [c["anonymized"] for c in sim.control("GET", "/state")["candidates"]] == [True]


def test_sim_sub_accounts_are_separate(sim: Simulated) -> None:
    sim.client.create_candidate(CANDIDATE, sub_com_id=5)

    sub = sim.client.add_test(EMAIL, EXCEL, sub_com_id=5)

    assert sub.pla_tst_id > 0
    with pytest.raises(CandidateNotFoundError):
        sim.client.add_test(EMAIL, EXCEL)


def _set_credits(sim: Simulated, description: str, amount: int) -> None:
    sim.control("PUT", "/credits", {"sub_com_id": None, "credits": {description: amount}})


def _invalid_act(sim: Simulated) -> object:
    # No public method sends an unknown act_id; this exercises 103's mapping end to end.
    return sim.client._call_json(99, {}, None)


def _not_finished(sim: Simulated) -> object:
    created = invite(sim)
    return sim.client.get_result(EXCEL, EMAIL, created.pla_tst_id)


def _max_attempts(sim: Simulated) -> object:
    created = invite(sim, max_tests=1)
    sim.control("POST", f"/tests/{created.pla_tst_id}/complete")
    return sim.client.add_test(EMAIL, EXCEL, AssessmentOptions(max_tests=1))


def _no_credits(sim: Simulated) -> object:
    _set_credits(sim, ASSESSMENT_CREDIT, 0)
    return invite(sim)


def _no_proctoring_credits(sim: Simulated) -> object:
    created = invite(sim)
    _set_credits(sim, PROCTORING_CREDIT, 0)
    sim.client.add_proctoring(created.pla_tst_id)
    return None


def _started_test_deleted(sim: Simulated) -> object:
    created = invite(sim)
    sim.control("POST", f"/tests/{created.pla_tst_id}/start")
    sim.client.delete_test(created.pla_tst_id)
    return None


def _certification_report(sim: Simulated) -> object:
    created = invite(sim, tst_frm_id=CERTIFICATION)
    sim.control("POST", f"/tests/{created.pla_tst_id}/complete")
    return sim.client.get_pdf_url(CERTIFICATION, EMAIL, created.pla_tst_id)


SIMULATED_ERRORS: list[tuple[str, Callable[[Simulated], object], type[IsogradApiError]]] = [
    ("103", _invalid_act, InvalidActionError),
    (
        "105",
        lambda s: s.client.create_candidate(NewCandidate(EMAIL, "", "Lovelace")),
        MissingParameterError,
    ),
    ("106", lambda s: invite(s, tst_frm_id=999), AssessmentNotAllowedError),
    ("107", lambda s: s.client.add_test(EMAIL, EXCEL), CandidateNotFoundError),
    (
        "201",
        lambda s: s.client.create_candidate(NewCandidate("not-an-email", "A", "B")),
        CandidateNotCreatedError,
    ),
    (
        "202",
        lambda s: [s.client.create_candidate(CANDIDATE) for _ in range(2)],
        CandidateExistsError,
    ),
    (
        "203",
        lambda s: s.client.create_candidate(NewCandidate(EMAIL, "A", "B", dep_id=404)),
        GroupNotFoundError,
    ),
    ("301", _no_credits, NoCreditsError),
    ("303", _no_proctoring_credits, NoProctoringCreditsError),
    ("304", _started_test_deleted, AssessmentNotDeletableError),
    ("402", _max_attempts, MaxAttemptsReachedError),
    ("501-status", lambda s: s.client.get_test_status(424242), AssessmentNotFoundError),
    (
        "501-result",
        lambda s: [s.client.create_candidate(CANDIDATE), s.client.get_result(EXCEL, EMAIL)],
        AssessmentNotFoundError,
    ),
    ("502", _not_finished, AssessmentNotFinishedError),
    ("601", _certification_report, NotAnAssessmentError),
]


@pytest.mark.parametrize(
    ("provoke", "error_class"),
    [(provoke, error_class) for _, provoke, error_class in SIMULATED_ERRORS],
    ids=[name for name, _, _ in SIMULATED_ERRORS],
)
def test_sim_every_error_code_raises_its_class(
    sim: Simulated, provoke: Callable[[Simulated], object], error_class: type[IsogradApiError]
) -> None:
    with pytest.raises(error_class) as caught:
        provoke(sim)

    assert type(caught.value) is error_class
    assert caught.value.error_message


def test_sim_one_token_request_serves_many_calls(sim: Simulated) -> None:
    created = invite(sim)

    for _ in range(25):
        sim.client.get_test_status(created.pla_tst_id)

    counters = sim.counters()
    assert (counters["token_requests"], counters["api_calls"]) == (1, 26)


def test_sim_expired_token_is_refreshed_once(sim: Simulated) -> None:
    created = invite(sim)
    sim.control("POST", "/tokens/expire")

    status = sim.client.get_test_status(created.pla_tst_id)

    counters = sim.counters()
    assert status is AssessmentStatus.NOT_STARTED
    assert (counters["token_requests"], counters["unauthorized"]) == (2, 1)


def test_sim_threads_share_one_token(sim: Simulated) -> None:
    created = invite(sim)
    sim.client.tokens.invalidate(sim.client.tokens.token())
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(10):
                sim.client.get_test_status(created.pla_tst_id)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert (errors, sim.counters()["token_requests"]) == ([], 2)


def test_sim_bad_credentials_raise_an_auth_error(sim: Simulated) -> None:
    api_url, auth_url = isograd_urls("simulator", sim.server.base_url)
    with (
        IsogradClient(
            api_url=api_url,
            auth_url=auth_url,
            client_id=SIM_CLIENT_ID,
            client_secret="wrong",
            transport=sim.server.transport,
        ) as client,
        pytest.raises(IsogradAuthError, match="invalid_client") as caught,
    ):
        client.get_credits()

    assert "wrong" not in str(caught.value)


def test_sim_read_action_survives_transient_5xx(sim: Simulated, sleeps: list[float]) -> None:
    created = invite(sim)
    sim.control("POST", "/faults", {"fail_next": 2})

    status = sim.client.get_test_status(created.pla_tst_id)

    assert (status, sleeps) == (AssessmentStatus.NOT_STARTED, [0.5, 1.0])


def test_sim_write_action_is_not_retried_on_5xx(sim: Simulated, sleeps: list[float]) -> None:
    sim.client.get_credits()  # token first, so the fault hits the API call
    sim.control("POST", "/faults", {"fail_next": 1})

    with pytest.raises(IsogradUnavailableError) as caught:
        sim.client.create_candidate(CANDIDATE)

    assert (caught.value.status_code, sleeps) == (503, [])
    assert sim.control("GET", "/state")["candidates"] == []


def test_sim_token_endpoint_5xx_is_retryable(sim: Simulated) -> None:
    sim.control("POST", "/faults", {"fail_next": 3})

    with pytest.raises(IsogradUnavailableError):
        sim.client.get_credits()


def test_sim_unreachable_server_is_retryable(sleeps: list[float]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"  # bound, not listening
        api_url, auth_url = isograd_urls("simulator", base_url)
        with (
            IsogradClient(
                api_url=api_url,
                auth_url=auth_url,
                client_id="c",
                client_secret="s",
                timeout=2.0,
                sleep=sleeps.append,
            ) as client,
            pytest.raises(IsogradUnavailableError),
        ):
            client.get_credits()
