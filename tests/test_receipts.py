"""Group commit of callback receipts: batches, their outcomes, failures, and real Redis."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from datetime import timedelta
from typing import Any

import dramatiq
import httpx2
import pytest
from sqlalchemy import select
from starlette.applications import Starlette
from structlog.testing import capture_logs

from tests.fakes import FakeClock, RecordingEnqueuer
from tests.fixtures.pipeline import EXCEL, Simulated, invite
from tests.fixtures.web import KEYS, PUBLIC_URL
from webhooks.app import EXCEPTION_HANDLERS
from webhooks.callbacks import callback_routes
from webhooks.receipts import PendingReceipt, ReceiptWriter
from worker.broker import make_broker
from worker.errors import RetryableError
from worker.isograd.models import NewCandidate
from worker.jobs.actors import COMPLETIONS_QUEUE, DramatiqEnqueuer, RuntimeMiddleware
from worker.jobs.actors import declare_actors as declare_relay_actors
from worker.jobs.completions import process_completion
from worker.metrics import RelayMetrics
from worker.runtime import Runtime
from worker.scheduler.sweeper import DEFAULT_GRACE, Sweeper
from worker.storage.callbacks import NewCallback
from worker.storage.records import Invitation, InvitationStatus, NewInvitation
from worker.storage.store import SqlStore
from worker.storage.tables import callbacks
from worker.tokens import callback_url

DEADLINE_SECONDS = 10.0


class GatedStore:
    """The real store, whose first `record_callbacks` waits for `open()`: requests sent
    meanwhile queue up behind it, so the next batch holds all of them (no timing involved)."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self.transactions = 0
        self._gate = threading.Event()
        self.error: Exception | None = None

    def open(self) -> None:
        self._gate.set()

    def record_callbacks(
        self,
        invitation_ids: Collection[str],
        receipts_for: Callable[[Mapping[str, InvitationStatus]], Sequence[NewCallback]],
    ) -> None:
        self.transactions += 1
        if not self._gate.wait(DEADLINE_SECONDS):
            raise TimeoutError("the test never opened the gate")
        if self.error is not None:
            raise self.error
        self.store.record_callbacks(invitation_ids, receipts_for)


class FailingBatchEnqueuer(RecordingEnqueuer):
    """A batch enqueuer (like DramatiqEnqueuer) whose round trip fails."""

    def completions(self, invitation_ids: Sequence[str]) -> None:
        raise ConnectionError("redis down")


def path_for(invitation_id: str) -> str:
    return callback_url(PUBLIC_URL, KEYS, invitation_id).removeprefix(PUBLIC_URL)


def edge_app(writer: ReceiptWriter, clock: FakeClock, metrics: RelayMetrics | None = None) -> Any:
    routes = callback_routes(keys=KEYS, writer=writer, clock=clock, metrics=metrics)
    return Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS)


def receipts(store: SqlStore) -> list[dict[str, Any]]:
    with store.engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(select(callbacks))]


def pending_invitations(store: SqlStore, count: int) -> list[str]:
    return [
        store.create_invitation(
            NewInvitation(tst_frm_id=101, email=f"c{n}@example.org", pla_tst_id=9000 + n)
        ).id
        for n in range(count)
    ]


def invite_candidate(simulated: Simulated, store: SqlStore, number: int) -> Invitation:
    """Act 8 for candidate `number`, then the invitations row (tests.fixtures.pipeline.invite
    for one candidate of its own)."""
    email = f"candidate{number}@example.org"
    created = simulated.client.create_candidate_and_add_test(
        NewCandidate(email=email, first_name="Ada", last_name="Lovelace"), EXCEL
    )
    return store.create_invitation(
        NewInvitation(
            tst_frm_id=EXCEL, email=email, pla_tst_id=created.pla_tst_id, can_id=created.can_id
        )
    )


