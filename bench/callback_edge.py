"""Benchmark: the Isograd callback endpoint's requests/s and latency, next to a bare endpoint.

Run from the repository root (needs Redis on REDIS_URL, default redis://127.0.0.1:6379/0, and
`wrk`: `apt-get install wrk`):

    .venv/bin/python -m bench.callback_edge [--duration 10] [--connections 32] [--tokens 20000]
        [--rounds 1] [--py-spy DIR] [--server auto|h11] [--processes 1]

One uvicorn server (started as `isograd-relay web` starts it: httptools and uvloop, which the
relay installs, no access log, the relay's logging at LOG_LEVEL; `--server h11`: h11 and
asyncio, the server of the earlier passes) serves the relay app and, on the same server,
`GET /bare`: a bare Starlette route answering "OK". Invitations are seeded in SQLite (the first
through SqlStore, the rest copies of its row in one statement) and their callback tokens signed
with worker.tokens. The enqueues go to a real Redis broker; no worker consumes them, so the edge
is measured alone. Four runs of `--duration` seconds each, loopback only, with wrk (closed loop,
`--connections` connections over 2 threads; wrk shares the machine's cores):

    bare        GET /bare
    healthz     GET /healthz: the relay app's middleware and router around a route doing nothing
    unique      GET /callbacks/isograd/{token}, each request a different invitation: verify,
                read the invitation, insert the receipt, enqueue its completion (the web's group
                commit sends one process_completions message per batch of up to 16 ids)
    repeated    the same token every time: verify, read, insert the receipt, no enqueue (the
                duplicate window)

It prints req/s, p50, p99 and max for each, their ratio to bare, the non-2xx answers, the
messages enqueued, the server's CPU (user + system, /proc) per request, its threads' context
switches per request (`cs/req`), and `load1`, the machine's 1-minute load average after the run
(other work on the machine skews the numbers).
Each unique request needs a token of its own: raise `--tokens` past the unique run's requests
(it warns when they wrapped).

`--rounds N` repeats the four runs N times on the same server (fresh tokens each round) and
prints each run's median ratio to its own round's bare run: this machine drifts by 10-20 %
between minutes, so one round's ratio can be off by a few points either way.
`--py-spy DIR` records the server during each run (py-spy, GIL-holding samples).

`--processes N` runs N server processes on the one socket (uvicorn's workers) and sums their CPU.

BENCH_EXPERIMENT takes names, comma-separated, each a monkeypatch of the server (bench only, to
see what a part costs; see bench_app_from_env): lock-writes serialises the server's SQL writes
behind one in-process lock (what SQLite's busy-wait costs under concurrent writers);
inline-writes writes each batch on the event loop's thread; no-batch-delay takes the receipt
writer's pause under load away (webhooks/receipts.py); no-log drops the callback endpoint's log
lines; no-metrics its metrics; no-store makes the receipt writer's batches store and enqueue
nothing (every invitation read as pending). `--serve PORT` is the server side (used internally).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx2
import redis
from sqlalchemy import create_engine, insert, select

from bench.burst import cpu_seconds, py_spy
from tests.harness.processes import (
    RELAY_NAMESPACE,
    RelayProcess,
    claim_redis_db,
    free_port,
    wait_until,
)
from worker.storage.records import NewInvitation, new_id
from worker.storage.store import SqlStore
from worker.storage.tables import invitations
from worker.tokens import parse_callback_keys, sign_callback_token

CALLBACK_KEYS = "bench:" + "b" * 40
WRK_THREADS = 2

# wrk's Lua hooks (https://github.com/wg/wrk/blob/master/SCRIPTING): each thread walks the paths
# file from its own offset with a stride of the thread count, so no two requests share a path
# until the list wraps; `done` prints one JSON line for this script to parse.
WRK_SCRIPT = """
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end
function init(args)
  paths = {}
  for line in io.lines(os.getenv("PATHS_FILE")) do paths[#paths + 1] = line end
  stride = tonumber(os.getenv("WRK_THREADS"))
  index = id
end
function request()
  local path = paths[(index % #paths) + 1]
  index = index + stride
  return wrk.format("GET", path)
end
function done(summary, latency, requests)
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "status_errors": %d, "socket_errors": %d,'
    .. ' "p50_us": %d, "p99_us": %d, "max_us": %d}\\n',
    summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""


EXPERIMENTS = ("lock-writes", "no-batch-delay", "inline-writes", "no-log", "no-metrics", "no-store")


def parse_experiments(value: str) -> set[str]:
    """The BENCH_EXPERIMENT names in `value` (comma-separated); ValueError naming unknown ones."""
    names = {name.strip() for name in value.split(",") if name.strip()}
    unknown = sorted(names - set(EXPERIMENTS))
    if unknown:
        raise ValueError(
            f"unknown BENCH_EXPERIMENT {', '.join(unknown)} (known: {', '.join(EXPERIMENTS)})"
        )
    return names


def bench_app_from_env() -> Any:
    """The relay's web app with `GET /bare` routed, on the same server, to a bare Starlette app."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from webhooks.asgi import app_from_env

    async def ok(request: Request) -> PlainTextResponse:
        return PlainTextResponse("OK")

    bare = Starlette(routes=[Route("/bare", ok)])
    experiments = parse_experiments(os.environ.get("BENCH_EXPERIMENT", ""))
    if "lock-writes" in experiments:
        import threading
        from contextlib import contextmanager

        from worker.storage.store import SqlStore

        lock = threading.Lock()
        original = SqlStore._write

        @contextmanager
        def locked(self: Any) -> Any:
            with lock, original(self) as connection:
                yield connection

        SqlStore._write = locked  # type: ignore[method-assign]

    if "no-batch-delay" in experiments:
        # The web's receipt writer without its pause under load (webhooks/receipts.py).
        from datetime import timedelta

        import webhooks.receipts

        original_init = webhooks.receipts.ReceiptWriter.__init__

        def undelayed(self: Any, **kwargs: Any) -> None:
            original_init(self, **{**kwargs, "batch_delay": timedelta(0)})

        webhooks.receipts.ReceiptWriter.__init__ = undelayed  # type: ignore[method-assign]

    if "inline-writes" in experiments:
        # Each batch written on the event loop's thread instead of a worker thread: the loop
        # blocks on SQL and Redis (never acceptable in the relay), but no thread hop and no GIL
        # handoffs, to show what those cost.
        import webhooks.receipts

        async def inline(fn: Any, *args: Any) -> Any:
            return fn(*args)

        webhooks.receipts.run_in_threadpool = inline  # type: ignore[attr-defined,assignment]

    if "no-log" in experiments:
        # The callback endpoint without its log lines (callback_received, callback_rejected).
        import webhooks.callbacks

        class Silent:
            def info(self, *args: Any, **kwargs: Any) -> None:
                pass

            warning = info

        webhooks.callbacks.log = Silent()

    if "no-metrics" in experiments:
        from worker.metrics import RelayMetrics

        RelayMetrics.record_callback = lambda self, **kwargs: None  # type: ignore[method-assign]

    if "no-store" in experiments:
        # The receipt writer's batches without their SQL and their enqueue: every invitation
        # read as pending, nothing stored, nothing sent. What the edge costs without its durable
        # work (its batches, threads and outcomes stay).
        from worker.jobs.actors import DramatiqEnqueuer
        from worker.storage.records import InvitationStatus
        from worker.storage.store import SqlStore

        def record_nothing(self: Any, invitation_ids: Any, receipts_for: Any) -> None:
            receipts_for(dict.fromkeys(invitation_ids, InvitationStatus.PENDING))

        SqlStore.record_callbacks = record_nothing  # type: ignore[method-assign]

        def send_nothing(self: Any, invitation_ids: Any) -> None:
            pass

        DramatiqEnqueuer.completions = send_nothing  # type: ignore[method-assign]

    relay = app_from_env()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/bare":
            await bare(scope, receive, send)
        else:
            await relay(scope, receive, send)  # lifespan included

    return app


def relay_environment(
    directory: Path, *, public_url: str, database_url: str, redis_url: str, level: str
) -> dict[str, str]:
    """The settings the bench's web app is built from: an empty relay.toml in `directory`,
    the Isograd simulator, JSON logs at `level`."""
    (directory / "relay.toml").write_text("", encoding="utf-8")
    return {
        "ISOGRAD_ENV": "simulator",
        "PUBLIC_URL": public_url,
        "CALLBACK_KEYS": CALLBACK_KEYS,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "RELAY_CONFIG": str(directory / "relay.toml"),
        "VAR_DIR": str(directory / "var"),
        "LOG_FORMAT": "json",
        "LOG_LEVEL": level,
    }


def server_kind(server: str) -> tuple[str, str]:
    """(HTTP implementation, event loop) uvicorn runs for `--server` (`auto`: what it picks)."""
    if server == "h11":
        return "h11", "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return http, "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"


def serve(port: int, server: str, processes: int = 1) -> None:
    import uvicorn

    http, loop = server_kind(server)
    # The same options as `isograd-relay web` (worker/cli/processes.py).
    uvicorn.run(
        "bench.callback_edge:bench_app_from_env",
        factory=True,
        http=http,
        loop=loop,
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        server_header=False,
        # More than one: uvicorn's supervisor and that many server processes on one socket.
        workers=processes,
    )


def seed(database_url: str, count: int) -> list[str]:
    """`count` pending invitations; their callback paths.

    The first one is created through SqlStore.create_invitation; the rest copy its row with
    their own id and pla_tst_id in one executemany (one at a time took ~25 s for 40,000).
    """
    keys = parse_callback_keys(CALLBACK_KEYS)
    store = SqlStore.from_url(database_url)
    try:
        store.migrate()
        first = store.create_invitation(
            NewInvitation(tst_frm_id=101, email="bench-0@example.org", pla_tst_id=7_000_000)
        )
    finally:
        store.close()
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:
            template = dict(
                connection.execute(select(invitations).where(invitations.c.id == first.id))
                .one()
                ._mapping
            )
            rows = [
                {
                    **template,
                    "id": new_id("inv"),
                    "email": f"bench-{number}@example.org",
                    "pla_tst_id": 7_000_000 + number,
                }
                for number in range(1, count)
            ]
            if rows:
                connection.execute(insert(invitations), rows)
    finally:
        engine.dispose()
    ids = [first.id, *(row["id"] for row in rows)]
    return [f"/callbacks/isograd/{sign_callback_token(keys, each)}" for each in ids]


def run_wrk(
    url: str, paths: Sequence[str], *, duration: int, connections: int, directory: Path
) -> dict[str, Any]:
    script = directory / "paths.lua"
    script.write_text(WRK_SCRIPT, encoding="utf-8")
    paths_file = directory / "paths.txt"
    paths_file.write_text("\n".join(paths) + "\n", encoding="utf-8")
    completed = subprocess.run(
        [
            "wrk",
            f"-t{WRK_THREADS}",
            f"-c{connections}",
            f"-d{duration}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            url,
        ],
        env={**os.environ, "PATHS_FILE": str(paths_file), "WRK_THREADS": str(WRK_THREADS)},
        capture_output=True,
        text=True,
        check=True,
        timeout=duration + 60,
    )
    line = next(x for x in completed.stdout.splitlines() if x.startswith("WRKJSON "))
    result: dict[str, Any] = json.loads(line.removeprefix("WRKJSON "))
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    return result


def queued_completions(redis_url: str) -> int:
    # Dramatiq's Redis broker keeps each queue's messages in the hash "<ns>:<queue>.msgs".
    client = redis.Redis.from_url(redis_url)
    try:
        return int(client.hlen(f"{RELAY_NAMESPACE}:completions.msgs"))
    finally:
        client.close()


def settled_count(redis_url: str) -> int:
    """The queued completions once requests still in the server's thread pool have finished."""
    last = -1
    count = queued_completions(redis_url)
    while count != last:
        time.sleep(0.5)  # wrk has stopped; wait for the server's backlog to drain
        last, count = count, queued_completions(redis_url)
    return count


def measure_sends(redis_url: str, count: int = 2000) -> float:
    """Microseconds per process_completion send, one thread, no HTTP: the enqueue's own cost."""
    from worker.broker import make_broker
    from worker.jobs.actors import DramatiqEnqueuer, declare_actors

    broker = make_broker(redis_url)
    try:
        enqueuer = DramatiqEnqueuer(declare_actors(broker))
        started = time.perf_counter()
        for number in range(count):
            enqueuer.completion(f"inv_send_{number}")
        return (time.perf_counter() - started) / count * 1e6
    finally:
        broker.close()


def context_switches(pid: int) -> int:
    """Voluntary and involuntary context switches of all of a process's threads so far
    (proc(5): `voluntary_ctxt_switches` and `nonvoluntary_ctxt_switches` of each
    /proc/PID/task/TID/status; a thread that ended takes its count with it)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            status = (task / "status").read_text()
        except FileNotFoundError:
            continue  # the thread ended meanwhile
        for line in status.splitlines():
            if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
                total += int(line.split()[1])
    return total


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (the server processes under uvicorn's supervisor), from the
    parent pid of each /proc/PID/stat (proc(5), field 4)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue  # ended meanwhile
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree = [pid]
    for member in tree:
        tree += [child for child, parent in parents.items() if parent == member]
    return tree


def server_counters(pids: Sequence[int]) -> tuple[float, int]:
    """CPU seconds and context switches so far, each summed over `pids`."""
    return sum(cpu_seconds(pid) for pid in pids), sum(context_switches(pid) for pid in pids)


def measure_run(
    server: RelayProcess,
    base: str,
    paths: Sequence[str],
    redis_url: str,
    args: argparse.Namespace,
    directory: Path,
    label: str,
) -> dict[str, Any]:
    """One wrk run over `paths`, with the server's CPU seconds, its threads' context switches and
    the messages it enqueued."""
    before = queued_completions(redis_url)
    pids = process_tree(server.pid)
    cpu_before, switches_before = server_counters(pids)
    with py_spy(args.py_spy, {label: server.pid}):
        result = run_wrk(
            base, paths, duration=args.duration, connections=args.connections, directory=directory
        )
    cpu_after, switches_after = server_counters(pids)
    result["server_cpu"] = cpu_after - cpu_before
    result["switches"] = switches_after - switches_before
    result["enqueued"] = settled_count(redis_url) - before
    result["load"] = os.getloadavg()[0]
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per run (default 10)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=20_000, help="invitations to seed")
    parser.add_argument("--log-level", default="INFO", help="the server's LOG_LEVEL")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="repeat the four runs this many times and print the median ratios (default 1)",
    )
    parser.add_argument(
        "--py-spy",
        type=Path,
        metavar="DIR",
        help="record the server with py-spy (GIL-holding samples) during each run, into "
        "DIR/web-RUN[-ROUND].txt",
    )
    parser.add_argument(
        "--server",
        choices=("auto", "h11"),
        default="auto",
        help="auto: as `isograd-relay web` (httptools, uvloop); h11: h11 and asyncio",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="server processes on the one socket (uvicorn workers; default 1, as "
        "`isograd-relay web`); CPU is summed over them",
    )
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.server, args.processes)
        return 0
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    if args.processes < 1:
        parser.error("--processes must be at least 1")
    if args.py_spy and args.processes > 1:
        parser.error("--py-spy records one process: use it with --processes 1")
    experiment = os.environ.get("BENCH_EXPERIMENT", "")
    try:
        parse_experiments(experiment)
    except ValueError as exc:
        parser.error(str(exc))
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    with tempfile.TemporaryDirectory(prefix="bench-edge-") as tmp, claim_redis_db(redis_url) as url:
        directory = Path(tmp)
        database_url = f"sqlite:///{directory / 'relay.db'}"
        started = time.perf_counter()
        paths = seed(database_url, args.tokens)
        print(f"seeded {len(paths)} invitations in {time.perf_counter() - started:.1f} s")
        port = free_port()
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": os.environ.get("HOME", "/"),
            **relay_environment(
                directory,
                public_url=f"http://127.0.0.1:{port}",
                database_url=database_url,
                redis_url=url,
                level=args.log_level,
            ),
            "BENCH_EXPERIMENT": experiment,
        }
        server = RelayProcess(
            "web",
            [
                *(sys.executable, "-m", "bench.callback_edge"),
                *("--serve", str(port), "--server", args.server),
                *("--processes", str(args.processes)),
            ],
            {**env, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
            directory,
        ).start()
        try:
            base = f"http://127.0.0.1:{port}"
            with httpx2.Client() as http:

                def ready() -> bool:
                    try:
                        return http.get(f"{base}/readyz").status_code == 200
                    except httpx2.TransportError:
                        return False

                wait_until(ready, timeout=20, what="the web server", watch=[server])
            # Unique runs take fresh tokens from `offset` on; each round's repeated run uses a
            # token of its own from the end of the list.
            offset = 0
            rounds: list[dict[str, dict[str, Any]]] = []
            for number in range(args.rounds):
                runs = {
                    "bare": ["/bare"],
                    "healthz": ["/healthz"],
                    "unique": paths[offset:] or paths,
                    "repeated": [paths[-1 - number]],
                }
                results: dict[str, dict[str, Any]] = {}
                for name, run_paths in runs.items():
                    label = f"web-{name}" + (f"-{number + 1}" if args.rounds > 1 else "")
                    results[name] = measure_run(
                        server, base, run_paths, url, args, directory, label
                    )
                offset += results["unique"]["requests"]
                rounds.append(results)
        finally:
            server.stop()
        send_us = measure_sends(url)

    server_http, server_loop = server_kind(args.server)
    print(
        f"callback edge benchmark: {args.duration} s per run, wrk -t{WRK_THREADS} "
        f"-c{args.connections}, uvicorn ({server_http}, {server_loop}), "
        f"{args.processes} process{'es' if args.processes > 1 else ''}, "
        f"LOG_LEVEL={args.log_level}, SQLite, Redis broker, {os.cpu_count()} CPUs, "
        f"{args.rounds} round(s)" + (f", experiment {experiment}" if experiment else "")
    )
    print(
        f"{'run':<12} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'vs bare':>8} "
        f"{'non-2xx':>8} {'enqueued':>9} {'cpu us':>7} {'cs/req':>6} {'load1':>6}"
    )
    for number, results in enumerate(rounds, 1):
        bare_rps = results["bare"]["rps"]
        for name, result in results.items():
            label = name + (f" #{number}" if args.rounds > 1 else "")
            print(
                f"{label:<12} {result['rps']:>9.0f} {result['p50_us'] / 1000:>8.2f} "
                f"{result['p99_us'] / 1000:>8.2f} {result['max_us'] / 1000:>8.2f} "
                f"{result['rps'] / bare_rps:>8.1%} {result['status_errors']:>8} "
                f"{result['enqueued']:>9} "
                f"{result['server_cpu'] / result['requests'] * 1e6:>7.0f} "
                f"{result['switches'] / result['requests']:>6.2f} {result['load']:>6.2f}"
            )
    if args.rounds > 1:
        # Each round's ratio is to that round's bare run: the machine drifts between rounds.
        for name in ("healthz", "unique", "repeated"):
            ratios = [results[name]["rps"] / results["bare"]["rps"] for results in rounds]
            p99s = [results[name]["p99_us"] / 1000 for results in rounds]
            print(
                f"median {name:<9} vs bare {statistics.median(ratios):.1%} "
                f"(min {min(ratios):.1%}, max {max(ratios):.1%}), "
                f"p99 {statistics.median(p99s):.2f} ms (max {max(p99s):.2f})"
            )
    if offset > len(paths):
        print(f"warning: {offset} unique requests for {len(paths)} tokens: raise --tokens")
    print(f"one process_completion send (1 thread, no HTTP): {send_us:.0f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
