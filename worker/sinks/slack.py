"""The Slack sink: a Block Kit message about one completion, posted to an incoming webhook.

    [[subscriptions]]
    name = "hr-channel"
    kind = "slack"
    url = "env:SLACK_WEBHOOK_URL"   # https://hooks.slack.com/services/T…/B…/…: a secret
    include_candidate = true        # false: the message does not name the candidate

The webhook URL is the only credential Slack asks for, so it is a secret: logs redact it and
pages show its host only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx2
import structlog

from worker.sinks.chat import ChatSink, ResultSummary
from worker.sinks.options import SinkOptions

if TYPE_CHECKING:
    from worker.sinks.registry import SinkContext

log = structlog.get_logger(__name__)

KEYS = frozenset({"url", "include_candidate"})

# Block Kit limits (https://api.slack.com/reference/block-kit/blocks): a header's plain_text is
# at most 150 characters, a section field's text at most 2000.
MAX_HEADER_CHARS = 150
MAX_FIELD_CHARS = 2000


@dataclass(frozen=True, slots=True)
class SlackTarget:
    """A Slack subscription's settings: the incoming-webhook URL (a secret) and the options."""

    url: str = field(repr=False)
    include_candidate: bool = True

    def describe(self) -> str:
        return urlsplit(self.url).hostname or ""

    def secret_values(self) -> tuple[str, ...]:
        # The path is the secret part (/services/T…/B…/<token>); the host is not.
        return (self.url, urlsplit(self.url).path)


def parse_target(options: SinkOptions) -> SlackTarget | None:
    url = options.url("url", secret=True)
    include_candidate = options.flag("include_candidate", default=True)
    if url is None or include_candidate is None:
        return None
    return SlackTarget(url, include_candidate)


def build_sink(target: SlackTarget, context: SinkContext) -> SlackSink:
    return SlackSink(target, client=context.http, timeout=context.timeout, name=context.name)


class SlackSink(ChatSink):
    """Posts `text` (the notification fallback) and Block Kit `blocks` to an incoming webhook.

    Slack's answers (https://api.slack.com/changelog/2016-05-17-changes-to-errors-for-incoming-
    webhooks, https://api.slack.com/messaging/webhooks#handling_errors): 200 "ok"; 400
    invalid_payload / no_text / user_not_found, 403 action_prohibited and 404 channel_not_found
    cannot succeed on retry (FAILED); 410 channel_is_archived disables the subscription (GONE);
    429 comes with Retry-After (https://api.slack.com/docs/rate-limits) and 5xx (rollup_error)
    are retried. That is the webhook classification (worker.sinks.http_attempt.classify_status).
    """

    def __init__(
        self, target: SlackTarget, *, client: httpx2.Client, timeout: float, name: str
    ) -> None:
        super().__init__("slack", render_message, target, client=client, timeout=timeout, name=name)


def render_message(summary: ResultSummary) -> dict[str, Any]:
    """The webhook body: `text` for notifications and clients without blocks, then `blocks`."""
    fields = [_field("Test", summary.test)]
    if summary.candidate:
        fields.insert(0, _field("Candidate", summary.candidate))
    score = summary.score()
    if score:
        fields.append(_field("Result", score))
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": _cut("Assessment completed", MAX_HEADER_CHARS)},
        },
        {"type": "section", "fields": fields},
    ]
    if summary.report_url:
        blocks.append(
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": f"<{escape(summary.report_url)}|Report (PDF)>",
                },
            }
        )
    return {"text": escape(summary.headline()), "blocks": blocks}


def escape(text: str) -> str:
    """Slack's mrkdwn escaping: &, < and > are control characters
    (https://api.slack.com/reference/surfaces/formatting#escaping)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _field(label: str, value: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": _cut(f"*{label}*\n{escape(value)}", MAX_FIELD_CHARS)}


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
