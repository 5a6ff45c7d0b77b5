"""Callback tokens: the signed `{kid}.{invitation_id}.{mac}` path segment Isograd calls back with.

`mac` is base64url (no padding) of HMAC-SHA256(key[kid], b"isograd-callback:v1:" + invitation_id),
untruncated. Tokens are signed with the newest key (the last one configured) and
verified with whichever configured key their kid names, so keys rotate by appending a new one and
dropping the old one once the invitations signed with it are finished.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from worker.errors import CallbackRejectedError, ConfigurationError

MAC_CONTEXT = b"isograd-callback:v1:"
MIN_SECRET_LENGTH = 32

# kid and invitation_id travel in a URL path and are separated by dots, so both are restricted to
# the URL-safe base64 alphabet (which is also the mac's alphabet): no dot, no slash, ASCII only.
_PART = re.compile(r"[A-Za-z0-9_-]+")
# A whole token, `{kid}.{invitation_id}.{mac}`, each part as _PART: one match instead of a split
# and three (the callback endpoint verifies one per request).
_TOKEN = re.compile(r"\.".join([f"({_PART.pattern})"] * 3))


@dataclass(frozen=True, slots=True)
class CallbackKey:
    """One signing key; `kid` names it inside tokens. The secret stays out of repr()."""

    kid: str
    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not _PART.fullmatch(self.kid):
            raise ValueError("a callback key id must be letters, digits, '-' or '_'")
        if not self.secret:
            raise ValueError("a callback key secret must not be empty")


def sign_callback_token(keys: Sequence[CallbackKey], invitation_id: str) -> str:
    """The token for `invitation_id`, signed with the newest key (the last of `keys`)."""
    if not keys:
        raise ValueError("no callback key configured")
    if not _PART.fullmatch(invitation_id):
        raise ValueError("an invitation id must be letters, digits, '-' or '_'")
    key = keys[-1]
    return f"{key.kid}.{invitation_id}.{_mac(key, invitation_id)}"


def verify_callback_token(keys: Sequence[CallbackKey], token: str) -> str:
    """The invitation id `token` was signed for; CallbackRejectedError if it is not ours.

    Reasons: "malformed", "unknown_kid", "bad_mac". The mac comparison is constant-time.
    """
    match = _TOKEN.fullmatch(token)
    if match is None:
        raise CallbackRejectedError("malformed")
    kid, invitation_id, mac = match.groups()
    key = next((key for key in keys if key.kid == kid), None)
    if key is None:
        raise CallbackRejectedError("unknown_kid")
    if not hmac.compare_digest(_mac(key, invitation_id).encode(), mac.encode()):
        raise CallbackRejectedError("bad_mac")
    return invitation_id


def callback_url(public_url: str, keys: Sequence[CallbackKey], invitation_id: str) -> str:
    """The `cal_bac_pag` URL to give Isograd for `invitation_id`."""
    token = sign_callback_token(keys, invitation_id)
    return f"{public_url.rstrip('/')}/callbacks/isograd/{token}"


def parse_callback_keys(value: str, *, source: str = "CALLBACK_KEYS") -> tuple[CallbackKey, ...]:
    """Parse "kid1:secret1,kid2:secret2" (oldest first, so the last key signs).

    Raises ConfigurationError listing every problem, each prefixed by `source`; secrets never
    appear in the messages.
    """
    problems: list[str] = []
    keys: list[CallbackKey] = []
    seen: set[str] = set()
    entries = [entry.strip() for entry in value.split(",")]
    # A trailing comma leaves an empty entry: harmless, so skipped rather than reported.
    for number, entry in enumerate(entries, start=1):
        if not entry:
            continue
        kid, colon, secret = entry.partition(":")
        kid, secret = kid.strip(), secret.strip()
        where = f"{source}: key {number}"
        if not colon:
            problems.append(f"{where}: expected 'kid:secret'")
            continue
        if not _PART.fullmatch(kid):
            problems.append(f"{where}: the key id must be letters, digits, '-' or '_'")
        elif kid in seen:
            problems.append(f"{where}: duplicate key id {kid!r}")
        seen.add(kid)
        if len(secret) < MIN_SECRET_LENGTH:
            problems.append(f"{where}: the secret must be at least {MIN_SECRET_LENGTH} characters")
        if not problems:
            keys.append(CallbackKey(kid, secret.encode()))
    if not keys and not problems:
        problems.append(f"{source}: at least one 'kid:secret' key is required")
    if problems:
        raise ConfigurationError(problems)
    return tuple(keys)


def _mac(key: CallbackKey, invitation_id: str) -> str:
    digest = hmac.digest(key.secret, MAC_CONTEXT + invitation_id.encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
