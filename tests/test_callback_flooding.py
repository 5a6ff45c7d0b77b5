"""Forged callbacks cannot fill the database: a capped query, a per-address limit on rejected
callbacks that never refuses a real one, and a short retention of rejected receipts."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from tests.fakes import FakeClock, RecordingEnqueuer
from tests.fixtures.pipeline import EMAIL
from tests.fixtures.web import KEYS, PUBLIC_URL, edge_settings
from webhooks.app import create_app
from webhooks.callbacks import MAX_STORED_QUERY_BYTES, REJECTED_CALLBACKS_PER_ADDRESS
from worker.metrics import RelayMetrics
from worker.runtime import Runtime
from worker.scheduler.process import REJECTED_CALLBACK_RETENTION, scheduler_jobs
from worker.settings import Settings
from worker.storage.records import NewInvitation
from worker.storage.store import SqlStore
from worker.storage.tables import callbacks
from worker.tokens import CallbackKey, callback_url, sign_callback_token

FORGED_KEY = (CallbackKey(KEYS[0].kid, b"x" * 32),)


@pytest.fixture
def invitation_id(store: SqlStore) -> str:
    invitation = store.create_invitation(
        NewInvitation(tst_frm_id=101, email=EMAIL, pla_tst_id=4242, first_name="Ada")
    )
    return invitation.id


def receipts(store: SqlStore) -> list[dict[str, Any]]:
    with store.engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(select(callbacks))]


def forged_path(n: int) -> str:
    return "/callbacks/isograd/" + sign_callback_token(FORGED_KEY, f"inv_forged{n}")


def real_path(invitation_id: str) -> str:
    return callback_url(PUBLIC_URL, KEYS, invitation_id).removeprefix(PUBLIC_URL)


def test_a_huge_query_string_is_stored_capped_with_its_names(
    web: TestClient, store: SqlStore
) -> None:
    web.get(forged_path(1), params={"a": "x" * 50_000, "b": "y" * 1000, "pla_tst_id": "7"})

    [receipt] = receipts(store)
    assert set(receipt["query"]) == {"a", "b", "pla_tst_id"}
    stored = json.dumps(receipt["query"], ensure_ascii=False).encode()
    assert len(stored) <= MAX_STORED_QUERY_BYTES + 100  # JSON punctuation around the budget


def test_a_short_query_is_stored_unchanged(web: TestClient, store: SqlStore) -> None:
    web.get(forged_path(1), params={"pla_tst_id": "7", "sta_id": "3"})

    [receipt] = receipts(store)
    assert receipt["query"] == {"pla_tst_id": "7", "sta_id": "3"}


def test_rejected_callbacks_past_the_per_address_limit_are_refused_and_not_stored(
    web: TestClient, store: SqlStore
) -> None:
    answers = [web.get(forged_path(n)).status_code for n in range(REJECTED_CALLBACKS_PER_ADDRESS)]
    refused = web.get(forged_path(-1))

    assert set(answers) == {404}
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) > 0
    assert len(receipts(store)) == REJECTED_CALLBACKS_PER_ADDRESS


def test_a_real_callback_from_a_throttled_address_is_still_accepted(
    web: TestClient, store: SqlStore, invitation_id: str, enqueuer: RecordingEnqueuer
) -> None:
    for n in range(REJECTED_CALLBACKS_PER_ADDRESS + 1):
        web.get(forged_path(n))

    response = web.get(real_path(invitation_id))

    assert response.status_code == 200
    assert [job.id for job in enqueuer.of_kind("completion")] == [invitation_id]


def test_refused_callbacks_are_counted_in_the_metrics(runtime: Runtime) -> None:
    metrics = RelayMetrics()
    app = create_app(edge_settings(), runtime=runtime, broker_ping=lambda: None, metrics=metrics)
    with TestClient(app, base_url=PUBLIC_URL) as client:
        for n in range(REJECTED_CALLBACKS_PER_ADDRESS + 3):
            client.get(forged_path(n))

    sample = metrics.registry.get_sample_value
    labels = {"result": "rejected", "reason": "throttled"}
    assert sample("isograd_relay_callbacks_total", labels) == 3
    bad_mac = {"result": "rejected", "reason": "bad_mac"}
    assert sample("isograd_relay_callbacks_total", bad_mac) == REJECTED_CALLBACKS_PER_ADDRESS


def test_rejected_receipts_are_purged_after_their_retention_and_accepted_ones_kept(
    store: SqlStore, invitation_id: str, clock: FakeClock
) -> None:
    store.record_callback("inv_forged", "GET", {}, "10.0.0.9", False, "bad_mac", clock())
    store.record_callback(invitation_id, "GET", {}, "10.0.0.8", True, None, clock())
    clock.advance(3600)
    store.record_callback("inv_recent", "GET", {}, "10.0.0.9", False, "bad_mac", clock())

    purged = store.purge_rejected_callbacks(clock() - timedelta(minutes=30))

    assert purged == 1
    kept = sorted(receipt["invitation_id"] for receipt in receipts(store))
    assert kept == sorted([invitation_id, "inv_recent"])


def test_the_scheduler_purges_rejected_receipts_older_than_a_day(tmp_path: Path) -> None:
    clock = FakeClock()
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'relay.db'}", var_dir=str(tmp_path))
    runtime = Runtime.from_settings(settings, RecordingEnqueuer(), clock=clock)
    try:
        runtime.store.migrate()
        runtime.store.record_callback("inv_old", "GET", {}, None, False, "bad_mac", clock())
        clock.advance(REJECTED_CALLBACK_RETENTION.total_seconds() + 60)
        runtime.store.record_callback("inv_new", "GET", {}, None, False, "bad_mac", clock())
        [job] = [
            j for j in scheduler_jobs(settings, runtime) if j.name == "purge_rejected_callbacks"
        ]

        purged = job.run(threading.Event())

        assert purged == 1
        assert [receipt["invitation_id"] for receipt in receipts(runtime.store)] == ["inv_new"]
    finally:
        runtime.close()
