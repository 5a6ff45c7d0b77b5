"""The vendor fakes refuse what the real services refuse, so sink tests against them mean
something."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import urlencode

import httpx2
import pytest

from tests.receiver import RecordingReceiver, Responder
from tests.vendors.chat_hris import FakeHiBob, FakePersonio, FakeSlack, FakeTeams, transport

JSON = {"content-type": "application/json"}


def post(
    fake: Responder,
    path: str,
    body: Any,
    headers: dict[str, str] | None = None,
    *,
    method: str = "POST",
) -> httpx2.Response:
    with httpx2.Client(transport=transport(fake), base_url="https://vendor.test") as client:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return client.request(method, path, content=content, headers=headers or JSON)


# Slack

SLACK_OK = {
    "text": "hello",
    "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}],
}


def test_slack_accepts_text_and_blocks_with_ok() -> None:
    fake = FakeSlack()

    answer = post(fake, fake.path, SLACK_OK)

    assert (answer.status_code, answer.text) == (200, "ok")
    assert fake.messages == [SLACK_OK]


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (b"not json", 400, "invalid_payload"),
        ({"blocks": []}, 400, "no_text"),
        ({"text": "x", "blocks": [{"type": "table"}]}, 400, "invalid_blocks"),
        (
            {"text": "x", "blocks": [{"type": "header", "text": {"type": "mrkdwn", "text": "h"}}]},
            400,
            "invalid_blocks",
        ),
        (
            {
                "text": "x",
                "blocks": [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}],
            },
            400,
            "invalid_blocks",
        ),
        (
            {
                "text": "x",
                "blocks": [{"type": "section", "fields": [{"type": "mrkdwn", "text": "f"}] * 11}],
            },
            400,
            "invalid_blocks",
        ),
    ],
)
def test_slack_refuses_what_slack_refuses(body: Any, status: int, error: str) -> None:
    fake = FakeSlack()

    answer = post(fake, fake.path, body)

    assert (answer.status_code, answer.text) == (status, error)
    assert fake.messages == []


def test_slack_answers_another_path_404_an_archived_channel_410_and_a_limit_429() -> None:
    fake = FakeSlack()
    assert post(fake, "/services/T0001/B0001/wrong", SLACK_OK).status_code == 404
    fake.archived = True
    assert (post(fake, fake.path, SLACK_OK).status_code, fake.messages) == (410, [])
    fake.archived, fake.rate_limited = False, True
    answer = post(fake, fake.path, SLACK_OK)
    assert (answer.status_code, answer.headers["retry-after"]) == (429, "30")


def test_slack_refuses_a_body_not_announced_as_json() -> None:
    fake = FakeSlack()

    answer = post(fake, fake.path, SLACK_OK, {"content-type": "text/plain"})

    assert (answer.status_code, answer.text) == (400, "invalid_payload")


# Teams

CARD = {"type": "AdaptiveCard", "version": "1.4", "body": [{"type": "TextBlock", "text": "hi"}]}
MESSAGE = {
    "type": "message",
    "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "content": CARD}],
}


def test_teams_accepts_an_adaptive_card_message_with_202() -> None:
    fake = FakeTeams()

    answer = post(fake, fake.url_path(), MESSAGE)

    assert answer.status_code == 202
    assert fake.cards == [CARD]


def test_teams_refuses_a_wrong_signature() -> None:
    fake = FakeTeams()

    assert post(fake, f"{fake.path}?sig=other", MESSAGE).status_code == 401


@pytest.mark.parametrize(
    "message",
    [
        {"type": "message", "attachments": []},
        {**MESSAGE, "type": "event"},
        {
            "type": "message",
            "attachments": [
                {"contentType": "application/vnd.microsoft.card.hero", "content": CARD}
            ],
        },
        {
            "type": "message",
            "attachments": [
                {
                    "contentType": "application/vnd.microsoft.card.adaptive",
                    "content": {**CARD, "version": "2.0"},
                }
            ],
        },
        {
            "type": "message",
            "attachments": [
                {
                    "contentType": "application/vnd.microsoft.card.adaptive",
                    "content": {
                        **CARD,
                        "body": [{"type": "FactSet", "facts": [{"title": "a", "value": 1}]}],
                    },
                }
            ],
        },
        {
            "type": "message",
            "attachments": [
                {
                    "contentType": "application/vnd.microsoft.card.adaptive",
                    "content": {**CARD, "actions": [{"type": "Action.Submit"}]},
                }
            ],
        },
    ],
)
def test_teams_refuses_what_is_not_a_renderable_adaptive_card(message: Any) -> None:
    fake = FakeTeams()

    assert post(fake, fake.url_path(), message).status_code == 400
    assert fake.cards == []


# HiBob

EMPLOYEE = "3332883884017713238"
TABLE = "category_1645574919835__table_1645574978483"


def basic(user: str, token: str) -> dict[str, str]:
    return {
        **JSON,
        "authorization": "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode(),
    }


def test_hibob_adds_a_row_with_basic_auth() -> None:
    fake = FakeHiBob()

    answer = post(
        fake,
        f"/v1/people/custom-tables/{EMPLOYEE}/{TABLE}",
        {"values": {"a": 1}},
        basic(fake.service_user, fake.token),
    )

    assert answer.status_code == 200
    assert fake.rows == [(EMPLOYEE, TABLE, {"a": 1})]


@pytest.mark.parametrize(
    ("path", "body", "token", "status"),
    [
        (f"/v1/people/custom-tables/{EMPLOYEE}/{TABLE}", {"values": {}}, "wrong", 401),
        (f"/v1/people/custom-tables/999/{TABLE}", {"values": {}}, None, 404),
        (f"/v1/people/custom-tables/{EMPLOYEE}/other", {"values": {}}, None, 404),
        (f"/v1/people/custom-tables/{EMPLOYEE}/{TABLE}", {"value": {}}, None, 400),
    ],
)
def test_hibob_refuses_bad_credentials_paths_and_bodies(
    path: str, body: Any, token: str | None, status: int
) -> None:
    fake = FakeHiBob()

    answer = post(fake, path, body, basic(fake.service_user, token or fake.token))

    assert answer.status_code == status
    assert fake.rows == []


# Personio


def personio_token(fake: FakePersonio, secret: str | None = None) -> httpx2.Response:
    form = urlencode(
        {
            "grant_type": "client_credentials",
            "client_id": fake.client_id,
            "client_secret": secret or fake.client_secret,
        }
    )
    return post(
        fake, "/v2/auth/token", form.encode(), {"content-type": "application/x-www-form-urlencoded"}
    )


def test_personio_issues_a_token_and_updates_a_person_with_it() -> None:
    fake = FakePersonio()
    token = personio_token(fake).json()["access_token"]
    attributes = [{"id": "dynamic_99", "value": "55"}]

    answer = post(
        fake,
        "/v2/persons/12345",
        {"custom_attributes": attributes},
        {**JSON, "authorization": f"Bearer {token}"},
        method="PATCH",
    )

    assert answer.status_code == 204
    assert fake.updates == [("12345", attributes)]


def test_personio_refuses_a_wrong_secret_and_a_revoked_token() -> None:
    fake = FakePersonio()
    assert personio_token(fake, "wrong").status_code == 401
    token = personio_token(fake).json()["access_token"]
    fake.revoke_tokens()

    answer = post(
        fake,
        "/v2/persons/12345",
        {"custom_attributes": []},
        {**JSON, "authorization": f"Bearer {token}"},
        method="PATCH",
    )

    assert answer.status_code == 401


@pytest.mark.parametrize(
    ("path", "method", "body", "status"),
    [
        ("/v2/persons/12345", "POST", {"custom_attributes": []}, 404),
        ("/v2/persons/999", "PATCH", {"custom_attributes": []}, 404),
        ("/v2/persons/12345", "PATCH", {"custom_attributes": [{"value": 1}]}, 400),
    ],
)
def test_personio_refuses_wrong_methods_persons_and_bodies(
    path: str, method: str, body: Any, status: int
) -> None:
    fake = FakePersonio()
    token = personio_token(fake).json()["access_token"]

    answer = post(fake, path, body, {**JSON, "authorization": f"Bearer {token}"}, method=method)

    assert answer.status_code == status


def test_a_fake_answers_over_real_http_through_the_receiver() -> None:
    fake = FakeSlack()
    with RecordingReceiver(responder=fake) as receiver:
        answer = httpx2.post(receiver.url(fake.path), json=SLACK_OK)

    assert (answer.status_code, answer.text) == (200, "ok")
    assert fake.messages == [SLACK_OK]
