"""The admin API's invitation endpoints: invite, watch, read invitations, events and deliveries,
replay one delivery; and the authenticated `/api` mount of every endpoint (operations.py's too).

Each endpoint declares its OpenAPI operation (openapi.py assembles the document)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Protocol

import structlog
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Mount, Route

from webhooks.api.answers import (
    DeliveryList,
    DeliveryWithAttempts,
    InvitationCreated,
    WatchAnswer,
    fields_of,
    jsonable,
)
from webhooks.api.openapi import (
    INVALID,
    TOO_LARGE,
    Answer,
    not_found,
    operation,
    path_parameter,
    query_parameter,
)
from webhooks.api.operations import OperatorStore, operator_routes
from webhooks.auth import BearerAuthMiddleware
from worker.erasure import CandidateAnonymizer
from worker.invitations import (
    FIRST_CHECK_AFTER,
    InvitationClient,
    InvitationStore,
    create_invitation,
)
from worker.replay import ReplayOutcome, replay_delivery
from worker.requests import InvalidRequestError, InvitationRequest, WatchRequest, validate
from worker.storage.records import Attempt, Delivery, DeliveryStatus, Event, Invitation
from worker.subscriptions import Subscription
from worker.tokens import CallbackKey
from worker.watch import watch_assessment

log = structlog.get_logger(__name__)

MAX_IDEMPOTENCY_KEY_LENGTH = 200
MAX_ID_LENGTH = 64  # the id columns' length (worker/storage/tables.py)
DEFAULT_PAGE_SIZE = 100


class ApiStore(InvitationStore, OperatorStore, Protocol):
    def get_event(self, event_id: str) -> Event | None: ...

    def get_delivery(self, delivery_id: str) -> Delivery | None: ...

    def list_attempts(self, delivery_id: str) -> Sequence[Attempt]: ...

    def list_deliveries(
        self,
        status: DeliveryStatus | None = None,
        subscription: str | None = None,
        event_id: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> Sequence[Delivery]: ...


class DeliveryEnqueuer(Protocol):
    def delivery(self, delivery_id: str, *, delay_seconds: float = 0.0) -> None: ...


class InvalidParameterError(Exception):
    """A query parameter or header of an API request is invalid; `errors` maps name → message."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__(f"invalid parameters: {', '.join(sorted(errors))}")


def _not_found(what: str) -> HTTPException:
    return HTTPException(404, f"{what} not found")


def _path_id(request: Request, name: str, what: str) -> str:
    """A record id from the path, or 404 when no record can have it (our ids are short printable
    ASCII; PostgreSQL would refuse a NUL in the query with an error instead of no row)."""
    value: str = request.path_params[name]
    if not (0 < len(value) <= MAX_ID_LENGTH and value.isascii() and value.isprintable()):
        raise _not_found(what)
    return value


def _not_json(constant: str) -> object:
    raise ValueError(f"{constant} is not JSON")


async def _json_body(request: Request) -> object:
    body = await request.body()
    try:
        # NaN and Infinity are Python's extension, not JSON (RFC 8259 §6): refused at the door,
        # or a stored context would fail every delivery later.
        return json.loads(body, parse_constant=_not_json)
    except RecursionError:
        raise InvalidRequestError({"body": "must be JSON nested less deeply"}) from None
    except ValueError:  # JSONDecodeError, bad UTF-8, NaN, integers past 4,300 digits
        raise InvalidRequestError({"body": "must be valid JSON"}) from None


_DELIVERY_ID = path_parameter("delivery_id", "A delivery id (dlv_…).")
_ISOGRAD = Answer("Isograd refused the request or answered unexpectedly.", "Error")
_UNAVAILABLE = Answer(
    "A dependency (database, broker, Isograd) is unavailable.",
    "Error",
    headers={"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds, when known."}},
)


