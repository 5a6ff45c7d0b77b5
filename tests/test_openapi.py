"""Tests of the admin API's OpenAPI description: its structure, its coverage of the app's /api
routes, and real answers of the API validated against the schemas it documents."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

import httpx2
import pytest
from jsonschema import Draft202012Validator
from starlette.routing import BaseRoute, Mount, Route
from starlette.testclient import TestClient

from tests.fixtures.dashboard import fail_delivery, store_event
from tests.fixtures.pipeline import EMAIL, EXCEL
from webhooks.api.openapi import OPENAPI_PATH, openapi_document
from webhooks.app import MAX_BODY_BYTES
from worker.events import ASSESSMENT_COMPLETED, event_schema
from worker.storage.store import SqlStore

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


@pytest.fixture
def document(web: TestClient) -> dict[str, Any]:
    """The document assembled from the app's routes, as the app serves it."""
    return openapi_document(web.app.routes)  # type: ignore[attr-defined]


def api_operations(routes: Sequence[BaseRoute], prefix: str = "") -> set[tuple[str, str]]:
    """(path template, method) of every route under /api, as the app routes them."""
    found: set[tuple[str, str]] = set()
    for route in routes:
        if isinstance(route, Mount):
            found |= api_operations(route.routes, prefix + route.path)
        elif isinstance(route, Route) and (prefix + route.path).startswith("/api/"):
            # `{id:int}` in Starlette is `{id}` in OpenAPI.
            template = re.sub(r"\{(\w+):\w+\}", r"{\1}", prefix + route.path)
            methods = (route.methods or set()) - {"HEAD"}
            found |= {(template, method.lower()) for method in methods}
    return found


