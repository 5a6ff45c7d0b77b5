"""Simulated results: a grade per grade type and per-skill details, shaped as acts 4 and 5."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from worker.isograd.models import GradeType, Language
from worker.simulator.catalogue import CatalogueTest

NOT_TESTED = -1  # the reference's value for a skill the candidate was not tested on

_DEFAULT_VALUES: Mapping[int, float] = {
    GradeType.LEVEL: 3,
    GradeType.IRT_SCORE: 550,
    GradeType.AVERAGE_SCORE: 620,
    GradeType.CORRECT_ANSWERS: 30,
    GradeType.IRT_RANGE: 520,
    GradeType.AVERAGE_SCORE_100: 72,
}
_MAX_VALUES: Mapping[int, float] = {
    GradeType.LEVEL: 5,
    GradeType.IRT_SCORE: 1000,
    GradeType.AVERAGE_SCORE: 1000,
    GradeType.IRT_RANGE: 1000,
    GradeType.AVERAGE_SCORE_100: 100,
}
_LEVEL_NAMES = ("Beginner", "Basic", "Intermediate", "Advanced", "Expert")
_RANGES = ((1, 350), (350, 700), (700, 1000))  # grade type 5, per the reference


@dataclass(frozen=True, slots=True)
class SkillOutcome:
    """A skill's outcome: a level (IRT tests) or a success rate in [0, 1]; None = not tested."""

    skill_id: str
    score: float | None


@dataclass(frozen=True, slots=True)
class SimulatedResult:
    grade_type: int
    value: float
    max_value: float
    text: str
    elapsed_seconds: int
    skills: tuple[SkillOutcome, ...]


def _number(value: float) -> int | float:
    """Integral numbers as JSON integers ("550", not "550.0"), the rest as decimals."""
    return int(value) if float(value).is_integer() else value


def _default_text(grade_type: int, value: float, max_value: float) -> str:
    if grade_type == GradeType.LEVEL:
        name = _LEVEL_NAMES[min(max(round(value), 1), 5) - 1]
        # The reference's example is "Intermediate \u2013 3/5" (an en dash).
        return f"{name} \u2013 {_number(value)}/5"
    if grade_type == GradeType.IRT_RANGE:
        low, high = next(((lo, hi) for lo, hi in _RANGES if value <= hi), _RANGES[-1])
        return f"{low}-{high}"
    return f"{_number(value)}/{_number(max_value)}"


def build_result(
    test: CatalogueTest,
    *,
    elapsed_seconds: int,
    grade_type: int | None = None,
    value: float | None = None,
    max_value: float | None = None,
    text: str | None = None,
    skills: Mapping[str, float | None] | None = None,
) -> SimulatedResult:
    """A result for `test`; what is not given gets a plausible default for the grade type.

    Skills not listed in `skills` score in proportion to the grade (level on the skill's scale for
    IRT tests, success rate otherwise); a listed None means "not tested" (-1 in act 5).
    """
    kind = test.grade_type if grade_type is None else grade_type
    top = max_value
    if top is None:
        top = (
            float(test.questions)
            if kind == GradeType.CORRECT_ANSWERS
            else _MAX_VALUES.get(kind, 100)
        )
    grade = _DEFAULT_VALUES.get(kind, top / 2) if value is None else value
    ratio = min(max(grade / top, 0.0), 1.0) if top else 0.0
    overrides = skills or {}
    outcomes = []
    for skill in test.skills:
        if skill.id in overrides:
            score = overrides[skill.id]
        elif test.irt:
            score = round(skill.scale_min + ratio * (skill.scale_max - skill.scale_min), 1)
        else:
            score = round(ratio, 2)
        outcomes.append(SkillOutcome(skill.id, score))
    known = {skill.id for skill in test.skills}
    outcomes.extend(
        SkillOutcome(sid, score) for sid, score in overrides.items() if sid not in known
    )
    return SimulatedResult(
        grade_type=kind,
        value=grade,
        max_value=top,
        text=_default_text(kind, grade, top) if text is None else text,
        elapsed_seconds=elapsed_seconds,
        skills=tuple(outcomes),
    )


def result_json(result: SimulatedResult) -> dict[str, Any]:
    """Act 4's properties."""
    return {
        "gra_typ_id": result.grade_type,
        "num_val": _number(result.value),
        "max_val": _number(result.max_value),
        "txt_des": result.text,
        "no_sto_tim_spe": result.elapsed_seconds,
    }


def _php_array(entries: dict[str, Any]) -> dict[str, Any] | list[Any]:
    """How PHP's json_encode writes an array: a list when its keys are exactly 0..n-1 (so an empty
    one is `[]`), an object otherwise."""
    if list(entries) == [str(index) for index in range(len(entries))]:
        return list(entries.values())
    return entries


def details_json(test: CatalogueTest, result: SimulatedResult, language: int) -> dict[str, Any]:
    """Act 5's properties: `result_details` is a PHP array keyed by skill id."""
    specs = {skill.id: skill for skill in test.skills}
    used = language if language in test.languages else Language.ENGLISH
    details: dict[str, dict[str, Any]] = {}
    for outcome in result.skills:
        spec = specs.get(outcome.skill_id)
        if spec is None:
            description = outcome.skill_id
        else:
            used, description = spec.description(language)
        score = NOT_TESTED if outcome.score is None else _number(outcome.score)
        if test.irt:
            low = spec.scale_min if spec else 1
            high = spec.scale_max if spec else 5
            details[outcome.skill_id] = {
                "des": description,
                "level": score,
                "level_des": "" if outcome.score is None else f"Level {round(outcome.score)}",
                "scalemin": _number(low),
                "scalemax": _number(high),
            }
        else:
            details[outcome.skill_id] = {"des": description, "successrate": score}
    return {"des_lan_id": used, "result_details": _php_array(details)}
