"""What the simulator has been asked and done, counted for tests and benchmarks."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any


class SimulatorCounters:
    """Thread-safe counters. Names: token_requests, tokens_issued, token_rejections,
    api_calls, unauthorized, injected_errors, callbacks_sent, callbacks_failed, callbacks_dropped;
    plus api_calls per act and errors per error_code."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._totals: Counter[str] = Counter()
        self._acts: Counter[str] = Counter()
        self._errors: Counter[str] = Counter()

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._totals[name] += amount

    def add_call(self, act_id: str) -> None:
        with self._lock:
            self._totals["api_calls"] += 1
            self._acts[act_id] += 1

    def add_error(self, code: int) -> None:
        with self._lock:
            self._errors[str(code)] += 1

    def reset(self) -> None:
        with self._lock:
            self._totals.clear()
            self._acts.clear()
            self._errors.clear()

    def snapshot(self) -> dict[str, Any]:
        names = (
            "token_requests",
            "tokens_issued",
            "token_rejections",
            "api_calls",
            "unauthorized",
            "injected_errors",
            "callbacks_sent",
            "callbacks_failed",
            "callbacks_dropped",
        )
        with self._lock:
            snapshot: dict[str, Any] = {name: self._totals[name] for name in names}
            snapshot["api_calls_by_act"] = dict(sorted(self._acts.items()))
            snapshot["errors_by_code"] = dict(sorted(self._errors.items()))
        return snapshot
