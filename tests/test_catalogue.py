"""The test catalogue: names from act 14, cached with a TTL, never failing a completion."""

from __future__ import annotations

from collections.abc import Mapping

from worker.catalogue import AssessmentCatalogue
from worker.errors import IsogradUnavailableError


class Source:
    """Answers act 14 from a list of results (a mapping, or an exception to raise)."""

    def __init__(self, *answers: Mapping[int, str] | Exception) -> None:
        self.answers = list(answers)
        self.calls: list[int | None] = []

    def list_test_names(self, *, sub_com_id: int | None = None) -> Mapping[int, str]:
        self.calls.append(sub_com_id)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_known_test_is_named_and_an_unknown_one_is_not() -> None:
    catalogue = AssessmentCatalogue(Source({123: "Excel 2019"}))

    assert (catalogue.name(123), catalogue.name(999)) == ("Excel 2019", None)


def test_a_name_from_relay_toml_wins_and_asks_isograd_nothing() -> None:
    source = Source({123: "Excel 2019 (act 14)"})
    catalogue = AssessmentCatalogue(source, configured={123: "TOSA Excel"})

    assert catalogue.name(123) == "TOSA Excel"
    assert source.calls == []
    assert catalogue.name(456) is None  # not configured: act 14 is asked
    assert source.calls == [None]


def test_names_are_read_once_per_ttl_and_per_account() -> None:
    source, clock = Source({123: "Excel 2019"}), Clock()
    catalogue = AssessmentCatalogue(source, ttl=60, monotonic=clock)

    catalogue.name(123)
    catalogue.name(123)
    catalogue.name(123, sub_com_id=42)
    clock.now = 61
    catalogue.name(123)

    assert source.calls == [None, 42, None]


def test_a_failing_act_14_gives_no_name_and_is_asked_again_after_the_failure_ttl() -> None:
    source = Source(IsogradUnavailableError("down"), {123: "Excel 2019"})
    clock = Clock()
    catalogue = AssessmentCatalogue(source, failure_ttl=10, monotonic=clock)

    assert catalogue.name(123) is None
    assert catalogue.name(123) is None
    clock.now = 11
    assert catalogue.name(123) == "Excel 2019"
    assert len(source.calls) == 2


def test_a_failure_after_a_success_keeps_the_stale_names() -> None:
    source = Source({123: "Excel 2019"}, IsogradUnavailableError("down"))
    clock = Clock()
    catalogue = AssessmentCatalogue(source, ttl=10, monotonic=clock)
    catalogue.name(123)
    clock.now = 11

    assert catalogue.name(123) == "Excel 2019"
