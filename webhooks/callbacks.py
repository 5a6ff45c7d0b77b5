"""The Isograd callback endpoint: verify the signed token, record the receipt, enqueue, answer."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import structlog
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from webhooks.throttle import FailureThrottle
from worker.errors import CallbackRejectedError
from worker.metrics import RelayMetrics
from worker.storage.records import Invitation, InvitationStatus
from worker.tokens import CallbackKey, verify_callback_token

log = structlog.get_logger(__name__)

DUPLICATE_WINDOW = timedelta(seconds=60)

# What a receipt keeps of the query string: every name (cut to MAX_QUERY_NAME_CHARS, at most
# MAX_QUERY_NAMES of them) and values within one small budget. Isograd's own parameters are a few
# short numbers; a forged request could otherwise store ~93 KB per row.
MAX_STORED_QUERY_BYTES = 512
MAX_QUERY_NAME_CHARS = 64
MAX_QUERY_NAMES = 32
TRUNCATED = "…"

# Rejected callbacks (a token whose MAC does not verify) per client address and minute before
# that address is answered 429 and its further rejections are no longer stored. Only tokens we
# did not sign count, so a real Isograd callback is never refused, whatever its address.
REJECTED_CALLBACKS_PER_ADDRESS = 30
REJECTED_CALLBACKS_WINDOW_SECONDS = 60.0
THROTTLED = "throttled"


class CallbackStore(Protocol):
    def get_invitation(self, invitation_id: str) -> Invitation | None: ...

    def record_callback(
        self,
        invitation_id: str | None,
        method: str,
        query: Mapping[str, str],
        remote_addr: str | None,
        accepted: bool,
        reason: str | None,
        now: datetime | None = None,
    ) -> int: ...


class CompletionEnqueuer(Protocol):
    def completion(self, invitation_id: str, *, delay_seconds: float = 0.0) -> None: ...


@dataclass(frozen=True, slots=True)
class CallbackOutcome:
    """What became of one callback; `reason` says why it was rejected or not enqueued."""

    invitation_id: str | None
    accepted: bool
    enqueued: bool
    reason: str | None
    retry_after: int | None = None  # seconds, when the reason is "throttled"


class RecentCompletions:
    """When each invitation's processing was last enqueued by this process, for `window`.

    Thread-safe; `claim` checks and records in one step, so concurrent duplicate callbacks in one
    process enqueue once. Entries older than the window are dropped as new ones come in.
    """

    def __init__(self, window: timedelta = DUPLICATE_WINDOW) -> None:
        self.window = window
        self._lock = threading.Lock()
        self._enqueued_at: dict[str, datetime] = {}

    def claim(self, invitation_id: str, now: datetime) -> bool:
        """True if no enqueue for `invitation_id` happened within the window (and note this one)."""
        with self._lock:
            last = self._enqueued_at.get(invitation_id)
            if last is not None and now - last < self.window:
                return False
            self._forget_before(now - self.window)
            self._enqueued_at[invitation_id] = now
            return True

    def release(self, invitation_id: str) -> None:
        """Forget a claim whose enqueue failed, so the next callback tries again."""
        with self._lock:
            self._enqueued_at.pop(invitation_id, None)

    def _forget_before(self, cutoff: datetime) -> None:
        # Insertion order is claim order, so the stale entries are at the front.
        for invitation_id, at in list(self._enqueued_at.items()):
            if at >= cutoff:
                break
            del self._enqueued_at[invitation_id]


def receive_callback(
    token: str,
    *,
    method: str,
    query: Mapping[str, str],
    remote_addr: str | None,
    keys: Sequence[CallbackKey],
    store: CallbackStore,
    enqueuer: CompletionEnqueuer,
    recent: RecentCompletions,
    now: datetime,
    throttle: FailureThrottle | None = None,
) -> CallbackOutcome:
    """Verify `token`, record the receipt and enqueue process_completion; blocking (SQL, broker).

    Safe to run twice: a callback for an invitation whose processing this process enqueued
    within `recent.window` is recorded as accepted with reason "duplicate" and enqueues nothing.
    The window is per process (several web processes may each enqueue once), which is harmless
    because process_completion is idempotent per invitation; the window only spares the queue.

    `throttle` counts rejected tokens per `remote_addr`: past its limit they are neither stored
    nor verified further (reason "throttled"). A token that verifies is never throttled.
    """
    try:
        invitation_id = verify_callback_token(keys, token)
    except CallbackRejectedError as exc:
        claimed = _claimed_invitation_id(token)
        if throttle is not None:
            address = remote_addr or "unknown"
            wait = throttle.retry_after(address)
            if wait is not None:
                return CallbackOutcome(claimed, False, False, THROTTLED, retry_after=wait)
            throttle.record_failure(address)
        if claimed is not None:
            store.record_callback(claimed, method, query, remote_addr, False, exc.reason, now)
        return CallbackOutcome(claimed, accepted=False, enqueued=False, reason=exc.reason)

    invitation = store.get_invitation(invitation_id)
    if invitation is None:
        outcome = CallbackOutcome(invitation_id, False, False, "unknown_invitation")
    elif invitation.status is InvitationStatus.COMPLETED:
        outcome = CallbackOutcome(invitation_id, True, False, "already_completed")
    elif not recent.claim(invitation_id, now):
        outcome = CallbackOutcome(invitation_id, True, False, "duplicate")
    else:
        outcome = CallbackOutcome(invitation_id, True, True, None)
    store.record_callback(
        invitation_id, method, query, remote_addr, outcome.accepted, outcome.reason, now
    )
    if outcome.enqueued:
        # The receipt is stored first: if the broker is down, the sweeper still finds the
        # unprocessed callback, so Isograd (and the waiting candidate) get their 200 regardless.
        try:
            enqueuer.completion(invitation_id)
        except Exception as exc:
            recent.release(invitation_id)
            log.error("callback_enqueue_failed", invitation_id=invitation_id, error=repr(exc))
            return CallbackOutcome(invitation_id, True, False, "enqueue_failed")
    return outcome


def _claimed_invitation_id(token: str) -> str | None:
    """The invitation id a rejected token claims, if it has the `{kid}.{id}.{mac}` shape."""
    parts = token.split(".")
    # Printable ASCII only: PostgreSQL text cannot hold NUL (storing it made the 404 a 500).
    claimed = parts[1] if len(parts) == 3 else ""
    if claimed and len(claimed) <= 64 and claimed.isascii() and claimed.isprintable():
        return claimed
    return None


def stored_query(params: Sequence[tuple[str, str]]) -> dict[str, str]:
    """What a receipt keeps of a query string: names, and values within MAX_STORED_QUERY_BYTES.

    NUL is dropped (PostgreSQL's JSONB cannot store it). A cut value ends with TRUNCATED; past
    MAX_QUERY_NAMES names the rest are dropped.
    """
    kept: dict[str, str] = {}
    budget = MAX_STORED_QUERY_BYTES
    for raw_name, raw_value in params:
        if len(kept) >= MAX_QUERY_NAMES:
            break
        name = raw_name.replace("\x00", "")[:MAX_QUERY_NAME_CHARS]
        value = raw_value.replace("\x00", "")
        size = len(value.encode())
        if size > budget:
            # Cut by bytes, dropping any character split at the boundary.
            value = value.encode()[:budget].decode(errors="ignore") + TRUNCATED if budget else ""
            size = budget
        kept[name] = value
        budget -= size
    return kept


def callback_routes(
    *,
    keys: Sequence[CallbackKey],
    store: CallbackStore,
    enqueuer: CompletionEnqueuer,
    clock: Callable[[], datetime],
    recent: RecentCompletions | None = None,
    metrics: RelayMetrics | None = None,
    throttle: FailureThrottle | None = None,
) -> list[BaseRoute]:
    """`GET`/`HEAD /callbacks/isograd/{token}`: 200 when accepted, 429 when the client address
    sent too many rejected tokens lately, else 404.

    `metrics` counts callbacks by result and reason and times them (no invitation id label).
    `throttle` limits rejected callbacks per client address (REJECTED_CALLBACKS_PER_ADDRESS a
    minute unless given).
    """
    recent_completions = recent if recent is not None else RecentCompletions()
    rejected = throttle or FailureThrottle(
        limit=REJECTED_CALLBACKS_PER_ADDRESS, window_seconds=REJECTED_CALLBACKS_WINDOW_SECONDS
    )

    async def isograd_callback(request: Request) -> Response:
        started = time.perf_counter()
        token: str = request.path_params["token"]
        # Isograd may append parameters of its own: ignored, but their names are logged so a
        # change on their side is noticed. Values may carry personal data, so they stay out.
        query = stored_query(request.query_params.multi_items())
        if query:
            log.info("callback_query_ignored", names=sorted(query))
        outcome = await run_in_threadpool(
            receive_callback,
            token,
            method=request.method,
            query=query,
            remote_addr=request.client.host if request.client else None,
            keys=keys,
            store=store,
            enqueuer=enqueuer,
            recent=recent_completions,
            now=clock(),
            throttle=rejected,
        )
        duration = time.perf_counter() - started
        if outcome.reason != THROTTLED:
            # Throttled ones are not logged one by one (a flood would flood the logs too);
            # the metric counts them.
            log.info(
                "callback_received",
                invitation_id=outcome.invitation_id,
                method=request.method,
                accepted=outcome.accepted,
                enqueued=outcome.enqueued,
                reason=outcome.reason,
                duration_ms=round(duration * 1000, 2),
            )
        if metrics is not None:
            metrics.record_callback(
                accepted=outcome.accepted,
                enqueued=outcome.enqueued,
                reason=outcome.reason,
                seconds=duration,
            )
        if outcome.reason == THROTTLED:
            return PlainTextResponse(
                "Too Many Requests", 429, headers={"Retry-After": str(outcome.retry_after)}
            )
        if not outcome.accepted:
            log.warning(
                "callback_rejected", invitation_id=outcome.invitation_id, reason=outcome.reason
            )
            raise CallbackRejectedError(outcome.reason or "rejected")
        return PlainTextResponse("OK")

    return [Route("/callbacks/isograd/{token}", isograd_callback, methods=["GET", "HEAD"])]
