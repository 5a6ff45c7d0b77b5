"""The fault suite: many completions through real relay processes while everything fails.

`run_fault_suite(directory, plan)` starts a dedicated Redis with persistence (its own
redis-server on a free port, AOF fsynced on every write), a faulty receiver and the relay
(simulator, web, two workers, scheduler; see tests/harness/processes.py) with short recovery
timings, invites `plan.completions` candidates, then, with faults on, completes their tests:

- (a) the simulator drops `drop_callback_rate` of its callbacks (the reconciler's act 10 checks
  must find those completions);
- (b) every other test's callback is asked for `callback_copies` times (the completion's own,
  then resends through the simulator's control API; each is subject to the drop fault too);
- (c) the simulator answers `simulator_error_rate` of its API and token calls with a 503 (the
  invitations are all made before, so no test has to retry them);
- (d) the receiver answers `receiver_error_rate` 5xx and `receiver_429_rate` 429s (seeded); it
  gives up failing a webhook id after `receiver_max_failures` answers (and throttling it after
  `receiver_max_429`), since a delivery that exhausts its retry schedule is failed by design, not
  lost, and each 429 holds a delivery back for a minute;
- (e) a worker is SIGKILLed at `kill_worker_at` of the completions and started again;
- (f) Redis is stopped at `restart_redis_at` and started again after `redis_outage_seconds`.

Meanwhile a thread sends forged, tampered and unknown-key callbacks to the web process. The run
ends when every completion has one event and every delivery is delivered, or at the deadline,
with a diagnostic of what is missing. Used by tests/test_faults.py and bench/fault_suite.py.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import redis
from sqlalchemy import func, select

from tests.harness.processes import (
    STARTUP_TIMEOUT,
    RelayProcess,
    RelayStack,
    WebhookTarget,
    free_port,
    new_webhook_secret,
    relay_stack,
    wait_until,
)
from tests.receiver import RecordedRequest, RecordingReceiver, ScriptedResponse
from worker.storage.store import SqlStore
from worker.storage.tables import attempts, callbacks, deliveries, events, invitations

REDIS_SERVER = "/usr/bin/redis-server"
REPOSITORY = Path(__file__).resolve().parents[1]
RETRY_SCHEDULE = (1, 2, 4, 8, 15, 30, 60)
# Short recovery timings (worker/settings.py): production's are minutes to an hour.
FAST_TIMINGS = {
    "RECONCILE_FIRST_CHECK_SECONDS": "5",
    "RECONCILE_CHECK_INTERVAL_SECONDS": "5",
    "RECONCILE_COMPLETED_RECHECK_SECONDS": "15",
    "RECONCILE_INTERVAL_SECONDS": "2",
    "RECONCILE_RATE": "50",
    "SWEEP_INTERVAL_SECONDS": "2",
    "SWEEP_GRACE_SECONDS": "5",
    "DELIVERY_LEASE_SECONDS": "15",
}
POLL = 0.25


@dataclass(frozen=True)
class FaultPlan:
    completions: int = 200
    seed: int = 20261127
    drop_callback_rate: float = 0.3
    callback_copies: int = 3
    simulator_error_rate: float = 0.2
    receiver_error_rate: float = 0.3
    receiver_429_rate: float = 0.05
    receiver_max_failures: int = 4
    # A 429 makes the relay wait >= 60 s (worker/retries.py THROTTLED_FLOOR_SECONDS): one per
    # webhook id at most keeps the drain short.
    receiver_max_429: int = 1
    # Completions are spread over this long, so the faults land while work is in flight.
    completion_seconds: float = 30.0
    completion_threads: int = 8
    kill_worker_at: float = 1 / 3
    restart_redis_at: float = 2 / 3
    redis_outage_seconds: float = 2.0
    forged_per_second: float = 10.0
    workers: int = 2
    worker_threads: int = 8
    deadline_seconds: float = 360.0
    database_url: str | None = None


@dataclass
class FaultReport:
    completions: int = 0
    events: int = 0
    distinct_event_tests: int = 0
    deliveries: int = 0
    deliveries_delivered: int = 0
    receiver_requests: int = 0
    receiver_answers: dict[str, int] = field(default_factory=dict)
    duplicates_seen: int = 0  # webhooks answered 2xx more than once (same webhook-id and target)
    duplicate_webhook_ids: list[str] = field(default_factory=list)
    accepted_tests: dict[str, int] = field(default_factory=dict)  # distinct tests 2xx, by path
    stranded_deliveries: int = 0  # swept while `delivering`: a worker died mid-attempt
    # Requests the receiver got beyond the attempts recorded in SQL: sends whose worker died
    # before recording them (the SIGKILL). Only these can explain a duplicate.
    unrecorded_sends: int = 0
    # Seconds from the SIGKILL to each message the killed worker held running again elsewhere.
    rerun_delays_after_kill: list[float] = field(default_factory=list)
    forged_sent: int = 0
    forged_rejected: int = 0  # answered 404 (and stored as a rejected receipt)
    forged_throttled: int = 0  # answered 429: the address's rejected-callback limit was reached
    forged_receipts: int = 0  # stored as rejected receipts
    simulator: dict[str, Any] = field(default_factory=dict)
    callbacks_accepted: int = 0
    reconciler_found: int = 0  # reconcile_found_completion log lines
    swept_deliveries: int = 0
    swept_callbacks: int = 0
    started_at: str = ""
    completions_done_at: str = ""
    worker_killed_at: str = ""
    worker_restarted_at: str = ""
    redis_stopped_at: str = ""
    redis_started_at: str = ""
    drained_at: str = ""
    seconds_to_drain_after_last_completion: float = 0.0
    seconds_total: float = 0.0
    drained: bool = False
    missing: list[str] = field(default_factory=list)
    summary_path: str = ""

    def lines(self) -> list[str]:
        answers = ", ".join(f"{k}: {v}" for k, v in sorted(self.receiver_answers.items()))
        sim = self.simulator
        return [
            f"completions:                  {self.completions}",
            f"events (distinct pla_tst_id): {self.events} ({self.distinct_event_tests})",
            f"deliveries delivered:         {self.deliveries_delivered} / {self.deliveries}",
            f"receiver requests:            {self.receiver_requests} ({answers})",
            f"accepted tests by receiver:   {self.accepted_tests}",
            f"duplicates seen by receivers: {self.duplicates_seen} (sends never recorded, as a "
            f"killed worker leaves them: {self.unrecorded_sends}; stranded deliveries swept: "
            f"{self.stranded_deliveries})",
            f"forged callbacks:             {self.forged_sent} sent, {self.forged_rejected} "
            f"answered 404, {self.forged_throttled} answered 429 (per-address limit), "
            f"{self.forged_receipts} rejected receipts",
            f"simulator callbacks:          {sim.get('callbacks_sent', 0)} sent, "
            f"{sim.get('callbacks_dropped', 0)} dropped, {sim.get('callbacks_failed', 0)} "
            f"failed; {sim.get('injected_errors', 0)} injected 5xx, act 10 calls "
            f"{sim.get('api_calls_by_act', {}).get('10', 0)}",
            f"recovered by the reconciler:  {self.reconciler_found} completions found by act 10",
            f"swept:                        {self.swept_deliveries} deliveries, "
            f"{self.swept_callbacks} callbacks",
            f"worker SIGKILLed / restarted: {self.worker_killed_at} / {self.worker_restarted_at}",
            f"re-run after the SIGKILL:     {len(self.rerun_delays_after_kill)} message(s), after "
            f"{', '.join(f'{d:.1f}' for d in self.rerun_delays_after_kill) or '-'} s",
            f"Redis stopped / started:      {self.redis_stopped_at} / {self.redis_started_at}",
            f"last completion:              {self.completions_done_at}",
            f"drained:                      {self.drained_at or 'NO'} "
            f"({self.seconds_to_drain_after_last_completion:.1f} s after the last completion, "
            f"{self.seconds_total:.1f} s in all)",
        ]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class DedicatedRedis:
    """A redis-server of our own (never the shared one): AOF fsynced on every write, in `dir`."""

    def __init__(self, directory: Path, binary: str = REDIS_SERVER) -> None:
        self.directory = directory
        self.binary = binary
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None
        self._log = directory / "redis.log"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        argv = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--save", "",
            "--logfile", str(self._log),
        ]  # fmt: skip
        self._process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_until(self._answers, timeout=STARTUP_TIMEOUT, what="redis-server")

    def _answers(self) -> bool:
        if self._process is not None and self._process.poll() is not None:
            raise AssertionError(f"redis-server exited: {self._log.read_text()[-2000:]}")
        client = redis.Redis.from_url(self.url, socket_timeout=1, socket_connect_timeout=1)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def stop(self) -> None:
        """SIGTERM (Redis flushes its AOF and exits), SIGKILL after a deadline; always reaps."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