async def wait_for(condition: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_SECONDS
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


async def send_gated(
    app: Any, writer: ReceiptWriter, gated: GatedStore, paths: Sequence[str]
) -> list[httpx2.Response]:
    """Send the first path, hold its transaction until the others queued, then let all go."""
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url=PUBLIC_URL) as client:
        first = asyncio.ensure_future(client.get(paths[0]))
        await wait_for(lambda: gated.transactions == 1, "the first transaction")
        rest = [asyncio.ensure_future(client.get(path)) for path in paths[1:]]
        await wait_for(lambda: writer.pending == len(rest), "the other callbacks to queue")
        gated.open()
        return list(await asyncio.gather(first, *rest))


# -- batches -------------------------------------------------------------------------------------


def test_concurrent_callbacks_are_stored_in_two_batches_and_enqueue_once_per_invitation(
    store: SqlStore, enqueuer: RecordingEnqueuer, clock: FakeClock
) -> None:
    invitation_ids = pending_invitations(store, 40)
    repeats = invitation_ids[:10]  # a second callback for ten of them, in the same batch
    paths = [path_for(i) for i in invitation_ids + repeats]
    gated = GatedStore(store)
    writer = ReceiptWriter(store=gated, enqueuer=enqueuer)

    responses = asyncio.run(send_gated(edge_app(writer, clock), writer, gated, paths))

    assert [r.status_code for r in responses] == [200] * 50
    assert sorted(job.id for job in enqueuer.of_kind("completion")) == sorted(invitation_ids)
    stored = receipts(store)
    assert len(stored) == 50
    assert [r["reason"] for r in stored].count("duplicate") == 10
    assert writer.batches == 2  # the first callback alone, then the 49 that queued behind it


def test_a_lone_callback_is_written_at_once_in_a_batch_of_its_own(
    store: SqlStore, enqueuer: RecordingEnqueuer, clock: FakeClock
) -> None:
    [invitation_id] = pending_invitations(store, 1)
    writer = ReceiptWriter(store=store, enqueuer=enqueuer)

    async def one() -> httpx2.Response:
        transport = httpx2.ASGITransport(app=edge_app(writer, clock))
        async with httpx2.AsyncClient(transport=transport, base_url=PUBLIC_URL) as client:
            return await client.get(path_for(invitation_id))

    assert asyncio.run(one()).status_code == 200
    assert writer.batches == 1
    assert len(receipts(store)) == 1


def test_batches_are_capped_at_max_batch(
    store: SqlStore, enqueuer: RecordingEnqueuer, clock: FakeClock
) -> None:
    invitation_ids = pending_invitations(store, 9)
    writer = ReceiptWriter(store=store, enqueuer=enqueuer, max_batch=4)

    async def submit_all() -> None:
        await asyncio.gather(
            *(writer.submit(PendingReceipt(i, "GET", {}, None, clock())) for i in invitation_ids)
        )

    asyncio.run(submit_all())

    assert writer.batches == 3  # all nine queued in one tick: 4 + 4 + 1
    assert len(enqueuer.of_kind("completion")) == 9


