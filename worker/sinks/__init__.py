"""Delivery targets: one module per sink kind behind the `Sink` protocol.

ARCHITECTURE.md, "Adding a sink", says how to write one.
"""

from worker.sinks.base import AttemptOutcome, AttemptResult, EventEnvelope, Sink
from worker.sinks.webhook import WebhookSink

__all__ = ["AttemptOutcome", "AttemptResult", "EventEnvelope", "Sink", "WebhookSink"]
