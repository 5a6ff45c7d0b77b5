"""Erasure on request: everything about one candidate blanked here, and at Isograd on demand.

The right to erasure (GDPR art. 17, https://gdpr-info.eu/art-17-gdpr/) is answered in three
steps: the store blanks the candidate in every table and cancels what was still to be sent, in
one transaction; an audit row records who asked, when and how many rows changed, with a salted
hash instead of the email; then, if asked, Isograd's act 12 anonymises the candidate there.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import structlog

from worker.errors import RelayError
from worker.isograd.errors import CandidateNotFoundError
from worker.requests import parse_email
from worker.storage.records import ErasureRecord, Invitation, InvitationFilter, Page, new_id

log = structlog.get_logger(__name__)

# scrypt's interactive-login cost (RFC 7914 §2, https://www.rfc-editor.org/rfc/rfc7914#section-2):
# slow enough that guessing emails against a leaked audit row costs, fast for one request.
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}

ISOGRAD_ANONYMIZED = "anonymized"
ISOGRAD_UNKNOWN = "unknown candidate"


class ErasureStore(Protocol):
    def list_invitations(
        self,
        filters: InvitationFilter | None = None,
        *,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[Invitation]: ...

    def erase_candidate(
        self,
        email: str,
        *,
        erasure_id: str,
        requested_by: str,
        email_hash: str,
        email_salt: str,
        now: datetime | None = None,
    ) -> ErasureRecord: ...

    def record_erasure_isograd(self, erasure_id: str, outcome: str) -> ErasureRecord: ...


class CandidateAnonymizer(Protocol):
    """Isograd's act 12 (worker.isograd.IsogradClient has it)."""

    def anonymize_candidate(self, email: str, *, sub_com_id: int | None = None) -> None: ...


@dataclass(frozen=True, slots=True)
class Erasure:
    """The audit row, and whether Isograd's part (if asked) failed and should be run again."""

    record: ErasureRecord
    isograd_failed: bool = False


def hash_email(email: str, salt: str) -> str:
    """scrypt of the normalised email (trimmed, lower case) with `salt`, hex."""
    normalised = email.strip().lower().encode()
    return hashlib.scrypt(normalised, salt=salt.encode(), dklen=32, **_SCRYPT).hex()


def erase_candidate(
    email: object,
    *,
    store: ErasureStore,
    requested_by: str,
    now: datetime,
    isograd: CandidateAnonymizer | None = None,
) -> Erasure:
    """Erase the candidate with this email; safe to run twice (a second run blanks nothing but
    is recorded too, and asks Isograd again). Raises ValueError for a value that is not an email.

    With `isograd`, act 12 runs once per (sub) account the candidate was invited in, after the
    local erasure (which never waits on Isograd); its answer is noted on the audit row and a
    failure is reported as `isograd_failed`, never raised.
    """
    address = parse_email(email)
    if any(ord(character) < 32 for character in address):
        # Never a real address, and PostgreSQL text cannot hold NUL.
        raise ValueError("must be an email address")
    accounts = _accounts_of(store, address) if isograd is not None else set()
    salt = secrets.token_hex(16)
    record = store.erase_candidate(
        address,
        erasure_id=new_id("era"),
        requested_by=requested_by,
        email_hash=hash_email(address, salt),
        email_salt=salt,
        now=now,
    )
    log.info(
        "candidate_erased",
        erasure_id=record.id,
        requested_by=requested_by,
        invitations=record.invitations,
        events=record.events,
        deliveries_cancelled=record.deliveries_cancelled,
    )
    if isograd is None:
        return Erasure(record)
    outcome, failed = _anonymize(isograd, address, accounts or {None})
    log.info("candidate_anonymized_at_isograd", erasure_id=record.id, outcome=outcome)
    return Erasure(store.record_erasure_isograd(record.id, outcome), isograd_failed=failed)


def _accounts_of(store: ErasureStore, email: str) -> set[int | None]:
    accounts: set[int | None] = set()
    cursor: str | None = None
    while True:
        page = store.list_invitations(InvitationFilter(email=email), limit=200, cursor=cursor)
        accounts |= {invitation.sub_com_id for invitation in page.items}
        if page.next_cursor is None:
            return accounts
        cursor = page.next_cursor


def _anonymize(
    isograd: CandidateAnonymizer, email: str, accounts: set[int | None]
) -> tuple[str, bool]:
    """One outcome for every account: anonymized, unknown, or the first failure (by class name:
    an error's message could quote the email)."""
    anonymized = False
    for sub_com_id in sorted(accounts, key=lambda account: -1 if account is None else account):
        try:
            isograd.anonymize_candidate(email, sub_com_id=sub_com_id)
        except CandidateNotFoundError:
            continue
        except RelayError as exc:
            return f"failed: {type(exc).__name__}", True
        anonymized = True
    return (ISOGRAD_ANONYMIZED if anonymized else ISOGRAD_UNKNOWN), False
