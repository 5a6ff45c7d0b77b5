"""The http sink: templates in a sandbox, methods, headers, each auth mode, the README's HiBob and
Personio examples against their fakes, and secrets kept out of errors and logs."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import httpx2
import pytest
from structlog.testing import capture_logs

from tests.receiver import RecordedRequest, ScriptedResponse
from tests.vendors.chat_hris import FakeHiBob, FakePersonio, transport
from tests.vendors.events import EMAIL, envelope, subscription
from worker.errors import ConfigurationError
from worker.sinks.base import AttemptOutcome, AttemptResult, EventEnvelope, Sink
from worker.sinks.registry import make_sink

NOW = datetime(2026, 11, 27, 10, 15, tzinfo=UTC)
README = Path(__file__).resolve().parents[1] / "README.md"
TOKEN = "api-t0ken-very-secret"


def readme_example(name: str) -> str:
    """The README's ```toml block that starts with `# example: <name>`."""
    blocks: list[str] = re.findall(r"```toml\n(.*?)```", README.read_text("utf-8"), re.S)
    (block,) = [block for block in blocks if block.startswith(f"# example: {name}\n")]
    return block


def config(*lines: str) -> str:
    return "\n".join(["[[subscriptions]]", 'name = "api"', 'kind = "http"', *lines]) + "\n"


BASIC = config(
    'url = "https://api.example.com/people/{{ data.context.hibob_employee_id }}"',
    "body = '{\"percent\": {{ data.grade.percent | tojson }}}'",
)


class Recorder:
    """A target that records requests and answers a fixed status."""

    def __init__(self, status: int = 200, **headers: str) -> None:
        self.requests: list[RecordedRequest] = []
        self.status = status
        self.headers = tuple(headers.items())

    def __call__(self, request: RecordedRequest) -> ScriptedResponse:
        self.requests.append(request)
        return ScriptedResponse(status=self.status, headers=self.headers)


def make(toml: str, handler: httpx2.MockTransport, environ: dict[str, str] | None = None) -> Sink:
    client = httpx2.Client(transport=handler)
    return make_sink(subscription(toml, environ), client)


def send(
    toml: str,
    handler: httpx2.MockTransport,
    event: EventEnvelope | None = None,
    environ: dict[str, str] | None = None,
) -> AttemptResult:
    return make(toml, handler, environ).send(event or envelope(), attempt_at=NOW)


def problems(toml: str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigurationError) as caught:
        subscription(toml, environ)
    return [
        problem.removeprefix("relay.toml: subscriptions[0].") for problem in caught.value.problems
    ]


# What is sent


def test_the_url_and_body_are_rendered_from_the_event() -> None:
    target = Recorder()

    result = send(BASIC, transport(target))

    assert result.outcome is AttemptOutcome.DELIVERED
    (request,) = target.requests
    assert (request.method, request.path) == ("POST", "/people/3332883884017713238")
    assert json.loads(request.body) == {"percent": 55.0}
    assert request.headers["content-type"] == "application/json"


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_the_configured_method_is_used(method: str) -> None:
    target = Recorder()

    send(BASIC + f'method = "{method}"\n', transport(target))

    assert target.requests[0].method == method


def test_headers_are_sent_with_env_values_resolved() -> None:
    target = Recorder()
    toml = BASIC + 'headers = { "X-Api-Key" = "env:API_KEY", "X-Source" = "isograd-relay" }\n'

    send(toml, transport(target), environ={"API_KEY": TOKEN})

    headers = target.requests[0].headers
    assert (headers["x-api-key"], headers["x-source"]) == (TOKEN, "isograd-relay")


def test_a_text_content_type_is_sent_as_rendered() -> None:
    target = Recorder()
    toml = config(
        'url = "https://api.example.com/x"',
        'content_type = "text/plain; charset=utf-8"',
        'body = "score {{ data.grade.text }}"',
    )

    send(toml, transport(target))

    assert target.requests[0].body == b"score 550/1000"


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, AttemptOutcome.DELIVERED),
        (201, AttemptOutcome.DELIVERED),
        (204, AttemptOutcome.DELIVERED),
        (301, AttemptOutcome.FAILED),
        (400, AttemptOutcome.FAILED),
        (404, AttemptOutcome.FAILED),
        (410, AttemptOutcome.GONE),
        (429, AttemptOutcome.RETRY),
        (503, AttemptOutcome.RETRY),
    ],
)
def test_answers_are_classified_as_for_webhooks(status: int, outcome: AttemptOutcome) -> None:
    assert send(BASIC, transport(Recorder(status))).outcome is outcome


