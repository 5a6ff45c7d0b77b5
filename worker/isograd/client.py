"""The typed Isograd API client: one method per action of the reference."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from enum import IntEnum
from typing import Any, Self, TypeVar

import httpx2
import structlog

from worker.errors import (
    IsogradApiError,
    IsogradProtocolError,
    IsogradUnavailableError,
    RelayError,
)
from worker.isograd.auth import TokenProvider
from worker.isograd.errors import IsogradAuthError, error_for_code
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
    read_values,
)

log = structlog.get_logger(__name__)

T = TypeVar("T")
Answer = Mapping[str, Any]
Form = Mapping[str, object]

DEFAULT_TIMEOUT = httpx2.Timeout(30.0, connect=5.0)
DEFAULT_LIMITS = httpx2.Limits(max_connections=32, max_keepalive_connections=16)
# Only these actions read without changing anything, so only they are retried automatically.
READ_ACTIONS = frozenset({4, 5, 6, 10, 14, 15})
_UNAVAILABLE_STATUSES = frozenset({408, 425, 429})


class IsogradClient:
    """A client for Isograd's `/api/usage`, safe to share between threads (one connection pool).

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
        limits: httpx2.Limits = DEFAULT_LIMITS,
        read_attempts: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api_url = api_url
        self._sub_com_id = sub_com_id
        self._read_attempts = max(1, read_attempts)
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._sleep = sleep
        # Redirects are answers (acts 2, 6, 8, 58 with redirect=1, and 13, 38): never follow them.
        self._http = httpx2.Client(
            transport=transport, timeout=timeout, limits=limits, follow_redirects=False
        )
        self.tokens = TokenProvider(
            self._http,
            auth_url=auth_url,
            client_id=client_id,
            client_secret=client_secret,
            clock=clock,
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
        answer = self._call_json(1, _candidate_form(candidate), sub_com_id)
        return _parse(1, CandidateCreated.from_answer, answer)

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
        answer = self._call_json(act, _add_test_form(email, tst_frm_id, options), sub_com_id)
        return _parse(act, AssessmentCreated.from_answer, answer)

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
        form = {**_add_test_form(email, tst_frm_id, options), "redirect": True}
        return self._call(9 if force_new else 2, form, sub_com_id, _read_redirect)

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
        form = {**_add_test_form(email, tst_frm_id, options), "html": True}
        return self._call(9 if force_new else 2, form, sub_com_id, _read_html)

    def create_candidate_and_add_test(
        self,
        candidate: NewCandidate,
        tst_frm_id: int,
        options: AssessmentOptions | None = None,
        *,
        sub_com_id: int | None = None,
    ) -> AssessmentCreated:
        """Act 8: act 1 then act 2 in one call."""
        form = {**_candidate_form(candidate), **_assessment_form(tst_frm_id, options)}
        answer = self._call_json(8, form, sub_com_id)
        return _parse(8, AssessmentCreated.from_answer, answer)

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
            **_candidate_form(candidate),
            **_assessment_form(tst_frm_id, options),
            "redirect": True,
        }
        return self._call(8, form, sub_com_id, _read_redirect)

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
        return _parse(58, _url_field("tst_url"), answer)

    def add_confirmation_test_redirect_url(
        self, pla_tst_id: int, *, sub_com_id: int | None = None
    ) -> str:
        """Act 58 with redirect=1."""
        form = {"pla_tst_id": pla_tst_id, "redirect": True}
        return self._call(58, form, sub_com_id, _read_redirect)

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
        answer = self._call_json(6, _pdf_form(tst_frm_id, email, pla_tst_id, language), sub_com_id)
        return _parse(6, _url_field("pdf_url"), answer)

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
        form = {**_pdf_form(tst_frm_id, email, pla_tst_id, language), "redirect": True}
        return self._call(6, form, sub_com_id, _read_redirect)

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
        return _parse(4, AssessmentResult.from_answer, answer)

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
        return _parse(5, ResultDetails.from_answer, answer)

    def get_test_status(
        self, pla_tst_id: int, *, sub_com_id: int | None = None
    ) -> AssessmentStatus:
        """Act 10. Raises AssessmentNotFoundError for an unknown `pla_tst_id`."""
        answer = self._call_json(10, {"pla_tst_id": pla_tst_id}, sub_com_id)
        return _parse(10, lambda a: AssessmentStatus(read_int(a["sta_id"])), answer)

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
        return _parse(11, lambda a: read_int(a["ses_id"]), answer)

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
        return self._call(13, form, sub_com_id, _read_redirect)

    def candidate_login_url(self, email: str, *, sub_com_id: int | None = None) -> str:
        """Act 38: a URL logged in to the candidate's account page."""
        return self._call(38, {"ema": email}, sub_com_id, _read_redirect)

    def list_available_tests(
        self, *, language: Language | None = None, sub_com_id: int | None = None
    ) -> tuple[int, ...]:
        """Act 14: the tst_frm_ids the account may use."""
        answer = self._call_json(14, {"lan_id": language}, sub_com_id)
        return _parse(14, lambda a: tuple(read_int(t) for t in read_values(a["tests"])), answer)

    def get_credits(self, *, sub_com_id: int | None = None) -> tuple[Credit, ...]:
        """Act 15."""
        answer = self._call_json(15, {}, sub_com_id)
        return _parse(
            15, lambda a: tuple(Credit.from_answer(c) for c in read_values(a["credits"])), answer
        )

    # Transport

    def _call_json(self, act: int, fields: Form, sub_com_id: int | None) -> Answer:
        return self._call(act, fields, sub_com_id, _read_json)

    def _call(
        self,
        act: int,
        fields: Form,
        sub_com_id: int | None,
        read: Callable[[int, httpx2.Response], T],
    ) -> T:
        form = _encode_form(act, fields, self._sub_com_id if sub_com_id is None else sub_com_id)
        attempts = self._read_attempts if act in READ_ACTIONS else 1
        attempt = 1
        while True:
            started = time.perf_counter()
            try:
                result = read(act, self._post(act, form))
            except RelayError as exc:
                _log_request(act, attempt, started, exc)
                if not isinstance(exc, IsogradUnavailableError) or attempt >= attempts:
                    raise
                self._sleep(self._delay(attempt, exc.retry_after))
                attempt += 1
            else:
                _log_request(act, attempt, started, None)
                return result

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        delay: float = max(self._backoff * 2.0 ** (attempt - 1), retry_after or 0.0)
        return min(delay, self._max_backoff)

    def _post(self, act: int, form: Mapping[str, str]) -> httpx2.Response:
        """One POST, repeated once with a fresh token if the API refuses ours (401)."""
        token = self.tokens.token()
        response = self._send(act, form, token)
        if response.status_code == 401:
            self.tokens.invalidate(token)
            response = self._send(act, form, self.tokens.token())
            if response.status_code == 401:
                raise IsogradAuthError(
                    f"the Isograd API refused a fresh access token on act {act}", status_code=401
                )
        status = response.status_code
        if status in _UNAVAILABLE_STATUSES or status >= 500:
            raise IsogradUnavailableError(
                f"Isograd answered HTTP {status} on act {act}",
                action=act,
                status_code=status,
                retry_after=_retry_after(response),
            )
        return response

    def _send(self, act: int, form: Mapping[str, str], token: str) -> httpx2.Response:
        try:
            return self._http.post(
                self._api_url, data=form, headers={"Authorization": f"Bearer {token}"}
            )
        except httpx2.TimeoutException as exc:
            raise IsogradUnavailableError(f"Isograd timed out on act {act}", action=act) from exc
        except httpx2.TransportError as exc:
            raise IsogradUnavailableError(
                f"Isograd is unreachable on act {act} ({type(exc).__name__})", action=act
            ) from exc
        except httpx2.RequestError as exc:
            raise IsogradProtocolError(
                f"Isograd's answer to act {act} could not be read ({type(exc).__name__})",
                action=act,
            ) from exc


