"""The Isograd callback endpoint: verify the signed token, record the receipt, enqueue, answer."""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import structlog
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from worker.errors import CallbackRejectedError
from worker.storage.records import Invitation, InvitationStatus
from worker.tokens import CallbackKey, verify_callback_token

log = structlog.get_logger(__name__)

DUPLICATE_WINDOW = timedelta(seconds=60)


class CallbackStore(Protocol):
    def get_invitation(self, invitation_id: str) -> Invitation | None: ...

    def record_callback(
        self,
        *,
        invitation_id: str | None,
        received_at: datetime,
        method: str,
        query: dict[str, str],
        remote_addr: str | None,
        accepted: bool,
        reason: str | None,
    ) -> object: ...

    def last_accepted_callback_at(self, invitation_id: str) -> datetime | None: ...


class CompletionEnqueuer(Protocol):
    def completion(self, invitation_id: str, *, delay_seconds: float = 0.0) -> object: ...


@dataclass(frozen=True, slots=True)
class CallbackOutcome:
    """What became of one callback; `reason` says why it was rejected or not enqueued."""

    invitation_id: str | None
    accepted: bool
    enqueued: bool
    reason: str | None


class _StripedLocks:
    """A fixed set of locks picked by invitation id: callbacks for one invitation take turns."""

    def __init__(self, size: int = 64) -> None:
        self._locks = tuple(threading.Lock() for _ in range(size))

    def __call__(self, key: str) -> threading.Lock:
        return self._locks[zlib.crc32(key.encode()) % len(self._locks)]


def receive_callback(
    token: str,
    *,
    method: str,
    query: Mapping[str, str],
    remote_addr: str | None,
    keys: Sequence[CallbackKey],
    store: CallbackStore,
    enqueuer: CompletionEnqueuer,
    now: datetime,
    duplicate_window: timedelta = DUPLICATE_WINDOW,
    lock_for: Callable[[str], threading.Lock] | None = None,
) -> CallbackOutcome:
    """Verify `token`, record the receipt and enqueue process_completion; blocking (SQL, broker).

    Safe to run twice: a second accepted callback for the same invitation within
    `duplicate_window` (measured from the last accepted receipt in the store) is recorded with
    reason "duplicate" and enqueues nothing. Within one process the check and the record are
    serialised per invitation by `lock_for`, so concurrent duplicates enqueue once too; across
    processes two simultaneous callbacks may both enqueue, which process_completion tolerates
    (it is idempotent per pla_tst_id).
    """
    try:
        invitation_id = verify_callback_token(keys, token)
    except CallbackRejectedError as exc:
        claimed = _claimed_invitation_id(token)
        if claimed is not None:
            store.record_callback(
                invitation_id=claimed,
                received_at=now,
                method=method,
                query=dict(query),
                remote_addr=remote_addr,
                accepted=False,
                reason=exc.reason,
            )
        return CallbackOutcome(claimed, accepted=False, enqueued=False, reason=exc.reason)

    with (lock_for or _LOCKS)(invitation_id):
        invitation = store.get_invitation(invitation_id)
        if invitation is None:
            outcome = CallbackOutcome(invitation_id, False, False, "unknown_invitation")
        elif invitation.status is InvitationStatus.COMPLETED:
            outcome = CallbackOutcome(invitation_id, True, False, "already_completed")
        else:
            last = store.last_accepted_callback_at(invitation_id)
            if last is not None and now - last < duplicate_window:
                outcome = CallbackOutcome(invitation_id, True, False, "duplicate")
            else:
                outcome = CallbackOutcome(invitation_id, True, True, None)
        store.record_callback(
            invitation_id=invitation_id,
            received_at=now,
            method=method,
            query=dict(query),
            remote_addr=remote_addr,
            accepted=outcome.accepted,
            reason=outcome.reason,
        )
    if outcome.enqueued:
        # The receipt is stored first: if the broker is down the reconciler still finds the
        # pending invitation, so Isograd (and the waiting candidate) get their 200 regardless.
        try:
            enqueuer.completion(invitation_id)
        except Exception as exc:
            log.error("callback_enqueue_failed", invitation_id=invitation_id, error=repr(exc))
            return CallbackOutcome(invitation_id, True, False, "enqueue_failed")
    return outcome


_LOCKS = _StripedLocks()


def _claimed_invitation_id(token: str) -> str | None:
    """The invitation id a rejected token claims, if it has the `{kid}.{id}.{mac}` shape."""
    parts = token.split(".")
    if len(parts) == 3 and parts[1] and len(parts[1]) <= 64 and parts[1].isascii():
        return parts[1]
    return None


def callback_routes(
    *,
    keys: Sequence[CallbackKey],
    store: CallbackStore,
    enqueuer: CompletionEnqueuer,
    clock: Callable[[], datetime],
    duplicate_window: timedelta = DUPLICATE_WINDOW,
) -> list[BaseRoute]:
    """`GET`/`HEAD /callbacks/isograd/{token}` (DESIGN §3.1): 200 when accepted, else 404."""

    async def isograd_callback(request: Request) -> Response:
        started = time.perf_counter()
        token: str = request.path_params["token"]
        # Isograd may append parameters of its own: ignored, but their names are logged so a
        # change on their side is noticed. Values may carry personal data, so they stay out.
        query = dict(request.query_params)
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
            now=clock(),
            duplicate_window=duplicate_window,
        )
        log.info(
            "callback_received",
            invitation_id=outcome.invitation_id,
            method=request.method,
            accepted=outcome.accepted,
            enqueued=outcome.enqueued,
            reason=outcome.reason,
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
        )
        if not outcome.accepted:
            log.warning(
                "callback_rejected", invitation_id=outcome.invitation_id, reason=outcome.reason
            )
            raise CallbackRejectedError(outcome.reason or "rejected")
        return PlainTextResponse("OK")

    return [Route("/callbacks/isograd/{token}", isograd_callback, methods=["GET", "HEAD"])]
