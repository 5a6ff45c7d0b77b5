"""Benchmark: end-to-end completions/s, from Isograd's callback to the delivered webhook.

Run from the repository root (needs Redis on REDIS_URL, default redis://127.0.0.1:6379/0):

    .venv/bin/python -m bench.e2e_throughput [--count 300] [--threads 8] [--postgres]

Real processes, as tests/test_e2e.py starts them (tests/harness/processes.py): the Isograd
simulator, `isograd-relay web`, ONE `isograd-relay worker` process (`--threads` threads) on a
Redis database of its own, SQLite in a temporary directory (or, with `--postgres`, a fresh
PostgreSQL database on TEST_DATABASE_URL's server, dropped afterwards), and a local HTTP receiver
answering 200 behind one webhook subscription.

1. invite `--count` candidates through POST /api/invitations (not timed in the throughput);
2. complete every test in the simulator (its callbacks dropped by a simulator fault: the
   simulator's control API completes ~30 tests/s, slower than the relay, and would be what is
   measured), not timed in the throughput;
3. fire every test's callback (GET of its cal_bac_pag URL, 8 client threads), as Isograd would,
   and wait until the receiver holds one webhook per completion (deadline: `--timeout` s).

It prints completions/s (count / time from the first callback to the last delivery) and the
breakdown: when the callbacks were all answered, the first webhook, when all events were stored
(act 10, 4, 5, 6 done), when all webhooks were delivered. Stops by itself; every process is
stopped on exit.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx2
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from tests.harness.processes import WebhookTarget, new_webhook_secret, relay_stack
from tests.receiver import RecordingReceiver
from worker.storage.tables import deliveries, events

POLL = 0.05


@contextmanager
def fresh_postgres(server_url: str) -> Iterator[str]:
    """A new, empty database on `server_url`'s server; dropped on exit."""
    name = f"bench_e2e_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300, help="completions (default 300)")
    parser.add_argument("--threads", type=int, default=8, help="worker threads (default 8)")
    parser.add_argument("--timeout", type=float, default=300.0, help="deadline in seconds")
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL instead of SQLite")
    args = parser.parse_args(argv)
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    postgres_server = os.environ.get(
        "TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
    target = WebhookTarget("bench", (new_webhook_secret(),), retry_schedule=(1, 2, 5))
    with (
        tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp,
        RecordingReceiver() as receiver,
        fresh_postgres(postgres_server) if args.postgres else _none() as database_url,
        relay_stack(
            Path(tmp),
            redis_url=redis_url,
            receiver_url=receiver.url(),
            targets=[target],
            database_url=database_url,
            worker_threads=args.threads,
        ) as stack,
        httpx2.Client(timeout=30) as http,
    ):
        engine = create_engine(stack.database_url)
        try:
            started = time.perf_counter()
            with ThreadPoolExecutor(8) as pool:
                invitations = list(
                    pool.map(
                        lambda n: stack.invite(
                            http,
                            email=f"bench-{n}@example.org",
                            first_name="Bench",
                            last_name=f"Candidate {n}",
                            tst_frm_id=101 + n % 6,
                        ),
                        range(args.count),
                    )
                )
            invited = time.perf_counter() - started

            def count(table: object) -> int:
                with engine.connect() as connection:
                    query = select(func.count()).select_from(table)  # type: ignore[arg-type]
                    if table is deliveries:
                        query = query.where(deliveries.c.status == "delivered")
                    return int(connection.execute(query).scalar_one())

            # The simulator completes each test and would call back at once, at the pace of
            # its own control API; the callbacks are dropped here and fired below instead, so
            # the clock measures the relay (callback to webhook), not the simulator.
            stack.simulator(http, "/faults", json={"drop_callback_rate": 1})
            started = time.perf_counter()
            with ThreadPoolExecutor(8) as pool:
                urls = list(
                    pool.map(
                        lambda i: stack.complete(http, i["pla_tst_id"], value=600)["test"][
                            "options"
                        ]["cal_bac_pag"],
                        invitations,
                    )
                )
            completed = time.perf_counter() - started
            stack.simulator(http, "/faults", json={"drop_callback_rate": 0})

            t0 = time.perf_counter()
            marks: dict[str, float] = {}
            with ThreadPoolExecutor(8) as pool:
                answers = [pool.submit(http.get, url) for url in urls]
                deadline = t0 + args.timeout
                while len(marks) < 4:
                    now = time.perf_counter()
                    if "callbacks" not in marks and all(a.done() for a in answers):
                        marks["callbacks"] = now - t0
                    if "first delivery" not in marks and receiver.requests:
                        marks["first delivery"] = now - t0
                    if "events" not in marks and count(events) >= args.count:
                        marks["events"] = now - t0
                    if "delivered" not in marks and len(receiver.requests) >= args.count:
                        marks["delivered"] = time.perf_counter() - t0
                    if now > deadline:
                        print(f"timed out after {args.timeout} s: {marks}", file=sys.stderr)
                        return 1
                    time.sleep(POLL)  # a poll interval
                failed = [a for a in answers if a.result().status_code != 200]
            stored_delivered = count(deliveries)
        finally:
            engine.dispose()
        requests = receiver.requests
        webhook_ids = {r.headers["webhook-id"] for r in requests}

    total = marks["delivered"]
    database = "PostgreSQL" if args.postgres else "SQLite"
    print(
        f"end-to-end benchmark: {args.count} completions, 1 worker process x {args.threads} "
        f"threads, Redis broker, {database}, simulator + web + worker + receiver on "
        f"{os.cpu_count()} CPUs (load1 {os.getloadavg()[0]:.2f} at the end)"
    )
    print(f"invitations via the API:       {invited:7.2f} s ({args.count / invited:.0f}/s)")
    print(f"tests completed (simulator):   {completed:7.2f} s ({args.count / completed:.0f}/s)")
    print(f"all callbacks answered 200:    {marks['callbacks']:7.2f} s after the first callback")
    print(f"first webhook delivered:       {marks['first delivery']:7.2f} s")
    print(f"all events stored:             {marks['events']:7.2f} s")
    print(f"all webhooks delivered:        {total:7.2f} s")
    print(f"throughput:                    {args.count / total:7.1f} completions/s")
    print(
        f"checks: {len(requests)} webhooks received, {len(webhook_ids)} distinct event ids, "
        f"{stored_delivered} deliveries marked delivered, {len(failed)} callbacks not answered 200"
    )
    return 0


@contextmanager
def _none() -> Iterator[None]:
    yield None


if __name__ == "__main__":
    sys.exit(main())
