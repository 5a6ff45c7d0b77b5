"""Invitations: asking Isograd to give a candidate a test whose completion calls us back."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import structlog

from worker.errors import PermanentError, RetryableError
from worker.isograd.errors import CandidateExistsError
from worker.isograd.models import (
    AssessmentCreated,
    AssessmentOptions,
    NewCandidate,
)
from worker.requests import InvitationRequest
from worker.storage.records import Invitation, InvitationStatus, NewInvitation
from worker.tokens import CallbackKey, callback_url

log = structlog.get_logger(__name__)

# When the reconciler first asks Isograd about an invitation whose callback has not come.
FIRST_CHECK_AFTER = timedelta(hours=1)


class InvitationClient(Protocol):
    """The Isograd actions an invitation needs (worker.isograd.IsogradClient has them)."""

    def create_candidate_and_add_test(
        self,
        candidate: NewCandidate,
        tst_frm_id: int,
        options: AssessmentOptions | None = None,
        *,
        sub_com_id: int | None = None,
    ) -> AssessmentCreated: ...

    def add_test(
        self,
        email: str,
        tst_frm_id: int,
        options: AssessmentOptions | None = None,
        *,
        force_new: bool = False,
        sub_com_id: int | None = None,
    ) -> AssessmentCreated: ...


class InvitationStore(Protocol):
    def get_invitation(self, invitation_id: str) -> Invitation | None: ...

    def get_invitation_by_idempotency_key(self, key: str) -> Invitation | None: ...

    def get_invitation_by_pla_tst_id(self, pla_tst_id: int) -> Invitation | None: ...

    def create_invitation(self, new: NewInvitation, now: datetime | None = None) -> Invitation: ...

    def attach_assessment(
        self,
        invitation_id: str,
        *,
        pla_tst_id: int,
        can_id: int | None = None,
        test_url: str | None = None,
    ) -> Invitation: ...

    def mark_invitation(
        self, invitation_id: str, status: InvitationStatus, now: datetime | None = None
    ) -> Invitation: ...

    def postpone_status_check(
        self, invitation_id: str, next_check_at: datetime | None
    ) -> Invitation: ...


@dataclass(frozen=True, slots=True)
class Invited:
    """What `invite` did: the invitation, and whether this call got its test from Isograd
    (False: an earlier call with the same idempotency key did, or Isograd handed back an
    unfinished test another invitation already holds)."""

    invitation: Invitation
    created: bool


def invite(
    request: InvitationRequest,
    *,
    client: InvitationClient,
    store: InvitationStore,
    callback_keys: Sequence[CallbackKey],
    public_url: str,
    now: datetime,
    idempotency_key: str | None = None,
    first_check_after: timedelta = FIRST_CHECK_AFTER,
) -> Invited:
    """Store the invitation, ask Isograd for the test (act 8; act 2 if the candidate exists),
    then attach Isograd's answer to the stored row.

    The row is stored first (pending, no `pla_tst_id`) because its id is in the signed callback
    URL: a test Isograd created always has an invitation its callback can find, even if the
    database fails afterwards.

    Safe to repeat with the same `idempotency_key`: an invitation that has its test is returned
    without calling Isograd. One without (the earlier call failed or was interrupted) is resumed
    under the same id: if Isograd did create the candidate and test, act 8 answers 202 and act 2
    returns that unfinished test rather than a second one. Permanent Isograd errors mark the
    invitation failed (a later retry with the key tries again); transient ones leave it pending.
    Raises IsogradApiError subclasses, IsogradUnavailableError, IsogradProtocolError.
    """
    stored = None
    if idempotency_key is not None:
        stored = store.get_invitation_by_idempotency_key(idempotency_key)
    if stored is None:
        # A concurrent call with the same key may win the insert: the store then answers its row.
        stored = store.create_invitation(
            _new_invitation(request, idempotency_key, now + first_check_after), now=now
        )
    elif stored.pla_tst_id is None:
        log.info("invitation_resumed", invitation_id=stored.id, status=stored.status.value)
    if stored.pla_tst_id is not None:
        log.info("invitation_replayed", invitation_id=stored.id)
        return Invited(stored, created=False)

    try:
        created, can_id = _request_assessment(request, client, public_url, callback_keys, stored.id)
    except RetryableError as exc:
        log.warning(
            "invitation_isograd_unavailable", invitation_id=stored.id, error=type(exc).__name__
        )
        raise
    except PermanentError as exc:
        store.mark_invitation(stored.id, InvitationStatus.FAILED, now=now)
        log.warning(
            "invitation_failed",
            invitation_id=stored.id,
            error=type(exc).__name__,
            isograd_code=getattr(exc, "code", None),
        )
        raise

    holder = store.get_invitation_by_pla_tst_id(created.pla_tst_id)
    if holder is not None and holder.id != stored.id:
        # Act 2 handed back an unfinished test another invitation holds; Isograd keeps the
        # callback URL it was first given, so that invitation is the live one.
        store.mark_invitation(stored.id, InvitationStatus.FAILED, now=now)
        log.info(
            "invitation_unfinished_test_reused",
            invitation_id=holder.id,
            superseded=stored.id,
            pla_tst_id=created.pla_tst_id,
        )
        return Invited(holder, created=False)

    invitation = store.attach_assessment(
        stored.id, pla_tst_id=created.pla_tst_id, can_id=can_id, test_url=created.test_url
    )
    if invitation.status is not InvitationStatus.PENDING:
        # A retry after a permanent failure that Isograd now accepts (credits bought, say):
        # pending again, and due for the reconciler again (marking it failed cleared that).
        store.mark_invitation(stored.id, InvitationStatus.PENDING, now=now)
        invitation = store.postpone_status_check(stored.id, now + first_check_after)
    log.info(
        "invitation_created",
        invitation_id=invitation.id,
        pla_tst_id=invitation.pla_tst_id,
        tst_frm_id=invitation.tst_frm_id,
        sub_com_id=invitation.sub_com_id,
    )
    return Invited(invitation, created=True)


def create_invitation(
    request: InvitationRequest,
    *,
    client: InvitationClient,
    store: InvitationStore,
    callback_keys: Sequence[CallbackKey],
    public_url: str,
    now: datetime,
    idempotency_key: str | None = None,
    first_check_after: timedelta = FIRST_CHECK_AFTER,
) -> Invitation:
    """`invite`, answering only the invitation."""
    return invite(
        request,
        client=client,
        store=store,
        callback_keys=callback_keys,
        public_url=public_url,
        now=now,
        idempotency_key=idempotency_key,
        first_check_after=first_check_after,
    ).invitation


def _new_invitation(
    request: InvitationRequest, idempotency_key: str | None, next_check_at: datetime
) -> NewInvitation:
    return NewInvitation(
        tst_frm_id=request.tst_frm_id,
        email=request.email,
        first_name=request.first_name,
        last_name=request.last_name,
        ext_id=request.ext_id,
        sub_com_id=request.sub_com_id,
        context=dict(request.context),
        next_check_at=next_check_at,
        idempotency_key=idempotency_key,
    )


def _request_assessment(
    request: InvitationRequest,
    client: InvitationClient,
    public_url: str,
    callback_keys: Sequence[CallbackKey],
    invitation_id: str,
) -> tuple[AssessmentCreated, int | None]:
    """Act 8, or act 2 when the candidate exists; answers the test and the candidate id."""
    options = AssessmentOptions(
        return_url=request.return_url,
        callback_url=callback_url(public_url, callback_keys, invitation_id),
    )
    candidate = NewCandidate(
        email=request.email,
        first_name=request.first_name,
        last_name=request.last_name,
        gender=request.gender,
        language=request.language,
        ext_id=request.ext_id,
        ext_dep_id=request.group,
    )
    try:
        created = client.create_candidate_and_add_test(
            candidate, request.tst_frm_id, options, sub_com_id=request.sub_com_id
        )
    except CandidateExistsError as exc:
        # Error 202 names the existing candidate; act 2 (never 9) gives them the test, or hands
        # back their unfinished one, so a retry never makes a second test.
        log.info("invitation_candidate_exists", invitation_id=invitation_id, can_id=exc.can_id)
        created = client.add_test(
            request.email, request.tst_frm_id, options, sub_com_id=request.sub_com_id
        )
        return created, created.can_id if created.can_id is not None else exc.can_id
    return created, created.can_id
