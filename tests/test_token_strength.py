"""Token strength: guessable operator tokens are refused with a clear message."""

from __future__ import annotations

import secrets

import pytest

from worker.token_strength import estimated_bits, repeated_pattern, token_problem


@pytest.mark.parametrize(
    "token", ["aaaaaaaaaaaaaaaa", "abababababababab", "abcabcabcabcabcabc", "x" * 64]
)
def test_repeated_characters_or_patterns_are_refused(token: str) -> None:
    problem = token_problem("ADMIN_TOKEN", token)

    assert problem is not None
    assert problem.startswith("ADMIN_TOKEN: too predictable")
    assert "secrets.token_urlsafe" in problem
    assert token not in problem


@pytest.mark.parametrize(
    "token",
    [secrets.token_urlsafe(32), secrets.token_hex(16), "admin-token-for-tests-0123456789"],
)
def test_random_or_varied_tokens_are_accepted(token: str) -> None:
    assert token_problem("ADMIN_TOKEN", token) is None


def test_a_short_token_is_refused_for_its_length_first() -> None:
    assert token_problem("METRICS_TOKEN", "Zq8#") == "METRICS_TOKEN: must be at least 16 characters"


def test_the_estimate_grows_with_distinct_characters() -> None:
    assert estimated_bits("a" * 16) == 0
    assert estimated_bits("ab" * 8) == 16
    assert estimated_bits("0123456789abcdef") == 64


def test_a_pattern_is_a_shorter_string_repeated_not_any_repetition() -> None:
    assert repeated_pattern("abcabc")
    assert not repeated_pattern("abcab")
    assert not repeated_pattern("a")
