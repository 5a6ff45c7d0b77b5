"""Dashboard sessions: a signed cookie derived from ADMIN_TOKEN, and the CSRF token of each.

The cookie holds `<issued>.<nonce>.<mac>` where `mac` is an HMAC-SHA256 keyed by the admin token:
it proves the browser once knew the token without carrying the token. Sessions are stateless, so
changing ADMIN_TOKEN signs every browser out; there is no server-side revocation list.
The CSRF token of a session is another HMAC of its nonce, put in every form of the dashboard.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

COOKIE_NAME = "relay_dashboard"
SESSION_LIFETIME = timedelta(hours=12)


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in browser; `csrf_token` goes into every form it may post."""

    issued_at: int  # Unix seconds
    nonce: str
    csrf_token: str


def token_matches(given: str, admin_token: str | None) -> bool:
    """Constant-time comparison; always False when no ADMIN_TOKEN is configured."""
    if not admin_token or not given:
        return False
    return hmac.compare_digest(given.encode(), admin_token.encode())


def new_session_cookie(admin_token: str, now: datetime) -> str:
    """A fresh cookie value for a browser that just gave the right token."""
    issued = str(int(now.timestamp()))
    nonce = secrets.token_urlsafe(16)
    return f"{issued}.{nonce}.{_mac(admin_token, 'session', issued, nonce)}"


def read_session(cookie: str | None, admin_token: str | None, now: datetime) -> Session | None:
    """The session of a cookie signed with this admin token and not expired, else None."""
    if not cookie or not admin_token:
        return None
    issued, _, rest = cookie.partition(".")
    nonce, _, mac = rest.partition(".")
    if not issued.isdigit() or not nonce or not mac:
        return None
    # Bytes: compare_digest raises TypeError on str with non-ASCII characters (a forged cookie).
    if not hmac.compare_digest(mac.encode(), _mac(admin_token, "session", issued, nonce).encode()):
        return None
    age = now.timestamp() - int(issued)
    if not 0 <= age < SESSION_LIFETIME.total_seconds():
        return None
    return Session(int(issued), nonce, _mac(admin_token, "csrf", nonce))


def csrf_matches(session: Session, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), session.csrf_token.encode())


def _mac(key: str, purpose: str, *parts: str) -> str:
    # `purpose` separates the session MAC from the CSRF MAC: one can never stand for the other.
    message = "|".join((purpose, *parts)).encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()
