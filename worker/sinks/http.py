"""The http sink: one request to any API, its URL and body shaped by the user's templates.

    [[subscriptions]]
    name = "hibob"
    kind = "http"
    url = "https://api.example.com/v1/people/{{ data.context.employee_id | urlencode }}"
    method = "POST"                        # POST (default), PUT or PATCH
    content_type = "application/json"      # the default; a JSON body must parse
    headers = { "x-source" = "isograd-relay", "x-api-key" = "env:API_KEY" }
    body = '''{"values": {"score": {{ data.grade.percent | tojson }}}}'''
    auth = { type = "basic", username = "env:HIBOB_SERVICE_USER", password = "env:HIBOB_TOKEN" }

Templates are Jinja2 rendered in a sandbox (jinja2.sandbox.SandboxedEnvironment) with
`event` (id, type, timestamp, data) and `data` (the event's data) and nothing else: no
environment, no Python internals. Undefined names fail the attempt, naming the template and
its line. Templates compile when relay.toml is read, so check-config reports syntax errors.
The scheme and host of `url` must be written out; templates fill the path and query only.
`auth` is bearer (`token`), basic (`username`, `password`) or oauth2_client_credentials
(`token_url`, `client_id`, `client_secret`, `scope`): the token is cached until shortly before
it expires and fetched again once when the API answers 401.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

import structlog
from jinja2 import StrictUndefined, Template, TemplateSyntaxError, Undefined
from jinja2.sandbox import SandboxedEnvironment

from worker import __version__
from worker.sinks.base import AttemptOutcome, AttemptResult, EventEnvelope
from worker.sinks.http_attempt import describe_error, perform_attempt
from worker.sinks.options import ENV_PREFIX, Problems, SinkOptions, is_http_url

if TYPE_CHECKING:
    import httpx2

    from worker.sinks.registry import SinkContext

log = structlog.get_logger(__name__)

USER_AGENT = f"isograd-relay/{__version__} (http)"
KEYS = frozenset({"url", "method", "headers", "body", "content_type", "auth"})
METHODS = ("POST", "PUT", "PATCH")
JSON_CONTENT_TYPE = "application/json"
AUTH_TYPES = ("bearer", "basic", "oauth2_client_credentials")
# Refresh a cached token this long before the expiry its endpoint announced (RFC 6749 §5.1).
TOKEN_EXPIRY_MARGIN_SECONDS = 30.0
DEFAULT_TOKEN_LIFETIME_SECONDS = 300.0  # when the token endpoint gives no expires_in
_MAX_ERROR_CHARS = 300
# RFC 9110 §5.6.2 token characters: what a header name may contain.
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TEMPLATE_FILENAME = "<template>"
# Headers the sink owns: content-type comes from `content_type`, authorization from `auth`.
_OWN_HEADERS = frozenset({"content-type", "content-length", "host"})

# One sandbox for every template: no globals beyond Jinja's harmless defaults (range, dict, …),
# StrictUndefined so a missing key or a refused attribute fails instead of rendering "", and
# no autoescape (bodies are JSON or text, not HTML; `tojson` quotes values for JSON).
_SANDBOX = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


def _dumps(value: Any, **options: Any) -> str:
    """`tojson`'s encoder: an undefined value fails as UndefinedError naming the missing key
    (json.dumps alone says only "StrictUndefined is not JSON serializable")."""

    def refuse(item: object) -> object:
        if isinstance(item, Undefined):
            item._fail_with_undefined_error()
        raise TypeError(f"{type(item).__name__} is not JSON serializable")

    return json.dumps(value, default=refuse, **options)


_SANDBOX.policies["json.dumps_function"] = _dumps


@dataclass(frozen=True, slots=True)
class BearerAuth:
    token: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class BasicAuth:
    username: str = field(repr=False)
    password: str = field(repr=False)

    def header(self) -> str:
        pair = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii")


@dataclass(frozen=True, slots=True)
class ClientCredentialsAuth:
    """OAuth 2.0 client credentials grant (RFC 6749 §4.4), the secret sent in the form body
    (client_secret_post, §2.3.1), as Personio's and most HR APIs' token endpoints take it."""

    token_url: str
    client_id: str = field(repr=False)
    client_secret: str = field(repr=False)
    scope: str | None = None


Auth = BearerAuth | BasicAuth | ClientCredentialsAuth


@dataclass(frozen=True, slots=True)
class HttpTarget:
    """An http subscription's settings, templates compiled; `secrets` lists every resolved
    secret (auth values, `env:` headers, an `env:` URL) for redaction."""

    url: str = field(repr=False)
    method: str
    content_type: str
    headers: tuple[tuple[str, str], ...] = field(repr=False)
    body: str = field(repr=False)
    auth: Auth | None = field(repr=False)
    secrets: tuple[str, ...] = field(repr=False)
    url_template: Template = field(repr=False, compare=False)
    body_template: Template = field(repr=False, compare=False)

    def describe(self) -> str:
        return urlsplit(self.url).hostname or ""

    def secret_values(self) -> tuple[str, ...]:
        return self.secrets


def parse_target(options: SinkOptions) -> HttpTarget | None:
    before = len(options.problems.found)
    secrets: list[str] = []
    raw_url = options.table.get("url")
    url = options.secret("url")
    if url is not None and isinstance(raw_url, str) and raw_url.strip().startswith(ENV_PREFIX):
        secrets.append(url)
    url_template = _url_template(options, url)
    method = options.choice("method", METHODS, default="POST")
    content_type = options.text("content_type", default=JSON_CONTENT_TYPE)
    body = options.table.get("body")
    body_template = None
    if not isinstance(body, str) or not body.strip():
        options.problem("body", "is required (a Jinja2 template)")
    else:
        body_template = _compile(options, "body", body)
    auth = _auth(options, secrets)
    headers = _headers(options, secrets, has_auth=auth is not None)
    if (
        len(options.problems.found) > before
        or url is None
        or url_template is None
        or method is None
        or content_type is None
        or body_template is None
        or headers is None
        or not isinstance(body, str)
    ):
        return None
    return HttpTarget(
        url=url,
        method=method,
        content_type=content_type,
        headers=headers,
        body=body,
        auth=auth,
        secrets=tuple(secrets),
        url_template=url_template,
        body_template=body_template,
    )


def build_sink(target: HttpTarget, context: SinkContext) -> HttpSink:
    return HttpSink(target, client=context.http, timeout=context.timeout, name=context.name)


class HttpSink:
    """Renders the user's request for each event and sends it; never raises for what the API
    answers. Template and JSON problems are permanent failures (the same event renders the same
    way on every retry); answers are classified as webhooks' are (http_attempt.classify_status).
    """

    kind = "http"

    def __init__(
        self, target: HttpTarget, *, client: httpx2.Client, timeout: float, name: str
    ) -> None:
        self.name = name
        self.target = target
        self.timeout = timeout
        self._client = client
        self._token_lock = threading.Lock()
        self._token: tuple[str, float] | None = None  # (access token, monotonic expiry)

    def __repr__(self) -> str:  # never show the URL, headers or credentials
        return f"HttpSink(name={self.name!r}, method={self.target.method!r})"

    def send(self, envelope: EventEnvelope, *, attempt_at: datetime) -> AttemptResult:
        if attempt_at.tzinfo is None:
            raise ValueError("attempt_at must be timezone-aware")
        rendered = self._render(envelope)
        if isinstance(rendered, AttemptResult):
            return self._logged(envelope, rendered)
        url, body = rendered
        cached = self._has_token()
        result = self._authorised_attempt(url, body, attempt_at)
        if (
            result.status_code == 401
            and isinstance(self.target.auth, ClientCredentialsAuth)
            and cached
        ):
            # The cached token was revoked or expired early: fetch a new one, once. A token
            # fetched for this very attempt is not fetched again: the API refuses the client.
            self._forget_token()
            result = self._authorised_attempt(url, body, attempt_at)
        return self._logged(envelope, result)

    def _render(self, envelope: EventEnvelope) -> tuple[str, bytes] | AttemptResult:
        event = {
            "id": envelope.event_id,
            "type": envelope.type,
            "timestamp": envelope.timestamp,
            "data": envelope.data,
        }
        variables = {"event": event, "data": envelope.data}
        # A template can raise more than TemplateError (a filter's TypeError, a ZeroDivisionError
        # in an expression): any of them is the template's fault, recorded, never raised.
        try:
            url = self.target.url_template.render(variables).strip()
        except Exception as exc:
            return self._failed(f"url template{_template_error(exc)}")
        if not is_http_url(url):
            return self._failed("url template: rendered URL is not an http(s) URL")
        try:
            text = self.target.body_template.render(variables)
        except Exception as exc:
            return self._failed(f"body template{_template_error(exc)}")
        if _is_json(self.target.content_type):
            try:
                json.loads(text)
            except json.JSONDecodeError as exc:
                # Jinja keeps the template's newlines (no trim_blocks), so a rendered line is
                # the template's line unless a loop or a value with newlines added lines.
                return self._failed(
                    f"body template line {exc.lineno}: rendered body is not valid JSON"
                    f" ({exc.msg}, column {exc.colno})"
                )
            except RecursionError:
                return self._failed("body template: rendered JSON is nested too deeply")
        return url, text.encode("utf-8")

    def _authorised_attempt(self, url: str, body: bytes, attempt_at: datetime) -> AttemptResult:
        headers = dict(self.target.headers)
        headers["content-type"] = self.target.content_type
        headers.setdefault("user-agent", USER_AGENT)
        auth = self.target.auth
        token: str | None = None
        if isinstance(auth, BearerAuth):
            headers["authorization"] = f"Bearer {auth.token}"
        elif isinstance(auth, BasicAuth):
            headers["authorization"] = auth.header()
        elif isinstance(auth, ClientCredentialsAuth):
            fetched = self._access_token(auth, attempt_at)
            if isinstance(fetched, AttemptResult):
                return fetched
            token = fetched
            headers["authorization"] = f"Bearer {token}"
        redact = self.target.secrets if token is None else (*self.target.secrets, token)
        return perform_attempt(
            self._client,
            self.target.method,
            url,
            content=body,
            headers=headers,
            timeout=self.timeout,
            attempt_at=attempt_at,
            redact=redact,
        )

    def _access_token(
        self, auth: ClientCredentialsAuth, attempt_at: datetime
    ) -> str | AttemptResult:
        """The cached token, or a new one from the token endpoint (an AttemptResult if not)."""
        with self._token_lock:
            if self._token is not None and time.monotonic() < self._token[1]:
                return self._token[0]
            form = {"grant_type": "client_credentials", "client_id": auth.client_id}
            form["client_secret"] = auth.client_secret
            if auth.scope:
                form["scope"] = auth.scope
            result = perform_attempt(
                self._client,
                "POST",
                auth.token_url,
                content=urlencode(form).encode("ascii"),
                headers={
                    "content-type": "application/x-www-form-urlencoded",
                    "accept": JSON_CONTENT_TYPE,
                    "user-agent": USER_AGENT,
                },
                timeout=self.timeout,
                attempt_at=attempt_at,
                redact=self.target.secrets,
            )
            if result.outcome is not AttemptOutcome.DELIVERED:
                # A refused token request is no reason to disable the subscription (410).
                outcome = (
                    AttemptOutcome.RETRY
                    if result.outcome is AttemptOutcome.RETRY
                    else AttemptOutcome.FAILED
                )
                status = "no answer" if result.status_code is None else result.status_code
                return replace(
                    result,
                    outcome=outcome,
                    error=f"oauth2 token request failed ({status})"
                    + (f": {result.error}" if result.error else ""),
                )
            token, lifetime = _read_token(result.response_body)
            if token is None:
                return replace(
                    result,
                    outcome=AttemptOutcome.FAILED,
                    response_body="",  # it may hold a token after all, in another shape
                    error="oauth2 token answer has no access_token",
                )
            expires = time.monotonic() + max(0.0, lifetime - TOKEN_EXPIRY_MARGIN_SECONDS)
            self._token = (token, expires)
            return token

    def _has_token(self) -> bool:
        with self._token_lock:
            return self._token is not None and time.monotonic() < self._token[1]

    def _forget_token(self) -> None:
        with self._token_lock:
            self._token = None

    def _failed(self, error: str) -> AttemptResult:
        for secret in sorted(self.target.secrets, key=len, reverse=True):
            error = error.replace(secret, "<redacted>")
        return AttemptResult(
            AttemptOutcome.FAILED,
            status_code=None,
            duration_ms=0.0,
            error=error[:_MAX_ERROR_CHARS],
        )

    def _logged(self, envelope: EventEnvelope, result: AttemptResult) -> AttemptResult:
        log.debug(
            "http_attempt",
            sink=self.name,
            event_id=envelope.event_id,
            outcome=str(result.outcome),
            status_code=result.status_code,
            duration_ms=round(result.duration_ms, 1),
        )
        return result


def _read_token(body: str) -> tuple[str | None, float]:
    """RFC 6749 §5.1: `access_token` and, optionally, `expires_in` seconds."""
    try:
        answer = json.loads(body)
    except ValueError:
        return None, 0.0
    if not isinstance(answer, Mapping):
        return None, 0.0
    token = answer.get("access_token")
    lifetime = answer.get("expires_in", DEFAULT_TOKEN_LIFETIME_SECONDS)
    if not isinstance(token, str) or not token:
        return None, 0.0
    if isinstance(lifetime, str) and lifetime.isdigit():
        lifetime = int(lifetime)
    if not isinstance(lifetime, int | float) or isinstance(lifetime, bool):
        lifetime = DEFAULT_TOKEN_LIFETIME_SECONDS
    return token, float(lifetime)


def _template_error(exc: Exception) -> str:
    """` line 3: UndefinedError: 'dict object' has no attribute 'x'` for a template failure
    (`: …` when no template line is known)."""
    line = exc.lineno if isinstance(exc, TemplateSyntaxError) else None
    if line is None:
        frames = traceback.extract_tb(exc.__traceback__)
        lines = [frame.lineno for frame in frames if frame.filename == _TEMPLATE_FILENAME]
        line = lines[-1] if lines else None
    where = f" line {line}: " if line is not None else ": "
    return where + describe_error(exc)


def _compile(options: SinkOptions, key: str, source: str) -> Template | None:
    try:
        return _SANDBOX.from_string(source)
    except TemplateSyntaxError as exc:
        options.problem(key, f"template syntax error on line {exc.lineno}: {exc.message}")
        return None


def _url_template(options: SinkOptions, url: str | None) -> Template | None:
    if url is None:
        return None
    start = min((i for i in (url.find("{{"), url.find("{%"), url.find("{#")) if i >= 0), default=-1)
    literal = url if start < 0 else url[:start]
    # The scheme, host and the path's first "/" must come before any template expression, so
    # event data can never choose the host a request (and its credentials) goes to.
    scheme_end = literal.find("://")
    if not is_http_url(literal) or scheme_end < 0 or "/" not in literal[scheme_end + 3 :]:
        options.problem(
            "url", "must be an http(s) URL whose scheme and host are written out before any '{{'"
        )
        return None
    return _compile(options, "url", url)


def _auth(options: SinkOptions, secrets: list[str]) -> Auth | None:
    table = options.subtable("auth")
    if table is None:
        return None
    problems = Problems(f"{options.problems.where}.auth", options.problems.found)
    auth_options = SinkOptions(table, problems, environ=options.environ, base_dir=options.base_dir)
    kind = auth_options.choice("type", AUTH_TYPES)

    def secret(key: str) -> str | None:
        value = auth_options.secret(key)
        if value is None:
            return None
        secrets.append(value)
        return value

    known = {"type"}
    auth: Auth | None = None
    if kind == "bearer":
        known |= {"token"}
        token = secret("token")
        auth = BearerAuth(token) if token else None
    elif kind == "basic":
        known |= {"username", "password"}
        username = auth_options.secret("username")
        password = secret("password")
        if username and password:
            auth = BasicAuth(username, password)
            secrets.append(auth.header().removeprefix("Basic "))
    elif kind == "oauth2_client_credentials":
        known |= {"token_url", "client_id", "client_secret", "scope"}
        token_url = auth_options.url("token_url")
        client_id = auth_options.secret("client_id")
        client_secret = secret("client_secret")
        scope = auth_options.text("scope", default="") or None
        if token_url and client_id and client_secret:
            auth = ClientCredentialsAuth(token_url, client_id, client_secret, scope)
    if kind is not None:
        for key in table:
            if key not in known:
                auth_options.problem(key, f"is not a key of {kind} auth")
    return auth


def _headers(
    options: SinkOptions, secrets: list[str], *, has_auth: bool
) -> tuple[tuple[str, str], ...] | None:
    table = options.subtable("headers")
    if table is None:
        return () if "headers" not in options else None
    headers: list[tuple[str, str]] = []
    ok = True
    for name, value in table.items():
        key = f"headers.{name}"
        lowered = name.lower()
        if not _HEADER_NAME.fullmatch(name):
            options.problem(key, "is not a valid header name")
            ok = False
            continue
        if lowered in _OWN_HEADERS:
            options.problem(key, "is set by the sink (use content_type for content-type)")
            ok = False
            continue
        if lowered == "authorization" and has_auth:
            options.problem(key, "conflicts with auth (set one of them)")
            ok = False
            continue
        if not isinstance(value, str) or not value.strip():
            options.problem(key, "must be a non-empty string")
            ok = False
            continue
        resolved = options.resolve(key, value.strip())
        if resolved is None:
            ok = False
            continue
        if "\r" in resolved or "\n" in resolved:
            options.problem(key, "must be one line")
            ok = False
            continue
        if value.strip().startswith(ENV_PREFIX) or lowered == "authorization":
            secrets.append(resolved)
        headers.append((lowered, resolved))
    return tuple(headers) if ok else None


def _is_json(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == JSON_CONTENT_TYPE or media_type.endswith("+json")
