"""Benchmark: the worker's own cost of one completion, without the broker or the other processes.

    .venv/bin/python -m bench.completion_cpu [--completions 300] [--threads 1] [--postgres]

The `process_completion` actor's body (acts 10, 4, 5, 6, the event and its two deliveries
stored, both first attempts made and recorded: worker.jobs.actors) is run in this process for
`--completions` completed tests, from `--threads` threads, against the simulator (its own
process, no latency) and a receiver answering 200 (its own process), with two webhook
subscriptions, SQLite in a temporary directory (or with `--postgres` a fresh database on
TEST_DATABASE_URL's server) and the relay's logging at INFO into a file. 20 completions warm
up first and are not counted.

It prints this process's CPU per completion (getrusage: user + system; the simulator and the
receiver are not counted) and, counted exactly, what each completion cost in SQL transactions
and statements (SQLAlchemy engine events) and in HTTP requests to Isograd and to receivers.
The CPU figure moves with the machine's load; the counts do not.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import dramatiq
import httpx2
from dramatiq.brokers.stub import StubBroker
from sqlalchemy import event

from bench.e2e_throughput import fresh_postgres
from tests.harness.processes import (
    WebhookTarget,
    free_port,
    new_webhook_secret,
    relay_command,
    relay_toml,
    responds,
    wait_until,
)
from worker.isograd.models import NewCandidate
from worker.jobs.actors import DramatiqEnqueuer, RuntimeMiddleware, declare_actors
from worker.logs import configure_logging
from worker.processes import run_migrate
from worker.runtime import Runtime
from worker.settings import Settings
from worker.simulator.catalogue import ASSESSMENT_CREDIT
from worker.storage.records import NewInvitation

WARM_UP = 20
POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
RECEIVER = """
import sys, uvicorn
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

async def hook(request):
    await request.body()
    return Response(status_code=204)

