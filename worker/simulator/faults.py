"""Switchable faults: latency, 5xx answers, token lifetime, dropped and duplicated callbacks."""

from __future__ import annotations

import dataclasses
import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class SimulatorFaults:
    """The fault settings. Rates are probabilities in [0, 1] drawn from a RNG seeded with `seed`,
    so a run is reproducible; `fail_next` answers the next N token/API calls with `error_status`
    whatever the rate (the deterministic way to test one retry)."""

    latency_ms: float = 0.0
    error_rate: float = 0.0
    error_status: int = 503
    fail_next: int = 0
    token_ttl_seconds: int = 3600  # expires_in; AWS Cognito's (auth.isograd.com) default is 3600
    drop_callback_rate: float = 0.0
    callback_copies: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        if self.latency_ms < 0:
            problems.append("latency_ms must be >= 0")
        for name in ("error_rate", "drop_callback_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(f"{name} must be between 0 and 1")
        if not 500 <= self.error_status <= 599:
            problems.append("error_status must be a 5xx status")
        if self.fail_next < 0:
            problems.append("fail_next must be >= 0")
        if self.token_ttl_seconds < 0:
            problems.append("token_ttl_seconds must be >= 0")
        if self.callback_copies < 1:
            problems.append("callback_copies must be >= 1")
        if problems:
            raise ValueError("; ".join(problems))

    def updated(self, changes: Mapping[str, Any]) -> SimulatorFaults:
        """A copy with `changes` (JSON values) applied; raises ValueError on unknown names/types."""
        fields = {f.name: f for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - set(fields))
        if unknown:
            raise ValueError(f"unknown fault(s): {', '.join(unknown)}")
        typed: dict[str, Any] = {}
        for name, value in changes.items():
            expected = int if fields[name].type in ("int", int) else float
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} must be a number")
            if expected is int and not float(value).is_integer():
                raise ValueError(f"{name} must be an integer")
            typed[name] = expected(value)
        return dataclasses.replace(self, **typed)

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class FaultInjector:
    """The live faults and their RNG; thread-safe."""

    def __init__(self, faults: SimulatorFaults) -> None:
        self._lock = threading.Lock()
        self._faults = faults
        self._pending_failures = faults.fail_next
        self._random = random.Random(faults.seed)

    @property
    def faults(self) -> SimulatorFaults:
        with self._lock:
            return dataclasses.replace(self._faults, fail_next=self._pending_failures)

    def configure(self, faults: SimulatorFaults, *, reseed: bool = True) -> None:
        with self._lock:
            self._faults = faults
            self._pending_failures = faults.fail_next
            if reseed:
                self._random = random.Random(faults.seed)

    def update(self, changes: Mapping[str, Any]) -> SimulatorFaults:
        """Apply a partial change; the RNG is re-seeded only when `seed` is among the changes."""
        faults = self.faults.updated(changes)
        self.configure(faults, reseed="seed" in changes)
        return faults

    def should_fail(self) -> bool:
        """Whether this token/API call answers a 5xx (consumes one `fail_next`)."""
        with self._lock:
            if self._pending_failures > 0:
                self._pending_failures -= 1
                return True
            rate = self._faults.error_rate
            return rate > 0 and self._random.random() < rate

    def should_drop_callback(self) -> bool:
        with self._lock:
            rate = self._faults.drop_callback_rate
            return rate > 0 and self._random.random() < rate
