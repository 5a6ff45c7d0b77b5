"""The simulated account's catalogue: which tests exist, how they are graded, their skills."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from worker.isograd.models import GradeType, Language

ASSESSMENT_CREDIT = "Assessment"
CERTIFICATION_CREDIT = "Certification"
PROCTORING_CREDIT = "Remote proctoring"

# Grade types whose act 5 details carry level/level_des/scalemin/scalemax (IRT-based, per the
# reference); the others carry `successrate`.
IRT_GRADE_TYPES = frozenset({GradeType.LEVEL, GradeType.IRT_SCORE, GradeType.IRT_RANGE})


@dataclass(frozen=True, slots=True)
class SkillSpec:
    """One skill of a test; `descriptions` by language id (English, 2, is the fallback)."""

    id: str
    descriptions: Mapping[int, str]
    scale_min: float = 1
    scale_max: float = 5

    def description(self, language: int) -> tuple[int, str]:
        """The description in `language`, else English; returns (language used, text)."""
        if language in self.descriptions:
            return language, self.descriptions[language]
        return Language.ENGLISH, self.descriptions.get(Language.ENGLISH, self.id)


@dataclass(frozen=True, slots=True)
class CatalogueTest:
    """A `tst_frm_id` the account may use. `grade_type` is an int so undocumented ones can be
    simulated; `questions` is the maximum for grade type 4 (number of correct answers)."""

    tst_frm_id: int
    name: str
    grade_type: int
    assessment: bool = True
    credit: str = ASSESSMENT_CREDIT
    skills: tuple[SkillSpec, ...] = ()
    questions: int = 40
    languages: frozenset[int] = frozenset({Language.FRENCH, Language.ENGLISH})

    @property
    def irt(self) -> bool:
        return self.grade_type in IRT_GRADE_TYPES


def _skill(skill_id: str, english: str, french: str) -> SkillSpec:
    return SkillSpec(skill_id, {Language.ENGLISH: english, Language.FRENCH: french})


_OFFICE_SKILLS = (
    _skill("45", "Environment and methods", "Environnement et méthodes"),
    _skill("46", "Calculations and formulas", "Calculs et formules"),
    _skill("47", "Formatting", "Mise en forme"),
    _skill("48", "Data management and analysis", "Gestion des données"),
)
_REASONING_SKILLS = (
    _skill("201", "Numerical reasoning", "Raisonnement numérique"),
    _skill("202", "Verbal reasoning", "Raisonnement verbal"),
)

DEFAULT_CATALOGUE: tuple[CatalogueTest, ...] = (
    CatalogueTest(101, "TOSA Excel (score on 1000)", GradeType.IRT_SCORE, skills=_OFFICE_SKILLS),
    CatalogueTest(102, "TOSA Word (level 1-5)", GradeType.LEVEL, skills=_OFFICE_SKILLS),
    CatalogueTest(103, "TOSA PowerPoint (score range)", GradeType.IRT_RANGE, skills=_OFFICE_SKILLS),
    CatalogueTest(
        104, "Logical reasoning (average)", GradeType.AVERAGE_SCORE, skills=_REASONING_SKILLS
    ),
    CatalogueTest(105, "Typing (correct answers)", GradeType.CORRECT_ANSWERS, questions=40),
    CatalogueTest(
        106, "English quiz (score on 100)", GradeType.AVERAGE_SCORE_100, skills=_REASONING_SKILLS
    ),
    CatalogueTest(
        107,
        "TOSA Excel certification (not an assessment)",
        GradeType.IRT_SCORE,
        assessment=False,
        credit=CERTIFICATION_CREDIT,
        skills=_OFFICE_SKILLS,
    ),
)

DEFAULT_CREDITS: Mapping[str, int] = {
    ASSESSMENT_CREDIT: 1000,
    CERTIFICATION_CREDIT: 100,
    PROCTORING_CREDIT: 100,
}


@dataclass(frozen=True, slots=True)
class Catalogue:
    """The tests and starting credits every (sub) account of the simulator gets."""

    tests: tuple[CatalogueTest, ...] = DEFAULT_CATALOGUE
    credits: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_CREDITS))

    def find(self, tst_frm_id: int) -> CatalogueTest | None:
        for test in self.tests:
            if test.tst_frm_id == tst_frm_id:
                return test
        return None
