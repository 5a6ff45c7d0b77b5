"""Benchmark of the dashboard's chart query: `SqlStore.hourly_attempts` over the last 24 hours
with many attempts stored, and the overview page that runs it.

Seeds a fresh database (SQLite in a temporary directory, or with --postgres a fresh schema on
TEST_DATABASE_URL's server, dropped afterwards) with `--days` days of attempts, `--attempts` in
all, spread evenly over three subscriptions; then times the chart query alone and a whole
`GET /dashboard/` (through Starlette's TestClient, signed in), `--repeat` times each, and prints
the median and the worst.

    .venv/bin/python -m bench.dashboard_charts [--attempts 200000] [--days 30] [--postgres]
        [--without-index]

`--without-index` (an experiment) drops the index on attempts(started_at) (migration 0003) to
show what it buys.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import httpx2
from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import make_url
from starlette.testclient import TestClient

from tests.fakes import RecordingEnqueuer
from webhooks.app import create_app
from webhooks.dashboard.charts import chart_window
from worker.isograd import IsogradClient
from worker.outcomes import AttemptOutcome
from worker.runtime import Runtime
from worker.settings import Settings
from worker.sinks.webhook import WebhookTarget
from worker.storage import NewInvitation, SqlStore
from worker.storage.tables import attempts
from worker.subscriptions import Subscription

NOW = datetime(2026, 11, 27, 10, 15, tzinfo=UTC)
SUBSCRIPTIONS = ("hr", "ats", "lms")
ATTEMPTS_PER_DELIVERY = 50
ADMIN_TOKEN = "bench-admin-token-0123456789abcdef"  # noqa: S105 - a throwaway token
POSTGRES_URL = os.environ.get(
    "TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@contextmanager
def database(postgres: bool) -> Iterator[str]:
    if not postgres:
        with tempfile.TemporaryDirectory() as directory:
            yield f"sqlite:///{directory}/relay.db"
        return
    schema = f"bench_charts_{secrets.token_hex(4)}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        admin.dispose()


def seed(store: SqlStore, total: int, days: int) -> None:
    """`total` attempts, evenly spaced over `days` days up to NOW, ATTEMPTS_PER_DELIVERY each."""
    deliveries = max(1, total // ATTEMPTS_PER_DELIVERY)
    events = max(1, deliveries // len(SUBSCRIPTIONS))
    step = timedelta(days=days) / total
    delivery_ids: list[str] = []
    for n in range(events):
        invitation = store.create_invitation(
            NewInvitation(tst_frm_id=1, email=f"c{n}@example.org", first_name="C", last_name="D")
        )
        _, created, _ = store.create_event(
            f"evt_bench{n}", invitation.id, n + 1, "assessment.completed", {}, SUBSCRIPTIONS
        )
        delivery_ids += [delivery.id for delivery in created]
    rows = []
    for index in range(total):
        delivery_id = delivery_ids[index % len(delivery_ids)]
        rows.append(
            {
                "delivery_id": delivery_id,
                "number": index // len(delivery_ids) + 1,
                "started_at": NOW - timedelta(days=days) + index * step,
                "duration_ms": 50 + index % 400,
                "status_code": 200,
                "outcome": (AttemptOutcome.DELIVERED if index % 7 else AttemptOutcome.RETRY).value,
                "error": None,
                "response_body": None,
                "response_headers": {},
            }
        )
    with store.engine.begin() as connection:
        for start in range(0, len(rows), 5_000):
            connection.execute(insert(attempts), rows[start : start + 5_000])


def timed(repeat: int, call: object) -> tuple[float, float]:
    assert callable(call)
    seconds = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds) * 1000, max(seconds) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attempts", type=int, default=200_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument(
        "--without-index",
        action="store_true",
        help="experiment: drop the index on attempts(started_at)",
    )
    args = parser.parse_args()

    with database(args.postgres) as url:
        store = SqlStore.from_url(url, clock=lambda: NOW)
        store.migrate()
        started = time.perf_counter()
        seed(store, args.attempts, args.days)
        print(f"seeded {args.attempts} attempts in {time.perf_counter() - started:.1f} s")
        with store.engine.begin() as connection:
            if args.without_index:
                connection.execute(text("DROP INDEX ix_attempts_started_at"))
            connection.execute(text("ANALYZE"))
        rows = store.hourly_attempts(*chart_window(NOW))
        print(f"last 24 h: {sum(r.attempts for r in rows)} attempts in {len(rows)} rows")
        median, worst = timed(args.repeat, lambda: store.hourly_attempts(*chart_window(NOW)))
        print(f"hourly_attempts: median {median:.1f} ms, worst {worst:.1f} ms")

        subscriptions = tuple(
            Subscription(
                name=name, kind="webhook", target=WebhookTarget(f"https://{name}.example", ())
            )
            for name in SUBSCRIPTIONS
        )
        http = httpx2.Client()
        client = IsogradClient(
            api_url="http://127.0.0.1:9/api",
            auth_url="http://127.0.0.1:9/t",
            client_id="b",
            client_secret="b",  # noqa: S106 - never used: the overview calls no Isograd API
        )
        runtime = Runtime(
            store=store,
            client=client,
            http=http,
            subscriptions=subscriptions,
            enqueuer=RecordingEnqueuer(),
            clock=lambda: NOW,
        )
        settings = Settings(admin_token=ADMIN_TOKEN, public_url="http://127.0.0.1")
        app = create_app(settings, runtime=runtime, broker_ping=lambda: None)
        with TestClient(app, base_url="http://127.0.0.1") as browser:
            browser.post("/dashboard/login", data={"token": ADMIN_TOKEN, "next": "/dashboard/"})
            assert browser.get("/dashboard/").status_code == 200
            median, worst = timed(args.repeat, lambda: browser.get("/dashboard/"))
        print(f"GET /dashboard/: median {median:.1f} ms, worst {worst:.1f} ms")
        print(f"load1 {os.getloadavg()[0]:.2f}")
        http.close()
        store.close()


if __name__ == "__main__":
    main()
