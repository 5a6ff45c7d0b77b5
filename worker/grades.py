"""Grade conversion: an Isograd result (grade type, value, max) as comparable numbers in [0, 1]."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import structlog

from worker.isograd.models import GradeType

log = structlog.get_logger(__name__)

TYPE_NAMES: dict[GradeType, str] = {
    GradeType.LEVEL: "level_5",
    GradeType.IRT_SCORE: "irt_score_1000",
    GradeType.AVERAGE_SCORE: "average_score_1000",
    GradeType.CORRECT_ANSWERS: "correct_answers",
    GradeType.IRT_RANGE: "irt_range_1000",
    GradeType.AVERAGE_SCORE_100: "average_score_100",
}
UNKNOWN_TYPE_NAME = "unknown"

# Type 5's ranges as the reference writes them: "1-350, 350-700, 700-1000". The written ranges
# share their boundaries; we read each lower bound as inclusive, as thresholds usually are (TOSA
# score bands start at their lower bound): 350 is in 350-700 and 700 in 700-1000. A score below 1
# falls in the first range, one above 1000 in the last. The reference does not say what num_val
# holds for type 5; we take it to be the IRT score on 1000 (max_val 1000), as for type 2.
IRT_RANGES: tuple[tuple[float, float], ...] = ((1, 350), (350, 700), (700, 1000))


@dataclass(frozen=True, slots=True)
class Grade:
    """A converted grade.

    `normalized` is value/max clamped to [0, 1]; `percent` is normalized x 100; `lti_outcome` is
    Isograd's own LTI Basic Outcome conversion. All three are None for an unknown grade type, a
    missing or zero maximum (for the first two), or a non-finite value.
    """

    grade_type: int
    type_name: str
    value: float
    max_value: float | None
    text: str | None
    normalized: float | None
    lti_outcome: float | None
    percent: float | None

    def as_payload(self) -> dict[str, Any]:
        """The event's "grade" object (worker/schemas/assessment.completed.json)."""
        return {
            "gra_typ_id": self.grade_type,
            "type": self.type_name,
            "value": _json_number(self.value),
            "max": None if self.max_value is None else _json_number(self.max_value),
            "text": self.text,
            "normalized": self.normalized,
            "lti_outcome": self.lti_outcome,
            "percent": self.percent,
        }


def convert_grade(
    grade_type: int, value: float, max_value: float | None, text: str | None
) -> Grade:
    """Convert one act 4 result; an unknown grade type is kept raw and logged, never rejected."""
    try:
        known = GradeType(grade_type)
    except ValueError:
        log.warning("unknown_grade_type", grade_type=grade_type)
        return Grade(grade_type, UNKNOWN_TYPE_NAME, value, max_value, text, None, None, None)
    normalized = _ratio(value, max_value)
    return Grade(
        grade_type=grade_type,
        type_name=TYPE_NAMES[known],
        value=value,
        max_value=max_value,
        text=text,
        normalized=normalized,
        lti_outcome=lti_outcome(known, value, max_value),
        percent=_percent(normalized),
    )


def lti_outcome(grade_type: GradeType, value: float, max_value: float | None) -> float | None:
    """The reference's LTI Basic Outcome rule for `grade_type`, clamped to [0, 1] as LTI requires.

    Source: isograd-api.txt, last section "LTI - Grades via Basic Outcome Service".
    """
    if not math.isfinite(value):
        return None
    match grade_type:
        case GradeType.LEVEL:
            # A level on 1-5 becomes 0.1-0.5, as the reference says: "the level divided by 10".
            return _clamp(value / 10)
        case GradeType.IRT_SCORE | GradeType.AVERAGE_SCORE:
            return _clamp(value / 1000)
        case GradeType.CORRECT_ANSWERS:
            # max_val is the number of questions; without it there is no percentage.
            return _ratio(value, max_value)
        case GradeType.IRT_RANGE:
            low, high = _irt_range(value)
            return _clamp((low + high) / 2 / 1000)
        case GradeType.AVERAGE_SCORE_100:
            # Oddity kept on purpose: the reference divides this score on 100 by 1000 too (so 100
            # becomes 0.1). We match what Isograd's own LTI service sends; `normalized` is the
            # value/max ratio for those who want 0-1.
            return _clamp(value / 1000)


def _irt_range(score: float) -> tuple[float, float]:
    for low, high in reversed(IRT_RANGES[1:]):
        if score >= low:
            return low, high
    return IRT_RANGES[0]


def _ratio(value: float, max_value: float | None) -> float | None:
    # A maximum that is missing, zero or negative gives no ratio (and a negative one would make
    # the ratio decrease as the value grows).
    if max_value is None or not max_value > 0 or not math.isfinite(max_value):
        return None
    if not math.isfinite(value):
        return None
    return _clamp(value / max_value)


def _percent(ratio: float | None) -> float | None:
    # Rounded so that 550/1000 gives 55.0, not 55.00000000000001.
    return None if ratio is None else round(ratio * 100, 6)


def _clamp(number: float) -> float:
    return min(max(number, 0.0), 1.0)


def _json_number(number: float) -> float | int:
    """550.0 as 550, so the payload reads like Isograd's numbers; 3.5 stays 3.5."""
    if math.isfinite(number) and number == int(number):
        return int(number)
    return number