def _log_request(act: int, attempt: int, started: float, error: RelayError | None) -> None:
    match error:
        case None:
            outcome = "ok"
        case IsogradApiError():
            outcome = "api_error"
        case IsogradUnavailableError():
            outcome = "unavailable"
        case IsogradAuthError():
            outcome = "auth_error"
        case _:
            outcome = "protocol_error"
    log.info(
        "isograd_request",
        act=act,
        attempt=attempt,
        outcome=outcome,
        duration_ms=round((time.perf_counter() - started) * 1000, 1),
        error_code=getattr(error, "code", None),
        status_code=getattr(error, "status_code", None),
    )


# Request forms


def _candidate_form(candidate: NewCandidate) -> dict[str, object]:
    return {
        "gen_id": candidate.gender,
        "ema": candidate.email,
        "fst_nam": candidate.first_name,
        "lst_nam": candidate.last_name,
        "lan_id": candidate.language,
        "ext_id": candidate.ext_id,
        "dep_id": candidate.dep_id,
        "ext_dep_id": candidate.ext_dep_id,
        "psw": candidate.password,
        "no_psw_rst": candidate.no_password_reset,
        "job_id": candidate.job_id,
        "xtr_tim_fac": candidate.extra_time_percent,
    }


def _assessment_form(tst_frm_id: int, options: AssessmentOptions | None) -> dict[str, object]:
    # The reference also names tst_frm_id "rea_tst_id" until 31/12/2025; tst_frm_id is the name
    # that stays.
    options = options or AssessmentOptions()
    return {
        "tst_frm_id": tst_frm_id,
        "nee_ful_scr": options.full_screen,
        "ses_id": options.session_id,
        "add_pro": options.proctoring,
        "max_num_tst": options.max_tests,
        "max_num_tst_per": options.max_tests_period_days,
        "rtn_pag": options.return_url,
        "cal_bac_pag": options.callback_url,
        "cpf_id": options.cpf_id,
        "nb_test_by_credit": options.tests_per_credit,
    }


