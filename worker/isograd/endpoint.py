"""Isograd's `/api/usage` endpoint: one action's POST, its token, retries and request log."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TypeVar

import httpx2
import structlog

from worker.errors import (
    IsogradApiError,
    IsogradProtocolError,
    IsogradUnavailableError,
    RelayError,
)
from worker.isograd.answers import retry_after
from worker.isograd.auth import TokenProvider
from worker.isograd.errors import IsogradAuthError

log = structlog.get_logger(__name__)

T = TypeVar("T")

# Only these actions read without changing anything, so only they are retried automatically.
READ_ACTIONS = frozenset({4, 5, 6, 10, 14, 15})
_UNAVAILABLE_STATUSES = frozenset({408, 425, 429})


class UsageEndpoint:
    """POSTs encoded action forms to `api_url` with a bearer token from `tokens`.

    A 401 is retried once with a fresh token (then IsogradAuthError); timeouts, connection errors
    and 408/425/429/5xx raise IsogradUnavailableError, retried `read_attempts` times with
    exponential backoff for read actions only; every attempt is logged as `isograd_request`
    (DEBUG when it worked, else INFO).
    """

    def __init__(
        self,
        http: httpx2.Client,
        tokens: TokenProvider,
        *,
        api_url: str,
        read_attempts: int,
        backoff: float,
        max_backoff: float,
        sleep: Callable[[float], None],
    ) -> None:
        self._http = http
        self._tokens = tokens
        # Parsed once: httpx2 would parse the string again on every request.
        self._api_url = httpx2.URL(api_url)
        self._read_attempts = max(1, read_attempts)
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._sleep = sleep

    def call(
        self, act: int, form: Mapping[str, str], read: Callable[[int, httpx2.Response], T]
    ) -> T:
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
        token = self._tokens.token()
        response = self._send(act, form, token)
        if response.status_code == 401:
            self._tokens.invalidate(token)
            response = self._send(act, form, self._tokens.token())
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
                retry_after=retry_after(response),
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
    # A burst of completions makes four requests each: the ones that worked are DEBUG (the job's
    # own line, completion_confirmed, says it worked); every failed one stays INFO.
    emit = log.debug if error is None else log.info
    emit(
        "isograd_request",
        act=act,
        attempt=attempt,
        outcome=outcome,
        duration_ms=round((time.perf_counter() - started) * 1000, 1),
        error_code=getattr(error, "code", None),
        status_code=getattr(error, "status_code", None),
    )
