"""Chat messages: the facts a message shows about one completion, and the sink that posts it.

Slack and Teams differ only in the message they render (worker/sinks/slack.py, teams.py); both
post it as JSON to a webhook URL that is itself the credential, through the shared attempt.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import httpx2
import structlog

from worker import __version__
from worker.sinks.base import AttemptResult, EventEnvelope
from worker.sinks.http_attempt import perform_attempt

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class ResultSummary:
    """What Slack and Teams messages show; every field is plain text, None when unknown.

    `test` is the test's name when the event carries one (data.test.name, from Isograd's act
    14) and "test <tst_frm_id>" otherwise.
    """

    candidate: str | None
    test: str
    grade: str | None
    percent: float | None
    report_url: str | None

    @classmethod
    def from_event(cls, data: Mapping[str, Any], *, include_candidate: bool) -> ResultSummary:
        candidate = _mapping(data.get("candidate"))
        test = _mapping(data.get("test"))
        grade = _mapping(data.get("grade"))
        report = _mapping(data.get("report"))
        return cls(
            candidate=_candidate_name(candidate) if include_candidate else None,
            test=_test_name(test),
            grade=_text(grade.get("text")),
            percent=_number(grade.get("percent")),
            report_url=_text(report.get("pdf_url")),
        )

    def headline(self) -> str:
        """One line: "Jeanne Martin completed Excel 2019: 550/1000 (55 %)"."""
        who = self.candidate or "A candidate"
        line = f"{who} completed {self.test}"
        score = self.score()
        return f"{line}: {score}" if score else line

    def score(self) -> str | None:
        """The grade text and percent together ("550/1000 (55 %)"), or what there is of them."""
        percent = None if self.percent is None else f"{self.percent:g} %"
        if self.grade and percent:
            return f"{self.grade} ({percent})"
        return self.grade or percent


def _candidate_name(candidate: Mapping[str, Any]) -> str | None:
    parts = [_text(candidate.get("first_name")), _text(candidate.get("last_name"))]
    name = " ".join(part for part in parts if part)
    return name or None


def _test_name(test: Mapping[str, Any]) -> str:
    name = _text(test.get("name"))
    if name:
        return name
    return f"test {test.get('tst_frm_id', '?')}"


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(value: object) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return round(float(value), 1)
    return None


class ChatTarget(Protocol):
    """What a chat kind's target has: the webhook URL (a secret) and the candidate option."""

    @property
    def url(self) -> str: ...

    @property
    def include_candidate(self) -> bool: ...

    def secret_values(self) -> tuple[str, ...]: ...


class ChatSink:
    """Posts `render(summary)` of each event to a chat webhook; `kind` names it in logs."""

    def __init__(
        self,
        kind: str,
        render: Callable[[ResultSummary], dict[str, Any]],
        target: ChatTarget,
        *,
        client: httpx2.Client,
        timeout: float,
        name: str,
    ) -> None:
        self.kind = kind
        self.name = name
        self.target = target
        self.timeout = timeout
        self._render = render
        self._client = client
        self._user_agent = f"isograd-relay/{__version__} ({kind})"

    def __repr__(self) -> str:  # never show the URL
        return f"ChatSink(kind={self.kind!r}, name={self.name!r})"

    def send(self, envelope: EventEnvelope, *, attempt_at: datetime) -> AttemptResult:
        if attempt_at.tzinfo is None:
            raise ValueError("attempt_at must be timezone-aware")
        summary = ResultSummary.from_event(
            envelope.data, include_candidate=self.target.include_candidate
        )
        body = json.dumps(self._render(summary), ensure_ascii=False).encode("utf-8")
        result = perform_attempt(
            self._client,
            "POST",
            self.target.url,
            content=body,
            headers={"content-type": "application/json", "user-agent": self._user_agent},
            timeout=self.timeout,
            attempt_at=attempt_at,
            redact=self.target.secret_values(),
        )
        log.debug(
            "chat_attempt",
            kind=self.kind,
            sink=self.name,
            event_id=envelope.event_id,
            outcome=str(result.outcome),
            status_code=result.status_code,
            duration_ms=round(result.duration_ms, 1),
        )
        return result
