"""The Microsoft Teams sink: an Adaptive Card about one completion, posted to a Workflows webhook.

    [[subscriptions]]
    name = "hr-team"
    kind = "teams"
    url = "env:TEAMS_WORKFLOW_URL"  # the "When a Teams webhook request is received" URL: a secret
    include_candidate = true

A Workflows URL carries its signature (`sig=`) in the query, so the whole URL is a secret: logs
redact it and pages show its host only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import structlog

from worker.sinks.chat import ChatSink, ResultSummary
from worker.sinks.options import SinkOptions

if TYPE_CHECKING:
    from worker.sinks.registry import SinkContext

log = structlog.get_logger(__name__)

KEYS = frozenset({"url", "include_candidate"})

ADAPTIVE_CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
# Teams renders Adaptive Cards up to schema 1.5 on desktop and 1.4 on mobile; 1.4 everywhere.
# https://learn.microsoft.com/en-us/microsoftteams/platform/task-modules-and-cards/cards/cards-reference
ADAPTIVE_CARD_VERSION = "1.4"
ADAPTIVE_CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"


@dataclass(frozen=True, slots=True)
class TeamsTarget:
    """A Teams subscription's settings: the Workflows webhook URL (a secret) and the options."""

    url: str = field(repr=False)
    include_candidate: bool = True

    def describe(self) -> str:
        return urlsplit(self.url).hostname or ""

    def secret_values(self) -> tuple[str, ...]:
        parts = urlsplit(self.url)
        signatures = parse_qs(parts.query).get("sig", [])
        return tuple(value for value in (self.url, parts.query, *signatures) if value)


def parse_target(options: SinkOptions) -> TeamsTarget | None:
    url = options.url("url", secret=True)
    include_candidate = options.flag("include_candidate", default=True)
    if url is None or include_candidate is None:
        return None
    return TeamsTarget(url, include_candidate)


def build_sink(target: TeamsTarget, context: SinkContext) -> TeamsSink:
    return TeamsSink(target, client=context.http, timeout=context.timeout, name=context.name)


class TeamsSink(ChatSink):
    """Posts a message activity with one Adaptive Card attachment to a Teams Workflows webhook.

    The "Post to a channel when a webhook request is received" workflow takes the card from
    `attachments[0].content` and answers 202 Accepted (https://learn.microsoft.com/en-us/
    microsoftteams/platform/webhooks-and-connectors/how-to/connectors-using, "Workflows support
    Adaptive Cards only"). 200 and 202 are success; 400 (a card the flow rejects) is permanent;
    429 and 5xx are retried, with Retry-After honoured: the webhook classification.
    """

    def __init__(
        self, target: TeamsTarget, *, client: httpx2.Client, timeout: float, name: str
    ) -> None:
        super().__init__("teams", render_message, target, client=client, timeout=timeout, name=name)


def render_message(summary: ResultSummary) -> dict[str, Any]:
    """The webhook body: a message activity whose only attachment is the Adaptive Card."""
    facts = [{"title": "Test", "value": summary.test}]
    if summary.candidate:
        facts.insert(0, {"title": "Candidate", "value": summary.candidate})
    score = summary.score()
    if score:
        facts.append({"title": "Result", "value": score})
    card: dict[str, Any] = {
        "$schema": ADAPTIVE_CARD_SCHEMA,
        "type": "AdaptiveCard",
        "version": ADAPTIVE_CARD_VERSION,
        "body": [
            {
                "type": "TextBlock",
                "text": "Assessment completed",
                "weight": "Bolder",
                "size": "Medium",
                "wrap": True,
            },
            {"type": "TextBlock", "text": summary.headline(), "wrap": True},
            {"type": "FactSet", "facts": facts},
        ],
    }
    if summary.report_url:
        card["actions"] = [
            {"type": "Action.OpenUrl", "title": "Report (PDF)", "url": summary.report_url}
        ]
    return {
        "type": "message",
        "attachments": [
            {"contentType": ADAPTIVE_CARD_CONTENT_TYPE, "contentUrl": None, "content": card}
        ],
    }
