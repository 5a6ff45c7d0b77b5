"""The completion callback: a GET to the test's `cal_bac_pag`, as Isograd sends it."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import httpx2

from worker.simulator.clock import SimulatedClock, iso
from worker.simulator.counters import SimulatorCounters
from worker.simulator.faults import FaultInjector

_HISTORY = 1000  # attempts kept for the control API


class CallbackOutcome(StrEnum):
    SENT = "sent"  # the receiver answered 2xx
    FAILED = "failed"  # non-2xx, timeout, connection error or invalid URL
    DROPPED = "dropped"  # the drop fault: never sent


@dataclass(frozen=True, slots=True)
class CallbackAttempt:
    pla_tst_id: int
    url: str
    outcome: CallbackOutcome
    at: float
    status_code: int | None = None
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "pla_tst_id": self.pla_tst_id,
            "url": self.url,
            "outcome": str(self.outcome),
            "status_code": self.status_code,
            "error": self.error,
            "at": iso(self.at),
        }


class CallbackSender:
    """Sends callbacks synchronously (the caller gets the outcome), applying the drop and
    duplicate faults. Redirects are not followed; `transport` is the test seam."""

    def __init__(
        self,
        *,
        timeout_seconds: float,
        faults: FaultInjector,
        counters: SimulatorCounters,
        clock: SimulatedClock,
        transport: httpx2.BaseTransport | None = None,
    ) -> None:
        self._timeout = timeout_seconds
        self._faults = faults
        self._counters = counters
        self._clock = clock
        self._transport = transport
        self._lock = threading.Lock()
        self._history: deque[CallbackAttempt] = deque(maxlen=_HISTORY)

    def send(self, pla_tst_id: int, url: str) -> list[CallbackAttempt]:
        """One GET to `url` (or `callback_copies` of them, or none when dropped)."""
        if self._faults.should_drop_callback():
            attempts = [
                CallbackAttempt(pla_tst_id, url, CallbackOutcome.DROPPED, self._clock.now())
            ]
        else:
            copies = self._faults.faults.callback_copies
            with httpx2.Client(
                timeout=self._timeout, transport=self._transport, trust_env=False
            ) as client:
                attempts = [self._get(client, pla_tst_id, url) for _ in range(copies)]
        with self._lock:
            self._history.extend(attempts)
        for attempt in attempts:
            self._counters.add(f"callbacks_{attempt.outcome}")
        return attempts

    def _get(self, client: httpx2.Client, pla_tst_id: int, url: str) -> CallbackAttempt:
        now = self._clock.now()
        try:
            response = client.get(url)
        except (httpx2.HTTPError, httpx2.InvalidURL) as exc:
            error = f"{type(exc).__name__}: {exc}"
            return CallbackAttempt(pla_tst_id, url, CallbackOutcome.FAILED, now, error=error)
        outcome = CallbackOutcome.SENT if response.is_success else CallbackOutcome.FAILED
        return CallbackAttempt(pla_tst_id, url, outcome, now, status_code=response.status_code)

    def history(self) -> list[CallbackAttempt]:
        with self._lock:
            return list(self._history)

    def clear(self) -> None:
        with self._lock:
            self._history.clear()
