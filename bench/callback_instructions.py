"""Benchmark: what one unique Isograd callback costs the web, in instructions counted exactly.

Run from the repository root (needs Redis on REDIS_URL, default redis://127.0.0.1:6379/0, and
valgrind: `apt-get install valgrind`):

    .venv/bin/python -m bench.callback_instructions [--callbacks 2000] [--log-level INFO]
        [--cpu-only]
    BENCH_EXPERIMENT=no-log .venv/bin/python -m bench.callback_instructions

The relay's web app (bench.callback_edge's, so BENCH_EXPERIMENT applies the same way) runs in
one process on uvloop without an HTTP server: unique callbacks, each for an invitation of its
own, are sent as ASGI calls by 32 tasks at a time (as wrk's 32 connections do), and each must be
answered 200. SQLite in a temporary directory, seeded as callback_edge seeds it; the enqueues go
to a Redis database of its own; the relay's JSON log lines go to a file.

That driver runs twice under valgrind's callgrind, with `--callbacks` N and then 2N callbacks on
identical copies of one seeded database, and the difference of the two totals, divided by N, is
the instructions of one callback: the start, the imports, the seeding and the shutdown cancel
out. Unlike CPU seconds, which spread by 10-20 % between runs on these machines, instruction
counts hardly move (two runs of the same code: ~1.5 %, the batches' sizes depending on timing),
so two versions of the code, or two experiments, can be compared one run each. It also prints
the CPU per callback of one run without valgrind, for scale. The HTTP server's own work
(parsing, the socket) is not in it: bench.callback_edge measures the whole edge.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis

from bench.callback_edge import parse_experiments, relay_environment, seed
from tests.harness.processes import claim_redis_db

CONCURRENCY = 32
WARM_UP = 64

_TOTAL = re.compile(r"^(?:summary|totals):\s+(\d+)", re.MULTILINE)


def callgrind_total(profile: str) -> int:
    """The instructions (Ir) a callgrind output file counts in all; ValueError if it has none."""
    found = _TOTAL.search(profile)
    if found is None:
        raise ValueError("no 'summary:' or 'totals:' line: not a callgrind output file")
    return int(found.group(1))


def per_callback(smaller: int, larger: int, callbacks: int) -> float:
    """Instructions of one callback from two runs' totals, `callbacks` and 2 x `callbacks`."""
    if larger <= smaller:
        raise ValueError(
            f"the larger run counted {larger:,} instructions, not more than {smaller:,}"
        )
    return (larger - smaller) / callbacks


