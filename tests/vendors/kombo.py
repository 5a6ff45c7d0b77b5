"""A fake of Kombo's Assessment API (packages, open orders, order results) and its webhooks.

It checks what Kombo's OpenAPI description documents (docs.kombo.dev/assessment/v1):
`Authorization: Bearer <api key>` and `X-Integration-Id` on every request; packages with every
required field and a `type` of the enum; `page_size` 1-250 and cursor pagination (`data.next`);
a result with `status` COMPLETED/CANCELLED/OPEN, a `result_url` URI, `completed_at` in
YYYY-MM-DDTHH:mm:ss.sssZ when COMPLETED or CANCELLED, attributes that are TEXT {label, value} or
SUB_RESULT {id, label, score {value, max >= 1}, status COMPLETED/CANCELLED}, at most 5
attachments each with a name, `data` (base64) or `data_url`, and a content type of the pattern
when `data` is given; "the `status` can only be updated ... if its current value is `OPEN`"
(409 here). Errors use Kombo's shape `{"status": "error", "error": {"code", "title",
"message", "log_url"}}`. Where the docs give no status code for a refusal, it picks the usual one
(401 bad key, 404 unknown integration or order, 400 invalid input, 409 wrong state).

Webhooks are signed as Kombo documents (docs.kombo.dev/webhooks, "Validate the data"):
X-Kombo-Signature = base64url, without padding, of HMAC-SHA256(webhook secret, raw body).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

PACKAGE_TYPES = frozenset(
    {"BEHAVIORAL", "VIDEO_INTERVIEW", "SKILLS_TEST", "BACKGROUND_CHECK", "REFERENCE_CHECK"}
)
RESULT_STATUSES = frozenset({"COMPLETED", "CANCELLED", "OPEN"})
SUB_RESULT_STATUSES = frozenset({"COMPLETED", "CANCELLED"})
_COMPLETED_AT = re.compile(r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}:\d{2}(\.\d+)?)?Z?$")
_CONTENT_TYPE = re.compile(r"^[\w.-]+/[\w.-]+$")
MAX_PAGE_SIZE = 250


@dataclass(frozen=True)
class ResultUpdate:
    order_id: str
    body: dict[str, Any]
    headers: dict[str, str]


@dataclass(frozen=True)
class ScriptedAnswer:
    """An answer given instead of processing the next request to `path_suffix`."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    path_suffix: str = "/result"


