"""One running simulator: its configuration and live parts, shared by the API and control routes."""

from __future__ import annotations

from dataclasses import dataclass

from worker.simulator.auth import TokenStore
from worker.simulator.callbacks import CallbackSender
from worker.simulator.clock import SimulatedClock
from worker.simulator.counters import SimulatorCounters
from worker.simulator.faults import FaultInjector
from worker.simulator.state import SimulatorConfig, SimulatorState


@dataclass(frozen=True, slots=True)
class Simulator:
    config: SimulatorConfig
    clock: SimulatedClock
    state: SimulatorState
    tokens: TokenStore
    faults: FaultInjector
    counters: SimulatorCounters
    callbacks: CallbackSender

    def reset(self) -> None:
        """Back to the start: no candidates, tests or tokens; counters at zero; faults and clock
        as configured."""
        self.state.reset()
        self.tokens.clear()
        self.counters.reset()
        self.callbacks.clear()
        self.faults.configure(self.config.faults)
        self.clock.reset()
