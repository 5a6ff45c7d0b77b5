"""Watched tests: assessments created outside the relay, registered so they are reconciled too.

A watched test is an invitations row with `source=watched`: the reconciler polls it (act 10)
like one of ours, and its completion becomes the same event. Isograd will not call us back for
it (its callback URL, if any, is not ours), so the first check is due at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog

from worker.errors import PermanentError
from worker.fields import (
    FieldReader,
    parse_context,
    parse_email,
    parse_identifier,
    parse_positive_int,
    parse_text,
)
from worker.invitations import InvalidInvitationError, InvitationStore
from worker.storage.records import Invitation, InvitationSource, NewInvitation

log = structlog.get_logger(__name__)

_FIELDS = frozenset(
    {
        "pla_tst_id",
        "tst_frm_id",
        "email",
        "first_name",
        "last_name",
        "ext_id",
        "sub_com_id",
        "context",
    }
)


@dataclass(frozen=True, slots=True)
class WatchRequest:
    pla_tst_id: int
    tst_frm_id: int
    email: str
    first_name: str | None = None
    last_name: str | None = None
    ext_id: str | None = None
    sub_com_id: int | None = None
    context: dict[str, Any] = field(default_factory=dict)


def validate_watch_request(data: object) -> WatchRequest:
    """Build a WatchRequest from decoded JSON; InvalidInvitationError lists every problem."""
    fields = FieldReader(data, _FIELDS)
    pla_tst_id = fields.take("pla_tst_id", parse_positive_int, required=True)
    tst_frm_id = fields.take("tst_frm_id", parse_positive_int, required=True)
    # Acts 4, 5 and 6 find the result by the candidate's email: it is required.
    email = fields.take("email", parse_email, required=True)
    first_name = fields.take("first_name", parse_text)
    last_name = fields.take("last_name", parse_text)
    ext_id = fields.take("ext_id", parse_identifier)
    sub_com_id = fields.take("sub_com_id", parse_positive_int)
    context = fields.take("context", parse_context)
    if fields.errors:
        raise InvalidInvitationError(fields.errors)
    # No problem noted means every required field was present.
    assert pla_tst_id is not None
    assert tst_frm_id is not None
    assert email is not None
    return WatchRequest(
        pla_tst_id=pla_tst_id,
        tst_frm_id=tst_frm_id,
        email=email,
        first_name=first_name,
        last_name=last_name,
        ext_id=ext_id,
        sub_com_id=sub_com_id,
        context=context or {},
    )


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