def test_retry_after_is_honoured() -> None:
    result = send(BASIC, transport(Recorder(503, **{"retry-after": "90"})))

    assert (result.outcome, result.retry_after) == (AttemptOutcome.RETRY, 90.0)


# Templates: sandbox and errors


@pytest.mark.parametrize(
    "expression",
    [
        "''.__class__",
        "''.__class__.__mro__[1].__subclasses__()",
        "lipsum.__globals__",
        "data.__class__",
        "cycler.__init__.__globals__",
    ],
)
def test_a_sandbox_escape_fails_the_attempt_and_sends_nothing(expression: str) -> None:
    target = Recorder()
    toml = config('url = "https://api.example.com/x"', f'body = "{{{{ {expression} }}}}"')

    result = send(toml, transport(target))

    assert result.outcome is AttemptOutcome.FAILED
    assert result.error is not None
    assert result.error.startswith("body template line 1: ")
    assert target.requests == []


def test_templates_cannot_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEAKED", "from-the-environment")
    target = Recorder()
    toml = config(
        'url = "https://api.example.com/x"',
        "body = '{{ environ.LEAKED }}{{ env.LEAKED }}{{ os.environ }}'",
        'content_type = "text/plain"',
    )

    result = send(toml, transport(target))

    assert result.outcome is AttemptOutcome.FAILED
    assert target.requests == []


def test_a_missing_context_key_fails_naming_the_key_and_the_line() -> None:
    toml = config(
        'url = "https://api.example.com/x"',
        'body = """{\n"id": {{ data.context.bamboohr_id | tojson }}\n}"""',
    )

    result = send(toml, transport(Recorder()))

    assert result.outcome is AttemptOutcome.FAILED
    assert result.error == (
        "body template line 2: UndefinedError: 'dict object' has no attribute 'bamboohr_id'"
    )


def test_a_body_that_is_not_json_fails_naming_the_line() -> None:
    toml = config(
        'url = "https://api.example.com/x"',
        'body = """{\n"name": {{ data.candidate.last_name }}\n}"""',
    )

    result = send(toml, transport(Recorder()))

    assert result.outcome is AttemptOutcome.FAILED
    assert result.error is not None
    assert result.error.startswith("body template line 2: rendered body is not valid JSON")
    assert "Martin" not in result.error


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (
            "{{ 1 // 0 }}",
            "body template line 1: ZeroDivisionError: integer division or modulo by zero",
        ),
        (
            "{{ '[' * 100000 }}{{ ']' * 100000 }}",
            "body template: rendered JSON is nested too deeply",
        ),
    ],
)
def test_any_template_failure_is_a_recorded_failure_not_a_crash(body: str, error: str) -> None:
    toml = config('url = "https://api.example.com/x"', f'body = "{body}"')

    result = send(toml, transport(Recorder()))

    assert (result.outcome, result.error) == (AttemptOutcome.FAILED, error)


def test_a_template_syntax_error_is_a_configuration_problem_with_its_line() -> None:
    toml = config('url = "https://api.example.com/x"', 'body = """{\n{% if %}\n}"""')

    assert problems(toml) == [
        "body: template syntax error on line 2:"
        " Expected an expression, got 'end of statement block'"
    ]


@pytest.mark.parametrize(
    "url",
    [
        "https://{{ data.context.host }}/x",
        "https://api.example.com{{ data.context.path }}",
        "{{ data.context.url }}",
    ],
)
def test_the_url_host_must_be_written_out(url: str) -> None:
    assert problems(config(f'url = "{url}"', "body = '{}'")) == [
        "url: must be an http(s) URL whose scheme and host are written out before any '{{'"
    ]