class FakeKombo:
    """One Kombo integration held in memory; thread-safe."""

    def __init__(self, api_key: str, integration_id: str, webhook_secret: str) -> None:
        self.api_key = api_key
        self.integration_id = integration_id
        self.webhook_secret = webhook_secret
        self.packages: dict[str, dict[str, Any]] = {}
        self.package_puts = 0
        self.orders: dict[str, dict[str, Any]] = {}
        self.results: list[ResultUpdate] = []
        self.open_order_requests: list[dict[str, str]] = []
        self._script: deque[ScriptedAnswer] = deque()
        self._lock = threading.Lock()
        self.app = Starlette(
            routes=[
                Route("/v1/assessment/packages", self._packages, methods=["GET", "PUT"]),
                Route("/v1/assessment/orders/open", self._open_orders, methods=["GET"]),
                Route("/v1/assessment/orders/{order_id}/result", self._result, methods=["PUT"]),
            ]
        )

    # What happens on the ATS's side

    def create_order(
        self,
        package_id: str,
        *,
        email: str,
        first_name: str | None = "John",
        last_name: str | None = "Doe",
    ) -> dict[str, Any]:
        """An OPEN order for a published package, as an ATS would make it (the webhook's `data`)."""
        with self._lock:
            if package_id not in self.packages:
                raise AssertionError(f"package {package_id!r} was never published")
            order_id = uuid.uuid4().hex[:24]
            order: dict[str, Any] = {
                "id": order_id,
                "integration_id": self.integration_id,
                "package_id": package_id,
                "status": "OPEN",
                "candidate": {
                    "remote_id": "12345",
                    "email": email,
                    "first_name": first_name,
                    "last_name": last_name,
                    "phone": None,
                },
                "application": {"remote_id": "54321"},
                "job": {
                    "remote_id": "67890",
                    "name": "Analyst",
                    "job_code": None,
                    "description": "<p>Spreadsheets.</p>",
                    "location": None,
                    "hiring_team": [],
                },
            }
            self.orders[order_id] = order
            copy: dict[str, Any] = json.loads(json.dumps(order))
            return copy

    def order_received(self, order: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        """The `assessment:order-received` webhook for `order`: its body and headers."""
        body = json.dumps(
            {"id": uuid.uuid4().hex[:24], "type": "assessment:order-received", "data": order}
        ).encode()
        return body, {
            "content-type": "application/json",
            "x-kombo-signature": sign(self.webhook_secret, body),
        }

    def script(self, *answers: ScriptedAnswer) -> None:
        with self._lock:
            self._script.extend(answers)

    def results_of(self, order_id: str) -> list[ResultUpdate]:
        with self._lock:
            return [r for r in self.results if r.order_id == order_id]

    # The API

    def _check(self, request: Request) -> Response | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.encode(), self.api_key.encode()
        ):
            return error(401, "PLATFORM.AUTHENTICATION_INVALID", "invalid API key")
        if request.headers.get("x-integration-id") != self.integration_id:
            return error(404, "PLATFORM.INTEGRATION_NOT_FOUND", "unknown integration")
        with self._lock:
            if self._script and request.url.path.endswith(self._script[0].path_suffix):
                answer = self._script.popleft()
                return Response(answer.body, answer.status, answer.headers)
        return None

    async def _packages(self, request: Request) -> Response:
        refused = self._check(request)
        if refused is not None:
            return refused
        if request.method == "GET":
            with self._lock:
                return success({"packages": list(self.packages.values())})
        document = await _json(request)
        problems = validate_packages(document)
        if problems:
            return error(400, "PLATFORM.INPUT_INVALID", "; ".join(problems))
        with self._lock:
            # "Replaces the list ...": packages left out are marked deleted (dropped here).
            self.packages = {p["id"]: p for p in document["packages"]}
            self.package_puts += 1
        return success({})

    async def _open_orders(self, request: Request) -> Response:
        refused = self._check(request)
        if refused is not None:
            return refused
        params = dict(request.query_params)
        raw_size = params.get("page_size", "100")
        if not raw_size.isdigit() or not 1 <= int(raw_size) <= MAX_PAGE_SIZE:
            return error(400, "PLATFORM.INPUT_INVALID", "page_size must be 1 to 250")
        size = int(raw_size)
        with self._lock:
            self.open_order_requests.append(params)
            open_orders = [o for o in self.orders.values() if o["status"] == "OPEN"]
        start = 0
        if "cursor" in params:
            if not params["cursor"].startswith("c") or not params["cursor"][1:].isdigit():
                return error(400, "PLATFORM.INPUT_INVALID", "invalid cursor")
            start = int(params["cursor"][1:])
        page = open_orders[start : start + size]
        next_cursor = f"c{start + size}" if start + size < len(open_orders) else None
        results = [
            {k: v for k, v in o.items() if k not in ("status", "integration_id")} for o in page
        ]
        return success({"next": next_cursor, "results": results})

    async def _result(self, request: Request) -> Response:
        refused = self._check(request)
        if refused is not None:
            return refused
        order_id = request.path_params["order_id"]
        document = await _json(request)
        problems = validate_result(document)
        if problems:
            return error(400, "PLATFORM.INPUT_INVALID", "; ".join(problems))
        with self._lock:
            order = self.orders.get(order_id)
            if order is None:
                return error(404, None, "assessment order not found")
            if order["status"] != "OPEN" and document["status"] != order["status"]:
                return error(409, None, "the status can only be changed while it is OPEN")
            order["status"] = document["status"]
            self.results.append(
                ResultUpdate(order_id, document, {k.lower(): v for k, v in request.headers.items()})
            )
        return success({})


def validate_packages(document: Any) -> list[str]:
    packages = document.get("packages") if isinstance(document, dict) else None
    if not isinstance(packages, list):
        return ["packages: required array"]
    problems = []
    for index, package in enumerate(packages):
        if not isinstance(package, dict):
            problems.append(f"packages[{index}]: must be an object")
            continue
        for name in ("id", "type", "name", "description"):
            if not isinstance(package.get(name), str):
                problems.append(f"packages[{index}].{name}: required string")
        if package.get("type") not in PACKAGE_TYPES:
            problems.append(f"packages[{index}].type: must be one of {sorted(PACKAGE_TYPES)}")
    return problems


