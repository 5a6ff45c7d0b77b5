"""Dashboard pages: what an operator reads — the overview, invitations, events, deliveries and
the search — gathered from the store off the event loop and rendered from `templates/`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

import anyio
import structlog
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from webhooks.dashboard.charts import build_charts, chart_window
from webhooks.dashboard.responses import form_of, not_found, page
from webhooks.dashboard.sessions import Session
from webhooks.dashboard.views import Overview, SubscriptionRow, TestNames, assessment_of
from worker.storage.activity import HourlyAttempts
from worker.storage.paging import InvalidCursorError
from worker.storage.records import (
    Attempt,
    Delivery,
    DeliveryStatus,
    Event,
    EventFilter,
    Invitation,
    InvitationFilter,
    InvitationStatus,
    SubscriptionState,
)
from worker.storage.records import Page as Listing
from worker.subscriptions import Subscription

log = structlog.get_logger(__name__)

EVENTS_PAGE_SIZE = 50
DELIVERIES_PAGE_SIZE = 100
INVITATIONS_PAGE_SIZE = 50
RECENT_FAILURES = 10
SEARCH_LIMIT = 20
MAX_SEARCH_CHARS = 200
# How long a page waits for act 14's test names before it shows ids instead.
NAMES_WAIT_SECONDS = 2.0


class PagesStore(Protocol):
    def count_invitations(self) -> dict[InvitationStatus, int]: ...

    def count_events(self) -> int: ...

    def count_deliveries(self) -> dict[DeliveryStatus, int]: ...

    def list_subscription_states(self) -> list[SubscriptionState]: ...

    def list_deliveries(
        self,
        status: DeliveryStatus | None = None,
        subscription: str | None = None,
        event_id: str | None = None,
        limit: int = 100,
    ) -> Sequence[Delivery]: ...

    def list_events(
        self, filters: EventFilter | None = None, *, limit: int = 50, cursor: str | None = None
    ) -> Listing[Event]: ...

    def get_event(self, event_id: str) -> Event | None: ...

    def get_event_by_pla_tst_id(self, pla_tst_id: int) -> Event | None: ...

    def get_invitation(self, invitation_id: str) -> Invitation | None: ...

    def list_invitations(
        self, filters: InvitationFilter | None = None, *, limit: int = 50, cursor: str | None = None
    ) -> Listing[Invitation]: ...

    def find_invitations(self, term: str, limit: int = 20) -> list[Invitation]: ...

    def list_deliveries_of_events(self, event_ids: Sequence[str]) -> list[Delivery]: ...

    def list_attempts(self, delivery_id: str) -> list[Attempt]: ...

    def hourly_attempts(self, since: datetime, until: datetime) -> list[HourlyAttempts]: ...


class TestNamer(Protocol):
    """Test names from act 14 (worker.catalogue.AssessmentCatalogue): cached, and None rather
    than an error when Isograd does not answer."""

    def name(self, tst_frm_id: int, *, sub_com_id: int | None = None) -> str | None: ...


class Pages:
    """`catalogue` names the tests shown (None: tests are shown by tst_frm_id); a page waits
    `names_wait` seconds at most for it."""

    def __init__(
        self,
        *,
        store: PagesStore,
        subscriptions: Sequence[Subscription],
        clock: Callable[[], datetime],
        catalogue: TestNamer | None = None,
        names_wait: float = NAMES_WAIT_SECONDS,
    ) -> None:
        self._store = store
        self._subscriptions = subscriptions
        self._clock = clock
        self._catalogue = catalogue
        self._names_wait = names_wait

    async def overview(self, request: Request, session: Session) -> Response:
        view = await run_in_threadpool(self._gather_overview)
        form = form_of(request, session)
        return page(request, "overview.html", "Overview", form=form, view=view)

    async def invitations(self, request: Request, session: Session) -> Response:
        status = _invitation_status(request.query_params.get("status", "pending"))
        cursor = request.query_params.get("after") or None
        found = await run_in_threadpool(self._gather_invitations, status, cursor)
        names = await self._names_within([(i.tst_frm_id, i.sub_com_id) for i in found.items])
        return page(
            request,
            "invitations.html",
            "Invitations",
            form=form_of(request, session),
            invitations=found.items,
            status=status,
            later=found.next_cursor,
            now=self._clock(),
            names=names,
        )

    async def events(self, request: Request, session: Session) -> Response:
        cursor = request.query_params.get("before") or None
        found, by_event = await run_in_threadpool(self._gather_events, cursor)
        names = await self._names_within(_tests_of(found.items))
        return page(
            request,
            "events.html",
            "Events",
            form=form_of(request, session),
            events=found.items,
            deliveries=by_event,
            older=found.next_cursor,
            names=names,
        )

    async def event(self, request: Request, session: Session) -> Response:
        found = await run_in_threadpool(self._gather_event, request.path_params["event_id"])
        if found is None:
            return not_found(request, session, "event")
        event, invitation, deliveries = found
        names = await self._names_within(_tests_of([event]))
        return page(
            request,
            "event.html",
            f"Event {event.id}",
            form=form_of(request, session),
            event=event,
            invitation=invitation,
            deliveries=deliveries,
            names=names,
        )

    async def deliveries(self, request: Request, session: Session) -> Response:
        status = _delivery_status(request.query_params.get("status"))
        subscription = request.query_params.get("subscription") or None
        found = await run_in_threadpool(self._gather_deliveries, status, subscription)
        names = {s.name for s in self._subscriptions} | {d.subscription for d in found}
        return page(
            request,
            "deliveries.html",
            "Deliveries",
            form=form_of(request, session),
            deliveries=found,
            status=status,
            subscription=subscription,
            subscriptions=sorted(names),
            limit=DELIVERIES_PAGE_SIZE,
        )

    async def search(self, request: Request, session: Session) -> Response:
        term = request.query_params.get("q", "").strip()[:MAX_SEARCH_CHARS]
        found = await run_in_threadpool(self._gather_search, term) if term else []
        names = await self._names_within([(i.tst_frm_id, i.sub_com_id) for i, _ in found])
        return page(
            request,
            "search.html",
            "Search",
            form=form_of(request, session),
            term=term,
            found=found,
            limit=SEARCH_LIMIT,
            now=self._clock(),
            names=names,
        )

    # -- gathering, in a worker thread ---------------------------------------------------------

    async def _names_within(self, tests: Sequence[tuple[int, int | None]]) -> TestNames:
        """The names act 14 knows of these (tst_frm_id, sub_com_id), or none after
        `names_wait` seconds: a slow Isograd (the client waits up to 30 s, three times) makes a
        page show ids, not hang. The abandoned lookup finishes on its own and fills the cache."""
        if self._catalogue is None or not tests:
            return {}
        with anyio.move_on_after(self._names_wait):
            # https://anyio.readthedocs.io/en/stable/threads.html (abandon_on_cancel)
            return await anyio.to_thread.run_sync(self._names, tests, abandon_on_cancel=True)
        log.warning("dashboard_test_names_slow", wait_seconds=self._names_wait)
        return {}

    def _names(self, tests: Sequence[tuple[int, int | None]]) -> TestNames:
        # The catalogue caches them and answers None, never an error, while Isograd is down.
        assert self._catalogue is not None
        named = {test: self._catalogue.name(test[0], sub_com_id=test[1]) for test in set(tests)}
        return {test: name for test, name in named.items() if name}

    def _gather_overview(self) -> Overview:
        store = self._store
        rows = _subscription_rows(self._subscriptions, store.list_subscription_states())
        now = self._clock()
        activity = store.hourly_attempts(*chart_window(now))
        return Overview(
            invitations=store.count_invitations(),
            events=store.count_events(),
            deliveries=store.count_deliveries(),
            subscriptions=rows,
            recent_failures=store.list_deliveries(
                status=DeliveryStatus.FAILED, limit=RECENT_FAILURES
            ),
            charts=build_charts([row.name for row in rows], activity, now),
        )

    def _gather_invitations(
        self, status: InvitationStatus | None, cursor: str | None
    ) -> Listing[Invitation]:
        filters = InvitationFilter(status=status)
        try:
            return self._store.list_invitations(filters, limit=INVITATIONS_PAGE_SIZE, cursor=cursor)
        except InvalidCursorError:
            return Listing([])

    def _gather_events(
        self, cursor: str | None
    ) -> tuple[Listing[Event], dict[str, list[Delivery]]]:
        try:
            found = self._store.list_events(limit=EVENTS_PAGE_SIZE, cursor=cursor)
        except InvalidCursorError:
            found = Listing([])
        by_event: dict[str, list[Delivery]] = {}
        for delivery in self._store.list_deliveries_of_events([e.id for e in found.items]):
            by_event.setdefault(delivery.event_id, []).append(delivery)
        return found, by_event

    def _gather_event(
        self, event_id: str
    ) -> tuple[Event, Invitation | None, list[tuple[Delivery, list[Attempt]]]] | None:
        store = self._store
        event = store.get_event(event_id)
        if event is None:
            return None
        invitation = store.get_invitation(event.invitation_id) if event.invitation_id else None
        deliveries = store.list_deliveries_of_events([event.id])
        return event, invitation, [(d, store.list_attempts(d.id)) for d in deliveries]

    def _gather_deliveries(
        self, status: DeliveryStatus | None, subscription: str | None
    ) -> list[Delivery]:
        store = self._store
        if status is not None:
            return list(
                store.list_deliveries(
                    status=status, subscription=subscription, limit=DELIVERIES_PAGE_SIZE
                )
            )
        failed = store.list_deliveries(
            status=DeliveryStatus.FAILED, subscription=subscription, limit=DELIVERIES_PAGE_SIZE
        )
        others = [
            delivery
            for delivery in store.list_deliveries(
                subscription=subscription, limit=DELIVERIES_PAGE_SIZE + len(failed)
            )
            if delivery.status is not DeliveryStatus.FAILED
        ]
        return [*failed, *others][:DELIVERIES_PAGE_SIZE]

    def _gather_search(self, term: str) -> list[tuple[Invitation, Event | None]]:
        store = self._store
        return [
            (
                invitation,
                None
                if invitation.pla_tst_id is None
                else store.get_event_by_pla_tst_id(invitation.pla_tst_id),
            )
            for invitation in store.find_invitations(term, limit=SEARCH_LIMIT)
        ]


def _tests_of(events: Sequence[Event]) -> list[tuple[int, int | None]]:
    """The (tst_frm_id, sub_com_id) of events delivered without a test name."""
    tests = []
    for event in events:
        form_id, sub_com_id, delivered_name = assessment_of(event)
        if form_id is not None and delivered_name is None:
            tests.append((form_id, sub_com_id))
    return tests


def _subscription_rows(
    configured: Sequence[Subscription], states: Sequence[SubscriptionState]
) -> list[SubscriptionRow]:
    by_name = {state.name: state for state in states}
    rows = [
        SubscriptionRow(s.name, s.target.describe(), by_name.get(s.name, SubscriptionState(s.name)))
        for s in configured
    ]
    names = {s.name for s in configured}
    rows += [SubscriptionRow(s.name, None, s) for s in states if s.name not in names]
    return rows


def _delivery_status(value: str | None) -> DeliveryStatus | None:
    """The status filter; an unknown one shows every delivery rather than an error page."""
    try:
        return DeliveryStatus(value) if value else None
    except ValueError:
        return None


def _invitation_status(value: str) -> InvitationStatus | None:
    """The status filter; "all" (or an unknown one) shows every invitation."""
    try:
        return InvitationStatus(value)
    except ValueError:
        return None