def api_routes(
    *,
    admin_token: str | None,
    store: ApiStore,
    client: InvitationClient,
    enqueuer: DeliveryEnqueuer,
    callback_keys: Sequence[CallbackKey],
    public_url: str,
    clock: Callable[[], datetime],
    first_check_after: timedelta = FIRST_CHECK_AFTER,
    subscriptions: Sequence[Subscription] = (),
    anonymizer: CandidateAnonymizer | None = None,
) -> list[BaseRoute]:
    """The `/api` mount; every route needs `Authorization: Bearer <ADMIN_TOKEN>`.

    `first_check_after`: when the reconciler first checks a new invitation
    (RECONCILE_FIRST_CHECK_SECONDS). `anonymizer`: Isograd's act 12, for erasures asking it.
    """

    @operation(
        "createInvitation",
        "Invite a candidate to an Isograd test",
        description="Creates the candidate and the test on Isograd (act 8, or act 2 for a "
        "known candidate) with our callback URL, and stores the invitation. With an "
        "Idempotency-Key, a repeated request answers the first invitation.",
        parameters=[
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "minLength": 1, "maxLength": 200},
            }
        ],
        body=InvitationRequest,
        answers={
            201: Answer("Invited.", InvitationCreated),
            413: TOO_LARGE,
            422: INVALID,
            502: _ISOGRAD,
            503: _UNAVAILABLE,
        },
    )
    async def post_invitation(request: Request) -> JSONResponse:
        key = request.headers.get("idempotency-key")
        if key is not None and not 0 < len(key) <= MAX_IDEMPOTENCY_KEY_LENGTH:
            raise InvalidParameterError(
                {"Idempotency-Key": f"must be 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} characters"}
            )
        invitation_request = validate(InvitationRequest, await _json_body(request))
        invitation = await run_in_threadpool(
            create_invitation,
            invitation_request,
            client=client,
            store=store,
            callback_keys=callback_keys,
            public_url=public_url,
            now=clock(),
            idempotency_key=key,
            first_check_after=first_check_after,
        )
        created = InvitationCreated(
            invitation.id, invitation.pla_tst_id, invitation.can_id, invitation.test_url
        )
        return JSONResponse(jsonable(created), 201)

    @operation(
        "watchAssessment",
        "Watch a test session created outside the relay",
        description="The reconciler checks it like an invitation and delivers its completion. "
        "Safe to repeat: an already watched session answers 200.",
        body=WatchRequest,
        answers={
            201: Answer("Now watched.", WatchAnswer),
            200: Answer("Already known; nothing changed.", WatchAnswer),
            413: TOO_LARGE,
            422: INVALID,
        },
    )
    async def post_watch(request: Request) -> JSONResponse:
        watch_request = validate(WatchRequest, await _json_body(request))
        invitation, created = await run_in_threadpool(
            watch_assessment, watch_request, store=store, now=clock()
        )
        answer = WatchAnswer(invitation.id, invitation.pla_tst_id, invitation.source, created)
        return JSONResponse(jsonable(answer), 201 if created else 200)

    @operation(
        "getInvitation",
        "Read one invitation",
        parameters=[path_parameter("invitation_id", "An invitation id (inv_…).")],
        answers={200: Answer("The invitation.", Invitation), 404: not_found("invitation")},
    )
    async def get_invitation(request: Request) -> JSONResponse:
        invitation: Invitation | None = await run_in_threadpool(
            store.get_invitation, _path_id(request, "invitation_id", "invitation")
        )
        if invitation is None:
            raise _not_found("invitation")
        return JSONResponse(jsonable(invitation))

    @operation(
        "getEvent",
        "Read one stored event and its payload",
        parameters=[path_parameter("event_id", "An event id (evt_…).")],
        answers={200: Answer("The event.", Event), 404: not_found("event")},
    )
    async def get_event(request: Request) -> JSONResponse:
        event_id = _path_id(request, "event_id", "event")
        event = await run_in_threadpool(store.get_event, event_id)
        if event is None:
            raise _not_found("event")
        return JSONResponse(jsonable(event))

    @operation(
        "listDeliveries",
        f"List deliveries, newest first ({DEFAULT_PAGE_SIZE} at most)",
        parameters=[
            query_parameter(
                "status", {"type": "string", "enum": [status.value for status in DeliveryStatus]}
            )
        ],
        answers={200: Answer("The deliveries.", DeliveryList), 422: INVALID},
    )
    async def list_deliveries(request: Request) -> JSONResponse:
        raw_status = request.query_params.get("status")
        try:
            status = DeliveryStatus(raw_status) if raw_status else None
        except ValueError:
            allowed = ", ".join(s.value for s in DeliveryStatus)
            raise InvalidParameterError({"status": f"must be one of: {allowed}"}) from None
        deliveries = await run_in_threadpool(store.list_deliveries, status=status)
        return JSONResponse(jsonable(DeliveryList(list(deliveries))))

    def _delivery_with_attempts(delivery_id: str) -> DeliveryWithAttempts | None:
        delivery = store.get_delivery(delivery_id)
        if delivery is None:
            return None
        attempts = list(store.list_attempts(delivery_id))
        return DeliveryWithAttempts(**fields_of(delivery), attempts=attempts)

    @operation(
        "getDelivery",
        "Read one delivery with every attempt",
        parameters=[_DELIVERY_ID],
        answers={
            200: Answer("The delivery.", DeliveryWithAttempts),
            404: not_found("delivery"),
        },
    )
    async def get_delivery(request: Request) -> JSONResponse:
        delivery_id = _path_id(request, "delivery_id", "delivery")
        found = await run_in_threadpool(_delivery_with_attempts, delivery_id)
        if found is None:
            raise _not_found("delivery")
        return JSONResponse(jsonable(found))

    def _replay(delivery_id: str, force: bool) -> Delivery:
        # The same path as `isograd-relay replay` and the dashboard's Replay button.
        replay = replay_delivery(
            delivery_id, store=store, enqueuer=enqueuer, now=clock(), force=force
        )
        if replay.outcome is ReplayOutcome.UNKNOWN:
            raise _not_found("delivery")
        if replay.outcome is ReplayOutcome.DELIVERED:
            raise HTTPException(409, "delivery already delivered; add ?force=true to send it again")
        if replay.outcome is ReplayOutcome.BUSY:
            raise HTTPException(409, "delivery is being sent right now; try again shortly")
        delivery = store.get_delivery(delivery_id)
        assert delivery is not None
        return delivery

    @operation(
        "replayDelivery",
        "Send a delivery again, now, with a fresh retry budget",
        description="The receiver gets the same webhook-id again. A delivered delivery is only "
        "sent again with force=true; one being sent right now cannot be replayed (409).",
        parameters=[
            _DELIVERY_ID,
            query_parameter(
                "force",
                {"type": "boolean", "default": False},
                "Replay a delivery that was already delivered.",
            ),
        ],
        answers={
            202: Answer("Requeued.", Delivery),
            404: not_found("delivery"),
            409: Answer("Already delivered (without force), or in flight.", "Error"),
        },
    )
    async def replay(request: Request) -> JSONResponse:
        force = request.query_params.get("force", "").lower() in ("1", "true", "yes")
        delivery_id = _path_id(request, "delivery_id", "delivery")
        delivery = await run_in_threadpool(_replay, delivery_id, force)
        return JSONResponse(jsonable(delivery), 202)

    routes = [
        Route("/invitations", post_invitation, methods=["POST"]),
        Route("/invitations/{invitation_id}", get_invitation, methods=["GET"]),
        Route("/watch", post_watch, methods=["POST"]),
        Route("/events/{event_id}", get_event, methods=["GET"]),
        Route("/deliveries", list_deliveries, methods=["GET"]),
        Route("/deliveries/{delivery_id}", get_delivery, methods=["GET"]),
        Route("/deliveries/{delivery_id}/replay", replay, methods=["POST"]),
        *operator_routes(
            store=store,
            enqueuer=enqueuer,
            subscriptions=subscriptions,
            clock=clock,
            anonymizer=anonymizer,
        ),
    ]
    return [
        Mount(
            "/api",
            routes=routes,
            middleware=[Middleware(BearerAuthMiddleware, token=admin_token)],
        )
    ]
