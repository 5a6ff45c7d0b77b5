"""Tests of the Isograd callback endpoint: token checks, receipts, enqueueing, idempotency."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient
from structlog.testing import capture_logs

from tests.fakes import FakeClock, RecordingEnqueuer
from tests.fixtures.pipeline import EMAIL
from tests.fixtures.web import KEYS, NEW_KEY, OLD_KEY, PUBLIC_URL, edge_settings
from webhooks.app import create_app
from webhooks.receipts import DUPLICATE_WINDOW
from worker.storage.records import InvitationStatus, NewInvitation
from worker.storage.store import SqlStore
from worker.storage.tables import callbacks
from worker.tokens import CallbackKey, callback_url, sign_callback_token


@pytest.fixture
def invitation_id(store: SqlStore) -> str:
    invitation = store.create_invitation(
        NewInvitation(tst_frm_id=101, email=EMAIL, pla_tst_id=4242, first_name="Ada")
    )
    return invitation.id


def path_for(invitation_id: str, keys: tuple[CallbackKey, ...] = KEYS) -> str:
    return callback_url(PUBLIC_URL, keys, invitation_id).removeprefix(PUBLIC_URL)


def receipts(store: SqlStore) -> list[dict[str, Any]]:
    with store.engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(select(callbacks))]


def test_valid_callback_answers_200_and_enqueues_one_completion(
    web: TestClient, invitation_id: str, enqueuer: RecordingEnqueuer
) -> None:
    response = web.get(path_for(invitation_id))

    assert response.status_code == 200
    assert [job.id for job in enqueuer.of_kind("completion")] == [invitation_id]


def test_valid_callback_is_recorded_as_accepted(
    web: TestClient, invitation_id: str, store: SqlStore
) -> None:
    web.get(path_for(invitation_id))

    [receipt] = receipts(store)
    assert receipt["invitation_id"] == invitation_id
    assert receipt["accepted"] is True
    assert receipt["method"] == "GET"


def test_head_callback_is_accepted_too(
    web: TestClient, invitation_id: str, enqueuer: RecordingEnqueuer
) -> None:
    response = web.head(path_for(invitation_id))

    assert response.status_code == 200
    assert len(enqueuer.of_kind("completion")) == 1


def test_token_signed_with_an_older_configured_key_is_accepted(
    web: TestClient, invitation_id: str
) -> None:
    response = web.get(path_for(invitation_id, keys=(OLD_KEY,)))

    assert response.status_code == 200


def forged(invitation_id: str) -> str:
    return sign_callback_token((CallbackKey(NEW_KEY.kid, b"x" * 32),), invitation_id)


def tampered(invitation_id: str) -> str:
    token = sign_callback_token(KEYS, invitation_id)
    kid, _, mac = token.split(".")
    return f"{kid}.{invitation_id}x.{mac}"


def unknown_kid(invitation_id: str) -> str:
    return sign_callback_token((CallbackKey("k9", b"n" * 32),), invitation_id)


@pytest.mark.parametrize(
    ("make_token", "reason"),
    [(forged, "bad_mac"), (tampered, "bad_mac"), (unknown_kid, "unknown_kid")],
)
def test_bad_token_answers_404_enqueues_nothing_and_records_a_rejection(
    web: TestClient,
    invitation_id: str,
    enqueuer: RecordingEnqueuer,
    store: SqlStore,
    make_token: Any,
    reason: str,
) -> None:
    response = web.get(f"/callbacks/isograd/{make_token(invitation_id)}")

    assert response.status_code == 404
    assert enqueuer.jobs == []
    [receipt] = receipts(store)
    assert (receipt["accepted"], receipt["reason"]) == (False, reason)


@pytest.mark.parametrize("token", ["garbage", "a.b", "a.b.c.d", "k2..mac", "k2.inv%20x.mac"])
def test_malformed_token_answers_404_and_enqueues_nothing(
    web: TestClient, enqueuer: RecordingEnqueuer, token: str
) -> None:
    response = web.get(f"/callbacks/isograd/{token}")

    assert response.status_code == 404
    assert enqueuer.jobs == []


def test_rejection_reason_is_logged_not_echoed(web: TestClient, invitation_id: str) -> None:
    with capture_logs() as logs:
        response = web.get(f"/callbacks/isograd/{forged(invitation_id)}")

    assert "bad_mac" not in response.text
    rejected = [entry for entry in logs if entry["event"] == "callback_rejected"]
    assert [entry["reason"] for entry in rejected] == ["bad_mac"]


def test_valid_token_for_an_unknown_invitation_answers_404(
    web: TestClient, enqueuer: RecordingEnqueuer, store: SqlStore
) -> None:
    response = web.get(path_for("inv_never_stored"))

    assert response.status_code == 404
    assert enqueuer.jobs == []
    assert receipts(store)[0]["reason"] == "unknown_invitation"


def test_duplicate_callbacks_within_the_window_enqueue_once(
    web: TestClient, invitation_id: str, enqueuer: RecordingEnqueuer, clock: FakeClock
) -> None:
    first = web.get(path_for(invitation_id))
    clock.advance(DUPLICATE_WINDOW.total_seconds() - 1)
    second = web.get(path_for(invitation_id))

    assert (first.status_code, second.status_code) == (200, 200)
    assert len(enqueuer.of_kind("completion")) == 1


def test_callback_after_the_window_enqueues_again(
    web: TestClient, invitation_id: str, enqueuer: RecordingEnqueuer, clock: FakeClock
) -> None:
    web.get(path_for(invitation_id))
    clock.advance(DUPLICATE_WINDOW.total_seconds() + 1)
    web.get(path_for(invitation_id))

    assert len(enqueuer.of_kind("completion")) == 2


def test_callback_for_a_completed_invitation_answers_200_without_enqueueing(
    web: TestClient, invitation_id: str, enqueuer: RecordingEnqueuer, store: SqlStore
) -> None:
    store.mark_invitation(invitation_id, InvitationStatus.COMPLETED)

    response = web.get(path_for(invitation_id))

    assert response.status_code == 200
    assert enqueuer.jobs == []


def test_unknown_query_parameters_are_ignored_and_their_names_logged(
    web: TestClient, invitation_id: str, enqueuer: RecordingEnqueuer
) -> None:
    with capture_logs() as logs:
        response = web.get(path_for(invitation_id), params={"sid": "abc", "ema": EMAIL})

    assert response.status_code == 200
    assert len(enqueuer.of_kind("completion")) == 1
    ignored = [entry for entry in logs if entry["event"] == "callback_query_ignored"]
    assert [entry["names"] for entry in ignored] == [["ema", "sid"]]
    assert EMAIL not in repr(logs)


def test_one_canonical_line_per_callback_without_the_mac(
    web: TestClient, invitation_id: str
) -> None:
    token = sign_callback_token(KEYS, invitation_id)
    with capture_logs() as logs:
        web.get(f"/callbacks/isograd/{token}")

    [line] = [entry for entry in logs if entry["event"] == "callback_received"]
    assert line["invitation_id"] == invitation_id
    assert line["accepted"] is True
    assert line["reason"] is None
    assert isinstance(line["duration_ms"], float)
    assert token.split(".")[2] not in repr(logs)


class FailingEnqueuer(RecordingEnqueuer):
    def completion(
        self, invitation_id: str, *, delay_seconds: float = 0.0, recheck: int = 0
    ) -> None:
        raise ConnectionError("broker down")


def test_callback_still_answers_200_when_the_broker_is_down(
    runtime: Any, invitation_id: str, store: SqlStore
) -> None:
    runtime.enqueuer = FailingEnqueuer()
    with TestClient(create_app(edge_settings(), runtime=runtime), base_url=PUBLIC_URL) as client:
        response = client.get(path_for(invitation_id))

    assert response.status_code == 200
    assert receipts(store)[0]["accepted"] is True


def test_an_unexpected_error_on_a_callback_logs_no_token(
    runtime: Any, invitation_id: str, store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # E.g. PostgreSQL refusing a NUL character in a query value: a plain 500, not a 404.
    def failing(*args: object, **kwargs: object) -> int:
        raise ValueError("cannot store this receipt")

    monkeypatch.setattr(store, "record_callbacks", failing)
    token = sign_callback_token(KEYS, invitation_id)
    app = create_app(edge_settings(), runtime=runtime)
    with (
        TestClient(app, base_url=PUBLIC_URL, raise_server_exceptions=False) as client,
        capture_logs() as logs,
    ):
        response = client.get(f"/callbacks/isograd/{token}")

    assert response.status_code == 500
    assert [entry["event"] for entry in logs if entry["log_level"] == "error"] == [
        "unhandled_error"
    ]
    assert token.split(".")[2] not in repr(logs)


def test_nul_characters_in_query_parameters_are_dropped_before_storing(
    web: TestClient, invitation_id: str, store: SqlStore
) -> None:
    # PostgreSQL's JSONB refuses \u0000: storing it as sent would turn the callback into a 500.
    response = web.get(path_for(invitation_id), params={"s\x00id": "a\x00b"})

    assert response.status_code == 200
    assert receipts(store)[0]["query"] == {"sid": "ab"}


def test_a_claimed_invitation_id_with_control_characters_is_not_recorded(
    web: TestClient, store: SqlStore
) -> None:
    # PostgreSQL text cannot hold NUL: recording this claim would make the 404 a 500.
    response = web.get("/callbacks/isograd/k2.inv%00x.mac")

    assert response.status_code == 404
    assert receipts(store) == []
