"""The test catalogue: test names for messages and pages that name a test.

Names come from relay.toml's optional `[test_names]` table first (Isograd's reference documents
act 14 as answering test ids only), else from act 14 when an account's answer carries names.

A completion never waits on it for long nor fails because of it: when act 14 fails, the name is
simply unknown (sinks then show the tst_frm_id) and the failure is remembered for a short while
so a struggling API is not asked again on every completion.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import structlog

from worker.errors import ConfigurationError, RelayError

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
        configured: Mapping[int, str] | None = None,
    ) -> None:
        self._configured = dict(configured or {})
        self._source = source
        self._ttl = ttl
        self._failure_ttl = failure_ttl
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._cached: dict[int | None, tuple[Mapping[int, str], float]] = {}

    def name(self, tst_frm_id: int, *, sub_com_id: int | None = None) -> str | None:
        """The test's name, or None when act 14 gives none or cannot be read; never raises
        for Isograd's failures. A name from relay.toml asks Isograd nothing."""
        configured = self._configured.get(tst_frm_id)
        if configured is not None:
            return configured
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


MAX_TEST_NAME_LENGTH = 200


def parse_test_names(document: Mapping[str, Any], *, source: str) -> dict[int, str]:
    """relay.toml's `[test_names]`: `101 = "TOSA Excel"`, one line per tst_frm_id.

    Raises ConfigurationError listing every problem, each prefixed by `source`.
    """
    table = document.get("test_names", {})
    if not isinstance(table, dict):
        raise ConfigurationError([f"{source}: test_names: must be a table ([test_names])"])
    names: dict[int, str] = {}
    problems: list[str] = []
    for key, value in table.items():
        where = f"{source}: test_names.{key}"
        if not key.isdigit() or int(key) < 1:
            problems.append(f"{where}: the key must be a tst_frm_id (a positive integer)")
        elif not isinstance(value, str) or not value.strip():
            problems.append(f"{where}: must be a non-empty string")
        elif len(value.strip()) > MAX_TEST_NAME_LENGTH:
            problems.append(f"{where}: must be at most {MAX_TEST_NAME_LENGTH} characters")
        else:
            names[int(key)] = value.strip()
    if problems:
        raise ConfigurationError(problems)
    return names
