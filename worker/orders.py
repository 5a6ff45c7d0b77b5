"""Orders: a test an ATS ordered for a candidate (Teamtailor, Kombo), invited exactly once.

An order is turned into an invitation by the same path as `POST /api/invitations`
(worker.invitations.invite), keyed by the vendor's own id: a repeated webhook, a webhook and the
poller, or two web processes racing on the same order all end on one invitation and one Isograd
test. The routing data the result's sink needs travels in the invitation's `context`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from worker.errors import PermanentError, RetryableError
from worker.invitations import (
    FIRST_CHECK_AFTER,
    InvitationClient,
    InvitationStore,
    Invited,
    invite,
)
from worker.requests import InvalidRequestError, InvitationRequest, validate
from worker.tokens import CallbackKey

if TYPE_CHECKING:
    from worker.sinks.kombo import KomboTarget

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Order:
    """One vendor order: `order_id` is the vendor's id (a Teamtailor partner event, a Kombo
    assessment order), unique within the subscription that received it."""

    vendor: str
    subscription: str
    order_id: str
    request: InvitationRequest

    @property
    def idempotency_key(self) -> str:
        return f"{self.vendor}:{self.subscription}:{self.order_id}"


class OrderRejectedError(PermanentError):
    """An order we cannot invite for (unknown package, no candidate email); the message names
    the problem, never the candidate's data."""


def kombo_order(order: Mapping[str, Any], target: KomboTarget, subscription: str) -> Order:
    """The invitation a Kombo assessment order asks for (webhook `data` or an open-orders item).

    Kombo allows a candidate without first or last name (both nullable); Isograd requires both,
    so the email's local part and "-" stand in for them.
    """
    order_id = order.get("id")
    if not isinstance(order_id, str) or not order_id:
        raise OrderRejectedError("the order has no id")
    package = target.package(order.get("package_id"))
    if package is None:
        raise OrderRejectedError(f"unknown package {order.get('package_id')!r}")
    candidate = order.get("candidate")
    candidate = candidate if isinstance(candidate, Mapping) else {}
    email = candidate.get("email")
    local_part = email.split("@", 1)[0] if isinstance(email, str) else None
    try:
        request = validate(
            InvitationRequest,
            {
                "email": email,
                "first_name": candidate.get("first_name") or local_part,
                "last_name": candidate.get("last_name") or "-",
                "tst_frm_id": package.tst_frm_id,
                "context": {"kombo": {"order_id": order_id, "subscription": subscription}},
            },
        )
    except InvalidRequestError as exc:
        problems = ", ".join(f"candidate {name} {message}" for name, message in exc.errors.items())
        raise OrderRejectedError(problems) from None
    return Order("kombo", subscription, order_id, request)


class OrderClient(InvitationClient, Protocol):
    """The Isograd actions an order needs: an invitation's, and act 42 (registration email)."""

    def send_registration_email(
        self,
        mail_template_id: int,
        *,
        pla_tst_ids: Sequence[int] = (),
        sub_com_id: int | None = None,
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class PlacedOrder:
    """What `place_order` did: the invitation (`created` False when the order was known) and
    whether the registration email went out in this call."""

    invited: Invited
    emailed: bool


def place_order(
    order: Order,
    *,
    client: OrderClient,
    store: InvitationStore,
    callback_keys: Sequence[CallbackKey],
    public_url: str,
    now: datetime,
    mail_template_id: int | None = None,
    first_check_after: timedelta = FIRST_CHECK_AFTER,
) -> PlacedOrder:
    """Invite the order's candidate once; with `mail_template_id`, have Isograd email them the
    test link (act 42), only when this call created the test.

    Safe to repeat: the order's idempotency key finds the invitation made before, and nothing is
    sent to Isograd again. Raises what `invite` raises (the caller answers the vendor with a
    retryable status for RetryableError). A failed email does not undo the invitation: it is
    logged (`order_email_failed`) and `emailed` is False, since the test exists and its URL is
    shown to the recruiter.
    """
    invited = invite(
        order.request,
        client=client,
        store=store,
        callback_keys=callback_keys,
        public_url=public_url,
        now=now,
        idempotency_key=order.idempotency_key,
        first_check_after=first_check_after,
    )
    invitation = invited.invitation
    log.info(
        "order_placed" if invited.created else "order_known",
        vendor=order.vendor,
        subscription=order.subscription,
        order_id=order.order_id,
        invitation_id=invitation.id,
    )
    if not invited.created or mail_template_id is None or invitation.pla_tst_id is None:
        return PlacedOrder(invited, emailed=False)
    try:
        client.send_registration_email(
            mail_template_id,
            pla_tst_ids=(invitation.pla_tst_id,),
            sub_com_id=invitation.sub_com_id,
        )
    except (RetryableError, PermanentError) as exc:
        log.warning(
            "order_email_failed",
            vendor=order.vendor,
            invitation_id=invitation.id,
            error=type(exc).__name__,
        )
        return PlacedOrder(invited, emailed=False)
    return PlacedOrder(invited, emailed=True)
