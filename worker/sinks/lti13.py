"""The LTI 1.3 sink: the grade to the LMS gradebook with Assignment and Grade Services' scores.

LTI AGS 2.0 score publish service (https://www.imsglobal.org/spec/lti-ags/v2p0#score-publish-service):
POST `{lineitem}/scores` as `application/vnd.ims.lis.v1.score+json` with `userId`, `scoreGiven`,
`scoreMaximum`, `activityProgress`, `gradingProgress` and `timestamp`, authorised by a bearer token
for the scope `https://purl.imsglobal.org/spec/lti-ags/scope/score`. The token comes from the
platform's token endpoint with the OAuth 2 client credentials grant and a JWT client assertion
signed RS256 with the tool's private key (1EdTech Security Framework §4.1,
https://www.imsglobal.org/spec/security/v1p0/#using-json-web-tokens-with-oauth-2-0-client-credentials-grant;
RFC 7523): `iss` = `sub` = client_id, `aud` = the token endpoint (or the platform's audience),
`iat`, `exp`, a unique `jti`, and the key's `kid` in the header.
"""

from __future__ import annotations

import json
import math
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx2
import jwt
import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from worker import __version__
from worker.errors import ConfigurationError
from worker.sinks.base import AttemptOutcome, AttemptResult, EventEnvelope
from worker.sinks.http_attempt import classify_status, perform_attempt
from worker.sinks.options import SinkOptions
from worker.sinks.routing import (
    MissingRoutingError,
    context_table,
    not_sent,
    text_field,
    url_field,
)

if TYPE_CHECKING:
    from worker.sinks.registry import SinkContext

log = structlog.get_logger(__name__)

USER_AGENT = f"isograd-relay/{__version__} (lti13)"
SCORE_SCOPE = "https://purl.imsglobal.org/spec/lti-ags/scope/score"
SCORE_MEDIA_TYPE = "application/vnd.ims.lis.v1.score+json"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"  # RFC 7523 §2.2
ASSERTION_LIFETIME = timedelta(minutes=5)
MIN_RSA_BITS = 2048
# A token is dropped this long before it expires, so a request never carries an expired one.
TOKEN_MARGIN = timedelta(seconds=30)
# RFC 6749 §5.1 only recommends expires_in; without it a token is kept this long.
DEFAULT_TOKEN_LIFETIME = timedelta(minutes=5)
CONTEXT_KEY = "lti13"

KEYS = frozenset({"client_id", "token_url", "private_key", "key_id", "audience"})


@dataclass(frozen=True, slots=True)
class Lti13Target:
    """An LTI 1.3 subscription's settings: the tool's registration on the platform."""

    client_id: str
    token_url: str
    private_key: str = field(repr=False)  # PEM
    key_id: str
    audience: str

    def describe(self) -> str:
        return urlsplit(self.token_url).hostname or ""

    def secret_values(self) -> tuple[str, ...]:
        return (self.private_key,)


def parse_target(options: SinkOptions) -> Lti13Target | None:
    client_id = options.text("client_id")
    token_url = options.url("token_url")
    private_key = options.secret("private_key", files=True)
    if private_key is not None and (problem := private_key_problem(private_key)) is not None:
        options.problem("private_key", problem)
        private_key = None
    key_id = options.text("key_id")
    audience = options.text("audience", default=token_url or "")
    if (
        client_id is None
        or token_url is None
        or private_key is None
        or key_id is None
        or not audience
    ):
        return None
    return Lti13Target(client_id, token_url, private_key, key_id, audience)


def build_sink(target: Lti13Target, context: SinkContext) -> Lti13Sink:
    return Lti13Sink(target, client=context.http, timeout=context.timeout, name=context.name)


