"""The admin API's operator endpoints: find invitations and events, replay failures in bulk,
enable and disable subscriptions, erase a candidate on request (mounted under /api)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from webhooks.api.answers import (
    BulkReplayAnswer,
    ErasureAnswer,
    EventPage,
    InvitationPage,
    SubscriptionAnswer,
    SubscriptionList,
    fields_of,
    jsonable,
)
from webhooks.api.openapi import (
    INVALID,
    TOO_LARGE,
    Answer,
    Body,
    not_found,
    object_schema,
    operation,
    path_parameter,
    query_parameter,
)
from worker.erasure import CandidateAnonymizer, ErasureStore, erase_candidate
from worker.queries import (
    MAX_LIMIT,
    REPLAYABLE_STATUSES,
    InvalidQueryError,
    read_event_query,
    read_invitation_query,
    read_replay_filter,
)
from worker.replay import BulkReplayStore, DeliveryEnqueuer, replay_matching
from worker.requests import EMAIL_SCHEMA, TEXT_SCHEMA
from worker.storage.paging import InvalidCursorError
from worker.storage.records import (
    DeliveryStatus,
    Event,
    EventFilter,
    Invitation,
    InvitationStatus,
    Page,
)
from worker.subscription_status import (
    SubscriptionStateStore,
    UnknownSubscriptionError,
    set_subscription_enabled,
    subscription_statuses,
)
from worker.subscriptions import Subscription

API_REQUESTER = "admin-api"
MAX_REQUESTER_LENGTH = 200


class OperatorStore(BulkReplayStore, SubscriptionStateStore, ErasureStore, Protocol):
    def list_events(
        self, filters: EventFilter | None = None, *, limit: int = 50, cursor: str | None = None
    ) -> Page[Event]: ...


def _enum_schema(values: Any) -> dict[str, Any]:
    return {"type": "string", "enum": [member.value for member in values]}


_TIME = {"type": "string", "description": "ISO 8601 with a UTC offset, or a date (UTC)."}
_FILTERS = [
    query_parameter("email", {"type": "string"}, "The candidate's email, any case."),
    query_parameter("pla_tst_id", {"type": "integer", "minimum": 1}),
    query_parameter("tst_frm_id", {"type": "integer", "minimum": 1}),
    query_parameter("created_from", _TIME, "Created at or after this time."),
    query_parameter("created_until", _TIME, "Created before this time."),
    query_parameter(
        "limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 50}
    ),
    query_parameter("cursor", {"type": "string"}, "The next_cursor of the previous page."),
]
_NAME = path_parameter("name", "A subscription name, as in relay.toml.")

# The bodies below are read by worker/queries.py (bulk replay) and the erasure endpoint itself,
# not by a request model: their schemas are declared here, once.
_REPLAYABLE = {"type": "string", "enum": [status.value for status in REPLAYABLE_STATUSES]}
_REPLAY_REQUEST = Body(
    "ReplayRequest",
    object_schema(
        [],
        {
            "subscription": {**TEXT_SCHEMA, "description": "Only this subscription's deliveries."},
            "status": {
                "description": "failed (the default), cancelled, or both.",
                "oneOf": [_REPLAYABLE, {"type": "array", "items": _REPLAYABLE, "minItems": 1}],
            },
            "created_from": {**_TIME, "description": "Deliveries created at or after this."},
            "created_until": {**_TIME, "description": "Deliveries created before this."},
        },
    ),
)
_ERASURE_REQUEST = Body(
    "ErasureRequest",
    object_schema(
        ["email"],
        {
            "email": EMAIL_SCHEMA,
            "isograd": {
                "type": "boolean",
                "default": False,
                "description": "Also anonymize the candidate at Isograd (act 12).",
            },
            "requested_by": {
                **TEXT_SCHEMA,
                "maxLength": MAX_REQUESTER_LENGTH,
                "description": "Who asked, for the audit row (default: admin-api).",
            },
        },
    ),
)
_UNKNOWN_SUBSCRIPTION = not_found("subscription configured in relay.toml")


async def _object_body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body())
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidQueryError({"body": "must be valid JSON"}) from None
    if not isinstance(body, dict):
        raise InvalidQueryError({"body": "must be a JSON object"})
    return body


def _query(request: Request) -> dict[str, object]:
    # An empty value (a form's blank field) means no filter.
    return {name: value for name, value in request.query_params.items() if value != ""}


def _paged(list_page: Callable[[], Page[Any]]) -> Page[Any]:
    try:
        return list_page()
    except InvalidCursorError:
        raise InvalidQueryError({"cursor": "is not a cursor of this listing"}) from None


def operator_routes(
    *,
    store: OperatorStore,
    enqueuer: DeliveryEnqueuer | None,
    subscriptions: Sequence[Subscription],
    clock: Callable[[], datetime],
    anonymizer: CandidateAnonymizer | None,
) -> list[BaseRoute]:
    @operation(
        "listInvitations",
        "List invitations, newest first, filtered, a page at a time",
        description="Answers who was invited and who has not finished (status=pending). "
        "Pages follow a stable order (created_at, then id); pass next_cursor as cursor.",
        parameters=[
            query_parameter("status", _enum_schema(InvitationStatus)),
            *_FILTERS,
        ],
        answers={200: Answer("A page of invitations.", InvitationPage), 422: INVALID},
    )
    async def list_invitations(request: Request) -> JSONResponse:
        filters, listing = read_invitation_query(_query(request))

        def page() -> Page[Invitation]:
            return store.list_invitations(filters, limit=listing.limit, cursor=listing.cursor)

        found = await run_in_threadpool(_paged, page)
        return JSONResponse(jsonable(InvitationPage(found.items, found.next_cursor)))

    @operation(
        "listEvents",
        "List stored events, newest first, filtered, a page at a time",
        description="status and subscription match events with a delivery in that status or "
        "to that subscription; email and tst_frm_id are read from the payload.",
        parameters=[
            query_parameter("status", _enum_schema(DeliveryStatus), "A delivery status."),
            query_parameter("subscription", {"type": "string"}),
            *_FILTERS,
        ],
        answers={200: Answer("A page of events.", EventPage), 422: INVALID},
    )
    async def list_events(request: Request) -> JSONResponse:
        filters, listing = read_event_query(_query(request))

        def page() -> Page[Event]:
            return store.list_events(filters, limit=listing.limit, cursor=listing.cursor)

        found = await run_in_threadpool(_paged, page)
        return JSONResponse(jsonable(EventPage(found.items, found.next_cursor)))

    @operation(
        "replayDeliveries",
        "Replay every failed (or cancelled) delivery matching a filter",
        description="Each delivery is requeued only if it is still failed/cancelled when "
        "changed, so the call is idempotent and safe while workers run: a second call answers "
        "requeued 0. Delivered deliveries are never sent again.",
        body=_REPLAY_REQUEST,
        answers={
            200: Answer("What was requeued.", BulkReplayAnswer),
            413: TOO_LARGE,
            422: INVALID,
        },
    )
    async def replay_deliveries(request: Request) -> JSONResponse:
        filters = read_replay_filter(await _object_body(request))
        replay = await run_in_threadpool(
            replay_matching, filters, store=store, enqueuer=enqueuer, now=clock()
        )
        return JSONResponse(jsonable(BulkReplayAnswer.of(replay)))

    @operation(
        "listSubscriptions",
        "List subscriptions with their state and delivery counts",
        description="Configured ones in relay.toml order, then names only the database knows "
        "(removed from relay.toml, with deliveries left).",
        answers={200: Answer("The subscriptions.", SubscriptionList)},
    )
    async def list_subscriptions(request: Request) -> JSONResponse:
        statuses = await run_in_threadpool(subscription_statuses, subscriptions, store)
        answer = SubscriptionList([SubscriptionAnswer.of(status) for status in statuses])
        return JSONResponse(jsonable(answer))

    def _set_enabled(name: str, enabled: bool) -> SubscriptionAnswer:
        try:
            status = set_subscription_enabled(
                name, enabled, configured=subscriptions, store=store, now=clock()
            )
        except UnknownSubscriptionError:
            raise HTTPException(404, "subscription not found") from None
        return SubscriptionAnswer.of(status)

    @operation(
        "enableSubscription",
        "Enable a subscription (its failure streak starts over)",
        description="New events go to it again; deliveries cancelled while it was disabled can "
        "be replayed (POST /api/deliveries/replay with status cancelled). Safe to repeat.",
        parameters=[_NAME],
        answers={200: Answer("Enabled.", SubscriptionAnswer), 404: _UNKNOWN_SUBSCRIPTION},
    )
    async def enable(request: Request) -> JSONResponse:
        answer = await run_in_threadpool(_set_enabled, request.path_params["name"], True)
        return JSONResponse(jsonable(answer))

    @operation(
        "disableSubscription",
        "Disable a subscription",
        description="No new deliveries go to it; queued ones are cancelled when a worker "
        "picks them up. Safe to repeat (the first time and reason are kept).",
        parameters=[_NAME],
        answers={200: Answer("Disabled.", SubscriptionAnswer), 404: _UNKNOWN_SUBSCRIPTION},
    )
    async def disable(request: Request) -> JSONResponse:
        answer = await run_in_threadpool(_set_enabled, request.path_params["name"], False)
        return JSONResponse(jsonable(answer))

    @operation(
        "eraseCandidate",
        "Erase everything about one candidate (right to erasure)",
        description="Blanks the candidate's email, names, ext_id and context in invitations, "
        "events' payloads, callbacks and attempts' bodies, cancels deliveries still to be "
        "sent, and keeps an audit row (who, when, how many rows, a salted hash, never the "
        "email). With isograd=true, also anonymizes the candidate at Isograd (act 12); "
        "if that fails, isograd_failed is true and repeating the call retries it.",
        body=_ERASURE_REQUEST,
        answers={
            200: Answer("Erased; the audit row.", ErasureAnswer),
            413: TOO_LARGE,
            422: INVALID,
        },
    )
    async def erase(request: Request) -> JSONResponse:
        body = await _object_body(request)
        if unknown := sorted(set(body) - {"email", "isograd", "requested_by"}):
            raise InvalidQueryError(dict.fromkeys(unknown, "is not a known field"))
        at_isograd = body.get("isograd", False)
        requested_by = body.get("requested_by", API_REQUESTER)
        errors = {}
        if not isinstance(at_isograd, bool):
            errors["isograd"] = "must be true or false"
        if not isinstance(requested_by, str) or not (
            0 < len(requested_by.strip()) <= MAX_REQUESTER_LENGTH
        ):
            errors["requested_by"] = (
                f"must be a non-empty string of at most {MAX_REQUESTER_LENGTH} characters"
            )
        if "email" not in body:
            errors["email"] = "is required"
        if errors:
            raise InvalidQueryError(errors)
        if at_isograd and anonymizer is None:
            raise InvalidQueryError({"isograd": "no Isograd client is configured"})

        def run() -> ErasureAnswer:
            try:
                erasure = erase_candidate(
                    body["email"],
                    store=store,
                    requested_by=requested_by.strip(),
                    now=clock(),
                    isograd=anonymizer if at_isograd else None,
                )
            except ValueError as exc:
                raise InvalidQueryError({"email": str(exc)}) from None
            return ErasureAnswer(**fields_of(erasure.record), isograd_failed=erasure.isograd_failed)

        return JSONResponse(jsonable(await run_in_threadpool(run)))

    return [
        Route("/invitations", list_invitations, methods=["GET"]),
        Route("/events", list_events, methods=["GET"]),
        Route("/deliveries/replay", replay_deliveries, methods=["POST"]),
        Route("/subscriptions", list_subscriptions, methods=["GET"]),
        Route("/subscriptions/{name}/enable", enable, methods=["POST"]),
        Route("/subscriptions/{name}/disable", disable, methods=["POST"]),
        Route("/erasure", erase, methods=["POST"]),
    ]
