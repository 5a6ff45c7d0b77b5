"""The vendor fakes refuse what the real vendors refuse (a fake that lies hides bugs).

Each request here is built by hand (oauthlib, PyJWT, plain JSON), not by the relay's sinks, so
a sink bug cannot make its own fake agree with it.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from oauthlib.oauth1 import Client

from tests.vendors.bamboohr import ERROR_HEADER, FakeBambooHR
from tests.vendors.lti11 import NS, FakeLti11Consumer
from tests.vendors.lti13 import ASSERTION_TYPE, SCORE_MEDIA_TYPE, SCORE_SCOPE, FakeLti13Platform
from tests.vendors.server import VendorServer

# ---------------------------------------------------------------- BambooHR

BAMBOO = "https://api.bamboohr.com/api/gateway.php/acme/v1"


def bamboo_auth(key: str = "key-1") -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{key}:x".encode()).decode()}


@pytest.fixture
def bamboo() -> Iterator[tuple[FakeBambooHR, httpx2.Client]]:
    fake = FakeBambooHR(
        "acme", "key-1", frozenset({42}), tables={"customCerts": frozenset({"date", "score"})}
    )
    with httpx2.Client(transport=httpx2.MockTransport(fake.handle)) as client:
        yield fake, client


def test_bamboohr_fake_stores_a_valid_training_record(
    bamboo: tuple[FakeBambooHR, httpx2.Client],
) -> None:
    fake, client = bamboo
    body = {"completed": "2026-11-27", "type": 7, "notes": "ok"}

    response = client.post(
        f"{BAMBOO}/training/record/employee/42", json=body, headers=bamboo_auth()
    )

    assert response.status_code == 201
    assert [(r.employee_id, r.kind, r.body) for r in fake.records()] == [(42, "training", body)]


TRAINING_42 = "/training/record/employee/42"
GOOD_RECORD = {"completed": "2026-11-27", "type": 7}


@pytest.mark.parametrize(
    ("path", "body", "key", "status", "reason"),
    [
        (TRAINING_42, GOOD_RECORD, "bad", 401, "Invalid API key"),
        ("/training/record/employee/43", GOOD_RECORD, "key-1", 404, "Employee 43 not found"),
        (TRAINING_42, {"completed": "27/11/2026", "type": 7}, "key-1", 400, "yyyy-mm-dd"),
        (TRAINING_42, {"completed": "2026-02-30", "type": 7}, "key-1", 400, "yyyy-mm-dd"),
        (TRAINING_42, {"completed": "2026-11-27", "type": 8}, "key-1", 400, "training type"),
        ("/employees/42/tables/customCerts", {"date": "2026-11-27", "grade": 1}, "key-1", 406,
         "grade"),
        ("/employees/42/tables/nope", {"date": "2026-11-27"}, "key-1", 404, "Table nope"),
    ],
    ids=[
        "bad-key",
        "unknown-employee",
        "date-format",
        "impossible-date",
        "unknown-type",
        "unknown-field",
        "unknown-table",
    ],
)  # fmt: skip
def test_bamboohr_fake_refuses_like_bamboohr_with_its_reason_header(
    bamboo: tuple[FakeBambooHR, httpx2.Client],
    path: str,
    body: dict[str, Any],
    key: str,
    status: int,
    reason: str,
) -> None:
    fake, client = bamboo

    response = client.post(BAMBOO + path, json=body, headers=bamboo_auth(key))

    assert response.status_code == status
    assert reason in response.headers[ERROR_HEADER]
    assert fake.records() == []


def test_bamboohr_fake_refuses_another_company_and_non_json(
    bamboo: tuple[FakeBambooHR, httpx2.Client],
) -> None:
    _, client = bamboo
    other = BAMBOO.replace("/acme/", "/other/") + "/training/record/employee/42"
    good = f"{BAMBOO}/training/record/employee/42"

    wrong_company = client.post(
        other, json={"completed": "2026-11-27", "type": 7}, headers=bamboo_auth()
    )
    form = client.post(good, data={"completed": "2026-11-27", "type": "7"}, headers=bamboo_auth())

    assert (wrong_company.status_code, form.status_code) == (404, 400)


def test_bamboohr_fake_throttles_with_503_and_retry_after(
    bamboo: tuple[FakeBambooHR, httpx2.Client],
) -> None:
    fake, client = bamboo
    fake.throttle(1, retry_after="30")
    url, body = f"{BAMBOO}/training/record/employee/42", {"completed": "2026-11-27", "type": 7}

    first = client.post(url, json=body, headers=bamboo_auth())
    second = client.post(url, json=body, headers=bamboo_auth())

    assert (first.status_code, first.headers["retry-after"], second.status_code) == (503, "30", 201)


# ---------------------------------------------------------------- LTI 1.1

OUTCOMES = "http://lms.example.com/outcomes"


def pox(
    sourcedid: str = "src-1", score: str = "0.5", operation: str = "replaceResultRequest"
) -> str:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><imsx_POXEnvelopeRequest xmlns="{NS}">'
        "<imsx_POXHeader><imsx_POXRequestHeaderInfo><imsx_version>V1.0</imsx_version>"
        "<imsx_messageIdentifier>m1</imsx_messageIdentifier></imsx_POXRequestHeaderInfo>"
        f"</imsx_POXHeader><imsx_POXBody><{operation}><resultRecord><sourcedGUID>"
        f"<sourcedId>{sourcedid}</sourcedId></sourcedGUID><result><resultScore>"
        f"<language>en</language><textString>{score}</textString></resultScore></result>"
        f"</resultRecord></{operation}></imsx_POXBody></imsx_POXEnvelopeRequest>"
    )


def oauth_headers(
    body: str,
    *,
    secret: str = "s3cret",  # noqa: S107
    key: str = "consumer",
    **client: Any,
) -> dict[str, str]:
    signer = Client(key, client_secret=secret, **client)
    _, headers, _ = signer.sign(
        OUTCOMES, "POST", body=body, headers={"Content-Type": "application/xml"}
    )
    return dict(headers)


@pytest.fixture
def consumer() -> Iterator[tuple[FakeLti11Consumer, httpx2.Client]]:
    fake = FakeLti11Consumer("consumer", "s3cret", frozenset({"src-1"}))
    with httpx2.Client(transport=httpx2.MockTransport(fake.handle)) as client:
        yield fake, client


def code_major(response: httpx2.Response) -> str | None:
    import xml.etree.ElementTree as ET

    return ET.fromstring(response.content).findtext(f".//{{{NS}}}imsx_codeMajor")  # noqa: S314


def test_lti11_fake_accepts_a_signed_replace_result(
    consumer: tuple[FakeLti11Consumer, httpx2.Client],
) -> None:
    fake, client = consumer
    body = pox(score="0.92")

    response = client.post(OUTCOMES, content=body, headers=oauth_headers(body))

    assert (response.status_code, code_major(response)) == (200, "success")
    assert [(g.sourcedid, g.score) for g in fake.received()] == [("src-1", 0.92)]


def test_lti11_fake_refuses_a_wrong_secret(
    consumer: tuple[FakeLti11Consumer, httpx2.Client],
) -> None:
    fake, client = consumer
    body = pox()

    response = client.post(OUTCOMES, content=body, headers=oauth_headers(body, secret="wrong"))

    assert response.status_code == 401
    assert fake.received() == []


def test_lti11_fake_refuses_a_body_changed_after_signing(
    consumer: tuple[FakeLti11Consumer, httpx2.Client],
) -> None:
    fake, client = consumer
    headers = oauth_headers(pox(score="0.1"))

    response = client.post(OUTCOMES, content=pox(score="0.9"), headers=headers)

    assert response.status_code == 401
    assert fake.refusals == ["oauth_body_hash does not match the body"]


def test_lti11_fake_refuses_a_replayed_nonce(
    consumer: tuple[FakeLti11Consumer, httpx2.Client],
) -> None:
    fake, client = consumer
    body = pox()
    headers = oauth_headers(body)

    first = client.post(OUTCOMES, content=body, headers=headers)
    replay = client.post(OUTCOMES, content=body, headers=headers)

    assert (first.status_code, replay.status_code) == (200, 401)
    assert len(fake.received()) == 1


def test_lti11_fake_refuses_a_stale_timestamp(
    consumer: tuple[FakeLti11Consumer, httpx2.Client],
) -> None:
    _, client = consumer
    body = pox()
    headers = oauth_headers(body, timestamp=str(int(time.time()) - 3600))

    assert client.post(OUTCOMES, content=body, headers=headers).status_code == 401


@pytest.mark.parametrize(
    ("body", "major"),
    [
        (pox(sourcedid="src-unknown"), "failure"),
        (pox(score="1.5"), "failure"),
        (pox(score="high"), "failure"),
        (pox(operation="readResultRequest"), "unsupported"),
    ],
    ids=["unknown-sourcedid", "score-above-1", "score-not-a-number", "other-operation"],
)
def test_lti11_fake_answers_failure_or_unsupported_in_the_envelope(
    consumer: tuple[FakeLti11Consumer, httpx2.Client], body: str, major: str
) -> None:
    fake, client = consumer

    response = client.post(OUTCOMES, content=body, headers=oauth_headers(body))

    assert (response.status_code, code_major(response)) == (200, major)
    assert fake.received() == []


def test_lti11_fake_refuses_another_media_type(
    consumer: tuple[FakeLti11Consumer, httpx2.Client],
) -> None:
    _, client = consumer
    body = pox()
    headers = {**oauth_headers(body), "Content-Type": "text/plain"}

    assert client.post(OUTCOMES, content=body, headers=headers).status_code == 415


def test_lti11_fake_verifies_over_real_http_with_the_url_the_client_used() -> None:
    fake = FakeLti11Consumer("consumer", "s3cret", frozenset({"src-1"}))
    with VendorServer(fake.handle) as server, httpx2.Client() as client:
        url = server.url("/outcomes?course=7")
        body = pox()
        signer = Client("consumer", client_secret="s3cret")
        _, headers, _ = signer.sign(
            url, "POST", body=body, headers={"Content-Type": "application/xml"}
        )

        response = client.post(url, content=body, headers=headers)

    assert (response.status_code, code_major(response)) == (200, "success")


# ---------------------------------------------------------------- LTI 1.3

PLATFORM = "https://platform.example.com"


@pytest.fixture(scope="module")
def tool_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def platform(tool_key: rsa.RSAPrivateKey) -> Iterator[tuple[FakeLti13Platform, httpx2.Client]]:
    fake = FakeLti13Platform(
        "tool-1", tool_key.public_key(), "kid-1", f"{PLATFORM}/token", frozenset({"li-1"})
    )
    with httpx2.Client(transport=httpx2.MockTransport(fake.handle)) as client:
        yield fake, client


def assertion(key: rsa.RSAPrivateKey, **overrides: Any) -> str:
    now = int(time.time())
    claims = {
        "iss": "tool-1", "sub": "tool-1", "aud": f"{PLATFORM}/token",
        "iat": now, "exp": now + 300, "jti": uuid.uuid4().hex,
    }  # fmt: skip
    kid = overrides.pop("kid", "kid-1")
    claims.update(overrides)
    return jwt.encode(
        {k: v for k, v in claims.items() if v is not None}, key, "RS256", headers={"kid": kid}
    )


def ask_token(
    client: httpx2.Client, client_assertion: str, scope: str = SCORE_SCOPE
) -> httpx2.Response:
    return client.post(
        f"{PLATFORM}/token",
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": client_assertion,
            "scope": scope,
        },
    )


def score(**overrides: Any) -> dict[str, Any]:
    document = {
        "userId": "u-1", "scoreGiven": 8, "scoreMaximum": 10, "activityProgress": "Completed",
        "gradingProgress": "FullyGraded", "timestamp": datetime.now(UTC).isoformat(),
    }  # fmt: skip
    document.update(overrides)
    return document


def post_score(
    client: httpx2.Client, token: str, body: Any, media_type: str = SCORE_MEDIA_TYPE
) -> httpx2.Response:
    return client.post(
        f"{PLATFORM}/lineitems/li-1/scores",
        content=json.dumps(body).encode(),
        headers={"authorization": f"Bearer {token}", "content-type": media_type},
    )


def test_lti13_fake_issues_a_token_for_a_valid_assertion_and_takes_a_score(
    platform: tuple[FakeLti13Platform, httpx2.Client], tool_key: rsa.RSAPrivateKey
) -> None:
    fake, client = platform

    answer = ask_token(client, assertion(tool_key))
    token = answer.json()["access_token"]
    response = post_score(client, token, score())

    assert (answer.status_code, answer.json()["expires_in"], response.status_code) == (
        200,
        3600,
        204,
    )
    assert [s.body["scoreGiven"] for s in fake.received()] == [8]


@pytest.mark.parametrize(
    "overrides",
    [{"aud": "https://elsewhere"}, {"iss": "other"}, {"sub": "other"}, {"kid": "kid-2"},
     {"exp": int(time.time()) - 10}, {"jti": None}],
    ids=["audience", "issuer", "subject", "kid", "expired", "no-jti"],
)  # fmt: skip
def test_lti13_fake_refuses_a_bad_assertion(
    platform: tuple[FakeLti13Platform, httpx2.Client],
    tool_key: rsa.RSAPrivateKey,
    overrides: dict[str, Any],
) -> None:
    _, client = platform

    response = ask_token(client, assertion(tool_key, **overrides))

    assert (response.status_code, response.json()["error"]) == (401, "invalid_client")


def test_lti13_fake_refuses_an_assertion_signed_with_another_key(
    platform: tuple[FakeLti13Platform, httpx2.Client],
) -> None:
    _, client = platform
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    assert ask_token(client, assertion(other)).status_code == 401


def test_lti13_fake_refuses_a_reused_jti(
    platform: tuple[FakeLti13Platform, httpx2.Client], tool_key: rsa.RSAPrivateKey
) -> None:
    _, client = platform
    jti = uuid.uuid4().hex

    first = ask_token(client, assertion(tool_key, jti=jti))
    again = ask_token(client, assertion(tool_key, jti=jti))

    assert (first.status_code, again.status_code) == (200, 401)
    assert again.json()["error_description"] == "jti already used"


def test_lti13_fake_refuses_another_scope(
    platform: tuple[FakeLti13Platform, httpx2.Client], tool_key: rsa.RSAPrivateKey
) -> None:
    _, client = platform

    response = ask_token(
        client, assertion(tool_key), scope="https://purl.imsglobal.org/spec/lti-ags/scope/lineitem"
    )

    assert (response.status_code, response.json()["error"]) == (400, "invalid_scope")


@pytest.fixture
def token(platform: tuple[FakeLti13Platform, httpx2.Client], tool_key: rsa.RSAPrivateKey) -> str:
    _, client = platform
    value: str = ask_token(client, assertion(tool_key)).json()["access_token"]
    return value


def test_lti13_fake_refuses_a_score_without_a_valid_token(
    platform: tuple[FakeLti13Platform, httpx2.Client], token: str
) -> None:
    fake, client = platform

    unknown = post_score(client, "not-a-token", score())
    fake.revoke_tokens()
    revoked = post_score(client, token, score())

    assert (unknown.status_code, revoked.status_code) == (401, 401)


def test_lti13_fake_refuses_the_wrong_media_type(
    platform: tuple[FakeLti13Platform, httpx2.Client], token: str
) -> None:
    _, client = platform

    assert post_score(client, token, score(), media_type="application/json").status_code == 415


@pytest.mark.parametrize(
    "overrides",
    [{"activityProgress": "Done"}, {"gradingProgress": "Graded"}, {"userId": ""},
     {"scoreGiven": -1}, {"scoreMaximum": 0}, {"timestamp": "yesterday"},
     {"timestamp": "2026-11-27T10:00:00"}],
    ids=["activity", "grading", "user", "negative", "zero-maximum", "not-a-date", "no-zone"],
)  # fmt: skip
def test_lti13_fake_refuses_an_invalid_score(
    platform: tuple[FakeLti13Platform, httpx2.Client], token: str, overrides: dict[str, Any]
) -> None:
    fake, client = platform

    assert post_score(client, token, score(**overrides)).status_code == 400
    assert fake.received() == []


def test_lti13_fake_refuses_a_timestamp_not_later_than_the_last(
    platform: tuple[FakeLti13Platform, httpx2.Client], token: str
) -> None:
    fake, client = platform
    now = datetime.now(UTC)

    first = post_score(client, token, score(timestamp=now.isoformat()))
    same = post_score(client, token, score(timestamp=now.isoformat()))
    older = post_score(client, token, score(timestamp=(now - timedelta(seconds=1)).isoformat()))
    later = post_score(client, token, score(timestamp=(now + timedelta(seconds=1)).isoformat()))

    assert [r.status_code for r in (first, same, older, later)] == [204, 409, 409, 204]
    assert len(fake.received()) == 2
