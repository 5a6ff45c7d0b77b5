"""The test catalogue: test names from Isograd's act 14, cached, for messages that name a test.

A completion never waits on it for long nor fails because of it: when act 14 fails, the name is
simply unknown (sinks then show the tst_frm_id) and the failure is remembered for a short while
so a struggling API is not asked again on every completion.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Protocol

import structlog

from worker.errors import RelayError

log = structlog.get_logger(__name__)

NAMES_TTL_SECONDS = 3600.0  # test names change rarely (a new test is a new tst_frm_id)
FAILURE_TTL_SECONDS = 60.0


class AssessmentNameSource(Protocol):
    """What the catalogue reads (worker.isograd.IsogradClient has it)."""

    def list_test_names(self, *, sub_com_id: int | None = None) -> Mapping[int, str]: ...


class AssessmentCatalogue:
    """Test names per (sub) account, read once per TTL; safe to share between threads."""

    def __init__(
        self,
        source: AssessmentNameSource,
        *,
        ttl: float = NAMES_TTL_SECONDS,
        failure_ttl: float = FAILURE_TTL_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._ttl = ttl
        self._failure_ttl = failure_ttl
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._cached: dict[int | None, tuple[Mapping[int, str], float]] = {}

    def name(self, tst_frm_id: int, *, sub_com_id: int | None = None) -> str | None:
        """The test's name, or None when act 14 gives none or cannot be read; never raises
        for Isograd's failures."""
        return self._names(sub_com_id).get(tst_frm_id)

    def _names(self, sub_com_id: int | None) -> Mapping[int, str]:
        with self._lock:
            cached = self._cached.get(sub_com_id)
        now = self._monotonic()
        if cached is not None and now < cached[1]:
            return cached[0]
        # Asked outside the lock, so a slow act 14 holds up only the completions that need it;
        # two threads missing at once both ask, and the later answer is kept.
        try:
            names: Mapping[int, str] = dict(self._source.list_test_names(sub_com_id=sub_com_id))
            expires = now + self._ttl
        except RelayError as exc:
            log.warning("test_names_unavailable", sub_com_id=sub_com_id, error=type(exc).__name__)
            names = cached[0] if cached is not None else {}  # stale beats nothing
            expires = now + self._failure_ttl
        with self._lock:
            self._cached[sub_com_id] = (names, expires)
        return names
