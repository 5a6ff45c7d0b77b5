"""OAuth2 client-credentials access tokens for the Isograd API, cached and shared by threads."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx2
import structlog

from worker.errors import IsogradProtocolError, IsogradUnavailableError
from worker.isograd.errors import IsogradAuthError
from worker.isograd.models import read_float

log = structlog.get_logger(__name__)

# Reference, "API / Connexion": grant type and scope travel in the query string, the credentials
# as form fields.
TOKEN_QUERY = {"grant_type": "client_credentials", "scopes": "usage"}
DEFAULT_LIFETIME = 300.0  # seconds, when the answer has no usable expires_in
REFRESH_MARGIN = 60.0  # seconds before expiry at which a token counts as expired


class TokenProvider:
    """Hands out one cached access token; concurrent callers share a single token request.

    Thread-safe. A token is reused until `REFRESH_MARGIN` seconds (at most half its lifetime)
    before `expires_in`. `invalidate(token)` drops a token the API refused, so the next call
    fetches a new one; invalidating an already replaced token does nothing.
    """

    def __init__(
        self,
        http: httpx2.Client,
        *,
        auth_url: str,
        client_id: str,
        client_secret: str,
        clock: Callable[[], float] = time.monotonic,
        refresh_margin: float = REFRESH_MARGIN,
        default_lifetime: float = DEFAULT_LIFETIME,
    ) -> None:
        self._http = http
        self._auth_url = auth_url
        self._credentials = {"client_id": client_id, "client_secret": client_secret}
        self._clock = clock
        self._refresh_margin = refresh_margin
        self._default_lifetime = default_lifetime
        self._lock = threading.Lock()
        self._cached: tuple[str, float] | None = None  # (token, monotonic time it expires)

    def __repr__(self) -> str:
        return f"TokenProvider(auth_url={self._auth_url!r})"

    def token(self) -> str:
        """A valid access token, fetched only if the cached one is missing or about to expire.

        Raises IsogradAuthError (bad credentials), IsogradUnavailableError (5xx, timeout,
        connection error) or IsogradProtocolError (an answer without a token).
        """
        cached = self._cached
        if cached is not None and self._clock() < cached[1]:
            return cached[0]
        with self._lock:
            cached = self._cached
            if cached is not None and self._clock() < cached[1]:
                return cached[0]
            token, lifetime = self._fetch()
            usable = lifetime - min(self._refresh_margin, lifetime / 2)
            self._cached = (token, self._clock() + usable)
            return token

    def invalidate(self, token: str) -> None:
        with self._lock:
            if self._cached is not None and self._cached[0] == token:
                self._cached = None

    def _fetch(self) -> tuple[str, float]:
        started = time.perf_counter()
        outcome = "error"
        status_code: int | None = None
        try:
            try:
                response = self._http.post(
                    self._auth_url, params=TOKEN_QUERY, data=self._credentials
                )
            except httpx2.TimeoutException as exc:
                outcome = "timeout"
                raise IsogradUnavailableError("the Isograd token endpoint timed out") from exc
            except httpx2.TransportError as exc:
                outcome = "unreachable"
                raise IsogradUnavailableError(
                    f"the Isograd token endpoint is unreachable ({type(exc).__name__})"
                ) from exc
            status_code = response.status_code
            answer = self._check(response)
            token, lifetime = self._read(answer)
            outcome = "ok"
            return token, lifetime
        finally:
            log.info(
                "isograd_token_requested",
                outcome=outcome,
                status_code=status_code,
                duration_ms=round((time.perf_counter() - started) * 1000, 1),
            )

    def _check(self, response: httpx2.Response) -> Any:
        status = response.status_code
        if status in (400, 401, 403):
            # OAuth2 puts a short constant like "invalid_client" in `error` (RFC 6749 §5.2);
            # it names the problem without echoing anything we sent.
            reason = _oauth_error(response)
            raise IsogradAuthError(
                f"Isograd refused the client credentials (HTTP {status}"
                + (f", {reason})" if reason else ")"),
                status_code=status,
            )
        if status in (408, 429) or status >= 500:
            raise IsogradUnavailableError(
                f"the Isograd token endpoint answered HTTP {status}", status_code=status
            )
        if status != 200:
            raise IsogradProtocolError(f"the Isograd token endpoint answered HTTP {status}")
        try:
            return response.json()
        except ValueError as exc:
            raise IsogradProtocolError("the Isograd token endpoint answered non-JSON") from exc

    def _read(self, answer: Any) -> tuple[str, float]:
        token = answer.get("access_token") if isinstance(answer, dict) else None
        if not isinstance(token, str) or not token:
            raise IsogradProtocolError("the Isograd token answer has no access_token")
        try:
            lifetime = read_float(answer.get("expires_in"))
        except (TypeError, ValueError):
            lifetime = self._default_lifetime
        if not math.isfinite(lifetime) or lifetime <= 0:
            lifetime = self._default_lifetime
        return token, lifetime


def _oauth_error(response: httpx2.Response) -> str | None:
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return None
    return error if isinstance(error, str) and error.isidentifier() else None
