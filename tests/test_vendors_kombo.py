"""The Kombo fake refuses what Kombo's OpenAPI says Kombo refuses, and keeps the rest."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.vendors.kombo import FakeKombo, ScriptedAnswer, sign

API_KEY = "kombo-api-key-0123456789"
INTEGRATION = "workday:HWUTwvyx2wLoSUHphiWVrp28"
SECRET = "kombo-webhook-secret-0123456789"
PACKAGE = {"id": "tosa-excel", "type": "SKILLS_TEST", "name": "TOSA Excel", "description": "x"}
RESULT = {
    "status": "COMPLETED",
    "result_url": "https://x.example/r.pdf",
    "completed_at": "2026-11-27T10:15:00.000Z",
}


@pytest.fixture
def fake() -> FakeKombo:
    return FakeKombo(API_KEY, INTEGRATION, SECRET)


@pytest.fixture
def http(fake: FakeKombo) -> Iterator[TestClient]:
    with TestClient(fake.app, base_url="http://kombo.test") as client:
        client.headers.update(
            {"Authorization": f"Bearer {API_KEY}", "X-Integration-Id": INTEGRATION}
        )
        yield client


def publish(http: TestClient, *packages: dict[str, Any]) -> Any:
    return http.put("/v1/assessment/packages", json={"packages": list(packages or [PACKAGE])})


def test_published_packages_replace_the_previous_list(fake: FakeKombo, http: TestClient) -> None:
    publish(http, PACKAGE, {**PACKAGE, "id": "tosa-word"})

    response = publish(http, PACKAGE)

    assert response.json() == {"status": "success", "data": {}, "warnings": []}
    assert list(fake.packages) == ["tosa-excel"]


@pytest.mark.parametrize(
    "package",
    [{**PACKAGE, "type": "EXAM"}, {k: v for k, v in PACKAGE.items() if k != "description"}],
)
def test_a_package_off_the_schema_is_refused_with_kombos_error_shape(
    http: TestClient, package: dict[str, Any]
) -> None:
    response = publish(http, package)

    assert response.status_code == 400
    body = response.json()
    assert body["status"] == "error"
    assert body["error"]["code"] == "PLATFORM.INPUT_INVALID"


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({"Authorization": "Bearer wrong"}, 401, "PLATFORM.AUTHENTICATION_INVALID"),
        ({"X-Integration-Id": "greenhouse:other"}, 404, "PLATFORM.INTEGRATION_NOT_FOUND"),
    ],
)
def test_a_wrong_key_or_integration_is_refused(
    http: TestClient, headers: dict[str, str], status: int, code: str
) -> None:
    response = http.get("/v1/assessment/orders/open", headers=headers)

    assert (response.status_code, response.json()["error"]["code"]) == (status, code)


def test_open_orders_are_paginated_by_cursor(fake: FakeKombo, http: TestClient) -> None:
    publish(http)
    created = [fake.create_order("tosa-excel", email=f"c{i}@example.org")["id"] for i in range(5)]

    seen, cursor, pages = [], None, 0
    while True:
        params = {"page_size": 2, **({"cursor": cursor} if cursor else {})}
        data = http.get("/v1/assessment/orders/open", params=params).json()["data"]
        seen += [order["id"] for order in data["results"]]
        pages += 1
        cursor = data["next"]
        if cursor is None:
            break

    assert (seen, pages) == (created, 3)


@pytest.mark.parametrize("size", ["0", "251", "x"])
def test_page_size_outside_1_to_250_is_refused(http: TestClient, size: str) -> None:
    assert http.get("/v1/assessment/orders/open", params={"page_size": size}).status_code == 400


def test_a_completed_order_leaves_the_open_list_and_cannot_change_again(
    fake: FakeKombo, http: TestClient
) -> None:
    publish(http)
    order = fake.create_order("tosa-excel", email="a@example.org")

    first = http.put(f"/v1/assessment/orders/{order['id']}/result", json=RESULT)
    cancel = http.put(
        f"/v1/assessment/orders/{order['id']}/result", json={**RESULT, "status": "CANCELLED"}
    )

    assert first.status_code == 200
    assert cancel.status_code == 409
    assert http.get("/v1/assessment/orders/open").json()["data"]["results"] == []
    assert len(fake.results_of(order["id"])) == 1


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"status": "DONE"}, "status"),
        ({"result_url": None}, "result_url"),
        ({"completed_at": None}, "completed_at"),
        ({"completed_at": "27/11/2026"}, "completed_at"),
        ({"score": "90"}, "score"),
        ({"attributes": [{"type": "TEXT", "label": "x"}]}, "attributes[0]"),
        (
            {
                "attributes": [
                    {
                        "type": "SUB_RESULT",
                        "id": "1",
                        "label": "x",
                        "score": {"value": 3, "max": 0.5},
                        "status": "COMPLETED",
                    }
                ]
            },
            "attributes[0].score",
        ),
        (
            {
                "attributes": [
                    {
                        "type": "SUB_RESULT",
                        "id": "1",
                        "label": "x",
                        "score": {"value": 3, "max": 5},
                        "status": "DONE",
                    }
                ]
            },
            "attributes[0].status",
        ),
        ({"attachments": [{"name": "r.pdf", "data": "JVBERi0="}]}, "attachments[0].content_type"),
        (
            {"attachments": [{"name": "r.pdf", "content_type": "pdf", "data": "JVBERi0="}]},
            "attachments[0].content_type",
        ),
        (
            {"attachments": [{"name": "r.pdf", "content_type": "application/pdf", "data": "%%%"}]},
            "attachments[0].data",
        ),
        (
            {
                "attachments": [
                    {"name": f"{i}.pdf", "data_url": "https://x.example"} for i in range(6)
                ]
            },
            "attachments",
        ),
    ],
)
def test_a_result_off_the_schema_is_refused_and_the_order_stays_open(
    fake: FakeKombo, http: TestClient, changes: dict[str, Any], problem: str
) -> None:
    publish(http)
    order = fake.create_order("tosa-excel", email="a@example.org")
    body = {k: v for k, v in {**RESULT, **changes}.items() if v is not None}

    response = http.put(f"/v1/assessment/orders/{order['id']}/result", json=body)

    assert response.status_code == 400
    assert problem in response.json()["error"]["message"]
    assert fake.orders[order["id"]]["status"] == "OPEN"


def test_a_result_for_an_unknown_order_is_404(http: TestClient) -> None:
    assert http.put("/v1/assessment/orders/nope/result", json=RESULT).status_code == 404


def test_an_order_needs_a_published_package(fake: FakeKombo) -> None:
    with pytest.raises(AssertionError, match="never published"):
        fake.create_order("tosa-excel", email="a@example.org")


def test_a_scripted_answer_replaces_the_next_result(fake: FakeKombo, http: TestClient) -> None:
    publish(http)
    order = fake.create_order("tosa-excel", email="a@example.org")
    fake.script(ScriptedAnswer(429, {"Retry-After": "3"}))

    first = http.put(f"/v1/assessment/orders/{order['id']}/result", json=RESULT)
    second = http.put(f"/v1/assessment/orders/{order['id']}/result", json=RESULT)

    assert (first.status_code, second.status_code) == (429, 200)


def test_the_webhook_signature_is_unpadded_base64url_hmac_of_the_body(fake: FakeKombo) -> None:
    fake.packages["tosa-excel"] = PACKAGE
    body, headers = fake.order_received(fake.create_order("tosa-excel", email="a@example.org"))

    digest = hmac.new(SECRET.encode(), body, hashlib.sha256).digest()
    assert headers["x-kombo-signature"] == base64.urlsafe_b64encode(digest).decode().rstrip("=")
    assert "=" not in sign(SECRET, b"x")
