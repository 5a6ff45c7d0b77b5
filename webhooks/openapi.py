"""The OpenAPI 3.1 description of the admin API, served at GET /api/openapi.json.

Written by hand next to webhooks/api.py; tests/test_openapi.py compares it with the app's routes
(an undocumented endpoint fails the build) and validates real answers against its schemas. The
event payload schema is the shipped worker/schemas/assessment.completed.json.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from worker import __version__
from worker.events import ASSESSMENT_COMPLETED, event_schema
from worker.requests import MAX_CONTEXT_BYTES, MAX_TEXT_LENGTH, MAX_URL_LENGTH
from worker.storage.records import (
    AttemptOutcome,
    DeliveryStatus,
    InvitationSource,
    InvitationStatus,
)

OPENAPI_PATH = "/api/openapi.json"

Schema = dict[str, Any]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: Schema) -> Schema:
    return {"oneOf": [schema, {"type": "null"}]}


def _object(required: list[str], properties: dict[str, Schema], **extra: Any) -> Schema:
    return {"type": "object", "required": required, "properties": properties, **extra}


def _record(properties: dict[str, Schema]) -> Schema:
    """A stored record as the API renders it: every field present, null when empty."""
    return _object(list(properties), properties)


def _json(schema: Schema, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_TIME: Schema = {"type": "string", "format": "date-time"}
_TEXT: Schema = {"type": "string", "minLength": 1, "maxLength": MAX_TEXT_LENGTH}
_POSITIVE: Schema = {
    "description": "A positive integer; a string of digits is accepted too.",
    "oneOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": "^\\s*\\d+\\s*$"}],
}
_IDENTIFIER: Schema = {"oneOf": [_TEXT, {"type": "integer"}]}
_CONTEXT: Schema = {
    "type": "object",
    "description": f"Passed through to the event's data.context; at most {MAX_CONTEXT_BYTES} "
    "bytes of JSON.",
}


def _enum(values: Any) -> Schema:
    return {"type": "string", "enum": [value.value for value in values]}


def _event_payload_schema() -> Schema:
    # Embedded as a component: the identifiers of the standalone file are dropped so that the
    # document has a single base URI.
    schema = event_schema(ASSESSMENT_COMPLETED)
    return {key: value for key, value in schema.items() if key not in ("$schema", "$id")}


def _schemas() -> dict[str, Schema]:
    return {
        "Error": _object(
            ["error", "message"],
            {"error": {"type": "string"}, "message": {"type": "string"}},
        ),
        "ValidationError": _object(
            ["error", "errors"],
            {
                "error": {"const": "invalid_request"},
                "errors": {
                    "type": "object",
                    "description": "Field or parameter name → what is wrong with it.",
                    "additionalProperties": {"type": "string"},
                },
            },
        ),
        "InvitationRequest": _object(
            ["email", "first_name", "last_name", "tst_frm_id"],
            {
                "email": {**_TEXT, "format": "email"},
                "first_name": _TEXT,
                "last_name": _TEXT,
                "tst_frm_id": {**_POSITIVE, "description": "The Isograd test to take."},
                "gender": {"enum": ["male", "female", "not_provided"]},
                "language": {
                    "description": "Isograd language code (1-8), ISO 639-1 code or English name.",
                    "oneOf": [{"type": "integer", "minimum": 1, "maximum": 8}, {"type": "string"}],
                },
                "ext_id": _IDENTIFIER,
                "group": _IDENTIFIER,
                "sub_com_id": _POSITIVE,
                "return_url": {"type": "string", "format": "uri", "maxLength": MAX_URL_LENGTH},
                "context": _CONTEXT,
            },
            additionalProperties=False,
        ),
        "InvitationCreated": _object(
            ["invitation_id", "pla_tst_id", "can_id", "test_url"],
            {
                "invitation_id": {"type": "string"},
                "pla_tst_id": _nullable({"type": "integer"}),
                "can_id": _nullable({"type": "integer"}),
                "test_url": _nullable({"type": "string", "format": "uri"}),
            },
        ),
        "Invitation": _record(
            {
                "id": {"type": "string"},
                "pla_tst_id": _nullable({"type": "integer"}),
                "tst_frm_id": {"type": "integer"},
                "can_id": _nullable({"type": "integer"}),
                "email": _nullable({"type": "string", "description": "null once purged"}),
                "first_name": _nullable({"type": "string"}),
                "last_name": _nullable({"type": "string"}),
                "ext_id": _nullable({"type": "string"}),
                "sub_com_id": _nullable({"type": "integer"}),
                "context": {"type": "object"},
                "test_url": _nullable({"type": "string"}),
                "status": _enum(InvitationStatus),
                "source": _enum(InvitationSource),
                "idempotency_key": _nullable({"type": "string"}),
                "created_at": _TIME,
                "completed_at": _nullable(_TIME),
                "next_check_at": _nullable(_TIME),
                "last_checked_at": _nullable(_TIME),
                "check_count": {"type": "integer", "minimum": 0},
                "last_status": _nullable(
                    {"type": "integer", "description": "The last act 10 sta_id seen."}
                ),
                "purged_at": _nullable(_TIME),
            },
        ),
        "WatchRequest": _object(
            ["pla_tst_id", "tst_frm_id", "email"],
            {
                "pla_tst_id": {**_POSITIVE, "description": "The Isograd test session to watch."},
                "tst_frm_id": _POSITIVE,
                "email": {**_TEXT, "format": "email"},
                "first_name": _TEXT,
                "last_name": _TEXT,
                "ext_id": _IDENTIFIER,
                "sub_com_id": _POSITIVE,
                "context": _CONTEXT,
            },
            additionalProperties=False,
        ),
        "WatchAnswer": _object(
            ["invitation_id", "pla_tst_id", "source", "created"],
            {
                "invitation_id": {"type": "string"},
                "pla_tst_id": _nullable({"type": "integer"}),
                "source": _enum(InvitationSource),
                "created": {"type": "boolean", "description": "false: it was already known"},
            },
        ),
        "AssessmentCompleted": _event_payload_schema(),
        "Event": _record(
            {
                "id": {"type": "string"},
                "type": {"type": "string", "examples": [ASSESSMENT_COMPLETED]},
                "invitation_id": _nullable({"type": "string"}),
                "pla_tst_id": {"type": "integer"},
                "payload": {
                    **_ref("AssessmentCompleted"),
                    "description": "The webhook body, as delivered (candidate blanked once "
                    "purged).",
                },
                "created_at": _TIME,
                "purged_at": _nullable(_TIME),
            },
        ),
        "Delivery": _record(
            {
                "id": {"type": "string"},
                "event_id": {"type": "string"},
                "subscription": {"type": "string"},
                "status": _enum(DeliveryStatus),
                "attempt_count": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "Attempts since created or last replayed.",
                },
                "next_attempt_at": _nullable(_TIME),
                "last_error": _nullable({"type": "string"}),
                "created_at": _TIME,
                "updated_at": _TIME,
                "delivered_at": _nullable(_TIME),
            },
        ),
        "Attempt": _record(
            {
                "id": {"type": "integer"},
                "delivery_id": {"type": "string"},
                "number": {"type": "integer", "minimum": 1},
                "started_at": _TIME,
                "duration_ms": {"type": "integer", "minimum": 0},
                "outcome": _enum(AttemptOutcome),
                "status_code": _nullable({"type": "integer"}),
                "error": _nullable({"type": "string"}),
                "response_body": _nullable(
                    {"type": "string", "description": "The receiver's answer, truncated (20 kB)."}
                ),
                "response_headers": {
                    "type": "object",
                    "additionalProperties": {"type": "string"},
                },
            },
        ),
        "DeliveryWithAttempts": {
            "allOf": [
                _ref("Delivery"),
                _object(["attempts"], {"attempts": {"type": "array", "items": _ref("Attempt")}}),
            ]
        },
        "DeliveryList": _object(
            ["deliveries"], {"deliveries": {"type": "array", "items": _ref("Delivery")}}
        ),
    }


_UNAUTHORIZED = _json(_ref("Error"), "Missing or wrong bearer token.")
_UNAUTHORIZED["headers"] = {"WWW-Authenticate": {"schema": {"type": "string", "const": "Bearer"}}}
_INVALID = _json(_ref("ValidationError"), "Invalid body or parameters; every problem listed.")
_ISOGRAD = _json(_ref("Error"), "Isograd refused the request or answered unexpectedly.")
_UNAVAILABLE = _json(_ref("Error"), "A dependency (database, broker, Isograd) is unavailable.")
_UNAVAILABLE["headers"] = {
    "Retry-After": {"schema": {"type": "integer"}, "description": "Seconds, when known."}
}


# Starlette refuses an oversized body before routing, as plain text.
_TOO_LARGE = {
    "description": "The body is over the web process's limit (64 KiB).",
    "content": {"text/plain": {"schema": {"type": "string"}}},
}


def _not_found(what: str) -> dict[str, Any]:
    return _json(_ref("Error"), f"No such {what}.")


def _path_id(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }


def _paths() -> dict[str, Any]:
    delivery_id = _path_id("delivery_id", "A delivery id (dlv_…).")
    return {
        "/api/invitations": {
            "post": {
                "operationId": "createInvitation",
                "summary": "Invite a candidate to an Isograd test",
                "description": "Creates the candidate and the test on Isograd (act 8, or act 2 "
                "for a known candidate) with our callback URL, and stores the invitation. With "
                "an Idempotency-Key, a repeated request answers the first invitation.",
                "parameters": [
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string", "minLength": 1, "maxLength": 200},
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("InvitationRequest")}},
                },
                "responses": {
                    "201": _json(_ref("InvitationCreated"), "Invited."),
                    "401": _UNAUTHORIZED,
                    "413": _TOO_LARGE,
                    "422": _INVALID,
                    "502": _ISOGRAD,
                    "503": _UNAVAILABLE,
                },
            }
        },
        "/api/invitations/{invitation_id}": {
            "get": {
                "operationId": "getInvitation",
                "summary": "Read one invitation",
                "parameters": [_path_id("invitation_id", "An invitation id (inv_…).")],
                "responses": {
                    "200": _json(_ref("Invitation"), "The invitation."),
                    "401": _UNAUTHORIZED,
                    "404": _not_found("invitation"),
                },
            }
        },
        "/api/watch": {
            "post": {
                "operationId": "watchAssessment",
                "summary": "Watch a test session created outside the relay",
                "description": "The reconciler checks it like an invitation and delivers its "
                "completion. Safe to repeat: an already watched session answers 200.",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("WatchRequest")}},
                },
                "responses": {
                    "201": _json(_ref("WatchAnswer"), "Now watched."),
                    "200": _json(_ref("WatchAnswer"), "Already known; nothing changed."),
                    "401": _UNAUTHORIZED,
                    "413": _TOO_LARGE,
                    "422": _INVALID,
                },
            }
        },
        "/api/events/{event_id}": {
            "get": {
                "operationId": "getEvent",
                "summary": "Read one stored event and its payload",
                "parameters": [_path_id("event_id", "An event id (evt_…).")],
                "responses": {
                    "200": _json(_ref("Event"), "The event."),
                    "401": _UNAUTHORIZED,
                    "404": _not_found("event"),
                },
            }
        },
        "/api/deliveries": {
            "get": {
                "operationId": "listDeliveries",
                "summary": "List deliveries, newest first (100 at most)",
                "parameters": [
                    {
                        "name": "status",
                        "in": "query",
                        "required": False,
                        "schema": _enum(DeliveryStatus),
                    }
                ],
                "responses": {
                    "200": _json(_ref("DeliveryList"), "The deliveries."),
                    "401": _UNAUTHORIZED,
                    "422": _INVALID,
                },
            }
        },
        "/api/deliveries/{delivery_id}": {
            "get": {
                "operationId": "getDelivery",
                "summary": "Read one delivery with every attempt",
                "parameters": [delivery_id],
                "responses": {
                    "200": _json(_ref("DeliveryWithAttempts"), "The delivery."),
                    "401": _UNAUTHORIZED,
                    "404": _not_found("delivery"),
                },
            }
        },
        "/api/deliveries/{delivery_id}/replay": {
            "post": {
                "operationId": "replayDelivery",
                "summary": "Send a delivery again, now, with a fresh retry budget",
                "description": "The receiver gets the same webhook-id again. A delivered "
                "delivery is only sent again with force=true; one being sent right now cannot "
                "be replayed (409).",
                "parameters": [
                    delivery_id,
                    {
                        "name": "force",
                        "in": "query",
                        "required": False,
                        "description": "Replay a delivery that was already delivered.",
                        "schema": {"type": "boolean", "default": False},
                    },
                ],
                "responses": {
                    "202": _json(_ref("Delivery"), "Requeued."),
                    "401": _UNAUTHORIZED,
                    "404": _not_found("delivery"),
                    "409": _json(_ref("Error"), "Already delivered (without force), or in flight."),
                },
            }
        },
        OPENAPI_PATH: {
            "get": {
                "operationId": "getOpenApi",
                "summary": "This description",
                "security": [],
                "responses": {"200": _json({"type": "object"}, "The OpenAPI 3.1 document.")},
            }
        },
    }


def openapi_document() -> dict[str, Any]:
    """The whole OpenAPI 3.1 document (a fresh dict each call)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "isograd-relay admin API",
            "version": __version__,
            "description": "Invite candidates to Isograd tests, read stored events and "
            "deliveries, replay failed deliveries. Every endpoint but this description needs "
            "`Authorization: Bearer <ADMIN_TOKEN>`; without ADMIN_TOKEN the API is closed.",
        },
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "security": [{"bearerAuth": []}],
        "paths": _paths(),
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The relay's ADMIN_TOKEN.",
                }
            },
            "schemas": _schemas(),
        },
    }


def openapi_routes() -> list[BaseRoute]:
    """GET /api/openapi.json, public (it describes the API, it reveals no data); mount it
    before the authenticated /api mount so it matches first."""
    document = openapi_document()

    async def openapi(request: Request) -> JSONResponse:
        return JSONResponse(document)

    return [Route(OPENAPI_PATH, openapi, methods=["GET"])]
