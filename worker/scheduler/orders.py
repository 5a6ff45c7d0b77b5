"""Order polling: each Kombo subscription's open orders, invited when a webhook was missed.

Kombo's webhook is the fast path; this job makes it a hint. Every `poll_interval_seconds` it
walks `GET /assessment/orders/open` page by page (cursor in `data.next`), at most
`requests_per_second` requests, and places every order with worker.orders.place_order, which is
keyed by the order id: an order the webhook already placed costs one database read. Its first run
also publishes the subscription's packages (`PUT /assessment/packages`), so a scheduler start
keeps Kombo's catalogue in step with relay.toml.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from worker.errors import PermanentError, RetryableError
from worker.invitations import InvitationStore
from worker.orders import OrderClient, OrderRejectedError, kombo_order, place_order
from worker.scheduler import PeriodicJob
from worker.scheduler.reconciler import TokenBucket
from worker.sinks.base import AttemptOutcome
from worker.sinks.kombo import KIND, KomboApi, KomboTarget
from worker.subscriptions import Subscription
from worker.tokens import CallbackKey

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class PollReport:
    subscription: str
    packages_published: bool | None = None  # None: not tried in this run
    pages: int = 0
    orders: int = 0
    created: int = 0
    unusable: int = 0  # unknown package, no usable email: logged, left open in Kombo
    failed: int = 0  # Isograd refused the invitation
    interrupted: bool = False  # stopped early: shutdown, Kombo or Isograd unavailable


def publish_packages(api: KomboApi, *, now: datetime) -> bool:
    """PUT the subscription's packages; True when Kombo took them (safe to repeat)."""
    result = api.set_packages(attempt_at=now)
    published = result.outcome is AttemptOutcome.DELIVERED
    log.info(
        "kombo_packages_published" if published else "kombo_packages_not_published",
        subscription=api.name,
        packages=len(api.target.packages),
        status_code=result.status_code,
        error=result.error,
    )
    return published


class KomboOrderPoller:
    """One subscription's poll; `run` is the periodic job (one instance, the scheduler's)."""

    def __init__(
        self,
        subscription: Subscription,
        *,
        api: KomboApi,
        client: OrderClient,
        store: InvitationStore,
        callback_keys: Sequence[CallbackKey],
        public_url: str,
        clock: Callable[[], datetime],
        first_check_after: timedelta,
    ) -> None:
        target = subscription.target
        assert isinstance(target, KomboTarget)
        self.subscription = subscription
        self.target = target
        self.api = api
        self._client = client
        self._store = store
        self._callback_keys = callback_keys
        self._public_url = public_url
        self._clock = clock
        self._first_check_after = first_check_after
        self._limiter = TokenBucket(target.requests_per_second)
        self._published = False

    def run(self, halt: threading.Event) -> PollReport:
        name = self.subscription.name
        published: bool | None = None
        if not self._published:
            if not self._wait_for_token(halt):
                return PollReport(name, interrupted=True)
            published = self._published = publish_packages(self.api, now=self._clock())
        pages = orders = created = unusable = failed = 0
        cursor: str | None = None
        while True:
            if not self._wait_for_token(halt):
                return PollReport(name, published, pages, orders, created, unusable, failed, True)
            try:
                page = self.api.open_orders(cursor)
            except (RetryableError, PermanentError) as exc:
                log.warning("kombo_poll_failed", subscription=name, error=str(exc))
                return PollReport(name, published, pages, orders, created, unusable, failed, True)
            pages += 1
            for order in page.orders:
                if halt.is_set():
                    return PollReport(
                        name, published, pages, orders, created, unusable, failed, True
                    )
                orders += 1
                try:
                    placed = place_order(
                        kombo_order(order, self.target, name),
                        client=self._client,
                        store=self._store,
                        callback_keys=self._callback_keys,
                        public_url=self._public_url,
                        now=self._clock(),
                        mail_template_id=(
                            self.target.mail_template_id if self.target.send_email else None
                        ),
                        first_check_after=self._first_check_after,
                    )
                except OrderRejectedError as exc:
                    unusable += 1
                    log.warning("kombo_order_unusable", subscription=name, reason=str(exc))
                    continue
                except RetryableError as exc:
                    # Isograd is down: the next run tries again, the order stays open.
                    log.warning("kombo_poll_isograd_unavailable", error=type(exc).__name__)
                    return PollReport(
                        name, published, pages, orders, created, unusable, failed, True
                    )
                except PermanentError as exc:
                    failed += 1
                    log.warning("kombo_order_failed", subscription=name, error=type(exc).__name__)
                    continue
                if placed.invited.created:
                    created += 1
                    log.info("kombo_order_recovered", subscription=name, order_id=order.get("id"))
            cursor = page.next_cursor
            if cursor is None:
                return PollReport(name, published, pages, orders, created, unusable, failed)

    def _wait_for_token(self, halt: threading.Event) -> bool:
        """Wait for the rate limiter; False when `halt` was set meanwhile."""
        while (delay := self._limiter.delay()) > 0:
            if halt.wait(delay):
                return False
        return not halt.is_set()


def kombo_jobs(
    subscriptions: Sequence[Subscription],
    *,
    make_api: Callable[[Subscription], KomboApi],
    client: OrderClient,
    store: InvitationStore,
    callback_keys: Sequence[CallbackKey],
    public_url: str,
    clock: Callable[[], datetime],
    first_check_after: timedelta,
) -> list[PeriodicJob]:
    """One poll job per enabled Kombo subscription, every `poll_interval_seconds`."""
    jobs = []
    for subscription in subscriptions:
        target = subscription.target
        if subscription.kind != KIND or not subscription.enabled:
            continue
        assert isinstance(target, KomboTarget)
        poller = KomboOrderPoller(
            subscription,
            api=make_api(subscription),
            client=client,
            store=store,
            callback_keys=callback_keys,
            public_url=public_url,
            clock=clock,
            first_check_after=first_check_after,
        )
        jobs.append(
            PeriodicJob(
                f"kombo_orders:{subscription.name}", target.poll_interval_seconds, poller.run
            )
        )
    return jobs
