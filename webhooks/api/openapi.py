"""The OpenAPI 3.1 description of the admin API, assembled from the operations declared on the
endpoints themselves (`@operation(...)`) and served at GET /api/openapi.json.

Each endpoint carries its own description (summary, parameters, request body, answers by status);
this module walks the app's routes and gathers them. Answer schemas come from the types the API
renders (frozen dataclasses, through pydantic's JSON Schema generator) and request schemas from
the request models that validate the bodies (worker/requests.py), so neither can drift from the
code; a body no model validates is declared once, beside its endpoint (`Body`).
tests/test_openapi.py checks every /api route is documented and validates real answers against
the document.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, TypeAdapter
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Mount, Route

from worker import __version__
from worker.events import ASSESSMENT_COMPLETED, event_schema

OPENAPI_PATH = "/api/openapi.json"
COMPONENTS = "#/components/schemas/"

Schema = dict[str, Any]
Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class Answer:
    """One documented answer: `body` is a rendered type (its schema is generated), a component
    name (a str), a literal schema (a dict), or None for no body."""

    description: str
    body: type | str | Schema | None = None
    media_type: str = "application/json"
    headers: Mapping[str, Schema] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Body:
    """A request body that no request model validates: its component name and JSON Schema."""

    name: str
    schema: Schema


RequestBody = type[BaseModel] | Body


@dataclass(frozen=True, slots=True)
class Operation:
    id: str
    summary: str
    answers: Mapping[int, Answer]
    description: str | None = None
    parameters: Sequence[Schema] = ()
    body: RequestBody | None = None
    public: bool = False


def operation(
    operation_id: str,
    summary: str,
    *,
    answers: Mapping[int, Answer],
    description: str | None = None,
    parameters: Sequence[Schema] = (),
    body: RequestBody | None = None,
    public: bool = False,
) -> Callable[[Endpoint], Endpoint]:
    """Declare the endpoint's OpenAPI operation; protected ones answer 401 without being told."""
    if not public:
        answers = {401: UNAUTHORIZED, **answers}
    declared = Operation(
        operation_id, summary, answers, description, tuple(parameters), body, public
    )

    def declare(endpoint: Endpoint) -> Endpoint:
        endpoint.openapi_operation = declared  # type: ignore[attr-defined]
        return endpoint

    return declare


def ref(name: str) -> Schema:
    return {"$ref": COMPONENTS + name}


def object_schema(required: list[str], properties: dict[str, Schema]) -> Schema:
    """A JSON object with exactly these properties (an unknown field is refused)."""
    return {
        "type": "object",
        "required": required,
        "properties": properties,
        "additionalProperties": False,
    }


def path_parameter(name: str, description: str) -> Schema:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }


def query_parameter(name: str, schema: Schema, description: str | None = None) -> Schema:
    parameter = {"name": name, "in": "query", "required": False, "schema": schema}
    return parameter if description is None else {**parameter, "description": description}


UNAUTHORIZED = Answer(
    "Missing or wrong bearer token.",
    "Error",
    headers={"WWW-Authenticate": {"schema": {"type": "string", "const": "Bearer"}}},
)
INVALID = Answer("Invalid body or parameters; every problem listed.", "ValidationError")
# Starlette refuses an oversized body before routing, as plain text.
TOO_LARGE = Answer(
    "The body is over the web process's limit (64 KiB).", {"type": "string"}, "text/plain"
)


def not_found(what: str) -> Answer:
    return Answer(f"No such {what}.", "Error")


def _operations(routes: Sequence[BaseRoute], prefix: str = "") -> list[tuple[str, str, Any]]:
    found: list[tuple[str, str, Any]] = []
    for route in routes:
        if isinstance(route, Mount):
            found += _operations(route.routes, prefix + route.path)
        elif isinstance(route, Route):
            declared = getattr(route.endpoint, "openapi_operation", None)
            if declared is None:
                continue
            # `{id:int}` in Starlette is `{id}` in OpenAPI.
            template = re.sub(r"\{(\w+):\w+\}", r"{\1}", prefix + route.path)
            for method in sorted((route.methods or set()) - {"HEAD"}):
                found.append((template, method.lower(), declared))
    return found


