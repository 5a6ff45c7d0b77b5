"""The typed Isograd API client: one method per action of the reference."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Self, TypeVar

import httpx2

from worker.isograd.answers import (
    Answer,
    parse_answer,
    read_html,
    read_json,
    read_redirect,
    url_field,
)
from worker.isograd.auth import TokenProvider
from worker.isograd.endpoint import UsageEndpoint
from worker.isograd.forms import (
    Form,
    add_test_form,
    assessment_form,
    candidate_form,
    encode_form,
    pdf_form,
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
    read_int,
    read_test_names,
    read_values,
)
from worker.transports import HttpClientTransport, ThreadTransports

T = TypeVar("T")

DEFAULT_TIMEOUT = httpx2.Timeout(30.0, connect=5.0)


class IsogradClient:
    """A client for Isograd's `/api/usage`, safe to share between threads (each thread sends on
    a kept-alive connection of its own: worker.transports).

    Every method accepts `sub_com_id` (distributor accounts act on a sub-account); the client's
    `sub_com_id` is the default. Errors: IsogradApiError subclasses (worker.isograd.errors) for
    `success: false`, IsogradUnavailableError (retryable) for timeouts, connection errors and
    408/425/429/5xx, IsogradProtocolError for answers that are not the documented JSON,
    IsogradAuthError when the credentials are refused. Read actions (4, 5, 6, 10, 14, 15) are
    retried `read_attempts` times with exponential backoff; write actions are sent once.
    """

    def __init__(
        self,
        *,
        api_url: str,
        auth_url: str,
        client_id: str,
        client_secret: str,
        sub_com_id: int | None = None,
        transport: httpx2.BaseTransport | None = None,
        timeout: httpx2.Timeout | float = DEFAULT_TIMEOUT,
        read_attempts: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api_url = api_url
        self._sub_com_id = sub_com_id
        # Redirects are answers (acts 2, 6, 8, 58 with redirect=1, and 13, 38): never follow them.
        self._http = httpx2.Client(
            transport=transport
            or ThreadTransports(lambda context: HttpClientTransport(ssl_context=context)),
            timeout=timeout,
            follow_redirects=False,
        )
        self.tokens = TokenProvider(
            self._http,
            auth_url=auth_url,
            client_id=client_id,
            client_secret=client_secret,
            clock=clock,
        )
        self._endpoint = UsageEndpoint(
            self._http,
            self.tokens,
            api_url=api_url,
            read_attempts=read_attempts,
            backoff=backoff,
            max_backoff=max_backoff,
            sleep=sleep,
        )

    def __repr__(self) -> str:
        return f"IsogradClient(api_url={self._api_url!r}, sub_com_id={self._sub_com_id!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # Candidates and tests

    def create_candidate(
        self, candidate: NewCandidate, *, sub_com_id: int | None = None
    ) -> CandidateCreated:
        """Act 1. Raises CandidateExistsError (with `can_id`) if the email is already known."""
        answer = self._call_json(1, candidate_form(candidate), sub_com_id)
        return parse_answer(1, CandidateCreated.from_answer, answer)

    def add_test(
        self,
        email: str,
        tst_frm_id: int,
        options: AssessmentOptions | None = None,
        *,
        force_new: bool = False,
        sub_com_id: int | None = None,
    ) -> AssessmentCreated:
        """Act 2: returns the candidate's unfinished test of this kind if there is one.

        `force_new=True` is act 9: always create a new test.
        """
        act = 9 if force_new else 2
        answer = self._call_json(act, add_test_form(email, tst_frm_id, options), sub_com_id)
        return parse_answer(act, AssessmentCreated.from_answer, answer)

    def add_test_redirect_url(
        self,
        email: str,
        tst_frm_id: int,
        options: AssessmentOptions | None = None,
        *,
        force_new: bool = False,
        sub_com_id: int | None = None,
    ) -> str:
        """Act 2 (or 9) with redirect=1: the URL Isograd redirects to (the test start page)."""
        form = {**add_test_form(email, tst_frm_id, options), "redirect": True}
        return self._call(9 if force_new else 2, form, sub_com_id, read_redirect)

    def add_test_html(
        self,
        email: str,
        tst_frm_id: int,
        options: AssessmentOptions | None = None,
        *,
        force_new: bool = False,
        sub_com_id: int | None = None,
    ) -> str:
        """Act 2 (or 9) with html=1: an `<a class="isograd_start_test_button">` tag."""
        form = {**add_test_form(email, tst_frm_id, options), "html": True}
        return self._call(9 if force_new else 2, form, sub_com_id, read_html)

    def create_candidate_and_add_test(
        self,
        candidate: NewCandidate,
        tst_frm_id: int,
        options: AssessmentOptions | None = None,
        *,
        sub_com_id: int | None = None,
    ) -> AssessmentCreated:
        """Act 8: act 1 then act 2 in one call."""
        form = {**candidate_form(candidate), **assessment_form(tst_frm_id, options)}
        answer = self._call_json(8, form, sub_com_id)
        return parse_answer(8, AssessmentCreated.from_answer, answer)

    def create_candidate_and_add_test_redirect_url(
        self,
        candidate: NewCandidate,
        tst_frm_id: int,
        options: AssessmentOptions | None = None,
        *,
        sub_com_id: int | None = None,
    ) -> str:
        """Act 8 with redirect=1: the URL of the test start page."""
        form = {
            **candidate_form(candidate),
            **assessment_form(tst_frm_id, options),
            "redirect": True,
        }
        return self._call(8, form, sub_com_id, read_redirect)

    def add_proctoring(self, pla_tst_id: int, *, sub_com_id: int | None = None) -> None:
        """Act 16 (billed). Raises NoProctoringCreditsError when no credit is left."""
        self._call_json(16, {"pla_tst_id": pla_tst_id}, sub_com_id)

    def remove_proctoring(self, pla_tst_id: int, *, sub_com_id: int | None = None) -> None:
        """Act 17."""
        self._call_json(17, {"pla_tst_id": pla_tst_id}, sub_com_id)

    def delete_test(self, pla_tst_id: int, *, sub_com_id: int | None = None) -> None:
        """Act 23. Raises AssessmentNotDeletableError if it is started or does not exist."""
        self._call_json(23, {"pla_tst_id": pla_tst_id}, sub_com_id)

    def add_confirmation_test(self, pla_tst_id: int, *, sub_com_id: int | None = None) -> str:
        """Act 58 on a completed test: the URL that starts the confirmation test."""
        answer = self._call_json(58, {"pla_tst_id": pla_tst_id}, sub_com_id)
        return parse_answer(58, url_field("tst_url"), answer)

    def add_confirmation_test_redirect_url(
        self, pla_tst_id: int, *, sub_com_id: int | None = None
    ) -> str:
        """Act 58 with redirect=1."""
        form = {"pla_tst_id": pla_tst_id, "redirect": True}
        return self._call(58, form, sub_com_id, read_redirect)

    def update_candidate(
        self,
        can_id: int,
        *,
        email: str | None = None,
        first_name: str | None = None,
        last_name: str | None = None,
        gender: Gender | None = None,
        language: Language | None = None,
        sub_com_id: int | None = None,
    ) -> None:
        """Act 51: fields left None are unchanged."""
        form = {
            "can_id": can_id,
            "gen_id": gender,
            "ema": email,
            "fst_nam": first_name,
            "lst_nam": last_name,
            "lan_id": language,
        }
        self._call_json(51, form, sub_com_id)

    def delete_candidate(
        self, *, can_id: int | None = None, email: str | None = None, sub_com_id: int | None = None
    ) -> None:
        """Act 24, by `can_id` or `email` (ValueError if neither is given)."""
        if can_id is None and email is None:
            raise ValueError("delete_candidate needs can_id or email")
        self._call_json(24, {"can_id": can_id, "ema": email}, sub_com_id)

    # Emails

    def send_registration_email(
        self,
        mail_template_id: int,
        *,
        pla_tst_ids: Sequence[int] = (),
        can_id: int | None = None,
        send_on: date | None = None,
        send_now_if_due: bool = False,
        sender_email: str | None = None,
        sub_com_id: int | None = None,
    ) -> None:
        """Act 42, for the given tests or else all pending tests of `can_id`.

        `send_on` schedules it; `send_now_if_due` sends at once when `send_on` is not in the
        future. ValueError if neither `pla_tst_ids` nor `can_id` is given.
        """
        if not pla_tst_ids and can_id is None:
            raise ValueError("send_registration_email needs pla_tst_ids or can_id")
        form = {
            "mai_tem_id": mail_template_id,
            "pla_tst_ids": tuple(pla_tst_ids),
            "can_id": can_id,
            "sen_dat": send_on,
            "for_sen": send_now_if_due,
            "ema_sen": sender_email,
        }
        self._call_json(42, form, sub_com_id)

    # Results

    def get_pdf_url(
        self,
        tst_frm_id: int,
        email: str,
        pla_tst_id: int | None = None,
        *,
        language: Language | None = None,
        sub_com_id: int | None = None,
    ) -> str:
        """Act 6: the PDF report's URL (of the last test taken when `pla_tst_id` is None)."""
        answer = self._call_json(6, pdf_form(tst_frm_id, email, pla_tst_id, language), sub_com_id)
        return parse_answer(6, url_field("pdf_url"), answer)

    def get_pdf_redirect_url(
        self,
        tst_frm_id: int,
        email: str,
        pla_tst_id: int | None = None,
        *,
        language: Language | None = None,
        sub_com_id: int | None = None,
    ) -> str:
        """Act 6 with redirect=1."""
        form = {**pdf_form(tst_frm_id, email, pla_tst_id, language), "redirect": True}
        return self._call(6, form, sub_com_id, read_redirect)

    def get_result(
        self,
        tst_frm_id: int,
        email: str,
        pla_tst_id: int | None = None,
        *,
        sub_com_id: int | None = None,
    ) -> AssessmentResult:
        """Act 4. Raises AssessmentNotFoundError (not taken) or AssessmentNotFinishedError."""
        form = {"tst_frm_id": tst_frm_id, "ema": email, "pla_tst_id": pla_tst_id}
        answer = self._call_json(4, form, sub_com_id)
        return parse_answer(4, AssessmentResult.from_answer, answer)

    def get_result_details(
        self,
        tst_frm_id: int,
        email: str,
        pla_tst_id: int | None = None,
        *,
        language: Language | None = None,
        sub_com_id: int | None = None,
    ) -> ResultDetails:
        """Act 5: the result per skill (English when `language` has no description)."""
        form = {
            "tst_frm_id": tst_frm_id,
            "ema": email,
            "pla_tst_id": pla_tst_id,
            "des_lan_id": language,
        }
        answer = self._call_json(5, form, sub_com_id)
        return parse_answer(5, ResultDetails.from_answer, answer)

    def get_test_status(
        self, pla_tst_id: int, *, sub_com_id: int | None = None
    ) -> AssessmentStatus:
        """Act 10. Raises AssessmentNotFoundError for an unknown `pla_tst_id`."""
        answer = self._call_json(10, {"pla_tst_id": pla_tst_id}, sub_com_id)
        return parse_answer(10, lambda a: AssessmentStatus(read_int(a["sta_id"])), answer)

    # Administration

    def create_session(
        self,
        description: str,
        starts_at: datetime,
        ends_at: datetime,
        *,
        password: str | None = None,
        sub_com_id: int | None = None,
    ) -> int:
        """Act 11: the new `ses_id`. Times are sent as given (Isograd's wall clock, minutes)."""
        form = {"des": description, "sta_dat": starts_at, "end_dat": ends_at, "psw": password}
        answer = self._call_json(11, form, sub_com_id)
        return parse_answer(11, lambda a: read_int(a["ses_id"]), answer)

    def anonymize_candidate(self, email: str, *, sub_com_id: int | None = None) -> None:
        """Act 12: replaces the candidate's names and email by numbers, diplomas included."""
        self._call_json(12, {"ema": email}, sub_com_id)

    def admin_login_url(
        self, *, admin_email: str | None = None, sub_com_id: int | None = None
    ) -> str:
        """Act 13: a URL logged in as an administrator (a random one unless `admin_email`).

        Never hand it to a candidate. Without `sub_com_id` a sub-account administrator is
        logged in to the master account (reference warning).
        """
        form = {"use_ema_for_adm": admin_email is not None, "ema": admin_email}
        return self._call(13, form, sub_com_id, read_redirect)

    def candidate_login_url(self, email: str, *, sub_com_id: int | None = None) -> str:
        """Act 38: a URL logged in to the candidate's account page."""
        return self._call(38, {"ema": email}, sub_com_id, read_redirect)

    def list_available_tests(
        self, *, language: Language | None = None, sub_com_id: int | None = None
    ) -> tuple[int, ...]:
        """Act 14: the tst_frm_ids the account may use."""
        answer = self._call_json(14, {"lan_id": language}, sub_com_id)
        return parse_answer(
            14, lambda a: tuple(read_int(t) for t in read_values(a["tests"])), answer
        )

    def list_test_names(
        self, *, language: Language | None = None, sub_com_id: int | None = None
    ) -> dict[int, str]:
        """Act 14's test names, for the entries that carry one.

        The reference documents `tests` as IDs only (isograd-api.txt, "Get available tests
        list"), which give no names: an empty mapping. Entries that are objects with a
        `tst_frm_id` and a non-empty `name` are read, so names appear if Isograd sends them.
        """
        answer = self._call_json(14, {"lan_id": language}, sub_com_id)
        return parse_answer(14, lambda a: read_test_names(read_values(a["tests"])), answer)

    def get_credits(self, *, sub_com_id: int | None = None) -> tuple[Credit, ...]:
        """Act 15."""
        answer = self._call_json(15, {}, sub_com_id)
        return parse_answer(
            15, lambda a: tuple(Credit.from_answer(c) for c in read_values(a["credits"])), answer
        )

    # Transport

    def _call_json(self, act: int, fields: Form, sub_com_id: int | None) -> Answer:
        return self._call(act, fields, sub_com_id, read_json)

    def _call(
        self,
        act: int,
        fields: Form,
        sub_com_id: int | None,
        read: Callable[[int, httpx2.Response], T],
    ) -> T:
        form = encode_form(act, fields, self._sub_com_id if sub_com_id is None else sub_com_id)
        return self._endpoint.call(act, form, read)
