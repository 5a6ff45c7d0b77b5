"""Tests of the dashboard's session cookies and CSRF tokens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from webhooks.dashboard.sessions import (
    SESSION_LIFETIME,
    csrf_matches,
    new_session_cookie,
    read_session,
    token_matches,
)

TOKEN = "admin-token-for-tests-0123456789"
NOW = datetime(2026, 11, 27, 10, 15, tzinfo=UTC)


def test_a_fresh_cookie_reads_back_as_a_session() -> None:
    cookie = new_session_cookie(TOKEN, NOW)

    session = read_session(cookie, TOKEN, NOW)

    assert session is not None
    assert session.issued_at == int(NOW.timestamp())


def test_the_cookie_does_not_contain_the_token() -> None:
    assert TOKEN not in new_session_cookie(TOKEN, NOW)


def test_a_cookie_signed_with_another_token_is_refused() -> None:
    cookie = new_session_cookie("another-token", NOW)

    assert read_session(cookie, TOKEN, NOW) is None


@pytest.mark.parametrize("part", [0, 1, 2])
def test_a_cookie_with_any_part_changed_is_refused(part: int) -> None:
    parts = new_session_cookie(TOKEN, NOW).split(".")
    parts[part] = "1" + parts[part][1:] if parts[part][0] != "1" else "2" + parts[part][1:]

    assert read_session(".".join(parts), TOKEN, NOW) is None


@pytest.mark.parametrize(
    "cookie", [None, "", "garbage", "1.2", "x.y.z", "...", "1.nonce.\u00e9", "1.n\u00e9.mac"]
)
def test_malformed_cookies_are_refused(cookie: str | None) -> None:
    assert read_session(cookie, TOKEN, NOW) is None


def test_no_session_exists_without_an_admin_token() -> None:
    cookie = new_session_cookie(TOKEN, NOW)

    assert read_session(cookie, None, NOW) is None


def test_a_session_expires_after_its_lifetime() -> None:
    cookie = new_session_cookie(TOKEN, NOW)
    just_before = NOW + SESSION_LIFETIME - timedelta(seconds=1)

    assert read_session(cookie, TOKEN, just_before) is not None
    assert read_session(cookie, TOKEN, NOW + SESSION_LIFETIME) is None


def test_a_cookie_issued_in_the_future_is_refused() -> None:
    cookie = new_session_cookie(TOKEN, NOW + timedelta(minutes=5))

    assert read_session(cookie, TOKEN, NOW) is None


def test_each_session_has_its_own_csrf_token() -> None:
    first = read_session(new_session_cookie(TOKEN, NOW), TOKEN, NOW)
    second = read_session(new_session_cookie(TOKEN, NOW), TOKEN, NOW)

    assert first is not None
    assert second is not None
    assert csrf_matches(first, first.csrf_token)
    assert not csrf_matches(first, second.csrf_token)
    assert not csrf_matches(first, None)


def test_the_csrf_token_is_not_the_session_mac() -> None:
    cookie = new_session_cookie(TOKEN, NOW)
    session = read_session(cookie, TOKEN, NOW)

    assert session is not None
    assert session.csrf_token != cookie.rsplit(".", 1)[1]


@pytest.mark.parametrize(
    ("given", "configured", "expected"),
    [
        (TOKEN, TOKEN, True),
        (TOKEN + "x", TOKEN, False),
        ("", TOKEN, False),
        ("", None, False),
        ("", "", False),
        ("anything", None, False),
    ],
)
def test_the_token_matches_only_the_configured_one(
    given: str, configured: str | None, expected: bool
) -> None:
    assert token_matches(given, configured) is expected