class FaultyReceiver(RecordingReceiver):
    """The receiver of both subscriptions: seeded 5xx and 429 answers, at most `max_failures`
    per webhook id; remembers which status each request was given."""

    def __init__(self, plan: FaultPlan) -> None:
        super().__init__()
        self._rng = random.Random(plan.seed)
        self._plan = plan
        self._failures: Counter[str] = Counter()
        self._throttled: Counter[str] = Counter()
        self.answers: list[int] = []  # parallel to `requests`

    def _record(self, request: RecordedRequest) -> ScriptedResponse:
        # Called under the receiver's lock (see RecordingReceiver._record): answers stay aligned.
        answer = super()._record(request)
        key = request.path + " " + request.headers.get("webhook-id", "")
        draw = self._rng.random()
        if self._failures[key] < self._plan.receiver_max_failures:
            if draw < self._plan.receiver_error_rate:
                answer = ScriptedResponse(status=self._rng.choice((500, 502, 503)))
            elif (
                draw < self._plan.receiver_error_rate + self._plan.receiver_429_rate
                and self._throttled[key] < self._plan.receiver_max_429
            ):
                answer = ScriptedResponse(status=429, headers=(("retry-after", "1"),))
                self._throttled[key] += 1
        if answer.status >= 300:
            self._failures[key] += 1
        self.answers.append(answer.status)
        return answer


