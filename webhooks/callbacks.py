"""The Isograd callback endpoint: verify the signed token, record the receipt, enqueue, answer."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

import structlog
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from webhooks.receipts import CallbackOutcome, PendingReceipt, ReceiptWriter
from webhooks.throttle import FailureThrottle
from worker.errors import CallbackRejectedError
from worker.metrics import RelayMetrics
from worker.tokens import CallbackKey, verify_callback_token

log = structlog.get_logger(__name__)

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


async def receive_callback(
    token: str,
    *,
    method: str,
    query: Mapping[str, str],
    remote_addr: str | None,
    keys: Sequence[CallbackKey],
    writer: ReceiptWriter,
    now: datetime,
    throttle: FailureThrottle | None = None,
) -> CallbackOutcome:
    """Verify `token` here (one HMAC, no I/O), then hand the receipt to `writer`, which stores
    it (committed when this returns) and enqueues process_completion when due; see
    webhooks.receipts for the outcomes and their reasons.

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
        if claimed is None:
            return CallbackOutcome(None, accepted=False, enqueued=False, reason=exc.reason)
        rejected = PendingReceipt(claimed, method, query, remote_addr, now, rejection=exc.reason)
        return await writer.submit(rejected)
    return await writer.submit(PendingReceipt(invitation_id, method, query, remote_addr, now))


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
    writer: ReceiptWriter,
    clock: Callable[[], datetime],
    metrics: RelayMetrics | None = None,
    throttle: FailureThrottle | None = None,
) -> list[BaseRoute]:
    """`GET`/`HEAD /callbacks/isograd/{token}`: 200 when accepted, 429 when the client address
    sent too many rejected tokens lately, else 404.

    `writer` stores the receipts and enqueues (one per process: its duplicate window and its
    batches span every request). `metrics` counts callbacks by result and reason and times them
    (no invitation id label).
    `throttle` limits rejected callbacks per client address (REJECTED_CALLBACKS_PER_ADDRESS a
    minute unless given).
    """
    rejected = throttle or FailureThrottle(
        limit=REJECTED_CALLBACKS_PER_ADDRESS, window_seconds=REJECTED_CALLBACKS_WINDOW_SECONDS
    )

    async def isograd_callback(request: Request) -> Response:
        started = time.perf_counter()
        token: str = request.path_params["token"]
        # Isograd may append parameters of its own: ignored, but their names are logged so a
        # change on their side is noticed. Values may carry personal data, so they stay out.
        # Without a query string (the usual callback) there is nothing to parse.
        query = (
            stored_query(request.query_params.multi_items())
            if request.scope["query_string"]
            else {}
        )
        if query:
            log.info("callback_query_ignored", names=sorted(query))
        outcome = await receive_callback(
            token,
            method=request.method,
            query=query,
            remote_addr=request.client.host if request.client else None,
            keys=keys,
            writer=writer,
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
