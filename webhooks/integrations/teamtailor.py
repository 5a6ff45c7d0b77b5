"""The Teamtailor partner webhook: a recruiter's trigger orders a test for a candidate.

`POST /integrations/teamtailor/{subscription}/webhook` receives Teamtailor's partner event
(tt-partner-docs, source/includes/partners/_webhooks.md.erb): `{"partner-event": {"id",
"webhook-data", "partner-result": {"id", "update-url"}, "candidate": {"email", "first-name",
"last-name", ...}}}`, authenticated by `Authorization: Bearer <provider key>` and, when the
subscription has a `signature_key`, by `Teamtailor-Signature: t=<unix time>,v1=<hex
HMAC-SHA256(key, "<t>.<partner event id>")>` (partners/_webhook_signatures.md.erb).

Anything that fails either check answers 401 and stores nothing. A verified event becomes one
invitation (worker.orders, keyed by the partner-event id: Teamtailor retries a webhook up to three
times), the partner result is marked `sent` with the test URL after the answer, and Isograd
emails the candidate unless `send_email = false`. An event we cannot use answers 422 with a plain
sentence, which Teamtailor shows on the partner result ("To render an error message in the
partner result you need to return a plain string with a status code >=400", _webhooks.md.erb).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import structlog
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from webhooks.auth import bearer_token_matches
from webhooks.integrations.base import Collaborators
from worker.orders import Order
from worker.requests import InvalidRequestError, InvitationRequest, validate
from worker.sinks.teamtailor import KIND, PartnerResults, TeamtailorTarget, sent_attributes
from worker.storage.records import InvitationStatus

log = structlog.get_logger(__name__)

PATH = "/integrations/teamtailor/{subscription}/webhook"
SIGNATURE_HEADER = "teamtailor-signature"
# "you may first check that the timestamp is in valid range (eg five minutes)"
# (partners/_webhook_signatures.md.erb); the issue asks for five minutes.
SIGNATURE_TOLERANCE_SECONDS = 300
MARK_SENT_TIMEOUT = 10.0


class PartnerEventError(ValueError):
    """The partner event cannot be used; the message is shown to the recruiter."""


def verify_signature(header: str | None, partner_event_id: str, key: str, *, now: datetime) -> bool:
    """True when a `v1` entry of `header` signs "<t>.<partner_event_id>" and t is within five
    minutes of `now`. Constant-time comparison; every `v1` entry is tried (a key rotation)."""
    if not header:
        return False
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isdigit():
            timestamp = int(value)
        elif name == "v1" and value:
            candidates.append(value.strip())
    if timestamp is None or not candidates:
        return False
    if abs(now.timestamp() - timestamp) > SIGNATURE_TOLERANCE_SECONDS:
        return False
    expected = hmac.new(
        key.encode(), f"{timestamp}.{partner_event_id}".encode(), hashlib.sha256
    ).hexdigest()
    # No early exit: every candidate is compared, so timing says nothing about which matched.
    matches = [hmac.compare_digest(expected.encode(), c.lower().encode()) for c in candidates]
    return any(matches)


def read_partner_event(body: bytes) -> Mapping[str, Any] | None:
    """The `partner-event` object of a webhook body, or None when it is not one."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    event = document.get("partner-event") if isinstance(document, dict) else None
    if not isinstance(event, dict) or not isinstance(event.get("id"), str) or not event["id"]:
        return None
    return event


def order_from_event(
    event: Mapping[str, Any], target: TeamtailorTarget, subscription: str
) -> Order:
    """The invitation a verified partner event orders; PartnerEventError says what is missing."""
    result = event.get("partner-result")
    if not isinstance(result, Mapping) or not isinstance(result.get("id"), str):
        raise PartnerEventError("the partner event has no partner-result id")
    candidate = event.get("candidate")
    if not isinstance(candidate, Mapping):
        raise PartnerEventError("the partner event has no candidate")
    webhook_data = event.get("webhook-data")
    try:
        tst_frm_id = target.choose_test(webhook_data if isinstance(webhook_data, Mapping) else {})
    except ValueError as exc:
        raise PartnerEventError(str(exc)) from None
    update_url = result.get("update-url")
    routing = {
        "partner_result_id": result["id"],
        "update_url": update_url if isinstance(update_url, str) else None,
        "subscription": subscription,
    }
    try:
        request = validate(
            InvitationRequest,
            {
                "email": candidate.get("email"),
                "first_name": candidate.get("first-name"),
                "last_name": candidate.get("last-name"),
                "tst_frm_id": tst_frm_id,
                "context": {KIND: routing},
            },
        )
    except InvalidRequestError as exc:
        # Field names and rules only: never the candidate's values.
        problems = ", ".join(f"candidate {name} {message}" for name, message in exc.errors.items())
        raise PartnerEventError(problems) from None
    return Order(KIND, subscription, str(event["id"]), request)


def routes(collaborators: Collaborators) -> list[BaseRoute]:
    async def receive(request: Request) -> Response:
        name = request.path_params["subscription"]
        subscription = collaborators.subscription(KIND, name)
        if subscription is None:
            return PlainTextResponse("Not Found", 404)
        target = subscription.target
        assert isinstance(target, TeamtailorTarget)
        if not bearer_token_matches(request.headers.get("authorization"), target.provider_key):
            return _unauthorized(name, "bad_provider_key")
        body = await request.body()
        event = read_partner_event(body)
        # The signature covers the event id, so a body without one cannot be verified.
        if target.signature_key is not None and (
            event is None
            or not verify_signature(
                request.headers.get(SIGNATURE_HEADER),
                str(event["id"]),
                target.signature_key,
                now=collaborators.clock(),
            )
        ):
            return _unauthorized(name, "bad_signature")
        if event is None:
            return PlainTextResponse("the body is not a Teamtailor partner event", 400)
        try:
            order = order_from_event(event, target, name)
        except PartnerEventError as exc:
            log.info("teamtailor_event_unusable", subscription=name, reason=str(exc))
            return PlainTextResponse(str(exc), 422)
        placed = await collaborators.place(
            order, mail_template_id=target.mail_template_id if target.send_email else None
        )
        invitation = placed.invited.invitation
        mark = None
        if invitation.status is InvitationStatus.PENDING and invitation.completed_at is None:
            # A PUT is idempotent: a repeated webhook marks it again, which also repairs a
            # first marking that failed. Never once the result is in (it would undo it).
            routing = dict(order.request.context[KIND])
            mark = BackgroundTask(
                _mark_sent,
                PartnerResults(target, client=collaborators.http, timeout=MARK_SENT_TIMEOUT),
                routing,
                invitation.test_url,
                collaborators,
                name,
            )
        return JSONResponse(
            {"invitation_id": invitation.id, "created": placed.invited.created},
            200,
            background=mark,
        )

    return [Route(PATH, receive, methods=["POST"])]


def _mark_sent(
    results: PartnerResults,
    routing: Mapping[str, Any],
    test_url: str | None,
    collaborators: Collaborators,
    subscription: str,
) -> None:
    outcome = results.update(
        str(routing["partner_result_id"]),
        sent_attributes(test_url),
        update_url=routing.get("update_url"),
        attempt_at=collaborators.clock(),
    )
    log.info(
        "teamtailor_result_marked_sent",
        subscription=subscription,
        outcome=str(outcome.outcome),
        status_code=outcome.status_code,
        error=outcome.error,
    )


def _unauthorized(subscription: str, reason: str) -> Response:
    log.warning("teamtailor_webhook_rejected", subscription=subscription, reason=reason)
    return PlainTextResponse("Unauthorized", 401, {"WWW-Authenticate": "Bearer"})