@dataclass
class _Run:
    plan: FaultPlan
    stack: RelayStack
    redis_server: DedicatedRedis
    receiver: FaultyReceiver
    store: SqlStore
    report: FaultReport
    stop_forging: threading.Event = field(default_factory=threading.Event)
    killed: set[str] = field(default_factory=set)
    callback_urls: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


TARGETS = (
    WebhookTarget("alpha", (new_webhook_secret(),), RETRY_SCHEDULE),
    WebhookTarget("beta", (new_webhook_secret(),), RETRY_SCHEDULE),
)


@contextmanager
def _suite(directory: Path, plan: FaultPlan) -> Iterator[_Run]:
    with ExitStack() as cleanup:
        redis_server = DedicatedRedis(directory / "redis")
        cleanup.callback(redis_server.stop)
        redis_server.start()
        receiver = FaultyReceiver(plan)
        cleanup.enter_context(receiver)
        stack = cleanup.enter_context(
            relay_stack(
                directory / "relay",
                redis_url=redis_server.url,
                receiver_url=receiver.url(),
                targets=TARGETS,
                database_url=plan.database_url,
                worker_threads=plan.worker_threads,
                workers=plan.workers,
                scheduler=True,
                # The processes run this checkout's code even if the venv's editable install
                # points elsewhere (a fresh-clone check reinstalling it, say).
                extra_env={**FAST_TIMINGS, "PYTHONPATH": str(REPOSITORY)},
            )
        )
        store = SqlStore.from_url(stack.database_url)
        cleanup.callback(store.close)
        yield _Run(plan, stack, redis_server, receiver, store, FaultReport())


def run_fault_suite(directory: Path, plan: FaultPlan) -> FaultReport:
    """Run the suite; the report says what happened (`drained`, `missing`); never raises for
    an undrained run, so the caller decides (and prints) first."""
    with _suite(directory, plan) as run, httpx2.Client(timeout=30) as http:
        report = run.report
        started = time.monotonic()
        report.started_at = _now()
        pla_tst_ids = _invite_all(run, http)
        run.stack.simulator(
            http,
            "/faults",
            json={
                "seed": plan.seed,
                "error_rate": plan.simulator_error_rate,
                "error_status": 503,
                "drop_callback_rate": plan.drop_callback_rate,
            },
        )
        forger = threading.Thread(target=_forge, args=(run,), name="forger", daemon=True)
        forger.start()
        try:
            _complete_all(run, http, pla_tst_ids)
            report.completions_done_at = _now()
            completed = time.monotonic()
            deadline = started + plan.deadline_seconds
            report.drained = _drain(run, deadline)
            report.drained_at = _now() if report.drained else ""
            report.seconds_to_drain_after_last_completion = time.monotonic() - completed
        finally:
            run.stop_forging.set()
            forger.join()
        report.seconds_total = time.monotonic() - started
        report.completions = len(pla_tst_ids)
        report.simulator = run.stack.simulator(http, "/counters")
        _tally(run)
        if not report.drained:
            report.missing = _missing(run)
        report.missing += run.errors
        summary = directory / "fault-summary.json"
        report.summary_path = str(summary)
        summary.write_text(json.dumps(asdict(report), indent=2), encoding="utf-8")
        return report


