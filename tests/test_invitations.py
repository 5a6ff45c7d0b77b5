"""Tests of worker.invitations: validating requests and creating invitations through Isograd."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine

from tests.fakes import FakeClock
from tests.fixtures.pipeline import EMAIL, EXCEL, Simulated
from worker.errors import IsogradUnavailableError, RetryableError
from worker.invitations import (
    FIRST_CHECK_AFTER,
    InvitationClient,
    InvitationStore,
    Invited,
    invite,
)
from worker.isograd.errors import AssessmentNotAllowedError, NoCreditsError
from worker.isograd.models import (
    AssessmentCreated,
    AssessmentOptions,
    Gender,
    Language,
    NewCandidate,
)
from worker.requests import (
    MAX_CONTEXT_BYTES,
    InvalidRequestError,
    InvitationRequest,
    validate,
)
from worker.storage.records import Invitation, InvitationStatus
from worker.storage.store import SqlStore
from worker.tokens import CallbackKey, verify_callback_token

KEYS = (CallbackKey("k1", b"s" * 32),)
PUBLIC_URL = "https://relay.example"
UNKNOWN_TEST = 999_999


def valid_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "email": "ada@example.com",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "tst_frm_id": 123,
    }
    body.update(overrides)
    return body


def validation_errors(body: object) -> dict[str, str]:
    with pytest.raises(InvalidRequestError) as caught:
        validate(InvitationRequest, body)
    return caught.value.errors


def test_minimal_request_gets_defaults() -> None:
    request = validate(InvitationRequest, valid_body())

    assert request == InvitationRequest(
        email="ada@example.com", first_name="Ada", last_name="Lovelace", tst_frm_id=123
    )
    assert request.gender is Gender.NOT_PROVIDED
    assert request.context == {}


def test_every_optional_field_is_read() -> None:
    request = validate(
        InvitationRequest,
        valid_body(
            gender="female",
            language="en",
            ext_id=42,
            group="sales",
            sub_com_id="7",
            return_url="https://hr.example.com/done",
            context={"teamtailor": {"id": "abc"}},
        ),
    )

    assert request.gender is Gender.FEMALE
    assert request.language is Language.ENGLISH
    assert request.ext_id == "42"
    assert request.group == "sales"
    assert request.sub_com_id == 7
    assert request.return_url == "https://hr.example.com/done"
    assert request.context == {"teamtailor": {"id": "abc"}}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1, Language.FRENCH),
        ("2", Language.ENGLISH),
        ("french", Language.FRENCH),
        ("German", Language.GERMAN),
        ("ar", Language.ARABIC),
    ],
)
def test_language_is_accepted_as_code_name_or_iso_code(value: object, expected: Language) -> None:
    assert validate(InvitationRequest, valid_body(language=value)).language is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1, Gender.MALE),
        ("2", Gender.FEMALE),
        (3, Gender.NOT_PROVIDED),
        ("Female", Gender.FEMALE),
        ("not_provided", Gender.NOT_PROVIDED),
    ],
)
def test_gender_is_accepted_as_isograd_gen_id_or_name(value: object, expected: Gender) -> None:
    assert validate(InvitationRequest, valid_body(gender=value)).gender is expected


def test_missing_required_fields_are_each_reported() -> None:
    errors = validation_errors({})

    assert errors == {
        "email": "is required",
        "first_name": "is required",
        "last_name": "is required",
        "tst_frm_id": "is required",
    }


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("email", "not-an-email"),
        ("email", 12),
        ("first_name", "   "),
        ("last_name", "x" * 256),
        ("tst_frm_id", 0),
        ("tst_frm_id", True),
        ("tst_frm_id", "12a"),
        ("gender", "other"),
        ("gender", 0),
        ("gender", 4),
        ("gender", True),
        ("language", 9),
        ("language", "klingon"),
        ("sub_com_id", -1),
        ("return_url", "javascript:alert(1)"),
        ("return_url", "/relative"),
        ("context", ["not", "an", "object"]),
    ],
)
def test_invalid_field_is_reported_by_name(field: str, value: object) -> None:
    errors = validation_errors(valid_body(**{field: value}))

    assert list(errors) == [field]


def test_context_larger_than_the_limit_is_refused() -> None:
    errors = validation_errors(valid_body(context={"blob": "x" * MAX_CONTEXT_BYTES}))

    assert "context" in errors


def test_unknown_field_is_refused_so_typos_are_caught() -> None:
    errors = validation_errors(valid_body(tst_frm=123))

    assert errors == {"tst_frm": "is not a known field"}


def test_non_object_body_is_refused() -> None:
    assert validation_errors(["email"]) == {"body": "must be a JSON object"}


def test_error_message_does_not_contain_the_email() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        validate(InvitationRequest, valid_body(email="ada@", tst_frm_id=0))

    assert "ada@" not in str(caught.value)
    assert "ada@" not in repr(caught.value.errors)


# -- invite: store first, then Isograd, then attach ------------------------------------------


class ObservedClient:
    """The simulator's client, with hooks around act 8: `on_create` sees the callback URL before
    Isograd is asked; `lose_answers` act 8 answers are dropped after Isograd acted, as a timeout
    on the way back would."""

    def __init__(
        self,
        client: InvitationClient,
        *,
        on_create: Any = None,
        lose_answers: int = 0,
    ) -> None:
        self._client = client
        self._on_create = on_create
        self._lose_answers = lose_answers
        self.lost: list[AssessmentCreated] = []

    def create_candidate_and_add_test(
        self,
        candidate: NewCandidate,
        tst_frm_id: int,
        options: AssessmentOptions | None = None,
        *,
        sub_com_id: int | None = None,
    ) -> AssessmentCreated:
        if self._on_create is not None:
            self._on_create(options)
        created = self._client.create_candidate_and_add_test(
            candidate, tst_frm_id, options, sub_com_id=sub_com_id
        )
        if self._lose_answers > 0:
            self._lose_answers -= 1
            self.lost.append(created)
            raise IsogradUnavailableError("read timeout", action=8)
        return created

    def add_test(
        self,
        email: str,
        tst_frm_id: int,
        options: AssessmentOptions | None = None,
        *,
        force_new: bool = False,
        sub_com_id: int | None = None,
    ) -> AssessmentCreated:
        return self._client.add_test(
            email, tst_frm_id, options, force_new=force_new, sub_com_id=sub_com_id
        )


class AttachFailingStore(SqlStore):
    """A real store whose database goes away for the first `failures` attach_assessment calls."""

    def __init__(self, engine: Engine, failures: int = 1) -> None:
        super().__init__(engine)
        self.failures = failures

    def attach_assessment(
        self,
        invitation_id: str,
        *,
        pla_tst_id: int,
        can_id: int | None = None,
        test_url: str | None = None,
    ) -> Invitation:
        if self.failures > 0:
            self.failures -= 1
            raise RetryableError("database unavailable: OperationalError")
        return super().attach_assessment(
            invitation_id, pla_tst_id=pla_tst_id, can_id=can_id, test_url=test_url
        )


def request(**overrides: Any) -> InvitationRequest:
    return validate(
        InvitationRequest, valid_body(**{"email": EMAIL, "tst_frm_id": EXCEL, **overrides})
    )


def invite_with(
    client: InvitationClient,
    store: InvitationStore,
    clock: FakeClock,
    key: str | None = None,
    **overrides: Any,
) -> Invited:
    return invite(
        request(**overrides),
        client=client,
        store=store,
        callback_keys=KEYS,
        public_url=PUBLIC_URL,
        now=clock(),
        idempotency_key=key,
    )


def simulator_tests(simulated: Simulated) -> list[dict[str, Any]]:
    tests: list[dict[str, Any]] = simulated.control.get("/_simulator/state").json()["tests"]
    return tests


def set_credits(simulated: Simulated, credits: int) -> None:
    simulated.control.put(
        "/_simulator/credits", json={"sub_com_id": None, "credits": {"Assessment": credits}}
    ).raise_for_status()


def test_invitation_is_stored_before_isograd_is_asked_for_the_test(
    simulated: Simulated, store: SqlStore, clock: FakeClock
) -> None:
    seen: list[Invitation | None] = []

    def look_up(options: AssessmentOptions) -> None:
        assert options.callback_url is not None
        token = options.callback_url.rsplit("/", 1)[1]
        seen.append(store.get_invitation(verify_callback_token(KEYS, token)))

    invited = invite_with(ObservedClient(simulated.client, on_create=look_up), store, clock)

    assert len(seen) == 1
    assert seen[0] is not None
    assert seen[0].id == invited.invitation.id
    assert seen[0].pla_tst_id is None
    assert seen[0].status is InvitationStatus.PENDING


def test_new_invitation_is_created_with_isograds_test_attached(
    simulated: Simulated, store: SqlStore, clock: FakeClock
) -> None:
    invited = invite_with(simulated.client, store, clock)

    assert invited.created is True
    stored = store.get_invitation(invited.invitation.id)
    assert stored is not None
    assert stored.pla_tst_id == simulator_tests(simulated)[0]["pla_tst_id"]
    assert stored.can_id is not None
    assert stored.test_url
    assert stored.status is InvitationStatus.PENDING


def test_permanent_isograd_error_leaves_the_invitation_failed_and_visible(
    simulated: Simulated, store: SqlStore, clock: FakeClock
) -> None:
    with pytest.raises(AssessmentNotAllowedError):
        invite_with(simulated.client, store, clock, key="k-106", tst_frm_id=UNKNOWN_TEST)

    stored = store.get_invitation_by_idempotency_key("k-106")
    assert stored is not None
    assert stored.status is InvitationStatus.FAILED
    assert stored.pla_tst_id is None
    assert stored.next_check_at is None


def test_transient_isograd_error_leaves_the_invitation_pending_without_a_test(
    simulated: Simulated, store: SqlStore, clock: FakeClock
) -> None:
    simulated.faults(error_rate=1.0)

    with pytest.raises(IsogradUnavailableError):
        invite_with(simulated.client, store, clock, key="k-503")

    stored = store.get_invitation_by_idempotency_key("k-503")
    assert stored is not None
    assert stored.status is InvitationStatus.PENDING
    assert stored.pla_tst_id is None


def test_retry_after_a_transient_error_resumes_the_same_invitation(
    simulated: Simulated, store: SqlStore, clock: FakeClock
) -> None:
    simulated.faults(error_rate=1.0)
    with pytest.raises(IsogradUnavailableError):
        invite_with(simulated.client, store, clock, key="k-retry")
    first = store.get_invitation_by_idempotency_key("k-retry")
    simulated.faults(error_rate=0.0)

    invited = invite_with(simulated.client, store, clock, key="k-retry")

    assert first is not None
    assert invited.created is True
    assert invited.invitation.id == first.id
    assert invited.invitation.pla_tst_id is not None


def test_retry_after_a_lost_act_8_answer_reuses_the_test_isograd_created(
    simulated: Simulated, store: SqlStore, clock: FakeClock
) -> None:
    losing = ObservedClient(simulated.client, lose_answers=1)
    with pytest.raises(IsogradUnavailableError):
        invite_with(losing, store, clock, key="k-lost")

    invited = invite_with(losing, store, clock, key="k-lost")

    assert invited.invitation.pla_tst_id == losing.lost[0].pla_tst_id
    assert len(simulator_tests(simulated)) == 1
    assert simulated.calls(2) == 1


def test_test_reused_after_a_lost_answer_keeps_calling_back_the_same_invitation(
    simulated: Simulated, store: SqlStore, clock: FakeClock
) -> None:
    losing = ObservedClient(simulated.client, lose_answers=1)
    with pytest.raises(IsogradUnavailableError):
        invite_with(losing, store, clock, key="k-lost")

    invited = invite_with(losing, store, clock, key="k-lost")

    callback = simulator_tests(simulated)[0]["options"]["cal_bac_pag"]
    assert verify_callback_token(KEYS, callback.rsplit("/", 1)[1]) == invited.invitation.id


def test_retry_after_the_database_failed_attaches_the_test_isograd_created(
    simulated: Simulated, store: SqlStore, clock: FakeClock
) -> None:
    flaky = AttachFailingStore(store.engine)
    with pytest.raises(RetryableError):
        invite_with(simulated.client, flaky, clock, key="k-db")
    orphan = store.get_invitation_by_idempotency_key("k-db")

    invited = invite_with(simulated.client, flaky, clock, key="k-db")

    assert orphan is not None
    assert orphan.pla_tst_id is None
    assert invited.invitation.id == orphan.id
    assert [test["pla_tst_id"] for test in simulator_tests(simulated)] == [
        invited.invitation.pla_tst_id
    ]


def test_retry_after_a_permanent_error_revives_the_invitation_once_isograd_accepts(
    simulated: Simulated, store: SqlStore, clock: FakeClock
) -> None:
    set_credits(simulated, 0)
    with pytest.raises(NoCreditsError):
        invite_with(simulated.client, store, clock, key="k-301")
    set_credits(simulated, 5)

    invited = invite_with(simulated.client, store, clock, key="k-301")

    assert invited.created is True
    assert invited.invitation.status is InvitationStatus.PENDING
    assert invited.invitation.pla_tst_id is not None
    assert invited.invitation.idempotency_key == "k-301"
    assert invited.invitation.next_check_at == clock() + FIRST_CHECK_AFTER


def test_replay_with_the_same_key_returns_the_invitation_without_asking_isograd(
    simulated: Simulated, store: SqlStore, clock: FakeClock
) -> None:
    first = invite_with(simulated.client, store, clock, key="k-once")

    again = invite_with(simulated.client, store, clock, key="k-once")

    assert again == Invited(first.invitation, created=False)
    assert simulated.calls(8) == 1


def test_unfinished_test_held_by_another_invitation_supersedes_the_new_one(
    simulated: Simulated, store: SqlStore, clock: FakeClock
) -> None:
    first = invite_with(simulated.client, store, clock, key="k-first")

    second = invite_with(simulated.client, store, clock, key="k-second")

    assert second == Invited(first.invitation, created=False)
    superseded = store.get_invitation_by_idempotency_key("k-second")
    assert superseded is not None
    assert superseded.status is InvitationStatus.FAILED
