"""A fake of Teamtailor's Partner API (partner results) and of its partner-event webhooks.

It checks what tt-partner-docs documents (github.com/Teamtailor/tt-partner-docs,
source/includes/partners/): the API key in `Authorization` (`Bearer <key>` as in the
partner-results examples, or `Token <key>` as on the Authentication page), the required
`X-Api-Version: 20180828` (_versioning.md.erb), the JSON:API media type, and the update rules of
partner_results/_update.md.erb: status enum, `score` an integer 0-100, `grade` enum or null,
`duration` seconds or HH:MM:SS, `url` HTTP(S), `details` at most two levels deep, attachments of
exactly url + description, `candidate-id` immutable. Where the docs are silent it is strict, so a
mistake of ours shows here rather than in production: unknown attributes are refused (422), a
missing API version answers 400, another media type 415 and an id that does not match the URL
409 (JSON:API's rule for updates, https://jsonapi.org/format/#crud-updating-responses-409).

Refusals are JSON:API error documents: `{"errors": [{"status", "source": {"pointer"},
"detail"}]}`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

API_VERSION = "20180828"
MEDIA_TYPE = "application/vnd.api+json"
RESULTS_PATH = "/partner/v1/partner-results/"
STATUSES = frozenset({"sending", "sent", "pending", "completed", "failed"})
GRADES = frozenset({"top_fit", "might_be_fit", "might_not_be_fit", "unknown"})
ATTRIBUTES = frozenset(
    {
        "status",
        "summary",
        "job-id",
        "url",
        "assessment",
        "details",
        "attachments",
        "actions",
        "assessment-criteria",
        "candidate-id",
    }
)
_DURATION = re.compile(r"[0-9]{1,3}:[0-5][0-9]:[0-5][0-9]")


@dataclass(frozen=True)
class ResultUpdate:
    """One accepted PUT: the partner result's id, the attributes sent and the headers."""

    partner_result_id: str
    attributes: dict[str, Any]
    headers: dict[str, str]


