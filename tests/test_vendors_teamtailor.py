"""The Teamtailor fake refuses what tt-partner-docs says Teamtailor refuses, and keeps the rest."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.vendors.teamtailor import (
    API_VERSION,
    MEDIA_TYPE,
    FakeTeamtailor,
    ScriptedAnswer,
    depth,
    sign_partner_event,
)

API_KEY = "tt-api-key-0123456789"


@pytest.fixture
def fake() -> FakeTeamtailor:
    return FakeTeamtailor(API_KEY)


@pytest.fixture
def http(fake: FakeTeamtailor) -> Iterator[TestClient]:
    with TestClient(fake.app, base_url=fake.base_url) as client:
        yield client


def headers(**changes: str) -> dict[str, str]:
    base = {
        "Authorization": f"Bearer {API_KEY}",
        "X-Api-Version": API_VERSION,
        "Content-Type": MEDIA_TYPE,
    }
    return {**base, **changes}


def put(http: TestClient, result_id: str, attributes: dict[str, Any], **header_changes: str) -> Any:
    document = {"data": {"type": "partner-results", "id": result_id, "attributes": attributes}}
    return http.put(
        f"/partner/v1/partner-results/{result_id}",
        json=document,
        headers=headers(**header_changes),
    )


def test_a_valid_update_is_stored_and_answered_as_a_jsonapi_document(
    fake: FakeTeamtailor, http: TestClient
) -> None:
    result_id = fake.create_result()
    attributes = {
        "status": "completed",
        "summary": "done",
        "url": "https://reports.example/1.pdf",
        "assessment": {"score": 82, "duration": 1934},
        "details": {"Grade": "820/1000", "Skills": {"Formulas": "4/5"}},
    }

    response = put(http, result_id, attributes)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith(MEDIA_TYPE)
    assert response.json()["data"]["attributes"]["status"] == "completed"
    [update] = fake.updates_of(result_id)
    assert update.attributes == attributes
    assert fake.results[result_id]["assessment"]["score"] == 82


def test_token_scheme_of_the_authentication_page_is_accepted(
    fake: FakeTeamtailor, http: TestClient
) -> None:
    result_id = fake.create_result()

    response = put(http, result_id, {"status": "sent"}, Authorization=f"Token {API_KEY}")

    assert response.status_code == 200


@pytest.mark.parametrize(
    ("header_changes", "status"),
    [
        ({"Authorization": "Bearer wrong-key"}, 401),
        ({"Authorization": API_KEY}, 401),
        ({"X-Api-Version": "20170101"}, 400),
        ({"Content-Type": "application/json"}, 415),
    ],
)
def test_wrong_credentials_version_or_media_type_are_refused(
    fake: FakeTeamtailor, http: TestClient, header_changes: dict[str, str], status: int
) -> None:
    result_id = fake.create_result()

    response = put(http, result_id, {"status": "sent"}, **header_changes)

    assert response.status_code == status
    assert response.json()["errors"]
    assert fake.updates == []


@pytest.mark.parametrize(
    ("attributes", "pointer"),
    [
        ({"status": "done"}, "/data/attributes/status"),
        ({"assessment": {"score": 101}}, "/data/attributes/assessment/score"),
        ({"assessment": {"score": -1}}, "/data/attributes/assessment/score"),
        ({"assessment": {"score": 82.5}}, "/data/attributes/assessment/score"),
        ({"assessment": {"grade": "excellent"}}, "/data/attributes/assessment/grade"),
        ({"assessment": {"duration": "32 minutes"}}, "/data/attributes/assessment/duration"),
        ({"url": "ftp://example.org/x"}, "/data/attributes/url"),
        ({"details": {"a": {"b": {"c": "deep"}}}}, "/data/attributes/details"),
        ({"attachments": [{"url": "https://x.example"}]}, "/data/attributes/attachments"),
        ({"candidate-id": 5}, "/data/attributes/candidate-id"),
        ({"score": 5}, "/data/attributes/score"),
    ],
)
def test_attributes_against_the_update_rules_answer_422_with_a_pointer(
    fake: FakeTeamtailor, http: TestClient, attributes: dict[str, Any], pointer: str
) -> None:
    result_id = fake.create_result()

    response = put(http, result_id, attributes)

    assert response.status_code == 422
    pointers = [e["source"]["pointer"] for e in response.json()["errors"]]
    assert pointer in pointers
    assert fake.results[result_id]["status"] == "sending"


def test_grade_null_and_duration_as_hh_mm_ss_are_valid(
    fake: FakeTeamtailor, http: TestClient
) -> None:
    result_id = fake.create_result()

    response = put(http, result_id, {"assessment": {"grade": None, "duration": "0:32:14"}})

    assert response.status_code == 200


def test_an_id_that_does_not_match_the_url_is_a_conflict(
    fake: FakeTeamtailor, http: TestClient
) -> None:
    result_id, other = fake.create_result(), fake.create_result()
    document = {"data": {"type": "partner-results", "id": other, "attributes": {}}}

    response = http.put(
        f"/partner/v1/partner-results/{result_id}", json=document, headers=headers()
    )

    assert response.status_code == 409


def test_an_unknown_partner_result_is_404(http: TestClient) -> None:
    response = put(http, "no-such-result", {"status": "sent"})

    assert response.status_code == 404


def test_a_scripted_answer_replaces_the_next_update(fake: FakeTeamtailor, http: TestClient) -> None:
    result_id = fake.create_result()
    fake.script(ScriptedAnswer(429, {"Retry-After": "7"}))

    first = put(http, result_id, {"status": "sent"})
    second = put(http, result_id, {"status": "sent"})

    assert (first.status_code, first.headers["retry-after"]) == (429, "7")
    assert second.status_code == 200
    assert len(fake.updates_of(result_id)) == 1


def test_depth_counts_nested_objects_and_arrays() -> None:
    assert depth("x") == 0
    assert depth({"a": "b"}) == 1
    assert depth({"a": {"b": "c"}}) == 2
    assert depth({"a": [{"b": "c"}]}) == 3


def test_partner_event_signature_is_hex_hmac_of_timestamp_dot_event_id() -> None:
    signature = sign_partner_event("key", "f3d7e8e2", timestamp=1539756759)

    expected = hmac.new(b"key", b"1539756759.f3d7e8e2", hashlib.sha256).hexdigest()
    assert signature == f"t=1539756759,v1={expected}"


def test_partner_event_carries_the_update_url_of_its_result(fake: FakeTeamtailor) -> None:
    result_id = fake.create_result()

    event = fake.partner_event(result_id, email="a@example.org")["partner-event"]

    assert event["partner-result"]["update-url"] == fake.update_url(result_id)
    assert event["candidate"]["email"] == "a@example.org"