def private_key_problem(pem: str) -> str | None:
    """Why `pem` is not an unencrypted RSA private key of >= 2048 bits, or None (never echoes)."""
    try:
        key = serialization.load_pem_private_key(pem.encode("utf-8"), password=None)
    except (ValueError, TypeError) as exc:
        reason = "it is encrypted" if isinstance(exc, TypeError) else "not a PEM private key"
        return f"must be an unencrypted PEM RSA private key ({reason})"
    if not isinstance(key, RSAPrivateKey):
        return "must be an RSA private key (RS256)"
    if key.key_size < MIN_RSA_BITS:
        return f"must be an RSA key of at least {MIN_RSA_BITS} bits, not {key.key_size}"
    return None


@dataclass(frozen=True, slots=True)
class _Token:
    """An access token; `fetched` when it was obtained for the attempt using it (not cached)."""

    value: str = field(repr=False)
    expires_at: datetime
    fetched: bool = False


class Lti13Sink:
    """Publishes the candidate's score on the launch's line item.

    Safe to repeat: a score replaces the user's previous one. The bearer token is cached (shared
    by the worker's threads) until shortly before it expires; a 401 on a cached token fetches a
    new one and tries once more. `timestamp` is the attempt time, so each attempt's is later than
    the last (platforms ignore or refuse a score not newer than the one they hold).
    """

    kind = "lti13"

    def __init__(
        self, target: Lti13Target, *, client: httpx2.Client, timeout: float, name: str
    ) -> None:
        self.target = target
        self.name = name
        self.timeout = timeout
        self._client = client
        # parse_target loaded (and so validated) this key already; RSA validation is slow.
        key = serialization.load_pem_private_key(
            target.private_key.encode(), password=None, unsafe_skip_rsa_key_validation=True
        )
        if not isinstance(key, RSAPrivateKey):
            raise ConfigurationError(f"sink {name!r}: private_key must be an RSA private key")
        self._key = key
        self._lock = threading.Lock()
        self._token: _Token | None = None

    def __repr__(self) -> str:  # never show the key
        return f"Lti13Sink(name={self.name!r}, client_id={self.target.client_id!r})"

    def send(self, envelope: EventEnvelope, *, attempt_at: datetime) -> AttemptResult:
        if attempt_at.tzinfo is None:
            raise ValueError("attempt_at must be timezone-aware")
        try:
            routing = context_table(envelope, CONTEXT_KEY)
            where = f"context.{CONTEXT_KEY}"
            lineitem = url_field(routing, "lineitem", where=where)
            user_id = text_field(routing, "user_id", where=where)
        except MissingRoutingError as exc:
            return self._logged(envelope, not_sent(str(exc)))
        score = score_values(envelope.data.get("grade"))
        if score is None:
            return self._logged(envelope, not_sent("grade has neither value/max nor normalized"))
        document = {
            "userId": user_id,
            "scoreGiven": score[0],
            "scoreMaximum": score[1],
            "activityProgress": "Completed",
            "gradingProgress": "FullyGraded",
            "timestamp": attempt_at.isoformat(timespec="microseconds"),
        }
        body = json.dumps(document, ensure_ascii=False, allow_nan=False).encode("utf-8")
        url = scores_url(lineitem)
        token = self._access_token(attempt_at)
        if isinstance(token, AttemptResult):
            return self._logged(envelope, token)
        result = self._post_score(url, body, token, user_id, attempt_at)
        if result.status_code == 401 and not token.fetched:
            # A cached token the platform no longer honours (revoked, clock skew): once more.
            self._forget(token)
            token = self._access_token(attempt_at)
            if isinstance(token, AttemptResult):
                return self._logged(envelope, token)
            result = self._post_score(url, body, token, user_id, attempt_at)
        return self._logged(envelope, result)

    def _post_score(
        self, url: str, body: bytes, token: _Token, user_id: str, attempt_at: datetime
    ) -> AttemptResult:
        return perform_attempt(
            self._client,
            "POST",
            url,
            content=body,
            headers={
                "authorization": f"Bearer {token.value}",
                "content-type": SCORE_MEDIA_TYPE,
                "user-agent": USER_AGENT,
            },
            timeout=self.timeout,
            attempt_at=attempt_at,
            redact=(token.value, user_id),
        )

    def client_assertion(self, now: datetime) -> str:
        """A new signed JWT client assertion (RS256, unique jti, valid five minutes)."""
        issued = int(now.timestamp())
        claims = {
            "iss": self.target.client_id,
            "sub": self.target.client_id,
            "aud": self.target.audience,
            "iat": issued,
            "exp": issued + int(ASSERTION_LIFETIME.total_seconds()),
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.target.key_id})

    def _access_token(self, now: datetime) -> _Token | AttemptResult:
        """The cached token while it is valid at `now`, else a new one (`fetched`)."""
        with self._lock:
            token = self._token
            if token is not None and now < token.expires_at:
                return token
            got = self._fetch_token(now)
            if isinstance(got, _Token):
                self._token = got
                return replace(got, fetched=True)
            return got

    def _forget(self, token: _Token) -> None:
        with self._lock:
            if self._token is not None and self._token.value == token.value:
                self._token = None

    def _fetch_token(self, now: datetime) -> _Token | AttemptResult:
        form = {
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": self.client_assertion(now),
            "scope": SCORE_SCOPE,
        }
        result = perform_attempt(
            self._client,
            "POST",
            self.target.token_url,
            content=urlencode(form).encode("ascii"),
            headers={
                "content-type": "application/x-www-form-urlencoded",
                "accept": "application/json",
                "user-agent": USER_AGENT,
            },
            timeout=self.timeout,
            attempt_at=now,
            classify=classify_token_answer,
            explain=explain_token_answer,
        )
        if result.outcome is not AttemptOutcome.DELIVERED:
            if result.status_code is None:  # a transport failure: say which request it was
                return replace(result, error=f"token endpoint: {result.error}")
            if 200 <= result.status_code < 300:  # a 2xx body may hold credentials: not stored
                return replace(result, response_body="")
            return result
        answer = _json_object(result.response_body)
        lifetime = answer.get("expires_in")
        seconds = DEFAULT_TOKEN_LIFETIME.total_seconds()
        if isinstance(lifetime, int | float) and not isinstance(lifetime, bool) and lifetime > 0:
            seconds = float(lifetime)
        return _Token(str(answer["access_token"]), now + timedelta(seconds=seconds) - TOKEN_MARGIN)

    def _logged(self, envelope: EventEnvelope, result: AttemptResult) -> AttemptResult:
        log.debug(
            "lti13_attempt",
            sink=self.name,
            event_id=envelope.event_id,
            outcome=str(result.outcome),
            status_code=result.status_code,
        )
        return result