def _invite_all(run: _Run, http: httpx2.Client) -> list[int]:
    """Every invitation, before any fault is on (act 8 would fail 20 % of the time)."""

    def invite(index: int) -> int:
        invitation = run.stack.invite(
            http,
            email=f"fault-{index}-{uuid.uuid4().hex[:8]}@example.org",
            first_name="Ada",
            last_name="Lovelace",
            tst_frm_id=101,
            context={"suite": "faults", "index": index},
        )
        return int(invitation["pla_tst_id"])

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(invite, range(run.plan.completions)))


def _complete_all(run: _Run, http: httpx2.Client, pla_tst_ids: list[int]) -> None:
    """Complete every test at an even pace, firing the worker kill and the Redis restart on the
    way (in threads of their own, so completions go on meanwhile)."""
    plan = run.plan
    total = len(pla_tst_ids)
    pace = plan.completion_seconds / max(1, total)
    start = time.monotonic()
    faults: list[threading.Thread] = []
    kill_at = int(total * plan.kill_worker_at)
    restart_at = int(total * plan.restart_redis_at)
    paced = threading.Event()  # never set: its wait() is the pace, not a synchronisation

    def complete(item: tuple[int, int]) -> None:
        index, pla_tst_id = item
        paced.wait(max(0.0, start + index * pace - time.monotonic()))
        if index == kill_at:
            faults.append(_in_thread(_kill_and_restart_worker, run))
        if index == restart_at:
            faults.append(_in_thread(_restart_redis, run))
        grade = {"value": 500 + index % 500}
        answer = run.stack.complete(http, pla_tst_id, **grade)
        run.callback_urls.append(answer["test"]["options"]["cal_bac_pag"])
        if index % 2 == 1:
            for _ in range(plan.callback_copies - 1):
                run.stack.simulator(http, f"/tests/{pla_tst_id}/callback", json={})

    with ThreadPoolExecutor(plan.completion_threads) as pool:
        list(pool.map(complete, enumerate(pla_tst_ids)))
    for thread in faults:
        thread.join()


def _in_thread(target: Any, run: _Run) -> threading.Thread:
    def guarded() -> None:
        try:
            target(run)
        except Exception as exc:  # reported, not lost in a thread
            run.errors.append(f"{target.__name__} failed: {exc!r}")

    thread = threading.Thread(target=guarded, name=target.__name__, daemon=True)
    thread.start()
    return thread


def _kill_and_restart_worker(run: _Run) -> None:
    victim = run.stack.processes["worker-2" if run.plan.workers > 1 else "worker"]
    run.killed.add(victim.name)
    victim.kill()
    run.report.worker_killed_at = _now()
    assert run.stack.spawn is not None
    replacement: RelayProcess = run.stack.spawn(
        f"{victim.name}-restarted", "worker", "--threads", str(run.plan.worker_threads)
    )
    wait_until(
        lambda: "worker_ready" in replacement.output(),
        timeout=STARTUP_TIMEOUT,
        what="the restarted worker",
        watch=[replacement],
    )
    run.report.worker_restarted_at = _now()


def _restart_redis(run: _Run) -> None:
    run.redis_server.stop()
    run.report.redis_stopped_at = _now()
    threading.Event().wait(run.plan.redis_outage_seconds)  # the outage itself, not a sync
    run.redis_server.start()
    run.report.redis_started_at = _now()


