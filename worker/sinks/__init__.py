"""Delivery targets: one module per sink kind behind the `Sink` protocol (DESIGN §3.6)."""

from worker.sinks.base import AttemptOutcome, AttemptResult, EventEnvelope, Sink
from worker.sinks.webhook import WebhookSink

__all__ = ["AttemptOutcome", "AttemptResult", "EventEnvelope", "Sink", "WebhookSink"]
