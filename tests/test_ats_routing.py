"""ATS sinks only get the invitations their vendor ordered: other completions make no delivery
for them (a failed one would count towards disabling the subscription)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fakes import FakeClock, RecordingEnqueuer
from tests.fixtures.pipeline import Simulated, invite, subscription
from worker.jobs.completions import CompletionResult, process_completion
from worker.sinks.kombo import KomboPackage, KomboTarget
from worker.sinks.teamtailor import TeamtailorTarget
from worker.storage.store import SqlStore
from worker.subscriptions import Subscription

TEAMTAILOR = Subscription(
    name="tt",
    kind="teamtailor",
    target=TeamtailorTarget(api_key="a" * 20, provider_key="p" * 20, tst_frm_id=101),
)
KOMBO = Subscription(
    name="kombo",
    kind="kombo",
    target=KomboTarget(
        api_key="k" * 20,
        integration_id="workday:X",
        webhook_secret="s" * 20,
        packages=(KomboPackage("tosa-excel", 101, "TOSA Excel"),),
    ),
)
SUBSCRIPTIONS = (subscription("hr"), TEAMTAILOR, KOMBO)


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        ({}, ["hr"]),
        ({"ats_id": "42"}, ["hr"]),
        ({"teamtailor": {"partner_result_id": "r1", "subscription": "tt"}}, ["hr", "tt"]),
        ({"teamtailor": {"partner_result_id": "r1", "subscription": "other"}}, ["hr"]),
        ({"teamtailor": {"partner_result_id": "r1"}}, ["hr", "tt"]),
        ({"kombo": {"order_id": "o1", "subscription": "kombo"}}, ["hr", "kombo"]),
        ({"kombo": {"subscription": "kombo"}}, ["hr"]),
    ],
)
def test_a_completion_reaches_an_ats_sink_only_when_ordered_through_it(
    store: SqlStore,
    simulated: Simulated,
    enqueuer: RecordingEnqueuer,
    clock: FakeClock,
    context: dict[str, Any],
    expected: list[str],
) -> None:
    invitation = invite(simulated, store, context=context)
    simulated.move(invitation.pla_tst_id or 0, "complete", value=550, max_value=1000)

    outcome = process_completion(
        invitation.id,
        store=store,
        client=simulated.client,
        subscriptions=SUBSCRIPTIONS,
        enqueuer=enqueuer,
        clock=clock,
    )

    assert outcome.result is CompletionResult.COMPLETED
    deliveries = store.list_deliveries(event_id=outcome.event_id)
    assert sorted(d.subscription for d in deliveries) == expected


def test_without_a_context_every_kind_matches_on_filters_alone() -> None:
    assert TEAMTAILOR.matches("assessment.completed", 101, None)
    assert not TEAMTAILOR.matches("assessment.completed", 101, None, context={})
