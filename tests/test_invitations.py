"""Tests of worker.invitations: validating requests and creating invitations through Isograd."""

from __future__ import annotations

from typing import Any

import pytest

from worker.invitations import (
    MAX_CONTEXT_BYTES,
    InvalidInvitationError,
    InvitationRequest,
    validate_invitation_request,
)
from worker.isograd.models import Gender, Language


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
    with pytest.raises(InvalidInvitationError) as caught:
        validate_invitation_request(body)
    return caught.value.errors


def test_minimal_request_gets_defaults() -> None:
    request = validate_invitation_request(valid_body())

    assert request == InvitationRequest(
        email="ada@example.com", first_name="Ada", last_name="Lovelace", tst_frm_id=123
    )
    assert request.gender is Gender.NOT_PROVIDED
    assert request.context == {}


def test_every_optional_field_is_read() -> None:
    request = validate_invitation_request(
        valid_body(
            gender="female",
            language="en",
            ext_id=42,
            group="sales",
            sub_com_id="7",
            return_url="https://hr.example.com/done",
            context={"teamtailor": {"id": "abc"}},
        )
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
        ("french", Language.FRENCH),
        ("German", Language.GERMAN),
        ("ar", Language.ARABIC),
    ],
)
def test_language_is_accepted_as_code_name_or_iso_code(value: object, expected: Language) -> None:
    assert validate_invitation_request(valid_body(language=value)).language is expected


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
    with pytest.raises(InvalidInvitationError) as caught:
        validate_invitation_request(valid_body(email="ada@", tst_frm_id=0))

    assert "ada@" not in str(caught.value)
    assert "ada@" not in repr(caught.value.errors)
