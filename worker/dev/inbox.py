"""The development inbox: a webhook receiver that verifies our signatures and lists what came.

`isograd-relay dev` serves it under /inbox, and the sample relay.toml's `dev-inbox` subscription
points at it, so a first run shows a delivered, verified event without writing a receiver:

    POST /inbox/webhook      verify the Standard Webhooks signature; 204 if valid, 401 if not
    GET  /inbox/             an HTML page of the deliveries received (newest first)
    GET  /inbox/deliveries   the same as JSON: {"deliveries": [...]}

Deliveries are kept in memory (the last `capacity`), verified or not, so a bad signature is
visible too. A local test tool: it trusts its configured secrets and nothing else.
"""

from __future__ import annotations

import html
import json
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import structlog
from standardwebhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from worker.sinks.webhook import WebhookTarget
from worker.subscriptions import Subscription

log = structlog.get_logger(__name__)

INBOX_PATH = "/inbox"
WEBHOOK_PATH = "/webhook"
DEFAULT_CAPACITY = 100
MAX_BODY_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class ReceivedDelivery:
    """One POST to the inbox, as received. `payload` is the parsed body (None if not JSON)."""

    received_at: str
    webhook_id: str | None
    verified: bool
    error: str | None
    event_type: str | None
    candidate: str | None
    grade: str | None
    payload: Any


class Inbox:
    """The received deliveries, newest last, at most `capacity`; thread-safe."""

    def __init__(
        self,
        secrets: Iterable[str],
        *,
        capacity: int = DEFAULT_CAPACITY,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._webhooks = [Webhook(secret) for secret in secrets]
        self.capacity = capacity
        self._received: deque[ReceivedDelivery] = deque(maxlen=capacity)
        self._lock = threading.Lock()
        self._clock = clock

    def receive(self, body: bytes, headers: dict[str, str]) -> ReceivedDelivery:
        """Verify and record one delivery (kept whether or not it verifies)."""
        error = self._verify(body, headers)
        payload = _parse(body)
        data = payload.get("data") if isinstance(payload, dict) else None
        received = ReceivedDelivery(
            received_at=self._clock().isoformat().replace("+00:00", "Z"),
            webhook_id=headers.get("webhook-id"),
            verified=error is None,
            error=error,
            event_type=_text(payload, "type"),
            candidate=_candidate_name(data),
            grade=_text(data.get("grade") if isinstance(data, dict) else None, "text"),
            payload=payload,
        )
        with self._lock:
            self._received.append(received)
        log.info(
            "inbox_delivery_received",
            webhook_id=received.webhook_id,
            verified=received.verified,
            event_type=received.event_type,
        )
        return received

    def deliveries(self) -> list[ReceivedDelivery]:
        """Newest first."""
        with self._lock:
            return list(reversed(self._received))

    def _verify(self, body: bytes, headers: dict[str, str]) -> str | None:
        """None when one of our secrets signed it, else why not."""
        if not self._webhooks:
            return "the inbox has no secret configured (no subscription points at it)"
        reason = "no signature matches the inbox's secrets"
        for webhook in self._webhooks:
            try:
                webhook.verify(body, headers, json_parse=False)
            except WebhookVerificationError as exc:
                reason = str(exc)
            except ValueError:
                # A malformed signature header or a body that is not UTF-8.
                reason = "malformed webhook-signature header or body"
            else:
                return None
        return reason


def inbox_secrets(
    subscriptions: Iterable[Subscription], *, path: str = INBOX_PATH + WEBHOOK_PATH
) -> list[str]:
    """The secrets of every subscription whose URL's path is the inbox's (any host)."""
    found: list[str] = []
    for subscription in subscriptions:
        target = subscription.target
        if isinstance(target, WebhookTarget) and urlsplit(target.url).path.rstrip("/") == path:
            found.extend(target.secrets)
    return list(dict.fromkeys(found))


def create_inbox_app(inbox: Inbox) -> Starlette:
    """The inbox's routes, to mount at INBOX_PATH."""

    async def webhook(request: Request) -> Response:
        body = await request.body()
        received = inbox.receive(body, dict(request.headers))
        if received.verified:
            return Response(status_code=204)
        return JSONResponse({"error": "invalid_signature", "message": received.error}, 401)

    async def deliveries(request: Request) -> Response:
        return JSONResponse({"deliveries": [asdict(d) for d in inbox.deliveries()]})

    async def page(request: Request) -> Response:
        return HTMLResponse(_render_page(inbox.deliveries(), inbox.capacity))

    return Starlette(
        routes=[
            Route(WEBHOOK_PATH, webhook, methods=["POST"]),
            Route("/deliveries", deliveries, methods=["GET"]),
            Route("/", page, methods=["GET"]),
        ],
        max_body_size=MAX_BODY_BYTES,
    )


def _parse(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def _text(value: object, key: str) -> str | None:
    found = value.get(key) if isinstance(value, dict) else None
    return str(found) if found is not None else None


def _candidate_name(data: object) -> str | None:
    candidate = data.get("candidate") if isinstance(data, dict) else None
    if not isinstance(candidate, dict):
        return None
    names = [candidate.get("first_name"), candidate.get("last_name")]
    return " ".join(str(name) for name in names if name) or None


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>isograd-relay inbox</title>
<meta http-equiv="refresh" content="5">
<style>body{{font-family:system-ui,sans-serif;margin:2rem}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.3rem .6rem;text-align:left;vertical-align:top}}
.ok{{color:#060}}.bad{{color:#a00}}pre{{margin:0;max-width:60rem;overflow:auto}}</style></head>
<body><h1>Development inbox</h1>
<p>Webhook deliveries received at <code>POST {path}</code> (newest first, the last {count} kept,
refreshed every 5 s). JSON: <a href="deliveries">deliveries</a>.</p>
{content}
</body></html>
"""


def _render_page(deliveries: Sequence[ReceivedDelivery], capacity: int) -> str:
    if not deliveries:
        content = "<p>Nothing received yet. Try <code>isograd-relay demo</code>.</p>"
    else:
        rows = "".join(_render_row(delivery) for delivery in deliveries)
        content = (
            "<table><tr><th>received</th><th>signature</th><th>event</th><th>candidate</th>"
            f"<th>grade</th><th>payload</th></tr>{rows}</table>"
        )
    return _PAGE.format(path=INBOX_PATH + WEBHOOK_PATH, count=capacity, content=content)


def _render_row(delivery: ReceivedDelivery) -> str:
    signature = (
        '<span class="ok">verified</span>'
        if delivery.verified
        else f'<span class="bad">rejected: {html.escape(delivery.error or "")}</span>'
    )
    payload = json.dumps(delivery.payload, indent=2, ensure_ascii=False)
    cells = [
        html.escape(delivery.received_at),
        signature,
        html.escape(delivery.event_type or "?"),
        html.escape(delivery.candidate or ""),
        html.escape(delivery.grade or ""),
        f"<details><summary>{html.escape(delivery.webhook_id or '')}</summary>"
        f"<pre>{html.escape(payload)}</pre></details>",
    ]
    return "<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>"
