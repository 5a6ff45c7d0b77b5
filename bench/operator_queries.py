"""Benchmark of the operators' queries: a page of invitations and events, unfiltered and by email
(the event filter reads the payload's JSON), and one erasure, on a store of N candidates.

    .venv/bin/python bench/operator_queries.py [--rows 20000] [--database-url URL]

Prints milliseconds per call (median of --repeat calls). SQLite in a temporary file by default;
a PostgreSQL URL is used as is (its tables are dropped first: use a throwaway database/schema).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert

from worker.erasure import erase_candidate
from worker.storage import EventFilter, InvitationFilter, SqlStore
from worker.storage.tables import events, invitations, metadata

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def fill(store: SqlStore, rows: int) -> None:
    """`rows` invitations, each with its completed event, inserted in bulk."""
    invitation_rows, event_rows = [], []
    for number in range(rows):
        email = f"candidate{number}@example.org"
        created = T0 + timedelta(seconds=number)
        invitation_rows.append(
            {
                "id": f"inv_{number:08d}",
                "pla_tst_id": number + 1,
                "tst_frm_id": 100 + number % 7,
                "email": email,
                "first_name": "Ada",
                "last_name": "Lovelace",
                "context": {},
                "status": "completed",
                "source": "invited",
                "created_at": created,
                "check_count": 0,
            }
        )
        payload = {"data": {"candidate": {"email": email}, "test": {"tst_frm_id": 101}}}
        event_rows.append(
            {
                "id": f"evt_{number:08d}",
                "type": "assessment.completed",
                "invitation_id": f"inv_{number:08d}",
                "pla_tst_id": number + 1,
                "payload": payload,
                "created_at": created,
            }
        )
    with store.engine.begin() as connection:
        connection.execute(insert(invitations), invitation_rows)
        connection.execute(insert(events), event_rows)


def timed(call: Callable[[], object], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        url = args.database_url or f"sqlite:///{Path(directory) / 'bench.db'}"
        store = SqlStore.from_url(url)
        metadata.drop_all(store.engine)
        with store.engine.begin() as connection:
            connection.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
        store.migrate()
        fill(store, args.rows)
        someone = f"candidate{args.rows // 2}@example.org"
        cases: dict[str, Callable[[], object]] = {
            "invitations, newest page of 50": lambda: store.list_invitations(limit=50),
            "invitations by email": lambda: store.list_invitations(InvitationFilter(email=someone)),
            "events, newest page of 50": lambda: store.list_events(limit=50),
            "events by email (payload JSON)": lambda: store.list_events(EventFilter(email=someone)),
            "search box (find_invitations)": lambda: store.find_invitations(someone),
        }
        print(f"{store.engine.dialect.name}, {args.rows} invitations and events")
        for name, call in cases.items():
            print(f"  {name:34} {timed(call, args.repeat):8.2f} ms")
        started = time.perf_counter()
        erase_candidate(someone, store=store, requested_by="bench", now=datetime.now(UTC))
        elapsed = (time.perf_counter() - started) * 1000
        print(f"  {'one erasure (scrypt + UPDATEs)':34} {elapsed:8.2f} ms")
        store.close()


if __name__ == "__main__":
    main()