@pytest.mark.parametrize(
    ("lines", "problem"),
    [
        (['url = "https://a.example/x"'], "body: is required (a Jinja2 template)"),
        (
            ['url = "https://a.example/x"', "body = '{}'", 'method = "GET"'],
            "method: must be one of 'POST', 'PUT', 'PATCH'",
        ),
        (
            ['url = "https://a.example/x"', "body = '{}'", 'headers = { "Content-Type" = "x" }'],
            "headers.Content-Type: is set by the sink (use content_type for content-type)",
        ),
        (
            ['url = "https://a.example/x"', "body = '{}'", 'headers = { "X-Key" = "env:NOPE" }'],
            "headers.X-Key: environment variable NOPE is not set",
        ),
        (
            ['url = "https://a.example/x"', "body = '{}'", 'headers = { "Bad Name" = "x" }'],
            "headers.Bad Name: is not a valid header name",
        ),
        (
            ['url = "https://a.example/x"', "body = '{}'", 'auth = { type = "digest" }'],
            "auth.type: must be one of 'bearer', 'basic', 'oauth2_client_credentials'",
        ),
        (
            ['url = "https://a.example/x"', "body = '{}'", 'auth = { type = "bearer" }'],
            "auth.token: is required",
        ),
        (
            [
                'url = "https://a.example/x"',
                "body = '{}'",
                'auth = { type = "bearer", token = "t", user = "u" }',
            ],
            "auth.user: is not a key of bearer auth",
        ),
        (
            [
                'url = "https://a.example/x"',
                "body = '{}'",
                'auth = { type = "bearer", token = "t" }',
                'headers = { "Authorization" = "x" }',
            ],
            "headers.Authorization: conflicts with auth (set one of them)",
        ),
    ],
)
def test_bad_http_settings_are_reported(lines: list[str], problem: str) -> None:
    assert problems(config(*lines)) == [problem]


# Auth


def test_bearer_auth_sends_the_token() -> None:
    target = Recorder()
    toml = BASIC + 'auth = { type = "bearer", token = "env:API_TOKEN" }\n'

    send(toml, transport(target), environ={"API_TOKEN": TOKEN})

    assert target.requests[0].headers["authorization"] == f"Bearer {TOKEN}"


def test_basic_auth_sends_the_encoded_pair() -> None:
    target = Recorder()
    toml = BASIC + 'auth = { type = "basic", username = "svc", password = "env:API_TOKEN" }\n'

    send(toml, transport(target), environ={"API_TOKEN": TOKEN})

    expected = base64.b64encode(f"svc:{TOKEN}".encode()).decode()
    assert target.requests[0].headers["authorization"] == f"Basic {expected}"


def test_the_readme_hibob_example_adds_a_custom_table_row() -> None:
    fake = FakeHiBob()
    environ = {"HIBOB_SERVICE_USER_ID": fake.service_user, "HIBOB_SERVICE_USER_TOKEN": fake.token}

    result = send(readme_example("hibob"), transport(fake), environ=environ)

    assert (result.outcome, result.status_code) == (AttemptOutcome.DELIVERED, 200)
    ((employee, _table, values),) = fake.rows
    assert employee == "3332883884017713238"
    assert sorted(values.values(), key=str) == sorted(
        ["Excel 2019", 55.0, "2026-11-27", "https://isograd.example/report.pdf?k=1&t=2"], key=str
    )


def test_the_readme_hibob_example_with_a_wrong_token_fails_for_good() -> None:
    fake = FakeHiBob()
    environ = {"HIBOB_SERVICE_USER_ID": fake.service_user, "HIBOB_SERVICE_USER_TOKEN": "stale"}

    result = send(readme_example("hibob"), transport(fake), environ=environ)

    assert (result.outcome, result.status_code, fake.rows) == (AttemptOutcome.FAILED, 401, [])


def personio_environ(fake: FakePersonio) -> dict[str, str]:
    return {"PERSONIO_CLIENT_ID": fake.client_id, "PERSONIO_CLIENT_SECRET": fake.client_secret}


def test_the_readme_personio_example_updates_the_person_attributes() -> None:
    fake = FakePersonio()

    result = send(readme_example("personio"), transport(fake), environ=personio_environ(fake))

    assert (result.outcome, result.status_code) == (AttemptOutcome.DELIVERED, 204)
    assert fake.updates == [
        (
            "12345",
            [
                {"id": "dynamic_1234567", "value": "550/1000"},
                {"id": "dynamic_1234568", "value": "55.0"},
            ],
        )
    ]


