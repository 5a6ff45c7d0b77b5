"""The fault suite (issue 4 §6): 200 completions through real processes while callbacks are
dropped and repeated, Isograd and the receiver fail, a worker is SIGKILLed and Redis restarts.

One run for the module (tests/harness/faults.py); the tests below read its report. Run with
`-s` to see the summary; its JSON is written next to the processes' logs (path printed). The
recovery timings the suite shortens are tested first, without processes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness.faults import (
    TARGETS,
    FaultPlan,
    FaultReport,
    redis_server_available,
    run_fault_suite,
)
from worker.errors import ConfigurationError
from worker.jobs.actors import DELIVERY_TIME_LIMIT_MS
from worker.settings import DELIVER_TIME_LIMIT_SECONDS, Settings

CI_COMPLETIONS = 200


# -- the timings ----------------------------------------------------------------------------


def test_recovery_timings_default_to_the_production_values() -> None:
    settings = Settings.from_env({}, config_path=None)

    assert (
        settings.reconcile_first_check_seconds,
        settings.reconcile_check_interval_seconds,
        settings.reconcile_completed_recheck_seconds,
        settings.reconcile_interval_seconds,
        settings.sweep_interval_seconds,
        settings.sweep_grace_seconds,
        settings.delivery_lease_seconds,
    ) == (3600, 300, 600, 60, 60, 300, 600)


def test_recovery_timings_are_read_from_the_environment() -> None:
    env = {
        "RECONCILE_FIRST_CHECK_SECONDS": "5",
        "RECONCILE_CHECK_INTERVAL_SECONDS": "6",
        "RECONCILE_COMPLETED_RECHECK_SECONDS": "7",
        "RECONCILE_INTERVAL_SECONDS": "1.5",
        "SWEEP_INTERVAL_SECONDS": "2",
        "SWEEP_GRACE_SECONDS": "3",
        "DELIVERY_LEASE_SECONDS": "400",
    }

    settings = Settings.from_env(env)

    assert (
        settings.reconcile_first_check_seconds,
        settings.reconcile_check_interval_seconds,
        settings.reconcile_completed_recheck_seconds,
        settings.reconcile_interval_seconds,
        settings.sweep_interval_seconds,
        settings.sweep_grace_seconds,
        settings.delivery_lease_seconds,
    ) == (5, 6, 7, 1.5, 2, 3, 400)


def test_a_timing_that_is_not_a_positive_number_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({"SWEEP_GRACE_SECONDS": "0", "RECONCILE_INTERVAL_SECONDS": "soon"})

    assert caught.value.problems == [
        "RECONCILE_INTERVAL_SECONDS: must be a number > 0",
        "SWEEP_GRACE_SECONDS: must be a number > 0",
    ]


def test_a_lease_not_longer_than_a_subscription_timeout_is_a_configuration_error(
    tmp_path: Path,
) -> None:
    config = tmp_path / "relay.toml"
    config.write_text(
        '[[subscriptions]]\nname = "a"\nkind = "webhook"\nurl = "https://example.org/h"\n'
        'secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]\ntimeout_seconds = 30\n',
        encoding="utf-8",
    )

    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({"DELIVERY_LEASE_SECONDS": "30"}, config_path=str(config))

    assert caught.value.problems == [
        "DELIVERY_LEASE_SECONDS: must exceed every subscription's timeout_seconds (30)"
    ]


def test_a_lease_below_the_deliver_time_limit_is_allowed_with_a_notice(tmp_path: Path) -> None:
    config = tmp_path / "relay.toml"
    config.write_text("", encoding="utf-8")

    settings = Settings.from_env({"DELIVERY_LEASE_SECONDS": "15"}, config_path=str(config))

    assert settings.delivery_lease_seconds == 15
    assert any("below the deliver time limit" in notice for notice in settings.notices)


def test_the_settings_know_the_deliver_actors_time_limit() -> None:
    assert DELIVER_TIME_LIMIT_SECONDS * 1000 == DELIVERY_TIME_LIMIT_MS


# -- the suite -------------------------------------------------------------------------------

PLAN = FaultPlan(completions=CI_COMPLETIONS)


@pytest.fixture(scope="module")
def report(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> FaultReport:
    # redis_url only skips on a laptop without Redis (and fails on CI): the suite runs a
    # redis-server of its own, so it can restart it.
    if not redis_server_available():
        pytest.skip("redis-server is not installed")
    result = run_fault_suite(tmp_path_factory.mktemp("faults"), PLAN)
    print("\n".join(["", "fault suite:", *result.lines(), f"summary: {result.summary_path}"]))
    return result


@pytest.mark.e2e
@pytest.mark.timeout(PLAN.deadline_seconds + 60)
def test_every_completion_is_delivered_before_the_deadline(report: FaultReport) -> None:
    assert report.drained, "\n".join(report.missing)


@pytest.mark.e2e
def test_every_completion_gives_exactly_one_event(report: FaultReport) -> None:
    assert (report.events, report.distinct_event_tests) == (CI_COMPLETIONS, CI_COMPLETIONS)


@pytest.mark.e2e
def test_every_event_is_delivered_to_every_subscription(report: FaultReport) -> None:
    assert report.deliveries == report.deliveries_delivered == CI_COMPLETIONS * len(TARGETS)


@pytest.mark.e2e
def test_every_receiver_accepted_a_webhook_for_every_completion(report: FaultReport) -> None:
    assert report.accepted_tests == {target.path: CI_COMPLETIONS for target in TARGETS}


@pytest.mark.e2e
def test_duplicates_at_the_receivers_come_only_from_sends_a_killed_worker_never_recorded(
    report: FaultReport,
) -> None:
    # At least once: a worker SIGKILLed after the receiver's 2xx and before recording the attempt
    # leaves the delivery `delivering`; once its lease expires it is sent again (by the
    # redelivered message or the sweeper). Every other send is recorded in SQL, so a duplicate
    # without an unrecorded send would be the relay delivering twice. One worker is killed: at
    # most its threads' sends were in flight.
    assert report.duplicates_seen <= report.unrecorded_sends <= PLAN.worker_threads


@pytest.mark.e2e
def test_every_forged_callback_is_refused_and_only_the_unthrottled_ones_are_stored(
    report: FaultReport,
) -> None:
    assert report.forged_sent > 0
    assert report.forged_rejected + report.forged_throttled == report.forged_sent
    assert report.forged_receipts == report.forged_rejected


@pytest.mark.e2e
def test_dropped_callbacks_were_recovered_by_the_reconcilers_act_10_checks(
    report: FaultReport,
) -> None:
    assert report.simulator["callbacks_dropped"] > 0
    assert report.reconciler_found > 0


@pytest.mark.e2e
def test_every_fault_was_injected(report: FaultReport) -> None:
    answers = report.receiver_answers
    assert report.simulator["injected_errors"] > 0
    assert sum(n for status, n in answers.items() if status.startswith("5")) > 0
    assert answers.get("429", 0) > 0
    assert report.worker_killed_at
    assert report.worker_restarted_at
    assert report.redis_stopped_at
    assert report.redis_started_at
    assert report.worker_killed_at < report.redis_stopped_at < report.completions_done_at
