"""Benchmark: a burst of completions through the relay vs a naive handler doing it all inline.

Run from the repository root (needs Redis on REDIS_URL, default redis://127.0.0.1:6379/0):

    .venv/bin/python -m bench.burst [--completions 1000] [--postgres] [--workers 1]
        [--threads 8] [--latency-ms 50] [--concurrency 32] [--no-naive]
    .venv/bin/python -m bench.burst --completions 10000 --workers 2 --no-naive

One run, the same simulator and the same receiver for both (issue 11):

1. the relay starts as tests/harness/processes.py starts it (simulator, `isograd-relay web`,
   `--workers` `worker` processes x `--threads`, `scheduler`; SQLite in a temporary directory
   or, with `--postgres`, a fresh PostgreSQL database; a Redis database of its own) with two
   webhook subscriptions (`alpha`, `beta`) to one local receiver;
2. `--completions` candidates are invited through the API and their tests completed in the
   simulator with its callbacks dropped (setup, not timed); then the simulator answers every
   token and API call after `--latency-ms`;
3. relay: every test's callback (its `cal_bac_pag` URL) is fired at once by `--concurrency`
   client threads, as an exam session ending, and the clock runs until the receiver holds both
   webhooks of every completion; the relay's processes are then stopped;
4. naive (bench/naive_handler.py, unless `--no-naive`): the same tests' callbacks, the same
   way, to a handler that fetches a token, calls acts 10, 4, 5, 6 and POSTs both signed
   webhooks before it answers; the clock runs until the receiver holds both of every one.

It prints, for each: completions/s (completions / time from the first callback sent to the last
webhook received), CPU seconds of each process over that window (utime + stime from
/proc/PID/stat; with `--postgres` also the server processes serving the relay's database, which
count as the relay's; a CHECKPOINT is forced before the relay's run, so that one the server
would time on its own does not write during it, and the checkpoints that completed during the
run are counted), CPU ms per completion, the callback answer time (p50/p99/max, measured by
the client), and the ratios relay / naive (CPU without the simulator, which plays Isograd); for
the relay also the worker processes' RSS (VmRSS at the end, VmHWM peak) and the consistency
checks, and the web's callback batches (from its /metrics: how many receipts each group
commit stored, and the time of its SQL transaction and of its enqueue, so a slow callback can
be told from a slow database or broker). Stops by itself; every process is stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.exc import DBAPIError

from bench.e2e_throughput import fresh_postgres
from tests.harness.processes import (
    RelayProcess,
    RelayStack,
    WebhookTarget,
    free_port,
    new_webhook_secret,
    relay_stack,
    wait_until,
)
from tests.receiver import RecordingReceiver
from worker.metrics import PREFIX as METRICS_PREFIX
from worker.simulator.catalogue import ASSESSMENT_CREDIT
from worker.storage.tables import deliveries, events

POLL = 0.01
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process (proc(5): fields 14 and 15 of /proc/PID/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a live process in MB (proc(5), /proc/PID/status)."""
    values: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