def documented_operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (path, method)
        for path, item in document["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


def refs(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def assert_documented(
    document: dict[str, Any], template: str, method: str, response: httpx2.Response
) -> None:
    """The answer's status is documented for this operation and its body fits the schema."""
    responses = document["paths"][template][method]["responses"]
    assert str(response.status_code) in responses, (template, method, response.status_code)
    content = responses[str(response.status_code)].get("content", {})
    media_type = response.headers["content-type"].partition(";")[0]
    assert media_type in content, (template, method, media_type)
    if media_type != "application/json":
        return
    schema = content[media_type]["schema"]
    validator = Draft202012Validator({**schema, "components": document["components"]})
    errors = [error.message for error in validator.iter_errors(response.json())]
    assert errors == [], (template, method, errors)


# -- the document -------------------------------------------------------------------------------


def test_the_description_is_served_as_json_without_a_token(
    web: TestClient, document: dict[str, Any]
) -> None:
    response = web.get(OPENAPI_PATH)

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == document


def test_a_route_without_a_declared_operation_is_left_out_so_the_coverage_test_fails() -> None:
    async def undocumented(request: Any) -> Any:
        raise AssertionError("never called")

    routes = [Mount("/api", routes=[Route("/hidden", undocumented, methods=["GET"])])]

    assert api_operations(routes) == {("/api/hidden", "get")}
    assert documented_operations(openapi_document(routes)) == set()


def test_the_document_has_the_required_openapi_3_1_fields(document: dict[str, Any]) -> None:
    assert re.fullmatch(r"3\.1\.\d+", document["openapi"])
    assert {"title", "version"} <= set(document["info"])
    assert all(path.startswith("/") for path in document["paths"])


def test_every_api_route_of_the_app_is_documented_and_nothing_else(
    web: TestClient, document: dict[str, Any]
) -> None:
    app_operations = api_operations(web.app.routes)  # type: ignore[attr-defined]

    assert app_operations == documented_operations(document)


def test_the_api_requires_the_bearer_scheme_except_for_the_description(
    document: dict[str, Any],
) -> None:
    scheme = document["components"]["securitySchemes"]["bearerAuth"]
    public = {
        (path, method)
        for path, method in documented_operations(document)
        if document["paths"][path][method].get("security") == []
    }

    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert document["security"] == [{"bearerAuth": []}]
    assert public == {(OPENAPI_PATH, "get")}


def test_every_protected_operation_documents_401(document: dict[str, Any]) -> None:
    missing = [
        (path, method)
        for path, method in documented_operations(document)
        if document["paths"][path][method].get("security") != []
        and "401" not in document["paths"][path][method]["responses"]
    ]

    assert missing == []


def test_operation_ids_are_unique(document: dict[str, Any]) -> None:
    ids = [document["paths"][p][m]["operationId"] for p, m in documented_operations(document)]

    assert len(ids) == len(set(ids))


def test_path_parameters_are_declared_for_every_template_variable(
    document: dict[str, Any],
) -> None:
    for path, method in documented_operations(document):
        variables = set(re.findall(r"\{(\w+)\}", path))
        declared = {
            parameter["name"]
            for parameter in document["paths"][path][method].get("parameters", [])
            if parameter["in"] == "path"
        }
        assert declared == variables, (path, method)


def test_every_schema_is_a_valid_json_schema_2020_12(document: dict[str, Any]) -> None:
    for schema in document["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)  # raises SchemaError naming the problem


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    for ref in refs(document):
        assert resolve(document, ref) is not None


def test_the_event_payload_is_the_shipped_schema(document: dict[str, Any]) -> None:
    shipped = event_schema(ASSESSMENT_COMPLETED)

    documented = document["components"]["schemas"]["AssessmentCompleted"]

    assert documented["properties"] == shipped["properties"]
    assert documented["required"] == shipped["required"]


# -- real answers fit the documented schemas -------------------------------------------------------


def invitation_body() -> dict[str, Any]:
    return {"email": EMAIL, "first_name": "Ada", "last_name": "Lovelace", "tst_frm_id": EXCEL}


def test_a_created_invitation_and_its_reading_fit_their_schemas(
    admin: TestClient, document: dict[str, Any]
) -> None:
    created = admin.post("/api/invitations", json=invitation_body())
    read = admin.get(f"/api/invitations/{created.json()['invitation_id']}")

    assert_documented(document, "/api/invitations", "post", created)
    assert_documented(document, "/api/invitations/{invitation_id}", "get", read)


def test_an_invalid_invitation_fits_the_validation_error_schema(
    admin: TestClient, document: dict[str, Any]
) -> None:
    response = admin.post("/api/invitations", json={"email": "nope"})

    assert_documented(document, "/api/invitations", "post", response)


def test_a_body_over_the_limit_fits_the_error_schema(
    admin: TestClient, document: dict[str, Any]
) -> None:
    response = admin.post("/api/invitations", content=b"{" + b" " * MAX_BODY_BYTES + b"}")

    assert_documented(document, "/api/invitations", "post", response)


def test_a_watched_test_fits_its_schema(admin: TestClient, document: dict[str, Any]) -> None:
    response = admin.post(
        "/api/watch", json={"pla_tst_id": 77, "tst_frm_id": EXCEL, "email": EMAIL}
    )

    assert_documented(document, "/api/watch", "post", response)


def test_a_stored_event_fits_its_schema_payload_included(
    admin: TestClient, store: SqlStore, document: dict[str, Any]
) -> None:
    event, _ = store_event(store)

    response = admin.get(f"/api/events/{event.id}")

    assert_documented(document, "/api/events/{event_id}", "get", response)


def test_deliveries_with_attempts_and_a_replay_fit_their_schemas(
    admin: TestClient, store: SqlStore, document: dict[str, Any]
) -> None:
    _, deliveries = store_event(store)
    delivery_id = fail_delivery(store, deliveries[0].id).id

    listed = admin.get("/api/deliveries", params={"status": "failed"})
    read = admin.get(f"/api/deliveries/{delivery_id}")
    replayed = admin.post(f"/api/deliveries/{delivery_id}/replay")

    assert len(read.json()["attempts"]) == 1
    assert_documented(document, "/api/deliveries", "get", listed)
    assert_documented(document, "/api/deliveries/{delivery_id}", "get", read)
    assert_documented(document, "/api/deliveries/{delivery_id}/replay", "post", replayed)


def test_unknown_ids_and_wrong_tokens_fit_the_error_schema(
    admin: TestClient, document: dict[str, Any]
) -> None:
    missing = admin.get("/api/events/evt_nope")
    unauthorized = admin.get("/api/deliveries", headers={"Authorization": "Bearer wrong"})

    assert_documented(document, "/api/events/{event_id}", "get", missing)
    assert_documented(document, "/api/deliveries", "get", unauthorized)


def test_the_listings_and_their_refusals_fit_their_schemas(
    admin: TestClient, store: SqlStore, document: dict[str, Any]
) -> None:
    store_event(store)
    store_event(store, 1002)

    invitations = admin.get("/api/invitations", params={"limit": 1})
    events = admin.get("/api/events", params={"limit": 1, "status": "pending"})
    refused = admin.get("/api/events", params={"limit": "x"})

    assert invitations.json()["next_cursor"] is not None
    assert_documented(document, "/api/invitations", "get", invitations)
    assert_documented(document, "/api/events", "get", events)
    assert_documented(document, "/api/events", "get", refused)


def test_a_bulk_replay_and_its_refusal_fit_their_schemas(
    admin: TestClient, store: SqlStore, document: dict[str, Any]
) -> None:
    _, deliveries = store_event(store)
    fail_delivery(store, deliveries[0].id)

    replayed = admin.post("/api/deliveries/replay", json={"status": "failed"})
    refused = admin.post("/api/deliveries/replay", json={"status": "delivered"})

    assert replayed.json()["requeued"] == 1
    assert_documented(document, "/api/deliveries/replay", "post", replayed)
    assert_documented(document, "/api/deliveries/replay", "post", refused)


def test_subscriptions_and_their_switches_fit_their_schemas(
    admin: TestClient, store: SqlStore, document: dict[str, Any]
) -> None:
    store_event(store)  # a delivery to "hr", a name relay.toml does not configure here

    listed = admin.get("/api/subscriptions")
    unknown = admin.post("/api/subscriptions/hr/disable")

    assert [entry["name"] for entry in listed.json()["subscriptions"]] == ["hr"]
    assert_documented(document, "/api/subscriptions", "get", listed)
    assert_documented(document, "/api/subscriptions/{name}/disable", "post", unknown)


def test_an_erasure_and_its_refusal_fit_their_schemas(
    admin: TestClient, store: SqlStore, document: dict[str, Any]
) -> None:
    store_event(store)

    erased = admin.post("/api/erasure", json={"email": EMAIL, "isograd": True})
    refused = admin.post("/api/erasure", json={"email": "nope"})

    assert erased.json()["isograd"] == "unknown candidate"  # stored here, never sent to Isograd
    assert_documented(document, "/api/erasure", "post", erased)
    assert_documented(document, "/api/erasure", "post", refused)
