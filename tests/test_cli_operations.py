"""Tests of the operators' commands: invitations, events, replay --since/--until, subscriptions
and erase, run through `isograd-relay`'s own entry point on a SQLite database."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.fixtures.simulator import ServedSimulator
from tests.harness.processes import free_port
from tests.test_cli import candidate_flags, database, environment, isograd, migrated, store
from worker import cli
from worker.storage.records import DeliveryStatus, InvitationStatus, NewInvitation
from worker.storage.store import SqlStore

# The CLI's fixtures live in tests/test_cli.py; imported so pytest finds them here by name.
__all__ = ["database", "environment", "isograd", "migrated", "store"]
pytestmark = pytest.mark.usefixtures("restore_logging")

EMAIL = "ada@example.org"
SECRET = "whsec_" + base64.b64encode(b"s" * 32).decode()
T0 = datetime(2026, 12, 3, 22, 0, tzinfo=UTC)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = cli.main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def invite(store: SqlStore, pla_tst_id: int, at: datetime, **changes: Any) -> str:
    values: dict[str, Any] = {
        "tst_frm_id": 101,
        "email": EMAIL,
        "first_name": "Ada",
        "pla_tst_id": pla_tst_id,
        **changes,
    }
    return store.create_invitation(NewInvitation(**values), at).id


def failed_event(store: SqlStore, pla_tst_id: int, at: datetime, name: str = "hr") -> str:
    invitation_id = invite(store, pla_tst_id, at)
    payload = {"data": {"candidate": {"email": EMAIL}, "test": {"tst_frm_id": 101}}}
    _, [delivery], _ = store.create_event(
        f"evt_{pla_tst_id}", invitation_id, pla_tst_id, "assessment.completed", payload, [name], at
    )
    store.mark_failed(delivery.id, "HTTP 503", at)
    return delivery.id


# -- invitations, events ------------------------------------------------------------------------


def test_invitations_are_listed_as_a_table_filtered_with_their_age(
    store: SqlStore, capsys: pytest.CaptureFixture[str]
) -> None:
    waiting = invite(store, 1, datetime.now(UTC) - timedelta(days=2, hours=3))
    done = invite(store, 2, datetime.now(UTC))
    store.mark_invitation(done, InvitationStatus.COMPLETED)

    status, out, _ = run(capsys, "invitations", "--status", "pending")

    lines = out.splitlines()
    assert status == 0
    assert lines[0].split()[:3] == ["ID", "STATUS", "EMAIL"]
    assert len(lines) == 2
    assert lines[1].startswith(waiting)
    assert lines[1].rstrip().endswith("2d 3h")


def test_invitations_are_paged_with_the_printed_cursor(
    store: SqlStore, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = [invite(store, number, T0 + timedelta(minutes=number)) for number in range(1, 4)]

    _, first, _ = run(capsys, "invitations", "--limit", "2", "--json")
    cursor = json.loads(first)["next_cursor"]
    _, second, _ = run(capsys, "invitations", "--limit", "2", "--cursor", cursor, "--json")
    _, table, _ = run(capsys, "invitations", "--limit", "2")

    listed = [row["id"] for page in (first, second) for row in json.loads(page)["invitations"]]
    assert listed == ids[::-1]
    assert json.loads(second)["next_cursor"] is None
    assert table.splitlines()[-1] == f"more: add --cursor {cursor}"


def test_invalid_filters_are_each_named_with_exit_status_2(
    store: SqlStore, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(
        capsys, "events", "--since", "yesterday", "--pla-tst-id", "x", "--cursor", "forged"
    )

    assert status == 2
    assert out == ""
    assert "--since: must be an ISO 8601" in err
    assert "--pla-tst-id: must be a positive integer" in err


def test_events_are_listed_with_each_delivery_status(
    store: SqlStore, capsys: pytest.CaptureFixture[str]
) -> None:
    failed_event(store, 7, T0)

    status, out, _ = run(capsys, "events", "--email", EMAIL.upper(), "--status", "failed")
    _, none, _ = run(capsys, "events", "--status", "delivered")

    assert status == 0
    [header, row] = out.splitlines()
    assert header.split()[0] == "ID"
    assert row.split()[0] == "evt_7"
    assert row.rstrip().endswith("hr:failed")
    assert none.strip() == "no events"


# -- replay --since --until ----------------------------------------------------------------------


def test_a_replay_by_time_range_requeues_the_outage_s_failures_once(
    store: SqlStore, capsys: pytest.CaptureFixture[str]
) -> None:
    before = failed_event(store, 1, T0 - timedelta(hours=3))
    during = [failed_event(store, n, T0 + timedelta(minutes=n)) for n in (2, 3)]
    other = failed_event(store, 4, T0 + timedelta(minutes=5), name="slack")
    argv = ("replay", "--subscription", "hr", "--since", "2026-12-03T22:00:00Z")

    status, out, _ = run(capsys, *argv, "--until", "2026-12-04")
    again, out_again, _ = run(capsys, *argv, "--until", "2026-12-04")

    assert status == again == 0
    assert "2 of 2 matching deliveries requeued" in out
    assert "0 of 0 matching deliveries requeued" in out_again
    statuses = {}
    for delivery_id in (before, *during, other):
        delivery = store.get_delivery(delivery_id)
        assert delivery is not None
        statuses[delivery_id] = delivery.status
    assert statuses == {
        before: DeliveryStatus.FAILED,
        during[0]: DeliveryStatus.PENDING,
        during[1]: DeliveryStatus.PENDING,
        other: DeliveryStatus.FAILED,
    }


def test_a_replay_by_time_range_refuses_bad_times_and_ids(
    store: SqlStore, capsys: pytest.CaptureFixture[str]
) -> None:
    bad_time, _, err = run(capsys, "replay", "--since", "2026-12-04", "--until", "2026-12-03")
    with_ids, _, err_ids = run(capsys, "replay", "dlv_x", "--since", "2026-12-03")

    assert bad_time == 2
    assert "--until: must be after created_from" in err
    assert with_ids == 2
    assert "not by id" in err_ids


# -- subscriptions -------------------------------------------------------------------------------


@pytest.fixture
def configured(environment: pytest.MonkeyPatch, tmp_path: Path, store: SqlStore) -> SqlStore:
    (tmp_path / "relay.toml").write_text(
        '[[subscriptions]]\nname = "hr"\nkind = "webhook"\n'
        'url = "https://hr.example.com/hooks"\nsecrets = ["env:HR_SECRET"]\n'
    )
    environment.setenv("HR_SECRET", SECRET)
    return store


def test_subscriptions_are_listed_disabled_and_enabled(
    configured: SqlStore, capsys: pytest.CaptureFixture[str]
) -> None:
    failed_event(configured, 1, T0)

    _, listed, _ = run(capsys, "subscriptions")
    disabled, _, _ = run(capsys, "subscriptions", "disable", "hr", "--reason", "HR migration")
    _, shown, _ = run(capsys, "subscriptions", "--json")
    enabled, _, _ = run(capsys, "subscriptions", "enable", "hr")

    assert listed.splitlines()[1].split()[:3] == ["hr", "webhook", "active"]
    assert disabled == enabled == 0
    [entry] = json.loads(shown)
    assert (entry["active"], entry["disabled_reason"]) == (False, "HR migration")
    assert entry["deliveries"]["failed"] == 1
    assert not configured.subscription_state("hr").disabled


def test_switching_an_unknown_subscription_fails_and_stores_nothing(
    configured: SqlStore, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = run(capsys, "subscriptions", "disable", "crm")

    assert status == 1
    assert "no subscription named 'crm'" in err
    assert configured.list_subscription_states() == []


# -- erase -----------------------------------------------------------------------------------------


def test_erase_blanks_the_candidate_and_prints_the_counts_never_the_email(
    store: SqlStore, capsys: pytest.CaptureFixture[str]
) -> None:
    failed_event(store, 1, T0)

    status, out, err = run(capsys, "erase", "--email", EMAIL, "--by", "dpo")

    assert status == 0
    assert "invitations blanked:  1" in out
    assert "deliveries cancelled: 0" in out  # the only delivery had failed already
    assert EMAIL not in out + err
    [record] = store.list_erasures()
    assert record.requested_by == "dpo"
    assert store.list_invitations().items[0].email is None


def test_erase_with_isograd_anonymizes_the_candidate_there(
    isograd: ServedSimulator, migrated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    invited, _, _ = run(capsys, "invite", *candidate_flags(**{"--email": EMAIL}))

    status, out, _ = run(capsys, "erase", "--email", EMAIL, "--isograd")

    assert invited == 0
    assert status == 0
    assert "isograd (act 12):     anonymized" in out
    state = httpx2.get(f"{isograd.url}/_simulator/state").json()
    assert [candidate["anonymized"] for candidate in state["candidates"]] == [True]


def test_erase_with_isograd_down_keeps_the_local_erasure_and_exits_1(
    environment: pytest.MonkeyPatch, store: SqlStore, capsys: pytest.CaptureFixture[str]
) -> None:
    invite(store, 1, T0)
    environment.setenv("ISOGRAD_API_URL", f"http://127.0.0.1:{free_port()}/api/usage")
    environment.setenv("ISOGRAD_AUTH_URL", f"http://127.0.0.1:{free_port()}/oauth2/token")
    environment.setenv("HTTP_TIMEOUT", "2")

    status, out, _ = run(capsys, "erase", "--email", EMAIL, "--isograd")

    assert status == 1
    assert "run the same command again" in out
    assert store.list_invitations().items[0].email is None


def test_erase_refuses_what_is_not_an_email(
    store: SqlStore, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = run(capsys, "erase", "--email", "ada")

    assert status == 2
    assert "--email: must be an email address" in err
    assert store.list_erasures() == []