class _Components:
    """The schemas the operations refer to: rendered types are generated in one pass, request
    models each by their own JSON Schema (the validation side of the model)."""

    def __init__(self) -> None:
        self.types: dict[str, type] = {}
        self.requests: dict[str, Schema] = {}

    def request(self, body: RequestBody) -> Schema:
        if isinstance(body, Body):
            self.requests[body.name] = body.schema
            return ref(body.name)
        schema = body.model_json_schema(ref_template=COMPONENTS + "{model}")
        self.requests.update(schema.pop("$defs", {}))
        self.requests[body.__name__] = schema
        return ref(body.__name__)

    def schema(self, body: type | str | Schema) -> Schema:
        if isinstance(body, dict):
            return body
        if isinstance(body, str):
            return ref(body)
        self.types[body.__name__] = body
        return ref(body.__name__)

    def generated(self) -> dict[str, Schema]:
        mode: Literal["serialization"] = "serialization"
        inputs: list[tuple[str, Literal["serialization"], TypeAdapter[Any]]] = [
            (name, mode, TypeAdapter(kind)) for name, kind in self.types.items()
        ]
        _, definitions = TypeAdapter.json_schemas(inputs, ref_template=COMPONENTS + "{model}")
        schemas: dict[str, Schema] = {**self.requests, **definitions.get("$defs", {})}
        return schemas


def _render(declared: Operation, components: _Components) -> Schema:
    rendered: Schema = {"operationId": declared.id, "summary": declared.summary}
    if declared.description:
        rendered["description"] = declared.description
    if declared.public:
        rendered["security"] = []
    if declared.parameters:
        rendered["parameters"] = list(declared.parameters)
    if declared.body is not None:
        rendered["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": components.request(declared.body)}},
        }
    responses: Schema = {}
    for status, answer in sorted(declared.answers.items()):
        response: Schema = {"description": answer.description}
        if answer.body is not None:
            schema = components.schema(answer.body)
            response["content"] = {answer.media_type: {"schema": schema}}
        if answer.headers:
            response["headers"] = dict(answer.headers)
        responses[str(status)] = response
    rendered["responses"] = responses
    return rendered


def _event_payload_schema() -> Schema:
    # Embedded as a component: the identifiers of the standalone file are dropped so that the
    # document has a single base URI.
    schema = event_schema(ASSESSMENT_COMPLETED)
    return {key: value for key, value in schema.items() if key not in ("$schema", "$id")}


def _common_schemas() -> dict[str, Schema]:
    return {
        "Error": {
            "type": "object",
            "required": ["error", "message"],
            "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
        },
        "ValidationError": {
            "type": "object",
            "required": ["error", "errors"],
            "properties": {
                "error": {"const": "invalid_request"},
                "errors": {
                    "type": "object",
                    "description": "Field or parameter name → what is wrong with it.",
                    "additionalProperties": {"type": "string"},
                },
            },
        },
        "AssessmentCompleted": _event_payload_schema(),
    }


def openapi_document(routes: Sequence[BaseRoute]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every route below `routes` that declares an operation."""
    components = _Components()
    paths: dict[str, dict[str, Schema]] = {}
    for template, method, declared in _operations(routes):
        paths.setdefault(template, {})[method] = _render(declared, components)
    schemas = {**_common_schemas(), **components.generated()}
    if "Event" in schemas:
        # The payload is stored as a JSON object; what it holds is the shipped event schema.
        schemas["Event"]["properties"]["payload"] = {
            **ref("AssessmentCompleted"),
            "description": "The webhook body, as delivered (candidate blanked once purged).",
        }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "isograd-relay admin API",
            "version": __version__,
            "description": "Invite candidates to Isograd tests; find invitations and events; "
            "replay failed deliveries one by one or in bulk; enable and disable subscriptions; "
            "erase a candidate on request. Every endpoint but this description needs "
            "`Authorization: Bearer <ADMIN_TOKEN>`; without ADMIN_TOKEN the API is closed.",
        },
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "security": [{"bearerAuth": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The relay's ADMIN_TOKEN.",
                }
            },
            "schemas": schemas,
        },
    }


def openapi_routes(documented: Sequence[BaseRoute]) -> list[BaseRoute]:
    """GET /api/openapi.json describing `documented` and itself; public (it describes the API,
    it reveals no data). Mount it before the authenticated /api mount so it matches first."""
    document: dict[str, Any] = {}

    @operation(
        "getOpenApi",
        "This description",
        answers={200: Answer("The OpenAPI 3.1 document.", {"type": "object"})},
        public=True,
    )
    async def openapi(request: Request) -> JSONResponse:
        return JSONResponse(document)

    route = Route(OPENAPI_PATH, openapi, methods=["GET"])
    document.update(openapi_document([route, *documented]))
    return [route]
