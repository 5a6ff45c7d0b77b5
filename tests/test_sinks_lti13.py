"""The LTI 1.3 sink: its key settings, the client assertion, the token cache, the AGS score."""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from structlog.testing import capture_logs

from tests.vendors.events import EMAIL, completed_event
from tests.vendors.lti13 import SCORE_MEDIA_TYPE, FakeLti13Platform
from worker.errors import ConfigurationError
from worker.sinks.base import AttemptOutcome
from worker.sinks.lti13 import Lti13Sink, Lti13Target, score_values, scores_url
from worker.sinks.registry import make_sink
from worker.subscriptions import parse_subscriptions

PLATFORM = "https://lms.example.com"
TOKEN_URL = f"{PLATFORM}/token"
LINEITEM = f"{PLATFORM}/lineitems/li-1"
ROUTED = {"lti13": {"lineitem": LINEITEM, "user_id": "user-9"}}


def pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@functools.cache
def spare_key() -> rsa.RSAPrivateKey:
    """Another 2048-bit key (made once: key generation is slow)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def tool_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def config(private_key: str = "env:TOOL_KEY", extra: str = "") -> str:
    return f"""
[[subscriptions]]
name = "canvas"
kind = "lti13"
client_id = "tool-1"
token_url = "{TOKEN_URL}"
private_key = "{private_key}"
key_id = "kid-1"
{extra}
"""


def parse(text: str, environ: dict[str, str], base_dir: Path | None = None) -> Lti13Target:
    [subscription] = parse_subscriptions(tomllib.loads(text), environ, base_dir=base_dir)
    assert isinstance(subscription.target, Lti13Target)
    return subscription.target


def problems(text: str, environ: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigurationError) as caught:
        parse_subscriptions(tomllib.loads(text), environ)
    return caught.value.problems


@pytest.fixture
def platform(tool_key: rsa.RSAPrivateKey) -> FakeLti13Platform:
    return FakeLti13Platform(
        "tool-1", tool_key.public_key(), "kid-1", TOKEN_URL, frozenset({"li-1"})
    )


@pytest.fixture
def sink(platform: FakeLti13Platform, tool_key: rsa.RSAPrivateKey) -> Iterator[Lti13Sink]:
    [subscription] = parse_subscriptions(tomllib.loads(config()), {"TOOL_KEY": pem(tool_key)})
    with httpx2.Client(transport=httpx2.MockTransport(platform.handle)) as client:
        made = make_sink(subscription, client)
        assert isinstance(made, Lti13Sink)
        yield made


def now() -> datetime:
    # The fake platform checks the assertion's exp against the real clock.
    return datetime.now(UTC)


# ---------------------------------------------------------------- configuration


def test_the_key_is_read_from_the_environment_and_the_audience_defaults_to_the_token_url(
    tool_key: rsa.RSAPrivateKey,
) -> None:
    target = parse(config(), {"TOOL_KEY": pem(tool_key)})

    assert (target.client_id, target.key_id, target.audience) == ("tool-1", "kid-1", TOKEN_URL)
    assert target.describe() == "lms.example.com"
    assert target.secret_values() == (pem(tool_key).strip(),)


def test_the_key_is_read_from_a_file_next_to_relay_toml(
    tool_key: rsa.RSAPrivateKey, tmp_path: Path
) -> None:
    (tmp_path / "tool.pem").write_text(pem(tool_key), encoding="utf-8")

    target = parse(config("file:tool.pem", 'audience = "https://lms.example.com"'), {}, tmp_path)

    assert target.private_key == pem(tool_key).strip()
    assert target.audience == "https://lms.example.com"


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("not a key", "must be an unencrypted PEM RSA private key (not a PEM private key)"),
        ("ec", "must be an RSA private key (RS256)"),
        ("small", "must be an RSA key of at least 2048 bits, not 1024"),
        ("encrypted", "must be an unencrypted PEM RSA private key (it is encrypted)"),
    ],
)
def test_a_private_key_that_cannot_sign_rs256_is_reported_without_its_value(
    key: str, problem: str
) -> None:
    values = {
        "not a key": "not a key",
        "ec": pem(ec.generate_private_key(ec.SECP256R1())),
        "small": pem(rsa.generate_private_key(public_exponent=65537, key_size=1024)),  # noqa: S505
        "encrypted": spare_key()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pass"),
        )
        .decode(),
    }

    found = problems(config(), {"TOOL_KEY": values[key]})

    assert found == [f"relay.toml: subscriptions[0].private_key: {problem}"]


def test_missing_settings_are_all_reported() -> None:
    found = problems('[[subscriptions]]\nname = "x"\nkind = "lti13"', {})

    assert [p.split(": ")[1] for p in found] == [
        "subscriptions[0].client_id",
        "subscriptions[0].token_url",
        "subscriptions[0].private_key",
        "subscriptions[0].key_id",
    ]


# ---------------------------------------------------------------- sending


def test_the_score_reaches_the_line_item_with_the_documented_fields(
    sink: Lti13Sink, platform: FakeLti13Platform
) -> None:
    at = now()

    result = sink.send(completed_event(ROUTED), attempt_at=at)

    assert (result.outcome, result.status_code) == (AttemptOutcome.DELIVERED, 204)
    [score] = platform.received()
    assert score.lineitem == "li-1"
    assert score.body == {
        "userId": "user-9",
        "scoreGiven": 815.0,
        "scoreMaximum": 1000.0,
        "activityProgress": "Completed",
        "gradingProgress": "FullyGraded",
        "timestamp": at.isoformat(timespec="microseconds"),
    }


def test_the_token_is_cached_until_shortly_before_it_expires(
    sink: Lti13Sink, platform: FakeLti13Platform
) -> None:
    platform.token_lifetime = 120
    # In the past, so every assertion's iat is too (the platform refuses one from the future).
    start = now() - timedelta(seconds=100)

    for offset in (0, 1, 80):
        sink.send(completed_event(ROUTED), attempt_at=start + timedelta(seconds=offset))
    cached = platform.tokens_issued
    sink.send(completed_event(ROUTED), attempt_at=start + timedelta(seconds=95))

    assert (cached, platform.tokens_issued) == (1, 2)
    assert len(platform.received()) == 4


def test_a_revoked_cached_token_is_replaced_once_within_the_attempt(
    sink: Lti13Sink, platform: FakeLti13Platform
) -> None:
    sink.send(completed_event(ROUTED), attempt_at=now())
    platform.revoke_tokens()

    result = sink.send(completed_event(ROUTED), attempt_at=now())

    assert result.outcome is AttemptOutcome.DELIVERED
    assert platform.tokens_issued == 2


def test_a_401_on_a_fresh_token_is_not_tried_again() -> None:
    calls: list[str] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        calls.append(request.url.path)
        if request.url.path == "/token":
            return httpx2.Response(200, json={"access_token": "t", "expires_in": 3600})
        return httpx2.Response(401)

    target = Lti13Target("tool-1", TOKEN_URL, pem(spare_key()), "kid-1", TOKEN_URL)
    with httpx2.Client(transport=httpx2.MockTransport(handler)) as client:
        result = Lti13Sink(target, client=client, timeout=5, name="x").send(
            completed_event(ROUTED), attempt_at=now()
        )

    assert (result.outcome, result.status_code) == (AttemptOutcome.FAILED, 401)
    assert calls == ["/token", "/lineitems/li-1/scores"]


def test_the_client_assertion_verifies_with_the_public_key_and_is_never_reused(
    sink: Lti13Sink, tool_key: rsa.RSAPrivateKey
) -> None:
    at = now()

    first, second = sink.client_assertion(at), sink.client_assertion(at)
    claims = jwt.decode(first, tool_key.public_key(), algorithms=["RS256"], audience=TOKEN_URL)
    other = jwt.decode(second, tool_key.public_key(), algorithms=["RS256"], audience=TOKEN_URL)

    assert jwt.get_unverified_header(first)["kid"] == "kid-1"
    assert (claims["iss"], claims["sub"]) == ("tool-1", "tool-1")
    assert claims["exp"] - claims["iat"] == 300
    assert claims["jti"] != other["jti"]


def test_a_token_refusal_is_permanent_with_the_oauth_error_recorded(
    platform: FakeLti13Platform,
) -> None:
    # Not the key the platform has registered for the tool.
    target = Lti13Target("tool-1", TOKEN_URL, pem(spare_key()), "kid-1", TOKEN_URL)
    with httpx2.Client(transport=httpx2.MockTransport(platform.handle)) as client:
        result = Lti13Sink(target, client=client, timeout=5, name="x").send(
            completed_event(ROUTED), attempt_at=now()
        )

    assert (result.outcome, result.status_code) == (AttemptOutcome.FAILED, 401)
    assert result.error == "token endpoint: invalid_client InvalidSignatureError"
    assert platform.received() == []


@pytest.mark.parametrize(
    ("status", "body", "outcome", "error"),
    [
        (503, {}, AttemptOutcome.RETRY, "token endpoint: HTTP 503"),
        (200, {"token_type": "Bearer"}, AttemptOutcome.FAILED, "token endpoint: no access_token"),
        (400, {"error": "invalid_scope"}, AttemptOutcome.FAILED, "token endpoint: invalid_scope"),
    ],
)
def test_token_endpoint_answers_have_their_outcomes(
    status: int, body: dict[str, Any], outcome: AttemptOutcome, error: str
) -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(status, json=body)

    target = Lti13Target("tool-1", TOKEN_URL, pem(spare_key()), "kid-1", TOKEN_URL)
    with httpx2.Client(transport=httpx2.MockTransport(handler)) as client:
        result = Lti13Sink(target, client=client, timeout=5, name="x").send(
            completed_event(ROUTED), attempt_at=now()
        )

    assert (result.outcome, result.error) == (outcome, error)


def test_an_unreachable_token_endpoint_is_retried_and_says_so() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("connection refused")

    target = Lti13Target("tool-1", TOKEN_URL, pem(spare_key()), "kid-1", TOKEN_URL)
    with httpx2.Client(transport=httpx2.MockTransport(handler)) as client:
        result = Lti13Sink(target, client=client, timeout=5, name="x").send(
            completed_event(ROUTED), attempt_at=now()
        )

    assert result.outcome is AttemptOutcome.RETRY
    assert result.error == "token endpoint: ConnectError: connection refused"


def test_an_unknown_line_item_is_permanent(sink: Lti13Sink) -> None:
    routed = {"lti13": {"lineitem": f"{PLATFORM}/lineitems/li-404", "user_id": "user-9"}}

    result = sink.send(completed_event(routed), attempt_at=now())

    assert (result.outcome, result.status_code) == (AttemptOutcome.FAILED, 404)


def test_the_score_is_sent_with_the_ags_media_type() -> None:
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        if request.url.path == "/token":
            return httpx2.Response(200, json={"access_token": "tok", "expires_in": 60})
        return httpx2.Response(200)

    target = Lti13Target("tool-1", TOKEN_URL, pem(spare_key()), "kid-1", TOKEN_URL)
    with httpx2.Client(transport=httpx2.MockTransport(handler)) as client:
        Lti13Sink(target, client=client, timeout=5, name="x").send(
            completed_event(ROUTED), attempt_at=now()
        )

    token, score = seen
    assert token.headers["content-type"] == "application/x-www-form-urlencoded"
    assert b"scope=https%3A%2F%2Fpurl.imsglobal.org%2Fspec%2Flti-ags%2Fscope%2Fscore" in (
        token.content
    )
    assert (score.headers["content-type"], score.headers["authorization"]) == (
        SCORE_MEDIA_TYPE,
        "Bearer tok",
    )


@pytest.mark.parametrize(
    ("lineitem", "url"),
    [
        ("https://lms/li/1", "https://lms/li/1/scores"),
        ("https://lms/li/1/", "https://lms/li/1/scores"),
        ("https://lms/api/li/1?type_id=2", "https://lms/api/li/1/scores?type_id=2"),
    ],
)
def test_the_scores_url_appends_to_the_path_and_keeps_the_query(lineitem: str, url: str) -> None:
    assert scores_url(lineitem) == url


@pytest.mark.parametrize(
    ("grade", "values"),
    [
        ({"value": 4, "max": 5, "normalized": 0.8}, (4.0, 5.0)),
        ({"value": 33, "max": 40}, (33.0, 40.0)),
        ({"value": 1200, "max": 1000}, (1000.0, 1000.0)),
        ({"value": 3, "max": None, "normalized": None}, None),
        ({"value": 3, "max": 0, "normalized": 0.5}, (0.5, 1.0)),
    ],
)
def test_score_values_come_from_value_and_max_or_normalized(
    grade: dict[str, Any], values: tuple[float, float] | None
) -> None:
    assert score_values(grade) == values


@pytest.mark.parametrize(
    ("context", "error"),
    [
        ({}, "context.lti13 is missing"),
        ({"lti13": {"user_id": "u"}}, "context.lti13.lineitem is missing"),
        ({"lti13": {"lineitem": LINEITEM}}, "context.lti13.user_id is missing"),
        ({"lti13": {"lineitem": "x", "user_id": "u"}}, "context.lti13.lineitem must be an http"),
    ],
)
def test_missing_routing_data_fails_naming_the_key_and_asks_no_token(
    sink: Lti13Sink, platform: FakeLti13Platform, context: dict[str, Any], error: str
) -> None:
    result = sink.send(completed_event(context), attempt_at=now())

    assert result.outcome is AttemptOutcome.FAILED
    assert result.error is not None
    assert result.error.startswith(error)
    assert platform.tokens_issued == 0


def test_neither_the_key_the_token_nor_the_email_appear_in_logs_or_errors(
    sink: Lti13Sink, platform: FakeLti13Platform, tool_key: rsa.RSAPrivateKey
) -> None:
    with capture_logs() as logs:
        results = [sink.send(completed_event(c), attempt_at=now()) for c in (ROUTED, {})]

    text = repr(logs) + repr(results) + repr(sink)
    assert pem(tool_key).splitlines()[1] not in text
    assert EMAIL not in text
    assert "Bearer" not in text


def test_a_naive_attempt_time_is_refused(sink: Lti13Sink) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        sink.send(completed_event(ROUTED), attempt_at=datetime(2026, 11, 27))
