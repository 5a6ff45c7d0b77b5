"""Result summaries: the facts a chat message shows about one completion, read from an event."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


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
