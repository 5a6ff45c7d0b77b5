"""completions.process_completions: callbacks that arrived together, confirmed as one batch."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import event as sql_event

from tests.fakes import FakeClock, RecordingEnqueuer
from tests.fixtures.pipeline import Simulated, invite, subscription
from worker.errors import IsogradUnavailableError
from worker.isograd.errors import AssessmentNotAllowedError
from worker.jobs.completions import (
    ITEM_RETRY_DELAY,
    CompletionOutcome,
    CompletionResult,
    process_completions,
)
from worker.storage.records import Delivery, DeliveryStatus, Invitation, InvitationStatus
from worker.storage.store import SqlStore

HOOKS = (subscription("hr"), subscription("lms"))


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(16, thread_name_prefix="fetch") as executor:
        yield executor


def completed(simulated: Simulated, store: SqlStore, count: int) -> list[Invitation]:
    """`count` invitations (each its own candidate) whose tests the simulator has completed."""
    invitations = [invite(simulated, store, email=f"c{n}@example.org") for n in range(count)]
    for invitation in invitations:
        simulated.move(invitation.pla_tst_id or 0, "complete")
    return invitations


def run_batch(
    ids: Sequence[str],
    *,
    store: SqlStore,
    client: Any,
    enqueuer: RecordingEnqueuer,
    clock: FakeClock,
    pool: ThreadPoolExecutor,
    **options: Any,
) -> dict[str, CompletionOutcome]:
    return process_completions(
        ids,
        store=store,
        client=client,
        subscriptions=HOOKS,
        enqueuer=enqueuer,
        clock=clock,
        fetch_pool=pool,
        **options,
    )


def event_inserts_by_transaction(store: SqlStore) -> list[int]:
    """For each INSERT INTO events from now on, the number of the transaction it ran in."""
    engine: Any = store._engine  # the store's own engine: what its writes go through
    begun = [0]
    inserts: list[int] = []

    def on_begin(connection: Any) -> None:
        begun[0] += 1

    def on_execute(connection: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("INSERT INTO events"):
            inserts.append(begun[0])

    sql_event.listen(engine, "begin", on_begin)
    sql_event.listen(engine, "before_cursor_execute", on_execute)
    return inserts


def test_a_batch_stores_every_confirmed_completion_in_one_transaction(
    store: SqlStore,
    simulated: Simulated,
    enqueuer: RecordingEnqueuer,
    clock: FakeClock,
    pool: ThreadPoolExecutor,
) -> None:
    invitations = completed(simulated, store, 3)
    inserts = event_inserts_by_transaction(store)

    outcomes = run_batch(
        [i.id for i in invitations],
        store=store,
        client=simulated.client,
        enqueuer=enqueuer,
        clock=clock,
        pool=pool,
    )

    assert {o.result for o in outcomes.values()} == {CompletionResult.COMPLETED}
    assert len(inserts) == 2  # multi-row INSERTs of 2 and 1 (worker.storage.shapes)...
    assert len(set(inserts)) == 1  # ...in one transaction for the three events
    for invitation in invitations:
        stored = store.get_invitation(invitation.id)
        assert stored is not None
        assert stored.status is InvitationStatus.COMPLETED
        event = store.get_event_by_pla_tst_id(invitation.pla_tst_id or 0)
        assert event is not None
        assert event.id == outcomes[invitation.id].event_id
        assert len(store.list_deliveries(event_id=event.id)) == 2
    # Without deliver_now, the deliveries are enqueued, as process_completion does.
    assert len(enqueuer.of_kind("delivery")) == 6
    assert [simulated.calls(act) for act in (10, 4, 5, 6)] == [3, 3, 3, 3]


def test_each_invitation_of_a_batch_ends_as_its_own_run_would(
    store: SqlStore,
    simulated: Simulated,
    enqueuer: RecordingEnqueuer,
    clock: FakeClock,
    pool: ThreadPoolExecutor,
) -> None:
    completed, started, done_before = (
        invite(simulated, store, email=f"c{n}@example.org") for n in range(3)
    )
    simulated.move(completed.pla_tst_id or 0, "complete")
    simulated.move(started.pla_tst_id or 0, "start")
    simulated.move(done_before.pla_tst_id or 0, "complete")
    run_batch(
        [done_before.id],
        store=store,
        client=simulated.client,
        enqueuer=enqueuer,
        clock=clock,
        pool=pool,
    )

    outcomes = run_batch(
        [completed.id, started.id, done_before.id, "inv_missing", completed.id],
        store=store,
        client=simulated.client,
        enqueuer=enqueuer,
        clock=clock,
        pool=pool,
    )

    assert {key: o.result for key, o in outcomes.items()} == {
        completed.id: CompletionResult.COMPLETED,
        started.id: CompletionResult.NOT_CONFIRMED,
        done_before.id: CompletionResult.ALREADY_COMPLETED,
        "inv_missing": CompletionResult.UNKNOWN_INVITATION,
    }
    [recheck] = enqueuer.of_kind("completion")
    assert (recheck.id, recheck.recheck) == (started.id, 1)
    assert outcomes[started.id].recheck_in == recheck.delay_seconds


def test_a_batch_run_twice_creates_no_second_event(
    store: SqlStore,
    simulated: Simulated,
    enqueuer: RecordingEnqueuer,
    clock: FakeClock,
    pool: ThreadPoolExecutor,
) -> None:
    invitations = completed(simulated, store, 2)
    ids = [i.id for i in invitations]
    run_batch(ids, store=store, client=simulated.client, enqueuer=enqueuer, clock=clock, pool=pool)

    again = run_batch(
        ids, store=store, client=simulated.client, enqueuer=enqueuer, clock=clock, pool=pool
    )

    assert {o.result for o in again.values()} == {CompletionResult.ALREADY_COMPLETED}
    assert store.count_events() == 2
    assert len(enqueuer.of_kind("delivery")) == 4  # the first run's only


class FlakyFor:
    """The simulator's client, but act 10 for one pla_tst_id raises `error`."""

    def __init__(self, client: Any, pla_tst_id: int, error: Exception) -> None:
        self._client = client
        self._pla_tst_id = pla_tst_id
        self._error = error

    def get_test_status(self, pla_tst_id: int, *, sub_com_id: int | None = None) -> Any:
        if pla_tst_id == self._pla_tst_id:
            raise self._error
        return self._client.get_test_status(pla_tst_id, sub_com_id=sub_com_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_an_invitation_isograd_cannot_answer_for_is_retried_alone(
    store: SqlStore,
    simulated: Simulated,
    enqueuer: RecordingEnqueuer,
    clock: FakeClock,
    pool: ThreadPoolExecutor,
) -> None:
    fine, flaky = completed(simulated, store, 2)
    client = FlakyFor(
        simulated.client, flaky.pla_tst_id or 0, IsogradUnavailableError("HTTP 503", action=10)
    )

    outcomes = run_batch(
        [flaky.id, fine.id], store=store, client=client, enqueuer=enqueuer, clock=clock, pool=pool
    )

    assert outcomes[fine.id].result is CompletionResult.COMPLETED
    assert outcomes[flaky.id].result is CompletionResult.RETRYING
    [retry] = enqueuer.of_kind("completion")
    assert (retry.id, retry.delay_seconds, retry.recheck) == (flaky.id, ITEM_RETRY_DELAY, 0)
    stored = store.get_invitation(flaky.id)
    assert stored is not None
    assert stored.status is not InvitationStatus.COMPLETED


def test_an_invitation_meeting_a_permanent_error_is_logged_and_left_alone(
    store: SqlStore,
    simulated: Simulated,
    enqueuer: RecordingEnqueuer,
    clock: FakeClock,
    pool: ThreadPoolExecutor,
) -> None:
    fine, broken = completed(simulated, store, 2)
    client = FlakyFor(
        simulated.client,
        broken.pla_tst_id or 0,
        AssessmentNotAllowedError("not allowed", action=10),
    )

    outcomes = run_batch(
        [broken.id, fine.id], store=store, client=client, enqueuer=enqueuer, clock=clock, pool=pool
    )

    assert outcomes[fine.id].result is CompletionResult.COMPLETED
    assert outcomes[broken.id].result is CompletionResult.ERROR
    assert enqueuer.of_kind("completion") == []


def test_a_batch_hands_every_new_event_to_deliver_now_at_once_already_claimed(
    store: SqlStore,
    simulated: Simulated,
    enqueuer: RecordingEnqueuer,
    clock: FakeClock,
    pool: ThreadPoolExecutor,
) -> None:
    invitations = completed(simulated, store, 3)
    handed: list[list[tuple[str, list[DeliveryStatus]]]] = []

    def deliver_now(new: Sequence[tuple[Any, Sequence[Delivery]]]) -> list[str]:
        handed.append([(event.id, [d.status for d in deliveries]) for event, deliveries in new])
        return [d.id for _, deliveries in new for d in deliveries]

    outcomes = run_batch(
        [i.id for i in invitations],
        store=store,
        client=simulated.client,
        enqueuer=enqueuer,
        clock=clock,
        pool=pool,
        deliver_now=deliver_now,
    )

    [call] = handed
    assert sorted(event_id for event_id, _ in call) == sorted(
        o.event_id or "" for o in outcomes.values()
    )
    assert all(statuses == [DeliveryStatus.DELIVERING] * 2 for _, statuses in call)
    assert all(len(o.attempted) == 2 and o.enqueued == () for o in outcomes.values())
    assert enqueuer.of_kind("delivery") == []


def test_act_10_and_the_results_are_asked_side_by_side_for_the_whole_batch(
    store: SqlStore,
    simulated: Simulated,
    enqueuer: RecordingEnqueuer,
    clock: FakeClock,
    pool: ThreadPoolExecutor,
) -> None:
    invitations = completed(simulated, store, 2)
    # Eight acts in all: they pass this barrier only if all are asked at the same time.
    barrier = threading.Barrier(8, timeout=10)

    class Together:
        def __getattr__(self, name: str) -> Any:
            method = getattr(simulated.client, name)

            def waiting(*args: Any, **kwargs: Any) -> Any:
                barrier.wait()
                return method(*args, **kwargs)

            return waiting

    outcomes = run_batch(
        [i.id for i in invitations],
        store=store,
        client=Together(),
        enqueuer=enqueuer,
        clock=clock,
        pool=pool,
    )

    assert {o.result for o in outcomes.values()} == {CompletionResult.COMPLETED}


def test_an_invitation_gone_before_its_event_is_stored_does_not_hold_up_the_others(
    store: SqlStore,
    simulated: Simulated,
    enqueuer: RecordingEnqueuer,
    clock: FakeClock,
    pool: ThreadPoolExecutor,
) -> None:
    fine, gone = completed(simulated, store, 2)

    class ErasedMeanwhile(FlakyFor):
        """Act 4 for `gone` answers, but its invitation row is deleted first (an erasure)."""

        def get_result(
            self, tst_frm_id: int, email: str, pla_tst_id: int | None = None, **kw: Any
        ) -> Any:
            if pla_tst_id == gone.pla_tst_id:
                with store.engine.begin() as connection:
                    connection.exec_driver_sql("DELETE FROM invitations WHERE id = ?", (gone.id,))
            return simulated.client.get_result(tst_frm_id, email, pla_tst_id, **kw)

    client = ErasedMeanwhile(simulated.client, -1, IsogradUnavailableError("unused"))

    outcomes = run_batch(
        [gone.id, fine.id], store=store, client=client, enqueuer=enqueuer, clock=clock, pool=pool
    )

    assert outcomes[fine.id].result is CompletionResult.COMPLETED
    assert outcomes[gone.id].result is CompletionResult.ERROR
    assert store.get_event_by_pla_tst_id(fine.pla_tst_id or 0) is not None
    assert store.get_event_by_pla_tst_id(gone.pla_tst_id or 0) is None
