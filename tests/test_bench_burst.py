"""bench.burst's helpers: a PostgreSQL checkpoint forced before the measured run and counted
(real server), and the summary of the web's callback batches from its /metrics."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bench.burst import callback_batches, completed_checkpoints, force_checkpoint
from worker.metrics import RelayMetrics


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


@pytest.mark.postgres
def test_a_forced_checkpoint_is_counted_as_completed(postgres_url: str) -> None:
    before = completed_checkpoints(postgres_url)

    outcome = force_checkpoint(postgres_url)

    assert outcome == "forced before the run"
    assert completed_checkpoints(postgres_url) > before


@pytest.mark.postgres
def test_a_role_that_may_not_checkpoint_gets_a_reason_and_the_run_goes_on(
    unprivileged_url: str,
) -> None:
    outcome = force_checkpoint(unprivileged_url)

    assert outcome.startswith("not forced (InsufficientPrivilege: ")
    assert "CHECKPOINT" in outcome


def test_callback_batches_summarises_the_webs_batch_metrics() -> None:
    metrics = RelayMetrics()
    for store_seconds in (0.002, 0.004, 0.030):
        metrics.record_receipt_batch(receipts=10, store_seconds=store_seconds, enqueue_seconds=None)
    metrics.record_receipt_batch(receipts=30, store_seconds=0.004, enqueue_seconds=0.0008)

    summary = callback_batches(metrics.exposition().decode())

    assert summary == (
        "4 batches of 15.0 receipts on average; store 10.0 ms mean (p99 <= 50 ms), "
        "enqueue 0.8 ms mean (p99 <= 1 ms)"
    )


def test_callback_batches_says_so_when_the_web_stored_none() -> None:
    assert callback_batches(RelayMetrics().exposition().decode()) == "none reported"
