"""Dashboard actions: what an operator changes — replay one delivery, replay a subscription's
failed deliveries in a time range, enable or disable a subscription. Each is the same operation
as the admin API's and the CLI's (worker/replay.py, worker/subscription_status.py)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Literal, Protocol

import structlog
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from webhooks.dashboard.responses import not_found, redirect, safe_next
from webhooks.dashboard.sessions import Session
from webhooks.dashboard.signin import Action
from webhooks.dashboard.views import with_query
from worker.replay import (
    BulkReplayStore,
    DeliveryEnqueuer,
    DeliveryStore,
    replay_delivery,
    replay_matching,
)
from worker.storage.records import Delivery, DeliveryFilter, DeliveryStatus
from worker.subscription_status import (
    SubscriptionStateStore,
    UnknownSubscriptionError,
    set_subscription_enabled,
)
from worker.subscriptions import Subscription

log = structlog.get_logger(__name__)


class ActionsStore(DeliveryStore, BulkReplayStore, SubscriptionStateStore, Protocol):
    # Both replays' protocols name it; the store's one method takes every argument of each.
    def requeue_delivery(
        self,
        delivery_id: str,
        now: datetime | None = None,
        *,
        allow_delivered: bool = True,
        only_from: Sequence[DeliveryStatus] | None = None,
    ) -> Delivery | None: ...


class Actions:
    """`enqueuer` sends replayed deliveries (None: the sweeper will)."""

    def __init__(
        self,
        *,
        store: ActionsStore,
        enqueuer: DeliveryEnqueuer | None,
        subscriptions: Sequence[Subscription],
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._enqueuer = enqueuer
        self._subscriptions = subscriptions
        self._clock = clock

    async def replay(self, request: Request, session: Session, fields: dict[str, str]) -> Response:
        delivery_id = request.path_params["delivery_id"]
        outcome = await run_in_threadpool(
            lambda: replay_delivery(
                delivery_id, store=self._store, enqueuer=self._enqueuer, now=self._clock()
            )
        )
        return redirect(with_query(safe_next(fields.get("next")), notice=outcome.outcome.value))

    async def replay_failed(
        self, request: Request, session: Session, fields: dict[str, str]
    ) -> Response:
        name = request.path_params["name"]
        if name not in {s.name for s in self._subscriptions}:
            return not_found(request, session, "subscription")
        since, until = _moment(fields.get("from")), _moment(fields.get("until"))
        next_path = safe_next(fields.get("next"))
        if since is False or until is False:
            return redirect(with_query(next_path, notice="bad_range"))
        filters = DeliveryFilter(subscription=name, created_from=since, created_until=until)
        done = await run_in_threadpool(
            lambda: replay_matching(
                filters, store=self._store, enqueuer=self._enqueuer, now=self._clock()
            )
        )
        log.info("dashboard_bulk_replay", subscription=name, requeued=done.requeued)
        requeued = str(done.requeued)
        return redirect(with_query(next_path, notice="bulk", requeued=requeued, subscription=name))

    def switch(self, enabled: bool) -> Action:
        """The Enable (True) or Disable (False) button of a subscription."""

        async def endpoint(request: Request, session: Session, fields: dict[str, str]) -> Response:
            name = request.path_params["name"]
            try:
                await run_in_threadpool(
                    lambda: set_subscription_enabled(
                        name,
                        enabled,
                        configured=self._subscriptions,
                        store=self._store,
                        now=self._clock(),
                    )
                )
            except UnknownSubscriptionError:
                return not_found(request, session, "subscription")
            notice = "enabled" if enabled else "disabled"
            return redirect(with_query(safe_next(fields.get("next")), notice=notice))

        return endpoint


def _moment(value: str | None) -> datetime | Literal[False] | None:
    """A form's `datetime-local` value read as UTC (the page says so); None when blank, False
    when it is not a date and time."""
    if not value or not value.strip():
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return False
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
