"""Delivery targets: one module per sink kind behind the `Sink` protocol (ARCHITECTURE.md, "Adding a sink")."""

from worker.sinks.base import AttemptOutcome, AttemptResult, EventEnvelope, Sink
from worker.sinks.webhook import WebhookSink

__all__ = ["AttemptOutcome", "AttemptResult", "EventEnvelope", "Sink", "WebhookSink"]