app = Starlette(routes=[Route("/hooks/{name}", hook, methods=["POST"])])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Counts:
    """SQL transactions and statements on an engine, and HTTP requests by host, as they happen."""

    def __init__(self) -> None:
        self.sql: Counter[str] = Counter()
        self.http: Counter[str] = Counter()

    def watch_engine(self, engine: Any) -> None:
        event.listen(engine, "begin", lambda connection: self.sql.update(["transactions"]))
        event.listen(
            engine,
            "before_cursor_execute",
            lambda *args: self.sql.update(["statements"]),
        )

    def watch_client(self, client: httpx2.Client, name: str) -> None:
        client.event_hooks["request"].append(lambda request: self.http.update([name]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--completions", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="completion-cpu-") as tmp:
        directory = Path(tmp)
        if args.postgres:
            server = os.environ.get("TEST_DATABASE_URL", POSTGRES)
            with fresh_postgres(server) as url:
                return run(args, directory, url)
        return run(args, directory, f"sqlite:///{directory / 'relay.db'}")


def run(args: argparse.Namespace, directory: Path, database_url: str) -> int:
    simulator_port, receiver_port = free_port(), free_port()
    simulator_url = f"http://127.0.0.1:{simulator_port}"
    command = relay_command()
    servers = [
        subprocess.Popen(
            [command, "simulator", "--host", "127.0.0.1", "--port", str(simulator_port)],
            stdout=subprocess.DEVNULL,
        ),
        subprocess.Popen([sys.executable, "-c", RECEIVER, str(receiver_port)]),
    ]
    try:
        with httpx2.Client(timeout=30) as http:
            for url in (f"{simulator_url}/_simulator/", f"http://127.0.0.1:{receiver_port}/"):
                wait_until(partial(responds, http, url), timeout=20, what=url)
            return measure(args, directory, database_url, simulator_url, receiver_port, http)
    finally:
        for server in servers:
            server.terminate()
            server.wait(10)


def measure(
    args: argparse.Namespace,
    directory: Path,
    database_url: str,
    simulator_url: str,
    receiver_port: int,
    http: httpx2.Client,
) -> int:
    targets = [WebhookTarget(name, (new_webhook_secret(),)) for name in ("alpha", "beta")]
    config = directory / "relay.toml"
    config.write_text(relay_toml(targets, f"http://127.0.0.1:{receiver_port}"), encoding="utf-8")
    environ = {
        "DATABASE_URL": database_url,
        "VAR_DIR": str(directory / "var"),
        "ISOGRAD_API_URL": f"{simulator_url}/api/usage",
        "ISOGRAD_AUTH_URL": f"{simulator_url}/oauth2/token",
        "ISOGRAD_CLIENT_ID": "simulator-client",
        "ISOGRAD_CLIENT_SECRET": "simulator-secret",
        "LOG_LEVEL": "INFO",
    }
    settings = Settings.from_env(environ, config_path=str(config))
    log_file = (directory / "worker.log").open("w", encoding="utf-8")
    configure_logging(json=True, level="INFO", stream=log_file)
    run_migrate(settings)
    broker = StubBroker()
    actors = declare_actors(broker)
    runtime = Runtime.from_settings(settings, DramatiqEnqueuer(actors))
    broker.add_middleware(RuntimeMiddleware(runtime))
    dramatiq.set_broker(broker)
    total = WARM_UP + args.completions
    # The simulator's accounts start with 1,000 assessment credits; act 8 spends one each.
    credits = {"sub_com_id": None, "credits": {ASSESSMENT_CREDIT: total + 1000}}
    http.put(f"{simulator_url}/_simulator/credits", json=credits).raise_for_status()
    print(f"seeding {total} completed tests in the simulator ...", file=sys.stderr)
    ids = []
    for k in range(total):
        created = runtime.client.create_candidate_and_add_test(
            NewCandidate(email=f"cpu-{k}@example.org", first_name="Cpu", last_name=f"C{k}"),
            101 + k % 6,
        )
        invitation = runtime.store.create_invitation(
            NewInvitation(
                tst_frm_id=101 + k % 6,
                email=f"cpu-{k}@example.org",
                first_name="Cpu",
                last_name=f"C{k}",
                pla_tst_id=created.pla_tst_id,
                can_id=created.can_id,
            )
        )
        complete = http.post(
            f"{simulator_url}/_simulator/tests/{created.pla_tst_id}/complete", json={"value": 600}
        )
        complete.raise_for_status()
        ids.append(invitation.id)
    counts = Counts()

    def run_one(invitation_id: str) -> None:
        actors.process_completion.fn(invitation_id, 0)

    for invitation_id in ids[:WARM_UP]:
        run_one(invitation_id)
    counts.watch_engine(runtime.store._engine)  # the store's own engine: all its SQL
    counts.watch_client(runtime.client._http, "isograd")
    counts.watch_client(runtime.http, "receivers")
    started_cpu, started = cpu_seconds(), time.perf_counter()
    with ThreadPoolExecutor(args.threads) as pool:
        list(pool.map(run_one, ids[WARM_UP:]))
    cpu, wall = cpu_seconds() - started_cpu, time.perf_counter() - started
    delivered = runtime.store.count_deliveries()
    runtime.close()
    log_file.close()
    n = args.completions
    database = "PostgreSQL" if args.postgres else "SQLite"
    print(
        f"completion CPU benchmark: {n} completions, {args.threads} thread(s), {database}, "
        f"2 webhook subscriptions, {os.cpu_count()} CPUs, load1 {os.getloadavg()[0]:.2f}"
    )
    print(f"CPU per completion: {cpu / n * 1000:.2f} ms ({cpu:.2f} s in {wall:.2f} s)")
    print(
        "per completion: "
        + ", ".join(f"{value / n:.1f} SQL {name}" for name, value in sorted(counts.sql.items()))
        + ", "
        + ", ".join(f"{value / n:.1f} HTTP to {name}" for name, value in counts.http.items())
    )
    by_status = {status.value: count for status, count in delivered.items() if count}
    print(f"deliveries: {by_status}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
