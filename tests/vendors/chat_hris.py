"""Vendor fakes for the sink tests: Slack, Teams Workflows, HiBob and Personio, each checking what
the real service checks and answering as it documents.

Each fake is a responder, `(RecordedRequest) -> ScriptedResponse`: a tests.receiver
RecordingReceiver serves it over real HTTP (`RecordingReceiver(responder=fake)`), and
`transport(fake)` serves it in-process through httpx2.MockTransport. Each records what it
accepted, and tests/test_vendor_fakes.py tests the fakes themselves.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2

from tests.receiver import RecordedRequest, Responder, ScriptedResponse


def transport(fake: Responder) -> httpx2.MockTransport:
    """`fake` behind an in-process transport (the request as the receiver would record it)."""

    def handle(request: httpx2.Request) -> httpx2.Response:
        recorded = RecordedRequest(
            method=request.method,
            path=request.url.raw_path.decode("ascii"),
            headers={name.lower(): value for name, value in request.headers.items()},
            body=request.read(),
        )
        answer = fake(recorded)
        return httpx2.Response(answer.status, headers=list(answer.headers), content=answer.body)

    return httpx2.MockTransport(handle)


def _text(status: int, body: str, *headers: tuple[str, str]) -> ScriptedResponse:
    return ScriptedResponse(
        status=status,
        body=body.encode(),
        headers=(("content-type", "text/plain; charset=utf-8"), *headers),
    )


def _json(status: int, document: Any) -> ScriptedResponse:
    return ScriptedResponse(
        status=status,
        body=json.dumps(document).encode(),
        headers=(("content-type", "application/json"),),
    )


def _json_body(request: RecordedRequest) -> Any:
    """The request's JSON document, or raise ValueError (wrong media type or unparsable)."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise ValueError("not application/json")
    return json.loads(request.body)


# Slack incoming webhooks ------------------------------------------------------------------


@dataclass
class FakeSlack:
    """An incoming webhook at `path`; answers as https://api.slack.com/messaging/webhooks
    documents: 200 "ok", 400 invalid_payload (not JSON) / no_text (neither text nor blocks) /
    invalid_blocks (a block Slack would refuse), 404 channel_not_found (another path), 410
    channel_is_archived once `archived`, 429 with Retry-After while `rate_limited`."""

    path: str = "/services/T0001/B0001/" + "x" * 24
    archived: bool = False
    rate_limited: bool = False
    messages: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __call__(self, request: RecordedRequest) -> ScriptedResponse:
        if request.method != "POST" or request.path != self.path:
            return _text(404, "channel_not_found")
        if self.archived:
            return _text(410, "channel_is_archived")
        if self.rate_limited:
            return _text(429, "rate_limited", ("retry-after", "30"))
        try:
            message = _json_body(request)
        except ValueError:
            return _text(400, "invalid_payload")
        if not isinstance(message, dict):
            return _text(400, "invalid_payload")
        text, blocks = message.get("text"), message.get("blocks")
        if not (isinstance(text, str) and text.strip()) and not blocks:
            return _text(400, "no_text")
        if blocks is not None and not _valid_blocks(blocks):
            return _text(400, "invalid_blocks")
        with self._lock:
            self.messages.append(message)
        return _text(200, "ok")


# https://api.slack.com/reference/block-kit/blocks: at most 50 blocks; a header holds
# plain_text of at most 150 characters; a section has text (<= 3000) or fields (<= 10, each
# <= 2000); text objects are plain_text or mrkdwn.
_SLACK_BLOCK_TYPES = frozenset({"header", "section", "context", "divider", "actions", "image"})


def _valid_text(value: Any, limit: int, *, types: frozenset[str]) -> bool:
    return (
        isinstance(value, dict)
        and value.get("type") in types
        and isinstance(value.get("text"), str)
        and 0 < len(value["text"]) <= limit
    )