async def drive(app: Any, paths: Sequence[str], warm_up: Sequence[str]) -> dict[str, float]:
    """Start `app` (its lifespan), send `warm_up`, then `paths` from CONCURRENCY tasks; stop it.
    AssertionError if a callback is not answered 200. Returns the CPU and wall seconds of
    `paths` alone."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def lifespan_send(message: dict[str, Any]) -> None:
        await outbox.put(message)

    lifespan = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, lifespan_send)
    )
    await inbox.put({"type": "lifespan.startup"})
    started = await outbox.get()
    if started["type"] != "lifespan.startup.complete":
        raise RuntimeError(f"the app did not start: {started}")

    async def call(path: str) -> None:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"127.0.0.1:8000")],
            "client": ("127.0.0.1", 40000),
            "server": ("127.0.0.1", 8000),
        }
        statuses: list[int] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        await app(scope, receive, send)
        assert statuses == [200], f"a callback was answered {statuses}"

    async def sender(queue: list[str]) -> None:
        while queue:
            await call(queue.pop())

    await sender(list(warm_up))
    queue = list(reversed(paths))
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(sender(queue) for _ in range(CONCURRENCY)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    await inbox.put({"type": "lifespan.shutdown"})
    await lifespan
    return {"cpu_seconds": cpu, "wall_seconds": wall}


def run_driver(arguments: argparse.Namespace) -> int:
    """The inner process: the relay's settings are in the environment, the paths in a file."""
    import uvloop

    from bench.callback_edge import bench_app_from_env

    paths = Path(arguments.paths).read_text(encoding="utf-8").split()
    measured, warm_up = paths[: arguments.drive], paths[-WARM_UP:]
    app = bench_app_from_env()
    result = uvloop.run(drive(app, measured, warm_up))
    Path(arguments.result).write_text(json.dumps(result), encoding="utf-8")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--callbacks", type=int, default=2000, help="N: the runs send N and 2N")
    parser.add_argument("--log-level", default="INFO", help="the app's LOG_LEVEL")
    parser.add_argument(
        "--cpu-only", action="store_true", help="only the run without valgrind (a quick check)"
    )
    parser.add_argument("--drive", type=int, help=argparse.SUPPRESS)  # the inner process
    parser.add_argument("--paths", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.drive is not None:
        return run_driver(args)
    if args.callbacks < 1:
        parser.error("--callbacks must be at least 1")
    experiment = os.environ.get("BENCH_EXPERIMENT", "")
    try:
        parse_experiments(experiment)
    except ValueError as exc:
        parser.error(str(exc))
    valgrind = None if args.cpu_only else shutil.which("valgrind")
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    n = args.callbacks
    with (
        tempfile.TemporaryDirectory(prefix="bench-instructions-") as tmp,
        claim_redis_db(redis_url) as url,
    ):
        directory = Path(tmp)
        seeded = directory / "seeded.db"
        print(f"seeding {2 * n + WARM_UP} invitations...", file=sys.stderr)
        paths = seed(f"sqlite:///{seeded}", 2 * n + WARM_UP)
        (directory / "paths.txt").write_text("\n".join(paths), encoding="utf-8")

        def run(count: int, label: str, valgrind_at: str | None) -> dict[str, Any]:
            """`count` callbacks on a fresh copy of the seeded database, under callgrind when
            `valgrind_at` (valgrind's path) is given."""
            database = directory / f"{label}.db"
            shutil.copy(seeded, database)
            client = redis.Redis.from_url(url)
            try:
                client.flushdb()  # the enqueues of the previous run
            finally:
                client.close()
            result = directory / f"{label}.json"
            command = [
                *(sys.executable, "-m", "bench.callback_instructions"),
                *("--drive", str(count), "--paths", str(directory / "paths.txt")),
                *("--result", str(result)),
            ]
            profile = directory / f"{label}.callgrind"
            if valgrind_at is not None:
                command = [
                    *(valgrind_at, "--tool=callgrind", f"--callgrind-out-file={profile}"),
                    *command,
                ]
            environment = {
                **os.environ,
                **relay_environment(
                    directory,
                    public_url="http://127.0.0.1:8000",
                    database_url=f"sqlite:///{database}",
                    redis_url=url,
                    level=args.log_level,
                ),
                "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
            }
            print(f"{label}: {count} callbacks...", file=sys.stderr)
            with (directory / f"{label}.log").open("wb") as log:
                subprocess.run(command, env=environment, stdout=log, stderr=log, check=True)
            measured: dict[str, Any] = json.loads(result.read_text(encoding="utf-8"))
            if valgrind_at is not None:
                measured["instructions"] = callgrind_total(profile.read_text(encoding="utf-8"))
            return measured

        plain = run(n, "plain", valgrind_at=None)
        counted = None
        if valgrind is not None:
            smaller = run(n, "smaller", valgrind)
            larger = run(2 * n, "larger", valgrind)
            counted = (smaller["instructions"], larger["instructions"])
    print(
        f"callback instructions: {n} unique callbacks in one process (ASGI calls, no HTTP "
        f"server, {CONCURRENCY} at a time), SQLite, Redis broker, LOG_LEVEL={args.log_level}"
        + (f", experiment {experiment}" if experiment else "")
    )
    if args.cpu_only:
        print("instructions per callback: not counted (--cpu-only)")
    elif counted is None:
        print("instructions per callback: valgrind is not installed (apt-get install valgrind)")
    else:
        smaller, larger = counted
        print(
            f"instructions per callback: {per_callback(smaller, larger, n):,.0f} "
            f"(callgrind totals: {n} callbacks {smaller:,}, {2 * n} callbacks {larger:,})"
        )
    print(
        f"CPU per callback without valgrind: {plain['cpu_seconds'] / n * 1e6:.1f} us "
        f"(wall {plain['wall_seconds'] / n * 1e6:.1f} us; this one moves with the machine's load)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
