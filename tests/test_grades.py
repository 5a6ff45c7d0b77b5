"""Grade conversion: the reference's LTI rules, normalisation, payload shape, unknown types."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from worker.grades import Grade, convert_grade
from worker.isograd.models import GradeType


@pytest.mark.parametrize(
    ("grade_type", "value", "max_value", "expected_lti"),
    [
        # type 1: level / 10
        (1, 0, 5, 0.0),
        (1, 1, 5, 0.1),
        (1, 3.5, 5, 0.35),
        (1, 5, 5, 0.5),
        # types 2 and 3: score / 1000
        (2, 0, 1000, 0.0),
        (2, 550, 1000, 0.55),
        (2, 1000, 1000, 1.0),
        (3, 0, 1000, 0.0),
        (3, 425, 1000, 0.425),
        (3, 1000, 1000, 1.0),
        # type 4: correct answers / number of questions (max_val)
        (4, 0, 40, 0.0),
        (4, 30, 40, 0.75),
        (4, 40, 40, 1.0),
        # type 5: middle of the range / 1000; boundaries belong to the upper range
        (5, 0, 1000, 0.1755),
        (5, 1, 1000, 0.1755),
        (5, 349.99, 1000, 0.1755),
        (5, 350, 1000, 0.525),
        (5, 699.99, 1000, 0.525),
        (5, 700, 1000, 0.85),
        (5, 1000, 1000, 0.85),
        # type 15: score on 100, divided by 1000 as the reference says
        (15, 0, 100, 0.0),
        (15, 72, 100, 0.072),
        (15, 100, 100, 0.1),
    ],
)
def test_lti_outcome_follows_the_reference_rule_for_each_grade_type(
    grade_type: int, value: float, max_value: float, expected_lti: float
) -> None:
    grade = convert_grade(grade_type, value, max_value, None)

    assert grade.lti_outcome == pytest.approx(expected_lti)


@pytest.mark.parametrize(
    ("grade_type", "value", "max_value", "expected_normalized", "expected_percent"),
    [
        (1, 3, 5, 0.6, 60.0),
        (2, 550, 1000, 0.55, 55.0),
        (3, 0, 1000, 0.0, 0.0),
        (4, 40, 40, 1.0, 100.0),
        (5, 700, 1000, 0.7, 70.0),
        (15, 72, 100, 0.72, 72.0),
    ],
)
def test_normalized_and_percent_are_value_over_max(
    grade_type: int,
    value: float,
    max_value: float,
    expected_normalized: float,
    expected_percent: float,
) -> None:
    grade = convert_grade(grade_type, value, max_value, None)

    assert grade.normalized == pytest.approx(expected_normalized)
    assert grade.percent == expected_percent


@pytest.mark.parametrize(
    ("grade_type", "expected_name"),
    [
        (1, "level_5"),
        (2, "irt_score_1000"),
        (3, "average_score_1000"),
        (4, "correct_answers"),
        (5, "irt_range_1000"),
        (15, "average_score_100"),
    ],
)
def test_each_known_grade_type_has_a_readable_name(grade_type: int, expected_name: str) -> None:
    assert convert_grade(grade_type, 1, 10, None).type_name == expected_name


def test_a_value_above_the_maximum_is_clamped_to_one() -> None:
    grade = convert_grade(GradeType.IRT_SCORE, 1200, 1000, None)

    assert (grade.normalized, grade.lti_outcome, grade.percent) == (1.0, 1.0, 100.0)


def test_a_negative_value_is_clamped_to_zero() -> None:
    grade = convert_grade(GradeType.AVERAGE_SCORE, -5, 1000, None)

    assert (grade.normalized, grade.lti_outcome, grade.percent) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize("max_value", [None, 0, -10])
def test_without_a_positive_maximum_normalized_and_percent_are_none(
    max_value: float | None,
) -> None:
    grade = convert_grade(GradeType.IRT_SCORE, 550, max_value, None)

    assert (grade.normalized, grade.percent) == (None, None)
    assert grade.lti_outcome == pytest.approx(0.55)


@pytest.mark.parametrize("max_value", [None, 0])
def test_correct_answers_without_a_number_of_questions_have_no_lti_outcome(
    max_value: float | None,
) -> None:
    assert convert_grade(GradeType.CORRECT_ANSWERS, 12, max_value, None).lti_outcome is None


def test_a_non_finite_value_gives_no_numbers() -> None:
    grade = convert_grade(GradeType.IRT_SCORE, math.nan, 1000, None)

    assert (grade.normalized, grade.lti_outcome, grade.percent) == (None, None, None)


def test_an_unknown_grade_type_is_kept_raw() -> None:
    grade = convert_grade(99, 42, 50, "42 points")

    assert grade == Grade(99, "unknown", 42, 50, "42 points", None, None, None)


def test_an_unknown_grade_type_is_logged_as_a_warning() -> None:
    with capture_logs() as logs:
        convert_grade(99, 42, 50, None)

    assert logs == [{"event": "unknown_grade_type", "grade_type": 99, "log_level": "warning"}]


def test_a_known_grade_type_logs_nothing() -> None:
    with capture_logs() as logs:
        convert_grade(GradeType.LEVEL, 3, 5, None)

    assert logs == []


def test_the_payload_has_the_event_grade_shape() -> None:
    grade = convert_grade(2, 550.0, 1000.0, "550/1000")

    assert grade.as_payload() == {
        "gra_typ_id": 2,
        "type": "irt_score_1000",
        "value": 550,
        "max": 1000,
        "text": "550/1000",
        "normalized": 0.55,
        "lti_outcome": 0.55,
        "percent": 55.0,
    }


def test_the_payload_writes_whole_numbers_as_integers_and_keeps_fractions() -> None:
    payload = convert_grade(1, 3.5, 5.0, None).as_payload()

    assert (payload["value"], type(payload["max"])) == (3.5, int)


def test_the_payload_of_an_unknown_type_has_nulls() -> None:
    payload = convert_grade(99, 7, None, None).as_payload()

    assert payload == {
        "gra_typ_id": 99,
        "type": "unknown",
        "value": 7,
        "max": None,
        "text": None,
        "normalized": None,
        "lti_outcome": None,
        "percent": None,
    }


_KNOWN_TYPES = st.sampled_from([int(t) for t in GradeType])
_VALUES = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
_MAXIMA = st.floats(min_value=1e-3, max_value=1e6, allow_nan=False)


@given(grade_type=_KNOWN_TYPES, value=_VALUES, max_value=_MAXIMA)
def test_every_result_lies_between_zero_and_one(
    grade_type: int, value: float, max_value: float
) -> None:
    grade = convert_grade(grade_type, value, max_value, None)

    for number in (grade.normalized, grade.lti_outcome):
        assert number is not None
        assert 0.0 <= number <= 1.0
    assert grade.percent is not None
    assert 0.0 <= grade.percent <= 100.0


@given(grade_type=_KNOWN_TYPES, values=st.lists(_VALUES, min_size=2, max_size=2), max_value=_MAXIMA)
def test_results_never_decrease_when_the_value_grows(
    grade_type: int, values: list[float], max_value: float
) -> None:
    low, high = sorted(values)

    lower = convert_grade(grade_type, low, max_value, None)
    higher = convert_grade(grade_type, high, max_value, None)

    for attribute in ("normalized", "lti_outcome", "percent"):
        assert getattr(lower, attribute) <= getattr(higher, attribute), attribute