def _valid_blocks(blocks: Any) -> bool:
    if not isinstance(blocks, list) or not 0 < len(blocks) <= 50:
        return False
    both = frozenset({"plain_text", "mrkdwn"})
    for block in blocks:
        if not isinstance(block, dict) or block.get("type") not in _SLACK_BLOCK_TYPES:
            return False
        kind = block["type"]
        if kind == "header" and not _valid_text(
            block.get("text"), 150, types=frozenset({"plain_text"})
        ):
            return False
        if kind == "section":
            fields = block.get("fields")
            if "text" in block and not _valid_text(block["text"], 3000, types=both):
                return False
            if fields is not None and not (
                isinstance(fields, list)
                and 0 < len(fields) <= 10
                and all(_valid_text(item, 2000, types=both) for item in fields)
            ):
                return False
            if "text" not in block and fields is None:
                return False
    return True


# Teams Workflows webhooks -----------------------------------------------------------------


@dataclass
class FakeTeams:
    """A "When a Teams webhook request is received" flow: the URL's `sig` must match, the body
    must be a message whose attachments are Adaptive Cards (Workflows support Adaptive Cards
    only, https://learn.microsoft.com/en-us/microsoftteams/platform/webhooks-and-connectors/
    how-to/connectors-using); answers 202 Accepted, 400 for a bad card, 401 for a bad sig."""

    path: str = "/workflows/abc123/triggers/manual/paths/invoke"
    sig: str = "s1gn4ture"
    cards: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def url_path(self) -> str:
        return f"{self.path}?api-version=1&sig={self.sig}"

    def __call__(self, request: RecordedRequest) -> ScriptedResponse:
        parts = urlsplit(request.path)
        if request.method != "POST" or parts.path != self.path:
            return _json(404, {"error": {"code": "TriggerNotFound"}})
        if parse_qs(parts.query).get("sig") != [self.sig]:
            return _json(401, {"error": {"code": "DirectApiAuthorizationRequired"}})
        try:
            message = _json_body(request)
        except ValueError:
            return _json(400, {"error": {"code": "InvalidRequestContent"}})
        card = _adaptive_card(message)
        if card is None:
            return _json(400, {"error": {"code": "InvalidTemplate"}})
        with self._lock:
            self.cards.append(card)
        return ScriptedResponse(status=202)


_CARD_VERSIONS = frozenset({"1.0", "1.1", "1.2", "1.3", "1.4", "1.5"})
_CARD_ELEMENTS = frozenset({"TextBlock", "FactSet", "Container", "ColumnSet", "Image"})


def _adaptive_card(message: Any) -> dict[str, Any] | None:
    """The first attachment's card if the message is one Teams renders, else None (Adaptive
    Card schema: https://adaptivecards.io/explorer/)."""
    if not isinstance(message, dict) or message.get("type") != "message":
        return None
    attachments = message.get("attachments")
    if not isinstance(attachments, list) or not attachments:
        return None
    attachment = attachments[0]
    if (
        not isinstance(attachment, dict)
        or attachment.get("contentType") != "application/vnd.microsoft.card.adaptive"
    ):
        return None
    card = attachment.get("content")
    if (
        not isinstance(card, dict)
        or card.get("type") != "AdaptiveCard"
        or card.get("version") not in _CARD_VERSIONS
        or not isinstance(card.get("body"), list)
    ):
        return None
    for element in card["body"]:
        if not isinstance(element, dict) or element.get("type") not in _CARD_ELEMENTS:
            return None
        if element["type"] == "TextBlock" and not isinstance(element.get("text"), str):
            return None
        if element["type"] == "FactSet" and not all(
            isinstance(fact, dict)
            and isinstance(fact.get("title"), str)
            and isinstance(fact.get("value"), str)
            for fact in element.get("facts", [])
        ):
            return None
    for action in card.get("actions", []):
        if not (
            isinstance(action, dict)
            and action.get("type") == "Action.OpenUrl"
            and isinstance(action.get("url"), str)
        ):
            return None
    return card


# HiBob custom tables ------------------------------------------------------------------------