@dataclass
class BurstResult:
    """One side's burst: how long it took, what each process burnt, the callback answers."""

    name: str
    completions: int
    seconds: float
    cpu: dict[str, float]
    answer_ms: list[float]
    failed_answers: int
    load_cpu: float = 0.0  # the callback senders' process and this one (the receiver): not counted
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def throughput(self) -> float:
        return self.completions / self.seconds

    @property
    def cpu_total(self) -> float:
        return sum(self.cpu.values())

    @property
    def cpu_ms_per_completion(self) -> float:
        return 1000 * self.cpu_total / self.completions

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.answer_ms)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def burst(
    name: str,
    urls: Sequence[str],
    *,
    delivered: Callable[[], int],
    expected: int,
    processes: dict[str, int],
    concurrency: int,
    timeout: float,
    client: str = "raw",
    database_backends: Callable[[], list[int]] | None = None,
    retries: bool = True,
) -> BurstResult:
    """Fire every URL (GET) over `concurrency` connections at once (bench/callback_sender.py's
    `client`); wait until `delivered()` reaches
    `expected` (without `retries`, as for the naive handler, only until every callback is
    answered if one was not answered 200: nothing sends its webhooks again); CPU of `processes`
    (name → pid) over that window, and of the PostgreSQL server processes `database_backends()`
    lists (those serving the relay's database)."""
    with tempfile.TemporaryDirectory(prefix=f"burst-{name}-") as tmp:
        listed, out = Path(tmp) / "urls.txt", Path(tmp) / "answers.json"
        listed.write_text("\n".join(urls), encoding="utf-8")
        # The senders run in a process of their own: in this one they shared the receiver's GIL
        # and their answer times included waiting for it (bench/callback_sender.py).
        sender = subprocess.Popen(
            [
                *(sys.executable, "-m", "bench.callback_sender"),
                *("--urls", str(listed), "--concurrency", str(concurrency), "--out", str(out)),
                *("--client", client),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert sender.stdin is not None
            assert sender.stdout is not None
            if sender.stdout.readline().strip() != "ready":
                raise SystemExit(f"{name}: the callback sender did not start")
            before = {each: cpu_seconds(pid) for each, pid in processes.items()}
            own_before = cpu_seconds(os.getpid())
            backends_before = _cpu_of(database_backends() if database_backends else [])
            t0 = time.perf_counter()
            sender.stdin.write("go\n")
            sender.stdin.flush()
            deadline = t0 + timeout
            while delivered() < expected:
                if not retries and sender.poll() is not None and _sent(out)["failed"]:
                    break  # every callback answered, some not 200: those are never delivered
                if time.perf_counter() > deadline:
                    raise SystemExit(
                        f"{name}: timed out after {timeout} s ({delivered()} of {expected})"
                    )
                time.sleep(POLL)  # a poll interval
            seconds = time.perf_counter() - t0
            sender.wait(timeout)
        finally:
            if sender.poll() is None:
                sender.kill()
                sender.wait()
        sent = _sent(out)
    answers, failed = list(sent["answers_ms"]), int(sent["failed"])
    after = {each: cpu_seconds(pid) for each, pid in processes.items()}
    own = cpu_seconds(os.getpid()) - own_before + float(sent["cpu_seconds"])
    cpu = {each: after[each] - before[each] for each in processes}
    if database_backends is not None:
        # A backend that started during the burst counts from 0; one that ended is missed.
        backends_after = _cpu_of(database_backends())
        cpu["postgres"] = sum(
            value - backends_before.get(pid, 0.0) for pid, value in backends_after.items()
        )
    return BurstResult(name, len(urls), seconds, cpu, answers, failed, load_cpu=own)


def _sent(out: Path) -> dict[str, Any]:
    """What bench/callback_sender.py wrote once every callback was answered."""
    loaded: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return loaded


def _cpu_of(pids: list[int]) -> dict[int, float]:
    found = {}
    for pid in pids:
        try:
            found[pid] = cpu_seconds(pid)
        except FileNotFoundError:
            continue  # ended meanwhile
    return found


def postgres_backends(database_url: str) -> Callable[[], list[int]]:
    """The pids of the server processes connected to `database_url`'s database (this server
    runs on this machine, so /proc has them), but the one asking."""
    engine = create_engine(database_url)
    query = text(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid()"
    )

    def backends() -> list[int]:
        with engine.connect() as connection:
            return [int(pid) for pid in connection.execute(query).scalars()]

    return backends


def completed_checkpoints(database_url: str) -> int:
    """How many checkpoints the PostgreSQL server has completed since its statistics were reset
    (pg_stat_checkpointer from PostgreSQL 17, pg_stat_bgwriter before it)."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            if connection.execute(text("SELECT to_regclass('pg_stat_checkpointer')")).scalar():
                query = "SELECT num_timed + num_requested FROM pg_stat_checkpointer"
            else:
                query = "SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter"
            return int(connection.execute(text(query)).scalar_one())
    finally:
        engine.dispose()


def force_checkpoint(database_url: str) -> str:
    """Run CHECKPOINT now, so that no checkpoint (a timed one would write what earlier work left
    dirty, for minutes) runs during the measured window; what happened, for the output.

    CHECKPOINT needs a superuser or pg_checkpoint (PostgreSQL 15+); without, the run goes on.
    """
    engine = create_engine(database_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(text("CHECKPOINT"))
    except DBAPIError as exc:
        return f"not forced ({type(exc.orig).__name__}: {str(exc.orig).strip()})"
    finally:
        engine.dispose()
    return "forced before the run"


BATCH_METRIC = f"{METRICS_PREFIX}_callback_batch"  # worker.metrics' two histograms


def callback_batches(exposition: str) -> str:
    """What the web's /metrics (`exposition`) says of its callback batches: how many, their mean
    size, and per stage (store, enqueue) the mean time and the bucket bound its p99 is within."""
    counts: dict[str, float] = {}
    sums: dict[str, float] = {}
    buckets: dict[str, list[tuple[float, float]]] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if not sample.name.startswith(BATCH_METRIC):
                continue
            key = sample.labels.get("stage", "receipts")
            if sample.name.endswith("_count"):
                counts[key] = sample.value
            elif sample.name.endswith("_sum"):
                sums[key] = sample.value
            elif sample.name.endswith("_bucket"):
                buckets.setdefault(key, []).append((float(sample.labels["le"]), sample.value))
    batches = counts.get("receipts", 0)
    if not batches:
        return "none reported"
    stages = []
    for stage in ("store", "enqueue"):
        count = counts.get(stage, 0)
        if not count:
            stages.append(f"{stage} none")
            continue
        # Cumulative buckets: the first bound holding 99 % of the observations.
        bound = next(le for le, seen in sorted(buckets[stage]) if seen >= 0.99 * count)
        within = "+Inf" if bound == float("inf") else f"{bound * 1000:g} ms"
        stages.append(f"{stage} {sums[stage] / count * 1000:.1f} ms mean (p99 <= {within})")
    return (
        f"{batches:.0f} batches of {sums['receipts'] / batches:.1f} receipts on average; "
        + ", ".join(stages)
    )


def hooks_at(receiver: RecordingReceiver, prefix: str) -> Callable[[], int]:
    return lambda: sum(1 for r in receiver.requests if r.path.startswith(prefix))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--completions", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--threads", type=int, default=8, help="threads per worker (default 8)")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="Isograd's latency")
    parser.add_argument("--concurrency", type=int, default=32, help="callbacks in flight")
    parser.add_argument(
        "--client",
        choices=("raw", "httpx2"),
        default="raw",
        help="the callback senders (bench/callback_sender.py; default raw)",
    )
    parser.add_argument("--timeout", type=float, default=900.0, help="deadline per burst (s)")
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL instead of SQLite")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive handler")
    parser.add_argument(
        "--keep-logs", type=Path, metavar="DIR", help="copy the relay's process logs into DIR"
    )
    parser.add_argument(
        "--py-spy",
        type=Path,
        metavar="DIR",
        help="record the relay's web and worker with py-spy (raw, GIL-holding samples) into DIR",
    )
    args = parser.parse_args(argv)
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    postgres_server = os.environ.get(
        "TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
    targets = [WebhookTarget(name, (new_webhook_secret(),)) for name in ("alpha", "beta")]
    n = args.completions
    with (
        tempfile.TemporaryDirectory(prefix="bench-burst-") as tmp,
        RecordingReceiver() as receiver,
        fresh_postgres(postgres_server) if args.postgres else _none() as database_url,
        relay_stack(
            Path(tmp),
            redis_url=redis_url,
            receiver_url=receiver.url(),
            targets=targets,
            database_url=database_url,
            worker_threads=args.threads,
            workers=args.workers,
            scheduler=True,
        ) as stack,
        httpx2.Client(timeout=30) as http,
    ):
        # The simulator's accounts start with 1,000 assessment credits; act 8 spends one each.
        credits = {"sub_com_id": None, "credits": {ASSESSMENT_CREDIT: n + 1000}}
        http.put(f"{stack.simulator_url}/_simulator/credits", json=credits).raise_for_status()
        started = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            invited = list(
                pool.map(
                    lambda k: (
                        stack.invite(
                            http,
                            email=f"burst-{k}@example.org",
                            first_name="Burst",
                            last_name=f"Candidate {k}",
                            tst_frm_id=101 + k % 6,
                        ),
                        101 + k % 6,
                        f"burst-{k}@example.org",
                    ),
                    range(n),
                )
            )
        setup = time.perf_counter() - started
        stack.simulator(http, "/faults", json={"drop_callback_rate": 1})
        with ThreadPoolExecutor(8) as pool:
            urls = list(
                pool.map(
                    lambda i: stack.complete(http, i[0]["pla_tst_id"], value=600)["test"][
                        "options"
                    ]["cal_bac_pag"],
                    invited,
                )
            )
        stack.simulator(http, "/faults", json={"latency_ms": args.latency_ms})
        relay_pids = {name: p.pid for name, p in stack.processes.items() if name != "migrate"}
        profiled = {name: pid for name, pid in relay_pids.items() if name != "simulator"}
        if args.postgres:
            forced = force_checkpoint(stack.database_url)
            checkpoints_before = completed_checkpoints(stack.database_url)
        with py_spy(args.py_spy, profiled):
            relay = burst(
                "relay",
                urls,
                delivered=hooks_at(receiver, "/hooks/"),
                expected=2 * n,
                processes=relay_pids,
                concurrency=args.concurrency,
                client=args.client,
                timeout=args.timeout,
                database_backends=postgres_backends(stack.database_url) if args.postgres else None,
            )
        if args.postgres:
            during = completed_checkpoints(stack.database_url) - checkpoints_before
            relay.extra["PostgreSQL checkpoints"] = (
                f"{forced}; {during} completed during the run"
                + (" (its writes compete with the relay's commits)" if during else "")
            )
        metrics = http.get(f"{stack.web_url}/metrics")
        metrics.raise_for_status()
        relay.extra["callback batches"] = callback_batches(metrics.text)
        for name, process in stack.processes.items():
            if name.startswith("worker"):
                rss, peak = memory_mb(process.pid)
                relay.extra[f"{name} RSS"] = f"{rss:.0f} MB now, {peak:.0f} MB peak (VmHWM)"
        engine = create_engine(stack.database_url)
        delivered_rows = (
            select(func.count()).select_from(deliveries).where(deliveries.c.status == "delivered")
        )

        def marked_delivered() -> int:
            with engine.connect() as connection:
                return int(connection.execute(delivered_rows).scalar_one())

        try:
            # The clock stopped at the last webhook received; a batch records its attempts once
            # all its POSTs are answered, a moment later. Checked after that (not timed).
            deadline = time.perf_counter() + 30
            while (marked := marked_delivered()) < 2 * n and time.perf_counter() < deadline:
                time.sleep(POLL)  # a poll interval
            with engine.connect() as connection:
                stored = connection.execute(select(func.count()).select_from(events)).scalar()
        finally:
            engine.dispose()
        relay_hooks = [r for r in receiver.requests if r.path.startswith("/hooks/")]
        pairs = {(r.path, r.headers["webhook-id"]) for r in relay_hooks}
        relay.extra["checks"] = (
            f"{len(relay_hooks)} webhooks, {len(pairs)} distinct (receiver, webhook-id), "
            f"{stored} events, {marked} deliveries marked delivered, "
            f"{relay.failed_answers} callbacks not answered 200"
        )
        for name in ("web", "scheduler", *(p for p in stack.processes if p.startswith("worker"))):
            stack.processes[name].stop()
        if args.keep_logs is not None:
            args.keep_logs.mkdir(parents=True, exist_ok=True)
            for process in stack.processes.values():
                for path in (process.stdout_path, process.stderr_path):
                    shutil.copy(path, args.keep_logs / path.name)

        naive: BurstResult | None = None
        if not args.no_naive:
            naive = run_naive(stack, receiver, targets, invited, urls, args, Path(tmp))

    database = "PostgreSQL" if args.postgres else "SQLite"
    print(
        f"burst benchmark: {n} completions ending together, 2 webhook subscriptions, Isograd "
        f"latency {args.latency_ms:g} ms, {args.concurrency} callbacks in flight "
        f"({args.client} senders); relay: web + "
        f"{args.workers} worker x {args.threads} threads + scheduler, {database}, Redis; "
        f"{os.cpu_count()} CPUs, load1 {os.getloadavg()[0]:.2f} at the end "
        f"(setup: {n} invitations in {setup:.1f} s)"
    )
    results = [relay] if naive is None else [relay, naive]
    print(
        f"{'':8} {'seconds':>8} {'compl/s':>8} {'CPU s':>7} {'CPU ms/c':>9} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}  CPU by process (s)"
    )
    for each in results:
        by_process = ", ".join(f"{name} {value:.1f}" for name, value in each.cpu.items())
        print(
            f"{each.name:8} {each.seconds:8.2f} {each.throughput:8.1f} {each.cpu_total:7.1f} "
            f"{each.cpu_ms_per_completion:9.2f} {each.percentile(0.5):7.1f} "
            f"{each.percentile(0.99):7.1f} {max(each.answer_ms):7.1f}  {by_process}"
        )
    print(f"relay drain: {relay.seconds:.1f} s from the first callback to the last webhook")
    print(
        "the load (callback senders' process, and this one's receiver), not counted: "
        + ", ".join(f"{each.name} {each.load_cpu:.1f} s" for each in results)
    )
    for key, value in relay.extra.items():
        print(f"relay {key}: {value}")
    if naive is not None:
        print(f"naive checks: {naive.extra['checks']}")
        # The simulator plays Isograd for both; PostgreSQL's server, when used, counts as relay.
        relay_cpu = relay.cpu_total - relay.cpu.get("simulator", 0.0)
        naive_cpu = naive.cpu_total - naive.cpu.get("simulator", 0.0)
        print(
            f"ratios relay/naive: throughput {relay.throughput / naive.throughput:.2f}x "
            f"(target >= 1.5), CPU per completion without the simulator "
            f"{relay_cpu / naive_cpu:.2f}x (target <= 1.5), callback p99 "
            f"{relay.percentile(0.99):.1f} ms (target < 50)"
        )
    return 0


def run_naive(
    stack: RelayStack,
    receiver: RecordingReceiver,
    targets: Sequence[WebhookTarget],
    invited: Sequence[tuple[dict[str, object], int, str]],
    urls: Sequence[str],
    args: argparse.Namespace,
    directory: Path,
) -> BurstResult:
    """Start bench/naive_handler.py, fire the same tests' callbacks at it, stop it."""
    simulator_url = stack.simulator_url
    simulator_pid = stack.processes["simulator"].pid
    candidates = {str(i["pla_tst_id"]): [tst_frm_id, email] for i, tst_frm_id, email in invited}
    candidates_file = directory / "naive-candidates.json"
    candidates_file.write_text(json.dumps(candidates), encoding="utf-8")
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "bench.naive_handler",
        "--port",
        str(port),
        "--isograd-url",
        simulator_url,
        "--targets",
        str(candidates_file),
    ]
    for target in targets:
        argv += ["--receiver", receiver.url(f"/naive/{target.name}"), "--secret", target.secrets[0]]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = RelayProcess("naive", argv, env, directory).start()
    try:
        with httpx2.Client() as http:

            def up() -> bool:
                try:
                    http.get(f"http://127.0.0.1:{port}/")
                except httpx2.TransportError:
                    return False
                return True

            wait_until(up, timeout=20, what="the naive handler", watch=[process])
        naive_urls = [f"http://127.0.0.1:{port}/callback/{i['pla_tst_id']}" for i, _, _ in invited]
        assert len(naive_urls) == len(urls)
        result = burst(
            "naive",
            naive_urls,
            delivered=hooks_at(receiver, "/naive/"),
            expected=2 * len(naive_urls),
            processes={"naive": process.pid, "simulator": simulator_pid},
            concurrency=args.concurrency,
            client=args.client,
            timeout=args.timeout,
            retries=False,
        )
    finally:
        process.stop()
    hooks = [r for r in receiver.requests if r.path.startswith("/naive/")]
    result.extra["checks"] = (
        f"{len(hooks)} webhooks, {len({(r.path, r.headers['webhook-id']) for r in hooks})} "
        f"distinct (receiver, webhook-id), {result.failed_answers} callbacks not answered 200"
    )
    return result


@contextmanager
def py_spy(directory: Path | None, processes: dict[str, int]) -> Iterator[None]:
    """`py-spy record` (pip install py-spy) on each process while the block runs; stopped
    with SIGINT, which makes it write `DIR/<name>.txt` (collapsed stacks, one line each)."""
    if directory is None:
        yield
        return
    command = str(Path(sys.executable).parent / "py-spy")
    if not Path(command).exists():
        raise SystemExit(f"py-spy is not installed next to {sys.executable}: pip install py-spy")
    directory.mkdir(parents=True, exist_ok=True)
    recorders = [
        subprocess.Popen(
            [
                *(command, "record", "-p", str(pid), "-f", "raw", "-g", "--nonblocking"),
                *("-r", "200", "-o", str(directory / f"{name}.txt")),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, pid in processes.items()
    ]
    try:
        yield
    finally:
        for recorder in recorders:
            recorder.send_signal(signal.SIGINT)
        for recorder in recorders:
            recorder.wait(30)


@contextmanager
def _none() -> Iterator[None]:
    yield None


if __name__ == "__main__":
    sys.exit(main())