def test_the_oauth2_token_is_cached_between_attempts() -> None:
    fake = FakePersonio()
    sink = make(readme_example("personio"), transport(fake), personio_environ(fake))

    outcomes = [sink.send(envelope(), attempt_at=NOW).outcome for _ in range(3)]

    assert outcomes == [AttemptOutcome.DELIVERED] * 3
    assert fake.tokens_issued == 1


def test_a_401_refreshes_the_token_once_and_delivers() -> None:
    fake = FakePersonio()
    sink = make(readme_example("personio"), transport(fake), personio_environ(fake))
    sink.send(envelope(), attempt_at=NOW)
    fake.revoke_tokens()

    result = sink.send(envelope(), attempt_at=NOW)

    assert (result.outcome, fake.tokens_issued, len(fake.updates)) == (
        AttemptOutcome.DELIVERED,
        2,
        2,
    )


def test_a_401_with_a_fresh_token_is_not_retried_again() -> None:
    fake = FakePersonio(persons=frozenset())
    calls: list[str] = []

    def handler(request: RecordedRequest) -> ScriptedResponse:
        calls.append(request.path)
        if request.path == "/v2/auth/token":
            return fake(request)
        return ScriptedResponse(status=401)

    sink = make(readme_example("personio"), transport(handler), personio_environ(fake))
    first = sink.send(envelope(), attempt_at=NOW)
    second = sink.send(envelope(), attempt_at=NOW)

    assert (first.outcome, first.status_code) == (AttemptOutcome.FAILED, 401)
    assert (second.outcome, second.status_code) == (AttemptOutcome.FAILED, 401)
    # first: token, PATCH 401 (fresh token: no refresh); second: cached token 401, refresh once.
    assert calls.count("/v2/auth/token") == 2
    assert len(calls) == 5


@pytest.mark.parametrize(
    ("token_answer", "outcome", "error"),
    [
        (ScriptedResponse(status=401), AttemptOutcome.FAILED, "oauth2 token request failed (401)"),
        (ScriptedResponse(status=503), AttemptOutcome.RETRY, "oauth2 token request failed (503)"),
        (ScriptedResponse(status=410), AttemptOutcome.FAILED, "oauth2 token request failed (410)"),
        (
            ScriptedResponse(status=200, body=b'{"token": "x"}'),
            AttemptOutcome.FAILED,
            "oauth2 token answer has no access_token",
        ),
    ],
)
def test_a_token_endpoint_failure_is_classified_and_sends_nothing(
    token_answer: ScriptedResponse, outcome: AttemptOutcome, error: str
) -> None:
    fake = FakePersonio()
    sent: list[str] = []

    def handler(request: RecordedRequest) -> ScriptedResponse:
        sent.append(request.path)
        return token_answer

    result = send(readme_example("personio"), transport(handler), environ=personio_environ(fake))

    assert (result.outcome, result.error) == (outcome, error)
    assert sent == ["/v2/auth/token"]


# Secrets


def test_secrets_never_reach_errors_or_logs() -> None:
    def refuse(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError(
            f"refused {request.headers['authorization']} {request.headers['x-key']}"
        )

    toml = BASIC + (
        'auth = { type = "bearer", token = "env:API_TOKEN" }\nheaders = { "X-Key" = "env:X_KEY" }\n'
    )
    environ = {"API_TOKEN": TOKEN, "X_KEY": "header-s3cret-value"}
    with capture_logs() as logs:
        result = send(toml, httpx2.MockTransport(refuse), environ=environ)

    assert result.outcome is AttemptOutcome.RETRY
    assert result.error == "ConnectError: refused Bearer <redacted> <redacted>"
    for secret in (TOKEN, "header-s3cret-value", EMAIL):
        assert secret not in repr(logs)


def test_the_target_shows_its_host_and_lists_every_secret() -> None:
    found = subscription(
        readme_example("hibob"), {"HIBOB_SERVICE_USER_ID": "svc", "HIBOB_SERVICE_USER_TOKEN": TOKEN}
    )

    assert found.target.describe() == "api.hibob.com"
    assert TOKEN in found.target.secret_values()
    assert base64.b64encode(f"svc:{TOKEN}".encode()).decode() in found.target.secret_values()
    assert TOKEN not in repr(found)