def scores_url(lineitem: str) -> str:
    """`{lineitem}/scores`: the path gets /scores, the query string (some LMSs use one) stays."""
    parts = urlsplit(lineitem)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/scores"))


def score_values(grade: Any) -> tuple[float, float] | None:
    """(scoreGiven, scoreMaximum): value and max when max > 0, else normalized out of 1."""
    if not isinstance(grade, Mapping):
        return None
    value, maximum = _finite(grade.get("value")), _finite(grade.get("max"))
    if value is not None and maximum is not None and maximum > 0:
        return min(max(value, 0.0), maximum), maximum
    normalized = _finite(grade.get("normalized"))
    return None if normalized is None else (normalized, 1.0)


def _finite(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _json_object(text: str) -> Mapping[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def classify_token_answer(status: int, body: str) -> AttemptOutcome:
    """A token answer: statuses as for webhooks; a 2xx without an access_token is permanent."""
    if not 200 <= status < 300:
        return classify_status(status)
    token = _json_object(body).get("access_token")
    return AttemptOutcome.DELIVERED if isinstance(token, str) and token else AttemptOutcome.FAILED


def explain_token_answer(status: int, headers: httpx2.Headers, body: str) -> str | None:
    """Why the token endpoint said no: RFC 6749 §5.2's `error` and `error_description`."""
    answer = _json_object(body)
    if 200 <= status < 300:
        token = answer.get("access_token")
        return None if isinstance(token, str) and token else "token endpoint: no access_token"
    error = " ".join(str(answer.get(key, "")) for key in ("error", "error_description"))
    return f"token endpoint: {error.strip() or f'HTTP {status}'}"
