"""Watched tests: assessments created outside the relay, registered so they are reconciled too.

A watched test is an invitations row with `source=watched`: the reconciler polls it (act 10)
like one of ours, and its completion becomes the same event. Isograd will not call us back for
it (its callback URL, if any, is not ours), so the first check is due at once.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import structlog

from worker.errors import PermanentError
from worker.invitations import InvitationStore
from worker.requests import WatchRequest
from worker.storage.records import Invitation, InvitationSource, NewInvitation

log = structlog.get_logger(__name__)


def watch_assessment(
    request: WatchRequest,
    *,
    store: InvitationStore,
    now: datetime,
    first_check_after: timedelta = timedelta(0),
) -> tuple[Invitation, bool]:
    """Register the test; returns (invitation, created).

    Idempotent on `pla_tst_id`: a test already stored (watched, or one of our invitations) is
    returned unchanged with created=False.
    """
    existing = store.get_invitation_by_pla_tst_id(request.pla_tst_id)
    if existing is not None:
        return existing, False
    try:
        invitation = store.create_invitation(
            NewInvitation(
                tst_frm_id=request.tst_frm_id,
                email=request.email,
                pla_tst_id=request.pla_tst_id,
                first_name=request.first_name,
                last_name=request.last_name,
                ext_id=request.ext_id,
                sub_com_id=request.sub_com_id,
                context=dict(request.context),
                next_check_at=now + first_check_after,
                source=InvitationSource.WATCHED,
            ),
            now=now,
        )
    except PermanentError:
        # A concurrent registration of the same test won the race on the unique pla_tst_id.
        existing = store.get_invitation_by_pla_tst_id(request.pla_tst_id)
        if existing is None:
            raise
        return existing, False
    log.info(
        "assessment_watched",
        invitation_id=invitation.id,
        pla_tst_id=invitation.pla_tst_id,
        tst_frm_id=invitation.tst_frm_id,
    )
    return invitation, True
