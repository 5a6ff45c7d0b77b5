"""Typed values of the Isograd API: enums for its codes, frozen dataclasses for its answers.

Each answer dataclass reads itself from Isograd's JSON with `from_answer`, tolerating what the
real API sends (numbers as strings, extra fields, missing optional fields) and raising ValueError,
TypeError or KeyError on anything else; the client turns those into IsogradProtocolError.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Self


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
class NewCandidate:
    """The candidate of acts 1 and 8 (`psw` is the password; Isograd generates one if None)."""

    email: str = field(repr=False)
    first_name: str = field(repr=False)
    last_name: str = field(repr=False)
    gender: Gender = Gender.NOT_PROVIDED
    language: Language | None = None
    ext_id: str | None = None
    dep_id: int | None = None  # an Isograd group; leave None when ext_dep_id is given
    ext_dep_id: str | None = None  # a group of ours, created by Isograd if unknown
    password: str | None = field(default=None, repr=False)
    no_password_reset: bool = False  # hash the password, keep it out of emails
    job_id: int | None = None
    extra_time_percent: int | None = None  # 50 = +50 % time


@dataclass(frozen=True, slots=True)
class AssessmentOptions:
    """The optional parameters of acts 2, 9 and 8."""

    full_screen: bool = False
    session_id: int | None = None
    proctoring: bool = False  # remote proctoring, billed extra
    max_tests: int | None = None
    max_tests_period_days: int | None = None  # max_tests applies to every such period
    return_url: str | None = None  # rtn_pag: where the candidate goes after the feedback page
    callback_url: str | None = field(default=None, repr=False)  # cal_bac_pag: GET on completion
    cpf_id: str | None = None
    tests_per_credit: int | None = None  # multi-pack of credits: 2, 3 or 4


@dataclass(frozen=True, slots=True)
class CandidateCreated:
    """Answer of act 1 (create candidate); `login_url` is valid for 30 minutes."""

    can_id: int
    login_url: str | None

    @classmethod
    def from_answer(cls, answer: Mapping[str, Any]) -> Self:
        return cls(
            can_id=read_int(answer["can_id"]), login_url=_optional_str(answer.get("lgn_url"))
        )


@dataclass(frozen=True, slots=True)
class AssessmentCreated:
    """Answer of acts 2, 9 and 8: the test created (or, act 2, the unfinished one returned)."""

    pla_tst_id: int
    test_url: str | None
    can_id: int | None = None

    @classmethod
    def from_answer(cls, answer: Mapping[str, Any]) -> Self:
        return cls(
            pla_tst_id=read_int(answer["pla_tst_id"]),
            test_url=_optional_str(answer.get("tst_url")),
            can_id=_optional_int(answer.get("can_id")),
        )


@dataclass(frozen=True, slots=True)
class AssessmentResult:
    """Answer of act 4. `grade_type` stays an int so an undocumented type is kept, not rejected."""

    grade_type: int
    value: float
    max_value: float | None
    text: str | None
    elapsed_seconds: int | None  # no_sto_tim_spe: end minus start, pauses included

    @classmethod
    def from_answer(cls, answer: Mapping[str, Any]) -> Self:
        return cls(
            grade_type=read_int(answer["gra_typ_id"]),
            value=read_float(answer["num_val"]),
            max_value=_optional_float(answer.get("max_val")),
            text=_optional_str(answer.get("txt_des")),
            elapsed_seconds=_optional_int(answer.get("no_sto_tim_spe")),
        )


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

    @classmethod
    def from_answer(cls, skill_id: str, answer: Mapping[str, Any]) -> Self:
        return cls(
            id=skill_id,
            description=_optional_str(answer.get("des")),
            level=_tested(answer.get("level")),
            level_description=_optional_str(answer.get("level_des")),
            scale_min=_optional_float(answer.get("scalemin")),
            scale_max=_optional_float(answer.get("scalemax")),
            success_rate=_tested(answer.get("successrate")),
        )


@dataclass(frozen=True, slots=True)
class ResultDetails:
    """Answer of act 5."""

    language: int | None
    skills: tuple[SkillResult, ...]

    @classmethod
    def from_answer(cls, answer: Mapping[str, Any]) -> Self:
        raw = answer.get("result_details")
        # PHP encodes an array keyed by skill id as an object, but as a list when the keys happen
        # to be 0..n-1 (or when it is empty): accept both.
        entries: Iterable[tuple[Any, Any]]
        if raw is None:
            entries = ()
        elif isinstance(raw, Mapping):
            entries = raw.items()
        elif isinstance(raw, list):
            entries = ((entry.get("id", index), entry) for index, entry in enumerate(raw))
        else:
            raise TypeError(f"result_details is a {type(raw).__name__}")
        return cls(
            language=_optional_int(answer.get("des_lan_id")),
            skills=tuple(SkillResult.from_answer(str(key), entry) for key, entry in entries),
        )


@dataclass(frozen=True, slots=True)
class Credit:
    """One entry of act 15's `credits`."""

    description: str
    amount: int

    @classmethod
    def from_answer(cls, answer: Mapping[str, Any]) -> Self:
        return cls(description=str(answer["des"]), amount=read_int(answer["amount"]))


def read_int(value: Any) -> int:
    """An integer sent as a number or a string ("550", "550.0"); ValueError/TypeError otherwise."""
    if isinstance(value, bool):
        raise TypeError("a boolean is not an integer")
    if isinstance(value, int):
        return value
    number = float(value)
    if not number.is_integer():
        raise ValueError(f"{value!r} is not an integer")
    return int(number)


def read_float(value: Any) -> float:
    """A number sent as a number or a string; ValueError/TypeError otherwise."""
    if isinstance(value, bool):
        raise TypeError("a boolean is not a number")
    return float(value)


def read_test_names(entries: list[Any]) -> dict[int, str]:
    """tst_frm_id → name for the act 14 entries that are `{"tst_frm_id": …, "name": …}`;
    plain IDs (what the reference documents) and malformed entries are skipped."""
    names: dict[int, str] = {}
    for entry in entries:
        if not isinstance(entry, Mapping):
            continue
        name = entry.get("name")
        try:
            tst_frm_id = read_int(entry.get("tst_frm_id"))
        except (TypeError, ValueError):
            continue
        if isinstance(name, str) and name.strip():
            names[tst_frm_id] = name.strip()
    return names


def read_values(raw: Any) -> list[Any]:
    """The entries of a JSON array that PHP may have encoded as an object (or null when empty)."""
    if raw is None:
        return []
    if isinstance(raw, Mapping):
        return list(raw.values())
    if isinstance(raw, list):
        return raw
    raise TypeError(f"expected an array, got a {type(raw).__name__}")


def _optional_int(value: Any) -> int | None:
    return None if value is None or value == "" else read_int(value)


def _optional_float(value: Any) -> float | None:
    return None if value is None or value == "" else read_float(value)


def _optional_str(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _tested(value: Any) -> float | None:
    """A skill level or success rate; -1 means "not tested on this skill" (reference, act 5)."""
    number = _optional_float(value)
    return None if number is None or number == -1 else number