def validate_result(document: Any) -> list[str]:
    if not isinstance(document, dict):
        return ["body: must be an object"]
    problems = []
    status = document.get("status")
    if status not in RESULT_STATUSES:
        problems.append(f"status: must be one of {sorted(RESULT_STATUSES)}")
    if not _is_uri(document.get("result_url")):
        problems.append("result_url: required URI")
    completed_at = document.get("completed_at")
    if status in ("COMPLETED", "CANCELLED") and completed_at is None:
        problems.append("completed_at: required when status is COMPLETED or CANCELLED")
    if completed_at is not None and (
        not isinstance(completed_at, str) or not _COMPLETED_AT.match(completed_at)
    ):
        problems.append("completed_at: must be YYYY-MM-DDTHH:mm:ss.sssZ")
    for name in ("score", "max_score"):
        if name in document and not _is_number(document[name]):
            problems.append(f"{name}: must be a number")
    attributes = document.get("attributes", [])
    if not isinstance(attributes, list):
        problems.append("attributes: must be an array")
        attributes = []
    for index, attribute in enumerate(attributes):
        problems += [f"attributes[{index}]{p}" for p in _attribute_problems(attribute)]
    attachments = document.get("attachments", [])
    if not isinstance(attachments, list) or len(attachments) > 5:
        problems.append("attachments: at most 5")
        attachments = []
    for index, attachment in enumerate(attachments):
        problems += [f"attachments[{index}]{p}" for p in _attachment_problems(attachment)]
    return problems


def _attribute_problems(attribute: Any) -> list[str]:
    if not isinstance(attribute, dict):
        return [": must be an object"]
    if attribute.get("type") == "TEXT":
        ok = isinstance(attribute.get("label"), str) and isinstance(attribute.get("value"), str)
        return [] if ok else [": TEXT needs label and value strings"]
    if attribute.get("type") == "SUB_RESULT":
        problems = []
        if not isinstance(attribute.get("id"), str) or not isinstance(attribute.get("label"), str):
            problems.append(": SUB_RESULT needs id and label strings")
        score = attribute.get("score")
        if (
            not isinstance(score, dict)
            or not _is_number(score.get("value"))
            or not _is_number(score.get("max"))
            or score["max"] < 1
        ):
            problems.append(".score: needs a number value and a max >= 1")
        if attribute.get("status") not in SUB_RESULT_STATUSES:
            problems.append(".status: must be COMPLETED or CANCELLED")
        return problems
    return [".type: must be TEXT or SUB_RESULT"]


def _attachment_problems(attachment: Any) -> list[str]:
    if not isinstance(attachment, dict) or not isinstance(attachment.get("name"), str):
        return [".name: required string"]
    data, data_url = attachment.get("data"), attachment.get("data_url")
    if data is None and data_url is None:
        return [": needs data or data_url"]
    problems = []
    content_type = attachment.get("content_type")
    if data is not None:
        if content_type is None:
            problems.append(".content_type: required with data")
        try:
            base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError, TypeError):
            problems.append(".data: must be base64")
    if content_type is not None and (
        not isinstance(content_type, str) or not _CONTENT_TYPE.match(content_type)
    ):
        problems.append(".content_type: must be a MIME type")
    return problems


def _is_uri(value: Any) -> bool:
    return isinstance(value, str) and bool(urlsplit(value).scheme) and bool(urlsplit(value).netloc)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


async def _json(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except ValueError:
        return None


def success(data: Any) -> JSONResponse:
    return JSONResponse({"status": "success", "data": data, "warnings": []})


def error(status: int, code: str | None, message: str) -> JSONResponse:
    body = {
        "status": "error",
        "error": {"code": code, "title": None, "message": message, "log_url": None},
    }
    return JSONResponse(body, status)


def sign(secret: str, body: bytes) -> str:
    """X-Kombo-Signature: base64url of HMAC-SHA256(secret, body), without '=' padding."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
