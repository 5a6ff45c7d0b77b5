"""OAuth2 client-credentials bearer tokens: issued by /oauth2/token, checked by /api/usage."""

from __future__ import annotations

import secrets
import threading
from enum import StrEnum

from worker.simulator.clock import SimulatedClock


class TokenCheck(StrEnum):
    VALID = "valid"
    MISSING = "missing"
    UNKNOWN = "unknown"
    EXPIRED = "expired"


class TokenStore:
    """Opaque random tokens with an expiry on the simulated clock; thread-safe."""

    def __init__(self, clock: SimulatedClock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._expiries: dict[str, float] = {}

    def issue(self, ttl_seconds: int) -> str:
        token = secrets.token_urlsafe(32)
        now = self._clock.now()
        with self._lock:
            if len(self._expiries) > 10_000:  # keep memory bounded in long runs
                self._expiries = {t: e for t, e in self._expiries.items() if e > now}
            self._expiries[token] = now + ttl_seconds
        return token

    def check(self, authorization: str | None) -> TokenCheck:
        """Check an `Authorization` header value ("Bearer <token>", scheme case-insensitive)."""
        if not authorization:
            return TokenCheck.MISSING
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return TokenCheck.MISSING
        with self._lock:
            expiry = self._expiries.get(token.strip())
        if expiry is None:
            return TokenCheck.UNKNOWN
        return TokenCheck.VALID if self._clock.now() < expiry else TokenCheck.EXPIRED

    def expire_all(self) -> int:
        """Make every issued token expired now (the API then answers 401); returns how many."""
        now = self._clock.now()
        with self._lock:
            for token in self._expiries:
                self._expiries[token] = min(self._expiries[token], now)
            return len(self._expiries)

    def active(self) -> int:
        now = self._clock.now()
        with self._lock:
            return sum(1 for expiry in self._expiries.values() if expiry > now)

    def clear(self) -> None:
        with self._lock:
            self._expiries.clear()
