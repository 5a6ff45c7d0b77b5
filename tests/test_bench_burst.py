"""bench.burst's PostgreSQL hygiene: a checkpoint forced before the measured run, and counted."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bench.burst import completed_checkpoints, force_checkpoint

pytestmark = pytest.mark.postgres


@pytest.fixture
def unprivileged_url(postgres_url: str) -> Iterator[str]:
    """A URL for a login role that may connect but not run CHECKPOINT; dropped afterwards."""
    role = f"bench_plain_{secrets.token_hex(4)}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE ROLE "{role}" LOGIN'))
        yield make_url(postgres_url).set(username=role).render_as_string(hide_password=False)
        with admin.connect() as connection:
            connection.execute(text(f'DROP ROLE "{role}"'))
    finally:
        admin.dispose()


def test_a_forced_checkpoint_is_counted_as_completed(postgres_url: str) -> None:
    before = completed_checkpoints(postgres_url)

    outcome = force_checkpoint(postgres_url)

    assert outcome == "forced before the run"
    assert completed_checkpoints(postgres_url) > before


def test_a_role_that_may_not_checkpoint_gets_a_reason_and_the_run_goes_on(
    unprivileged_url: str,
) -> None:
    outcome = force_checkpoint(unprivileged_url)

    assert outcome.startswith("not forced (InsufficientPrivilege: ")
    assert "CHECKPOINT" in outcome
