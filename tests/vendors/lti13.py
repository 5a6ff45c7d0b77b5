"""A fake LTI 1.3 platform (token endpoint + AGS score service) that verifies like a real one.

Token endpoint (1EdTech Security Framework §4.1,
https://www.imsglobal.org/spec/security/v1p0/#using-json-web-tokens-with-oauth-2-0-client-credentials-grant):
`grant_type=client_credentials`, `client_assertion_type` jwt-bearer and a `client_assertion`
JWT verified with the tool's registered public key (RS256 only, the registered `kid`), `iss` =
`sub` = client_id, `aud` = the platform's audience, unexpired, with a `jti` never used before
(replays refused); the `scope` must be the AGS score scope. Errors are RFC 6749 §5.2 JSON.

Score service (https://www.imsglobal.org/spec/lti-ags/v2p0#score-publish-service): POST
`{lineitem}/scores` with a live bearer token, media type `application/vnd.ims.lis.v1.score+json`
(415 otherwise), the documented fields and enums (400), a known line item (404) and a timestamp
later than the last one stored for that user and line item (409: the platform must not let an
older score replace a newer one).
"""

from __future__ import annotations

import json
import re
import secrets
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeGuard
from urllib.parse import parse_qs

import httpx2
import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

SCORE_SCOPE = "https://purl.imsglobal.org/spec/lti-ags/scope/score"
SCORE_MEDIA_TYPE = "application/vnd.ims.lis.v1.score+json"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ACTIVITY = {"Initialized", "Started", "InProgress", "Submitted", "Completed"}
GRADING = {"FullyGraded", "Pending", "PendingManual", "Failed", "NotReady"}
_SCORES = re.compile(r"/lineitems/([A-Za-z0-9_-]+)/scores")


@dataclass(frozen=True)
class Score:
    lineitem: str
    body: dict[str, Any]


@dataclass
class FakeLti13Platform:
    client_id: str
    public_key: RSAPublicKey
    key_id: str
    audience: str
    lineitems: frozenset[str]
    token_lifetime: int = 3600
    scores: list[Score] = field(default_factory=list)
    tokens_issued: int = 0
    refusals: list[str] = field(default_factory=list)
    _tokens: set[str] = field(default_factory=set)
    _jtis: set[str] = field(default_factory=set)
    _last: dict[tuple[str, str], datetime] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def received(self) -> list[Score]:
        with self._lock:
            return list(self.scores)

    def revoke_tokens(self) -> None:
        with self._lock:
            self._tokens.clear()

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        with self._lock:
            if request.method == "POST" and request.url.path == "/token":
                return self._token(request)
            if request.method == "POST" and (match := _SCORES.fullmatch(request.url.path)):
                return self._score(request, match.group(1))
            return self._refuse(404, "not_found")

    def _token(self, request: httpx2.Request) -> httpx2.Response:
        if request.headers.get("content-type") != "application/x-www-form-urlencoded":
            return self._refuse(400, "invalid_request", "form-encoded body required")
        form = {k: v[0] for k, v in parse_qs(request.content.decode(), strict_parsing=True).items()}
        if form.get("grant_type") != "client_credentials":
            return self._refuse(400, "unsupported_grant_type")
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            return self._refuse(400, "invalid_client", "client_assertion_type")
        try:
            header = jwt.get_unverified_header(form.get("client_assertion", ""))
            claims = jwt.decode(
                form.get("client_assertion", ""),
                self.public_key,
                algorithms=["RS256"],
                audience=self.audience,
                issuer=self.client_id,
                options={"require": ["iss", "sub", "aud", "exp", "iat", "jti"]},
            )
        except jwt.PyJWTError as exc:
            return self._refuse(401, "invalid_client", type(exc).__name__)
        if header.get("kid") != self.key_id:
            return self._refuse(401, "invalid_client", "unknown kid")
        if claims["sub"] != self.client_id:
            return self._refuse(401, "invalid_client", "sub must be the client_id")
        if claims["jti"] in self._jtis:
            return self._refuse(401, "invalid_client", "jti already used")
        self._jtis.add(claims["jti"])
        if SCORE_SCOPE not in form.get("scope", "").split():
            return self._refuse(400, "invalid_scope")
        token = secrets.token_urlsafe(24)
        self._tokens.add(token)
        self.tokens_issued += 1
        return httpx2.Response(
            200,
            json={
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": self.token_lifetime,
                "scope": SCORE_SCOPE,
            },
        )

    def _score(self, request: httpx2.Request, lineitem: str) -> httpx2.Response:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or token not in self._tokens:
            return self._refuse(401, "invalid_token")
        if request.headers.get("content-type") != SCORE_MEDIA_TYPE:
            return self._refuse(415, "unsupported_media_type")
        if lineitem not in self.lineitems:
            return self._refuse(404, "unknown line item")
        try:
            body = json.loads(request.content)
        except ValueError:
            return self._refuse(400, "invalid_request", "not JSON")
        problem = _score_problem(body)
        if problem is not None:
            return self._refuse(400, "invalid_request", problem)
        stamp = datetime.fromisoformat(body["timestamp"])
        key = (lineitem, body["userId"])
        if key in self._last and stamp <= self._last[key]:
            return self._refuse(409, "conflict", "timestamp not later than the stored score's")
        self._last[key] = stamp
        self.scores.append(Score(lineitem, body))
        return httpx2.Response(204)

    def _refuse(self, status: int, error: str, description: str = "") -> httpx2.Response:
        self.refusals.append(f"{error} {description}".strip())
        answer = {"error": error, **({"error_description": description} if description else {})}
        return httpx2.Response(status, json=answer)


def _score_problem(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "a JSON object is required"
    if not isinstance(body.get("userId"), str) or not body["userId"]:
        return "userId is required"
    if body.get("activityProgress") not in ACTIVITY:
        return "activityProgress is not one of the spec's values"
    if body.get("gradingProgress") not in GRADING:
        return "gradingProgress is not one of the spec's values"
    given, maximum = body.get("scoreGiven"), body.get("scoreMaximum")
    if given is not None:
        if not _number(given) or given < 0:
            return "scoreGiven must be a number >= 0"
        if not _number(maximum) or maximum <= 0:
            return "scoreMaximum must be a number > 0 when scoreGiven is present"
    stamp = body.get("timestamp")
    try:
        parsed = datetime.fromisoformat(stamp) if isinstance(stamp, str) else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        return "timestamp must be ISO 8601 with a time zone"
    return None


def _number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)