def _forge(run: _Run) -> None:
    """Forged MAC, another invitation id under a real MAC, an unknown key id: each must be 404,
    or 429 once this address has had its allowance of rejected callbacks (webhooks/callbacks.py);
    never accepted."""
    interval = 1 / run.plan.forged_per_second
    makers = (_forged, _tampered, _unknown_kid)
    with httpx2.Client(timeout=10) as http:
        count = 0
        while not run.stop_forging.wait(interval):
            if not run.callback_urls:
                continue
            url = makers[count % len(makers)](run.callback_urls[count % len(run.callback_urls)])
            count += 1
            try:
                status = http.get(url).status_code
            except httpx2.TransportError as exc:
                run.errors.append(f"forged callback not answered: {exc!r}")
                continue
            run.report.forged_sent += 1
            run.report.forged_rejected += status == 404
            run.report.forged_throttled += status == 429


def _forged(url: str) -> str:
    _kid, _invitation_id, mac = url.rsplit("/", 1)[1].split(".")
    return url.replace(mac, ("A" if mac[0] != "A" else "B") + mac[1:])


def _tampered(url: str) -> str:
    return url.replace(".inv_", ".inv_x")


def _unknown_kid(url: str) -> str:
    return url.replace("/e2e.", "/old.")


def _count(store: SqlStore, query: Any) -> int:
    with store.engine.connect() as connection:
        return int(connection.execute(query).scalar_one())


def _drained(run: _Run) -> bool:
    expected = run.plan.completions
    store = run.store
    if _count(store, select(func.count()).select_from(events)) < expected:
        return False
    delivered = (
        select(func.count()).select_from(deliveries).where(deliveries.c.status == "delivered")
    )
    return _count(store, delivered) >= expected * len(TARGETS)


def _drain(run: _Run, deadline: float) -> bool:
    paused = threading.Event()
    while time.monotonic() < deadline:
        for name, process in run.stack.processes.items():
            if name != "migrate" and name not in run.killed and process.exited():
                run.errors.append(f"{name} exited ({process.returncode})")
                return False
        if _drained(run):
            return True
        paused.wait(POLL)  # a poll interval
    return False


def _tally(run: _Run) -> None:
    report, store = run.report, run.store
    report.events = _count(store, select(func.count()).select_from(events))
    report.distinct_event_tests = _count(
        store, select(func.count(func.distinct(events.c.pla_tst_id)))
    )
    report.deliveries = _count(store, select(func.count()).select_from(deliveries))
    report.deliveries_delivered = _count(
        store,
        select(func.count()).select_from(deliveries).where(deliveries.c.status == "delivered"),
    )
    report.callbacks_accepted = _count(
        store, select(func.count()).select_from(callbacks).where(callbacks.c.accepted.is_(True))
    )
    report.forged_receipts = _count(
        store, select(func.count()).select_from(callbacks).where(callbacks.c.accepted.is_(False))
    )
    requests, answers = run.receiver.requests, list(run.receiver.answers)
    report.receiver_requests = len(requests)
    report.receiver_answers = {
        str(status): count for status, count in sorted(Counter(answers).items())
    }
    accepted: Counter[str] = Counter()
    for request, status in zip(requests, answers, strict=True):
        if 200 <= status < 300:
            accepted[request.path + " " + request.headers.get("webhook-id", "")] += 1
    duplicated = sorted(key for key, count in accepted.items() if count > 1)
    report.duplicates_seen = sum(accepted[key] - 1 for key in duplicated)
    report.duplicate_webhook_ids = duplicated
    report.accepted_tests = {
        path: len(tests) for path, tests in sorted(delivered_tests_by_target(run.receiver).items())
    }
    report.unrecorded_sends = _unrecorded_sends(run)
    report.rerun_delays_after_kill = _rerun_delays(run)
    logs = run.stack.logs()
    report.stranded_deliveries = logs.count('"was": "delivering"')
    report.reconciler_found = logs.count('"event": "reconcile_found_completion"')
    report.swept_deliveries = logs.count('"event": "delivery_swept"')
    report.swept_callbacks = logs.count('"event": "callback_swept"')


