"""The Kombo webhook: an ATS behind Kombo orders one of our packages for a candidate.

`POST /integrations/kombo/{subscription}/webhook` receives Kombo's webhooks; only
`assessment:order-received` (docs.kombo.dev/assessment/webhooks/assessment-order-received) orders
anything: `{"id", "type", "data": {"id", "package_id", "status", "integration_id",
"candidate": {"email", "first_name", "last_name", ...}, ...}}`.

Authentication is Kombo's documented scheme (docs.kombo.dev/webhooks, "Validate the data"):
`X-Kombo-Signature` is the base64url digest, without '=' padding, of HMAC-SHA256(Kombo webhook
secret, raw request body); compared in constant time. A missing or wrong signature answers 401
and stores nothing. Kombo's scheme carries no timestamp, so there is no time window to check: a
replayed genuine webhook is answered like the first and, being keyed by the order id, creates
nothing new (the same holds for the scheduler's poll of open orders, worker/scheduler/orders.py).

Kombo sends one account's webhooks to one URL, whatever the integration (customer); the order's
`integration_id` picks the subscription among those verified by the same secret, so one URL can
serve several integrations.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from webhooks.integrations.base import Collaborators
from worker.orders import OrderRejectedError, kombo_order
from worker.sinks.kombo import KIND, KomboTarget
from worker.subscriptions import Subscription

log = structlog.get_logger(__name__)

PATH = "/integrations/kombo/{subscription}/webhook"
SIGNATURE_HEADER = "x-kombo-signature"
ORDER_RECEIVED = "assessment:order-received"


def verify_signature(header: str | None, body: bytes, secret: str) -> bool:
    """True when `header` is base64url(HMAC-SHA256(secret, body)); padding is tolerated."""
    if not header:
        return False
    expected = base64.urlsafe_b64encode(
        hmac.new(secret.encode(), body, hashlib.sha256).digest()
    ).rstrip(b"=")
    return hmac.compare_digest(expected, header.strip().rstrip("=").encode())


def routes(collaborators: Collaborators) -> list[BaseRoute]:
    async def receive(request: Request) -> Response:
        name = request.path_params["subscription"]
        subscription = collaborators.subscription(KIND, name)
        if subscription is None:
            return PlainTextResponse("Not Found", 404)
        target = subscription.target
        assert isinstance(target, KomboTarget)
        body = await request.body()
        if not verify_signature(request.headers.get(SIGNATURE_HEADER), body, target.webhook_secret):
            log.warning("kombo_webhook_rejected", subscription=name, reason="bad_signature")
            return PlainTextResponse("Unauthorized", 401)
        try:
            document = json.loads(body)
        except (UnicodeDecodeError, ValueError, RecursionError):
            return PlainTextResponse("the body is not JSON", 400)
        if not isinstance(document, dict) or document.get("type") != ORDER_RECEIVED:
            # Other webhook types reach the same URL; they order nothing.
            return JSONResponse({"ignored": "not an assessment:order-received webhook"})
        order = document.get("data")
        if not isinstance(order, Mapping):
            return PlainTextResponse("the webhook has no order", 422)
        owner = _owner(collaborators, subscription, order)
        if owner is None:
            log.info("kombo_order_other_integration", subscription=name)
            return JSONResponse({"ignored": "no subscription for this integration"})
        owner_target = owner.target
        assert isinstance(owner_target, KomboTarget)
        if order.get("status", "OPEN") != "OPEN":
            return JSONResponse({"ignored": "the order is not open"})
        try:
            placed_order = kombo_order(order, owner_target, owner.name)
        except OrderRejectedError as exc:
            log.warning("kombo_order_unusable", subscription=owner.name, reason=str(exc))
            return PlainTextResponse(str(exc), 422)
        placed = await collaborators.place(
            placed_order,
            mail_template_id=owner_target.mail_template_id if owner_target.send_email else None,
        )
        return JSONResponse(
            {"invitation_id": placed.invited.invitation.id, "created": placed.invited.created}
        )

    return [Route(PATH, receive, methods=["POST"])]


def _owner(
    collaborators: Collaborators, verified: Subscription, order: Mapping[str, Any]
) -> Subscription | None:
    """The subscription of the order's integration, among those sharing the verified secret."""
    target = verified.target
    assert isinstance(target, KomboTarget)
    integration_id = order.get("integration_id", target.integration_id)
    for subscription in collaborators.subscriptions:
        candidate = subscription.target
        if (
            subscription.enabled
            and isinstance(candidate, KomboTarget)
            and candidate.integration_id == integration_id
            and hmac.compare_digest(candidate.webhook_secret, target.webhook_secret)
        ):
            return subscription
    return None