@dataclass(frozen=True)
class ScriptedAnswer:
    """An answer given instead of processing the next PUT (a 429, a 503...)."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""


class FakeTeamtailor:
    """Partner results held in memory; thread-safe (served by uvicorn or a TestClient)."""

    def __init__(self, api_key: str, *, base_url: str = "http://teamtailor.test") -> None:
        self.api_key = api_key
        self.base_url = base_url
        self.results: dict[str, dict[str, Any]] = {}
        self.updates: list[ResultUpdate] = []
        self.refused: list[tuple[int, dict[str, Any]]] = []
        self._script: deque[ScriptedAnswer] = deque()
        self._lock = threading.Lock()
        self.app = Starlette(
            routes=[Route(RESULTS_PATH + "{result_id}", self._result, methods=["GET", "PUT"])]
        )

    # What Teamtailor does on its side

    def create_result(self, candidate_id: int = 102) -> str:
        """A partner result in status "sending", as Teamtailor makes when a trigger runs."""
        result_id = str(uuid.uuid4())
        with self._lock:
            self.results[result_id] = {"status": "sending", "candidate-id": candidate_id}
        return result_id

    def update_url(self, result_id: str) -> str:
        return self.base_url.rstrip("/") + RESULTS_PATH + result_id

    def partner_event(
        self,
        result_id: str,
        *,
        email: str,
        first_name: str = "Juston",
        last_name: str = "Becker",
        webhook_data: dict[str, Any] | None = None,
        event_id: str | None = None,
    ) -> dict[str, Any]:
        """The webhook body of partners/_webhooks.md.erb (the parts the relay reads, and more)."""
        return {
            "partner-event": {
                "id": event_id or str(uuid.uuid4()),
                "webhook-data": webhook_data if webhook_data is not None else {"test": "101"},
                "partner-result": {
                    "id": result_id,
                    "status": "sending",
                    "update-url": self.update_url(result_id),
                },
                "candidate": {
                    "id": 54321,
                    "uuid": str(uuid.uuid4()),
                    "first-name": first_name,
                    "last-name": last_name,
                    "email": email,
                    "phone": "+4670432121",
                    "tags": ["developer"],
                },
                "company": {"uuid": "vAXspNm0J2Y", "name": "Teamtailor"},
            }
        }

    def script(self, *answers: ScriptedAnswer) -> None:
        with self._lock:
            self._script.extend(answers)

    def updates_of(self, result_id: str) -> list[ResultUpdate]:
        with self._lock:
            return [u for u in self.updates if u.partner_result_id == result_id]

    # The API

    async def _result(self, request: Request) -> Response:
        result_id = request.path_params["result_id"]
        problem = self._check_headers(request)
        if problem is not None:
            return problem
        with self._lock:
            stored = self.results.get(result_id)
            if stored is None:
                return _errors(404, [("/data/id", "partner result not found")])
            if request.method == "GET":
                return self._document(result_id, stored)
            if self._script:
                answer = self._script.popleft()
                return Response(answer.body, answer.status, answer.headers)
        try:
            document = json.loads(await request.body())
        except ValueError:
            return _errors(400, [(None, "body must be JSON")])
        data = document.get("data") if isinstance(document, dict) else None
        if not isinstance(data, dict) or data.get("type") != "partner-results":
            return _errors(409, [("/data/type", "must be partner-results")])
        if data.get("id") != result_id:
            return _errors(409, [("/data/id", "must match the URL")])
        attributes = data.get("attributes")
        if not isinstance(attributes, dict):
            return _errors(422, [("/data/attributes", "must be an object")])
        problems = validate_attributes(attributes)
        if problems:
            with self._lock:
                self.refused.append((422, attributes))
            return _errors(422, problems)
        with self._lock:
            stored.update(attributes)
            self.updates.append(
                ResultUpdate(
                    result_id, attributes, {k.lower(): v for k, v in request.headers.items()}
                )
            )
            return self._document(result_id, stored)

    def _check_headers(self, request: Request) -> Response | None:
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() not in ("bearer", "token") or not hmac.compare_digest(
            credentials.strip().encode(), self.api_key.encode()
        ):
            return _errors(401, [(None, "invalid API key")])
        if request.headers.get("x-api-version") != API_VERSION:
            return _errors(400, [(None, f"X-Api-Version {API_VERSION} is required")])
        if request.method == "PUT":
            media_type = request.headers.get("content-type", "").split(";")[0].strip()
            if media_type != MEDIA_TYPE or ";" in request.headers.get("content-type", ""):
                return _errors(415, [(None, f"Content-Type must be {MEDIA_TYPE}")])
        return None

    def _document(self, result_id: str, stored: dict[str, Any]) -> Response:
        body = {
            "data": {
                "id": result_id,
                "type": "partner-results",
                "links": {"self": self.update_url(result_id)},
                "attributes": dict(stored),
            }
        }
        return JSONResponse(body, 200, media_type=MEDIA_TYPE)


def validate_attributes(attributes: dict[str, Any]) -> list[tuple[str | None, str]]:
    """Every broken rule of partner_results/_update.md.erb, as (JSON pointer, detail)."""
    problems: list[tuple[str | None, str]] = []

    def add(name: str, detail: str) -> None:
        problems.append((f"/data/attributes/{name}", detail))

    for name in attributes:
        if name not in ATTRIBUTES:
            add(name, "is not a partner-result attribute")
    if "candidate-id" in attributes:
        add("candidate-id", "is immutable")
    if "status" in attributes and attributes["status"] not in STATUSES:
        add("status", f"must be one of {sorted(STATUSES)}")
    if "summary" in attributes and not isinstance(attributes["summary"], str):
        add("summary", "must be a string")
    if "url" in attributes and not _is_http_url(attributes["url"]):
        add("url", "must be a valid HTTP or HTTPS URL")
    assessment = attributes.get("assessment")
    if assessment is not None:
        if not isinstance(assessment, dict):
            add("assessment", "must be an object")
        else:
            score = assessment.get("score")
            if "score" in assessment and (
                not isinstance(score, int) or isinstance(score, bool) or not 0 <= score <= 100
            ):
                add("assessment/score", "must be an integer between 0 and 100")
            if assessment.get("grade") is not None and assessment["grade"] not in GRADES:
                add("assessment/grade", f"must be one of {sorted(GRADES)} or null")
            if "duration" in assessment and not _is_duration(assessment["duration"]):
                add("assessment/duration", "must be seconds or HH:MM:SS")
    if "details" in attributes:
        details = attributes["details"]
        if not isinstance(details, dict):
            add("details", "must be an object")
        elif depth(details) > 2:
            add("details", "must be at most 2 levels deep")
    if "attachments" in attributes:
        attachments = attributes["attachments"]
        if not isinstance(attachments, list) or not all(
            isinstance(a, dict) and set(a) == {"url", "description"} for a in attachments
        ):
            add("attachments", "must be a list of objects with exactly url and description")
    return problems


def depth(value: Any) -> int:
    """Nesting depth of JSON: a scalar 0, an object or array 1 + its deepest member."""
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


def _is_http_url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _is_duration(value: Any) -> bool:
    if isinstance(value, int) and not isinstance(value, bool):
        return value >= 0
    return isinstance(value, str) and bool(_DURATION.fullmatch(value))


def _errors(status: int, problems: list[tuple[str | None, str]]) -> Response:
    errors = []
    for pointer, detail in problems:
        error: dict[str, Any] = {"status": str(status), "detail": detail}
        if pointer is not None:
            error["source"] = {"pointer": pointer}
        errors.append(error)
    return JSONResponse({"errors": errors}, status, media_type=MEDIA_TYPE)


def sign_partner_event(key: str, partner_event_id: str, timestamp: int | None = None) -> str:
    """A `Teamtailor-Signature` value: t=<unix time>,v1=<hex HMAC-SHA256(key, "t.id")>."""
    moment = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(
        key.encode(), f"{moment}.{partner_event_id}".encode(), hashlib.sha256
    ).hexdigest()
    return f"t={moment},v1={digest}"