def _unrecorded_sends(run: _Run) -> int:
    """Receiver requests per (target, webhook-id) beyond the delivery's recorded attempts."""
    received = Counter(
        (request.path, request.headers.get("webhook-id", "")) for request in run.receiver.requests
    )
    recorded = (
        select(deliveries.c.subscription, deliveries.c.event_id, func.count(attempts.c.id))
        .select_from(deliveries.outerjoin(attempts, attempts.c.delivery_id == deliveries.c.id))
        .group_by(deliveries.c.id, deliveries.c.subscription, deliveries.c.event_id)
    )
    with run.store.engine.connect() as connection:
        rows = connection.execute(recorded).all()
    return sum(
        max(0, received[(f"/hooks/{subscription}", event_id)] - count)
        for subscription, event_id, count in rows
    )


def _log_lines(process: RelayProcess) -> Iterator[dict[str, Any]]:
    for line in process.output().splitlines():
        if line.startswith("{"):
            try:
                yield json.loads(line)
            except ValueError:
                continue


def _rerun_delays(run: _Run) -> list[float]:
    """Messages the killed worker was running (logged, never retried by Dramatiq there) that
    another worker ran after the kill: how long after it they started again."""
    if not run.killed or not run.report.worker_killed_at:
        return []
    killed_at = datetime.fromisoformat(run.report.worker_killed_at)
    held: set[str] = set()
    retried: set[str] = set()
    for name in run.killed:
        for line in _log_lines(run.stack.processes[name]):
            if "message_id" in line:
                held.add(line["message_id"])
                if line.get("event") == "job_will_retry":
                    retried.add(line["message_id"])
    first_seen: dict[str, datetime] = {}
    for name, process in run.stack.processes.items():
        if name in run.killed or not name.startswith("worker"):
            continue
        for line in _log_lines(process):
            message_id = line.get("message_id")
            if message_id in held and message_id not in retried:
                at = datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00"))
                if at > killed_at and (message_id not in first_seen or at < first_seen[message_id]):
                    first_seen[message_id] = at
    return sorted(round((at - killed_at).total_seconds(), 1) for at in first_seen.values())


def delivered_tests_by_target(receiver: FaultyReceiver) -> dict[str, set[int]]:
    """pla_tst_id of every webhook answered 2xx, by receiver path."""
    found: dict[str, set[int]] = {}
    for request, status in zip(receiver.requests, receiver.answers, strict=True):
        if 200 <= status < 300:
            payload = json.loads(request.body)
            found.setdefault(request.path, set()).add(int(payload["data"]["test"]["pla_tst_id"]))
    return found


def _missing(run: _Run) -> list[str]:
    """What the deadline found unfinished: pending invitations and undelivered deliveries."""
    lines = []
    with run.store.engine.connect() as connection:
        pending = connection.execute(
            select(
                invitations.c.id,
                invitations.c.pla_tst_id,
                invitations.c.status,
                invitations.c.check_count,
                invitations.c.last_checked_at,
                invitations.c.next_check_at,
            ).where(invitations.c.status != "completed")
        ).all()
        for row in pending[:50]:
            receipts = connection.execute(
                select(callbacks.c.accepted, callbacks.c.reason, callbacks.c.processed_at).where(
                    callbacks.c.invitation_id == row.id
                )
            ).all()
            lines.append(
                f"invitation {row.id} (test {row.pla_tst_id}) {row.status}: checks "
                f"{row.check_count}, last {row.last_checked_at}, next {row.next_check_at}, "
                f"callbacks {[tuple(r) for r in receipts]}"
            )
        undelivered = connection.execute(
            select(
                deliveries.c.id,
                deliveries.c.subscription,
                deliveries.c.status,
                deliveries.c.attempt_count,
                deliveries.c.next_attempt_at,
                deliveries.c.last_error,
            ).where(deliveries.c.status != "delivered")
        ).all()
        for row in undelivered[:50]:
            last = connection.execute(
                select(attempts.c.status_code, attempts.c.outcome, attempts.c.error)
                .where(attempts.c.delivery_id == row.id)
                .order_by(attempts.c.number.desc())
                .limit(1)
            ).first()
            lines.append(
                f"delivery {row.id} ({row.subscription}) {row.status}: attempts "
                f"{row.attempt_count}, next {row.next_attempt_at}, last error {row.last_error!r}, "
                f"last attempt {tuple(last) if last else None}"
            )
    lines.insert(0, f"{len(pending)} invitation(s) not completed, {len(undelivered)} deliveries")
    return lines


def redis_server_available() -> bool:
    return os.access(REDIS_SERVER, os.X_OK) or shutil.which("redis-server") is not None