class BatchRecordingStore:
    """The real store, noting the invitation ids of each batch it is asked to record."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self.batches: list[set[str]] = []

    def record_callbacks(
        self,
        invitation_ids: Collection[str],
        receipts_for: Callable[[Mapping[str, InvitationStatus]], Sequence[NewCallback]],
    ) -> None:
        self.batches.append(set(invitation_ids))
        self.store.record_callbacks(invitation_ids, receipts_for)


def test_under_load_the_next_batch_waits_batch_delay_and_takes_what_arrived_meanwhile(
    store: SqlStore, enqueuer: RecordingEnqueuer, clock: FakeClock
) -> None:
    first, second, third, fourth, fifth, late = pending_invitations(store, 6)
    recording = BatchRecordingStore(store)
    pauses: list[float] = []
    arrivals: list[asyncio.Task[Any]] = []

    async def pause(seconds: float) -> None:
        # A callback arriving during the pause: it queues before the batch is taken.
        pauses.append(seconds)
        receipt = PendingReceipt(late, "GET", {}, None, clock())
        arrivals.append(asyncio.ensure_future(writer.submit(receipt)))
        await wait_for(lambda: writer.pending == 2, "the late callback to queue")

    writer = ReceiptWriter(
        store=recording,
        enqueuer=enqueuer,
        max_batch=2,
        batch_delay=timedelta(milliseconds=3),
        pause=pause,
    )

    async def burst() -> None:
        ids = [first, second, third, fourth, fifth]
        await asyncio.gather(
            *(writer.submit(PendingReceipt(i, "GET", {}, None, clock())) for i in ids)
        )
        await asyncio.gather(*arrivals)

    asyncio.run(burst())

    # The burst's first batch goes at once; the second too, a full batch was waiting; before
    # the third, one receipt waited: the writer paused, and the late one joined it.
    assert pauses == [0.003]
    assert recording.batches == [{first, second}, {third, fourth}, {fifth, late}]
    assert len(enqueuer.of_kind("completion")) == 6


def test_a_lone_callback_after_a_batch_of_one_and_a_zero_delay_never_pause(
    store: SqlStore, enqueuer: RecordingEnqueuer, clock: FakeClock
) -> None:
    invitation_ids = pending_invitations(store, 5)
    pauses: list[float] = []

    async def pause(seconds: float) -> None:
        pauses.append(seconds)

    lone = ReceiptWriter(store=store, enqueuer=enqueuer, max_batch=1, pause=pause)
    undelayed = ReceiptWriter(
        store=store, enqueuer=enqueuer, max_batch=2, batch_delay=timedelta(0), pause=pause
    )

    async def submit(writer: ReceiptWriter, ids: Sequence[str]) -> None:
        await asyncio.gather(
            *(writer.submit(PendingReceipt(i, "GET", {}, None, clock())) for i in ids)
        )

    asyncio.run(submit(lone, invitation_ids[:2]))  # batches of one: no sign of load
    asyncio.run(submit(undelayed, invitation_ids[2:]))  # 2, then 1: would pause, but zero delay

    assert pauses == []
    assert (lone.batches, undelayed.batches) == (2, 2)
    assert len(enqueuer.of_kind("completion")) == 5


def test_a_negative_batch_delay_is_refused(store: SqlStore, enqueuer: RecordingEnqueuer) -> None:
    with pytest.raises(ValueError, match="batch_delay"):
        ReceiptWriter(store=store, enqueuer=enqueuer, batch_delay=timedelta(milliseconds=-1))


def test_two_callbacks_for_one_invitation_in_one_batch_enqueue_once(
    store: SqlStore, enqueuer: RecordingEnqueuer, clock: FakeClock
) -> None:
    [invitation_id] = pending_invitations(store, 1)
    writer = ReceiptWriter(store=store, enqueuer=enqueuer)
    receipt = PendingReceipt(invitation_id, "GET", {}, None, clock())

    first, second = writer.write([receipt, receipt])

    assert (first.enqueued, first.reason) == (True, None)
    assert (second.accepted, second.enqueued, second.reason) == (True, False, "duplicate")
    assert len(enqueuer.of_kind("completion")) == 1


def test_each_reason_of_a_mixed_batch_is_stored_as_it_was_one_by_one(
    store: SqlStore, enqueuer: RecordingEnqueuer, clock: FakeClock
) -> None:
    pending, completed = pending_invitations(store, 2)
    store.mark_invitation(completed, InvitationStatus.COMPLETED)
    writer = ReceiptWriter(store=store, enqueuer=enqueuer)
    now = clock()

    outcomes = writer.write(
        [
            PendingReceipt(pending, "GET", {"sid": "1"}, "10.0.0.1", now),
            PendingReceipt(completed, "HEAD", {}, "10.0.0.2", now),
            PendingReceipt("inv_never_stored", "GET", {}, None, now),
            PendingReceipt("inv_forged", "GET", {}, "10.0.0.9", now, rejection="bad_mac"),
        ]
    )

    assert [(o.accepted, o.enqueued, o.reason) for o in outcomes] == [
        (True, True, None),
        (True, False, "already_completed"),
        (False, False, "unknown_invitation"),
        (False, False, "bad_mac"),
    ]
    stored = {
        (r["invitation_id"], r["method"], r["accepted"], r["reason"]) for r in receipts(store)
    }
    assert stored == {
        (pending, "GET", True, None),
        (completed, "HEAD", True, "already_completed"),
        ("inv_never_stored", "GET", False, "unknown_invitation"),
        ("inv_forged", "GET", False, "bad_mac"),
    }
    assert [job.id for job in enqueuer.jobs] == [pending]


# -- failures ------------------------------------------------------------------------------------


class Ticks:
    """A timer (perf_counter's stand-in) answering the given instants, one per call."""

    def __init__(self, *instants: float) -> None:
        self._instants = iter(instants)

    def __call__(self) -> float:
        return next(self._instants)


def test_each_batch_tells_its_observer_its_size_and_the_seconds_of_its_store_and_enqueue(
    store: SqlStore, enqueuer: RecordingEnqueuer, clock: FakeClock
) -> None:
    first, second = pending_invitations(store, 2)
    metrics = RelayMetrics()
    writer = ReceiptWriter(
        store=store, enqueuer=enqueuer, observer=metrics, timer=Ticks(10.0, 10.004, 10.0065)
    )

    writer.write([PendingReceipt(i, "GET", {}, None, clock()) for i in (first, second, first)])

    def sample(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(f"isograd_relay_callback_batch_{name}", labels)

    assert sample("receipts_count") == 1
    assert sample("receipts_sum") == 3
    assert sample("duration_seconds_sum", stage="store") == pytest.approx(0.004)
    assert sample("duration_seconds_sum", stage="enqueue") == pytest.approx(0.0025)
    # 4 ms is past the 2.5 ms bucket and within the 5 ms one.
    assert sample("duration_seconds_bucket", stage="store", le="0.0025") == 0
    assert sample("duration_seconds_bucket", stage="store", le="0.005") == 1


def test_a_batch_with_nothing_to_enqueue_reports_its_store_only(
    store: SqlStore, enqueuer: RecordingEnqueuer, clock: FakeClock
) -> None:
    metrics = RelayMetrics()
    writer = ReceiptWriter(
        store=store, enqueuer=enqueuer, observer=metrics, timer=Ticks(5.0, 5.002)
    )

    outcomes = writer.write([PendingReceipt("inv_nobody", "GET", {}, None, clock())])

    assert [o.reason for o in outcomes] == ["unknown_invitation"]
    labels = {"stage": "store"}
    name = "isograd_relay_callback_batch_duration_seconds"
    assert metrics.registry.get_sample_value(f"{name}_sum", labels) == pytest.approx(0.002)
    assert metrics.registry.get_sample_value(f"{name}_count", {"stage": "enqueue"}) == 0


def test_a_batch_whose_store_fails_reports_nothing(
    store: SqlStore, enqueuer: RecordingEnqueuer, clock: FakeClock
) -> None:
    (invitation_id,) = pending_invitations(store, 1)
    gated = GatedStore(store)
    gated.open()
    gated.error = RetryableError("database unavailable: OperationalError")
    metrics = RelayMetrics()
    writer = ReceiptWriter(store=gated, enqueuer=enqueuer, observer=metrics, timer=Ticks(1.0))

    with pytest.raises(RetryableError):
        writer.write([PendingReceipt(invitation_id, "GET", {}, None, clock())])

    name = "isograd_relay_callback_batch_receipts_count"
    assert metrics.registry.get_sample_value(name) == 0
    assert enqueuer.jobs == []


def test_a_failed_commit_answers_every_callback_of_the_batch_503_and_releases_their_claims(
    store: SqlStore, enqueuer: RecordingEnqueuer, clock: FakeClock
) -> None:
    invitation_ids = pending_invitations(store, 5)
    gated = GatedStore(store)
    gated.error = RetryableError("database unavailable: OperationalError")
    writer = ReceiptWriter(store=gated, enqueuer=enqueuer)
    paths = [path_for(i) for i in invitation_ids]

    responses = asyncio.run(send_gated(edge_app(writer, clock), writer, gated, paths))

    assert [r.status_code for r in responses] == [503] * 5
    assert writer.batches == 2
    assert receipts(store) == []
    assert enqueuer.jobs == []
    # Nothing was enqueued, so the duplicate window must not swallow Isograd's retry.
    gated.error = None
    assert all(writer.recent.claim(i, clock()) for i in invitation_ids)


def test_a_failed_pipeline_answers_200_enqueue_failed_and_releases_every_claim(
    store: SqlStore, clock: FakeClock
) -> None:
    invitation_ids = pending_invitations(store, 3)
    writer = ReceiptWriter(store=store, enqueuer=FailingBatchEnqueuer())
    metrics = RelayMetrics()
    paths = [path_for(i) for i in invitation_ids]

    async def send_all() -> list[httpx2.Response]:
        transport = httpx2.ASGITransport(app=edge_app(writer, clock, metrics))
        async with httpx2.AsyncClient(transport=transport, base_url=PUBLIC_URL) as client:
            return list(await asyncio.gather(*(client.get(p) for p in paths)))

    with capture_logs() as logs:
        responses = asyncio.run(send_all())

    assert [r.status_code for r in responses] == [200] * 3
    failed = [e["invitation_id"] for e in logs if e["event"] == "callback_enqueue_failed"]
    assert sorted(failed) == sorted(invitation_ids)
    labels = {"result": "accepted", "reason": "enqueue_failed"}
    assert metrics.registry.get_sample_value("isograd_relay_callbacks_total", labels) == 3
    assert [r["accepted"] for r in receipts(store)] == [True] * 3
    assert all(writer.recent.claim(i, clock()) for i in invitation_ids)


class OneFailingEnqueuer(RecordingEnqueuer):
    def __init__(self, failing: str) -> None:
        super().__init__()
        self.failing = failing

    def completion(
        self, invitation_id: str, *, delay_seconds: float = 0.0, recheck: int = 0
    ) -> None:
        if invitation_id == self.failing:
            raise ConnectionError("broker down")
        super().completion(invitation_id, delay_seconds=delay_seconds, recheck=recheck)


def test_an_enqueuer_without_batches_is_asked_once_per_invitation_each_failing_alone(
    store: SqlStore, clock: FakeClock
) -> None:
    first, second, third = pending_invitations(store, 3)
    enqueuer = OneFailingEnqueuer(failing=second)
    writer = ReceiptWriter(store=store, enqueuer=enqueuer)

    outcomes = writer.write(
        [PendingReceipt(i, "GET", {}, None, clock()) for i in (first, second, third)]
    )

    assert [o.reason for o in outcomes] == [None, "enqueue_failed", None]
    assert [job.id for job in enqueuer.jobs] == [first, third]


def test_a_committed_receipt_whose_enqueue_never_happened_is_processed_after_the_sweep(
    store: SqlStore, simulated: Simulated, clock: FakeClock
) -> None:
    # The web process died (or Redis failed) between the commit and the enqueue: the receipt
    # is all that is left, and the sweeper turns it into a completion.
    invitation = invite(simulated, store)
    simulated.move(invitation.pla_tst_id or 0, "complete")
    writer = ReceiptWriter(store=store, enqueuer=FailingBatchEnqueuer())
    [outcome] = writer.write([PendingReceipt(invitation.id, "GET", {}, None, clock())])
    assert outcome.reason == "enqueue_failed"
    swept = RecordingEnqueuer()
    clock.advance(DEFAULT_GRACE.total_seconds() + 1)

    report = Sweeper(store=store, enqueuer=swept, clock=clock).sweep()
    for job in swept.of_kind("completion"):
        process_completion(
            job.id,
            store=store,
            client=simulated.client,
            subscriptions=(),
            enqueuer=swept,
            clock=clock,
        )

    assert report.completions == 1
    completed = store.get_invitation(invitation.id)
    assert completed is not None
    assert completed.status is InvitationStatus.COMPLETED
    assert store.unprocessed_callbacks(clock()) == []


# -- real Redis, real worker ---------------------------------------------------------------------


@pytest.fixture
def redis_broker(redis_url: str) -> Iterator[dramatiq.Broker]:
    namespace = f"relay-test-{uuid.uuid4().hex}"
    broker = make_broker(redis_url, namespace=namespace)
    yield broker
    client = broker.client  # type: ignore[attr-defined]
    keys = list(client.scan_iter(match=f"{namespace}*"))  # only this test's keys
    if keys:
        client.delete(*keys)
    broker.close()


@pytest.mark.redis
def test_callbacks_enqueued_in_one_pipeline_are_processed_by_a_real_worker(
    redis_broker: dramatiq.Broker, store: SqlStore, simulated: Simulated, clock: FakeClock
) -> None:
    invitations = [invite_candidate(simulated, store, n) for n in range(3)]
    for invitation in invitations:
        simulated.move(invitation.pla_tst_id or 0, "complete")
    actors = declare_relay_actors(redis_broker)
    http = httpx2.Client()
    runtime = Runtime(
        store=store,
        client=simulated.client,
        http=http,
        subscriptions=(),
        enqueuer=DramatiqEnqueuer(actors),
        clock=clock,
    )
    redis_broker.add_middleware(RuntimeMiddleware(runtime))
    writer = ReceiptWriter(store=store, enqueuer=runtime.enqueuer)
    paths = [path_for(i.id) for i in invitations]

    async def send_all() -> list[httpx2.Response]:
        transport = httpx2.ASGITransport(app=edge_app(writer, clock))
        async with httpx2.AsyncClient(transport=transport, base_url=PUBLIC_URL) as client:
            return list(await asyncio.gather(*(client.get(p) for p in paths)))

    try:
        responses = asyncio.run(send_all())
        worker = dramatiq.Worker(redis_broker, worker_threads=2, worker_timeout=100)
        worker.start()
        try:
            redis_broker.join(COMPLETIONS_QUEUE, timeout=int(DEADLINE_SECONDS * 1000))
            worker.join()
        finally:
            worker.stop()
    finally:
        runtime.close()
        http.close()

    assert [r.status_code for r in responses] == [200] * 3
    for invitation in invitations:
        done = store.get_invitation(invitation.id)
        assert done is not None
        assert done.status is InvitationStatus.COMPLETED
    assert store.unprocessed_callbacks(clock()) == []


def test_redis_refusing_the_pipeline_gives_enqueue_failed_not_an_error(
    store: SqlStore, clock: FakeClock
) -> None:
    # Port 1 on loopback: nothing listens there, the connection is refused at once.
    broker = make_broker("redis://127.0.0.1:1/0", socket_connect_timeout=1.0)
    try:
        enqueuer = DramatiqEnqueuer(declare_relay_actors(broker))
        invitation_ids = pending_invitations(store, 2)
        writer = ReceiptWriter(store=store, enqueuer=enqueuer)

        outcomes = writer.write(
            [PendingReceipt(i, "GET", {}, None, clock()) for i in invitation_ids]
        )
    finally:
        broker.close()

    assert [(o.accepted, o.reason) for o in outcomes] == [(True, "enqueue_failed")] * 2
    assert len(receipts(store)) == 2