@dataclass
class FakeHiBob:
    """HiBob's "create a custom table entry": POST /v1/people/custom-tables/{employee_id}/
    {custom_table_id} with `{"values": {...}}`, HTTP Basic with a service user's ID and token
    (https://apidocs.hibob.com/reference/authorization); 401 bad credentials, 404 unknown
    employee or table, 400 a body without a `values` object, 200 on success."""

    service_user: str = "SERVICE-123"
    token: str = "hibob-t0ken"
    employees: frozenset[str] = frozenset({"3332883884017713238"})
    tables: frozenset[str] = frozenset({"category_1645574919835__table_1645574978483"})
    rows: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __call__(self, request: RecordedRequest) -> ScriptedResponse:
        expected = (
            "Basic " + base64.b64encode(f"{self.service_user}:{self.token}".encode()).decode()
        )
        if request.headers.get("authorization") != expected:
            return _json(401, {"error": "Unauthorized"})
        parts = urlsplit(request.path).path.strip("/").split("/")
        if request.method != "POST" or parts[:3] != ["v1", "people", "custom-tables"]:
            return _json(404, {"error": "Not Found"})
        if len(parts) != 5 or parts[3] not in self.employees or parts[4] not in self.tables:
            return _json(404, {"error": "Not Found"})
        try:
            body = _json_body(request)
        except ValueError:
            return _json(400, {"error": "Bad Request"})
        if not isinstance(body, dict) or not isinstance(body.get("values"), dict):
            return _json(400, {"error": "values is required"})
        with self._lock:
            self.rows.append((parts[3], parts[4], body["values"]))
        return _json(200, {})


# Personio persons (API v2) ----------------------------------------------------------------


@dataclass
class FakePersonio:
    """Personio API v2: POST /v2/auth/token (client credentials, form-encoded) then PATCH
    /v2/persons/{person_id} with a Bearer token and `{"custom_attributes": [{"id", "value"}]}`
    (https://developer.personio.de/reference/patch_v2-persons-person-id): 204 on success, 401 an
    unknown or revoked token, 404 an unknown person, 400 a malformed body."""

    client_id: str = "personio-client"
    client_secret: str = "personio-s3cret"
    persons: frozenset[str] = frozenset({"12345"})
    expires_in: int = 86400
    updates: list[tuple[str, list[dict[str, Any]]]] = field(default_factory=list)
    tokens_issued: int = 0
    _valid_tokens: set[str] = field(default_factory=set, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def revoke_tokens(self) -> None:
        with self._lock:
            self._valid_tokens.clear()

    def __call__(self, request: RecordedRequest) -> ScriptedResponse:
        path = urlsplit(request.path).path
        if path == "/v2/auth/token":
            return self._token(request)
        parts = path.strip("/").split("/")
        if len(parts) != 3 or parts[:2] != ["v2", "persons"] or request.method != "PATCH":
            return _json(404, {"errors": [{"title": "Not Found"}]})
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        with self._lock:
            authorised = token in self._valid_tokens
        if not authorised:
            return _json(401, {"errors": [{"title": "Unauthorized"}]})
        if parts[2] not in self.persons:
            return _json(404, {"errors": [{"title": "Person not found"}]})
        try:
            body = _json_body(request)
        except ValueError:
            return _json(400, {"errors": [{"title": "Invalid request"}]})
        attributes = body.get("custom_attributes") if isinstance(body, dict) else None
        if not isinstance(attributes, list) or not all(
            isinstance(item, dict) and isinstance(item.get("id"), str) and "value" in item
            for item in attributes
        ):
            return _json(400, {"errors": [{"title": "Invalid request"}]})
        with self._lock:
            self.updates.append((parts[2], attributes))
        return ScriptedResponse(status=204)

    def _token(self, request: RecordedRequest) -> ScriptedResponse:
        media_type = request.headers.get("content-type", "").split(";")[0].strip()
        if request.method != "POST" or media_type != "application/x-www-form-urlencoded":
            return _json(400, {"error": "invalid_request"})
        form = {key: values[0] for key, values in parse_qs(request.body.decode()).items()}
        if form.get("grant_type") != "client_credentials":
            return _json(400, {"error": "unsupported_grant_type"})
        if (form.get("client_id"), form.get("client_secret")) != (
            self.client_id,
            self.client_secret,
        ):
            return _json(401, {"error": "invalid_client"})
        token = secrets.token_urlsafe(16)
        with self._lock:
            self._valid_tokens.add(token)
            self.tokens_issued += 1
        return _json(
            200, {"access_token": token, "token_type": "Bearer", "expires_in": self.expires_in}
        )
