"""Typed values of the Isograd API: enums for its codes and frozen dataclasses for its answers."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class Gender(IntEnum):
    """`gen_id`."""

    MALE = 1
    FEMALE = 2
    NOT_PROVIDED = 3


class Language(IntEnum):
    """`lan_id` / `des_lan_id` (reference, appendix "Language codes")."""

    FRENCH = 1
    ENGLISH = 2
    GERMAN = 3
    DUTCH = 4
    SPANISH = 5
    ITALIAN = 6
    GREEK = 7
    ARABIC = 8


class GradeType(IntEnum):
    """`gra_typ_id` (reference, "Get results as a JSON")."""

    LEVEL = 1  # level on a 1 to 5 scale
    IRT_SCORE = 2  # score on 1000, item response theory
    AVERAGE_SCORE = 3  # score on 1000, average of question scores
    CORRECT_ANSWERS = 4  # number of correct answers
    IRT_RANGE = 5  # range of score 1-350, 350-700, 700-1000 (IRT)
    AVERAGE_SCORE_100 = 15  # score on 100, average of question scores


class AssessmentStatus(IntEnum):
    """`sta_id` of act 10 (named Assessment… so pytest does not collect it)."""

    NOT_STARTED = 1
    STARTED = 2
    COMPLETED = 3
    MARKING_PENDING = 4


@dataclass(frozen=True, slots=True)
class CandidateCreated:
    """Answer of act 1 (create candidate)."""

    can_id: int
    login_url: str | None


@dataclass(frozen=True, slots=True)
class AssessmentCreated:
    """Answer of acts 2, 9 and 8: the test created (or, act 2, the unfinished one returned)."""

    pla_tst_id: int
    test_url: str | None
    can_id: int | None = None


@dataclass(frozen=True, slots=True)
class AssessmentResult:
    """Answer of act 4. `grade_type` stays an int so an undocumented type is kept, not rejected."""

    grade_type: int
    value: float
    max_value: float | None
    text: str | None
    elapsed_seconds: int | None  # no_sto_tim_spe: end minus start, pauses included


@dataclass(frozen=True, slots=True)
class SkillResult:
    """One entry of act 5's `result_details`; -1 in the API (not tested) becomes None."""

    id: str
    description: str | None
    level: float | None = None
    level_description: str | None = None
    scale_min: float | None = None
    scale_max: float | None = None
    success_rate: float | None = None


@dataclass(frozen=True, slots=True)
class ResultDetails:
    """Answer of act 5."""

    language: int | None
    skills: tuple[SkillResult, ...]


@dataclass(frozen=True, slots=True)
class Credit:
    """One entry of act 15's `credits`."""

    description: str
    amount: int