def _add_test_form(
    email: str, tst_frm_id: int, options: AssessmentOptions | None
) -> dict[str, object]:
    return {**_assessment_form(tst_frm_id, options), "ema": email}


def _pdf_form(
    tst_frm_id: int, email: str, pla_tst_id: int | None, language: Language | None
) -> dict[str, object]:
    return {"tst_frm_id": tst_frm_id, "ema": email, "pla_tst_id": pla_tst_id, "lan_id": language}


def _encode_form(act: int, fields: Form, sub_com_id: int | None) -> dict[str, str]:
    """Form fields as Isograd reads them; None and False (an unset flag) are left out."""
    form = {"act_id": str(act)}
    if sub_com_id is not None:
        form["sub_com_id"] = str(sub_com_id)
    for name, value in fields.items():
        encoded = _encode_value(value)
        if encoded is not None:
            form[name] = encoded
    return form


def _encode_value(value: object) -> str | None:
    match value:
        case None | False:
            return None
        case True:
            return "1"
        case IntEnum():
            return str(value.value)
        case datetime():
            return value.strftime("%Y-%m-%d %H:%M")  # reference, act 11: YYYY-MM-DD hh:mm
        case date():
            return value.isoformat()  # reference, act 42: YYYY-MM-DD
        case tuple():
            # Several pla_tst_ids (act 42) go comma-separated; the reference does not say more.
            return ",".join(str(item) for item in value) or None
        case _:
            return str(value)


# Answers


def _decode(response: httpx2.Response) -> Answer | None:
    try:
        answer = response.json()
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else None


def _read_json(act: int, response: httpx2.Response) -> Answer:
    """The answer of a successful action; raises the documented error for `success: false`."""
    answer = _decode(response)
    if answer is None:
        raise IsogradProtocolError(
            f"Isograd answered act {act} with HTTP {response.status_code} and no JSON object",
            action=act,
        )
    if not _succeeded(act, answer):
        raise _api_error(act, answer)
    if not response.is_success:
        raise IsogradProtocolError(
            f"Isograd answered act {act} with success and HTTP {response.status_code}",
            action=act,
        )
    return answer


def _read_redirect(act: int, response: httpx2.Response) -> str:
    if response.has_redirect_location:
        return str(response.url.join(response.headers["location"]))
    _read_json(act, response)
    raise IsogradProtocolError(
        f"Isograd answered act {act} with JSON where a redirect was asked for", action=act
    )


def _read_html(act: int, response: httpx2.Response) -> str:
    if _decode(response) is not None:
        _read_json(act, response)
        raise IsogradProtocolError(
            f"Isograd answered act {act} with JSON where HTML was asked for", action=act
        )
    if not response.is_success:
        raise IsogradProtocolError(
            f"Isograd answered act {act} with HTTP {response.status_code}", action=act
        )
    return response.text


def _succeeded(act: int, answer: Answer) -> bool:
    success = answer.get("success")
    if success in (True, 1, "1", "true", "True"):
        return True
    if success in (False, 0, "0", "false", "False") or "error_code" in answer:
        return False
    raise IsogradProtocolError(f"Isograd's answer to act {act} has no success field", action=act)


def _api_error(act: int, answer: Answer) -> IsogradApiError:
    try:
        code: int | None = read_int(answer.get("error_code"))
    except (TypeError, ValueError):
        code = None
    message = answer.get("error_message")
    return error_for_code(code, "" if message is None else str(message), act, answer)


def _parse(act: int, parse: Callable[[Answer], T], answer: Answer) -> T:
    try:
        return parse(answer)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise IsogradProtocolError(
            f"Isograd's answer to act {act} is malformed ({type(exc).__name__}: {exc})",
            action=act,
        ) from exc


def _url_field(name: str) -> Callable[[Answer], str]:
    def read(answer: Answer) -> str:
        url = answer[name]
        if not isinstance(url, str) or not url:
            raise ValueError(f"{name} is not a URL")
        return url

    return read


def _retry_after(response: httpx2.Response) -> float | None:
    """Retry-After in seconds; the HTTP-date form is ignored (the backoff bounds the wait)."""
    try:
        return max(0.0, float(response.headers["retry-after"]))
    except (KeyError, ValueError):
        return None
