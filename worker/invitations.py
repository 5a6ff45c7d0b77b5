"""Invitations: asking Isograd to give a candidate a test whose completion calls us back."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from worker.errors import PermanentError
from worker.isograd.models import Gender, Language

MAX_CONTEXT_BYTES = 16 * 1024
MAX_TEXT_LENGTH = 255
MAX_URL_LENGTH = 2048

# A pragmatic shape check (one @, a dotted domain, no spaces); Isograd decides the rest (201).
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

_GENDERS = {"male": Gender.MALE, "female": Gender.FEMALE, "not_provided": Gender.NOT_PROVIDED}
_LANGUAGES: dict[str, Language] = {
    **{language.name.lower(): language for language in Language},
    # ISO 639-1 codes of the languages Isograd lists in its appendix "Language codes".
    "fr": Language.FRENCH,
    "en": Language.ENGLISH,
    "de": Language.GERMAN,
    "nl": Language.DUTCH,
    "es": Language.SPANISH,
    "it": Language.ITALIAN,
    "el": Language.GREEK,
    "ar": Language.ARABIC,
}
_FIELDS = frozenset(
    {
        "email",
        "first_name",
        "last_name",
        "tst_frm_id",
        "gender",
        "language",
        "ext_id",
        "group",
        "sub_com_id",
        "return_url",
        "context",
    }
)


class InvalidInvitationError(PermanentError):
    """The invitation request is invalid; `errors` maps each bad field to a message."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        self.errors = dict(errors)
        super().__init__(f"invalid invitation: {', '.join(sorted(self.errors))}")


@dataclass(frozen=True, slots=True)
class InvitationRequest:
    """A validated request to invite one candidate to one test.

    `group` becomes Isograd's `ext_dep_id`, `return_url` its `rtn_pag`; `context` is a JSON
    object passed through to the delivered event.
    """

    email: str
    first_name: str
    last_name: str
    tst_frm_id: int
    gender: Gender = Gender.NOT_PROVIDED
    language: Language | None = None
    ext_id: str | None = None
    group: str | None = None
    sub_com_id: int | None = None
    return_url: str | None = None
    context: Mapping[str, Any] = field(default_factory=dict)


def validate_invitation_request(data: object) -> InvitationRequest:
    """Build an InvitationRequest from decoded JSON; raise InvalidInvitationError listing every
    problem at once."""
    if not isinstance(data, Mapping):
        raise InvalidInvitationError({"body": "must be a JSON object"})
    errors: dict[str, str] = {}

    def take(name: str, parse: Any, *, required: bool = False) -> Any:
        value = data.get(name)
        if value is None:
            if required:
                errors[name] = "is required"
            return None
        try:
            return parse(value)
        except ValueError as exc:
            errors[name] = str(exc)
            return None

    for name in sorted(set(data) - _FIELDS):
        errors[str(name)] = "is not a known field"
    email = take("email", _email, required=True)
    first_name = take("first_name", _text, required=True)
    last_name = take("last_name", _text, required=True)
    tst_frm_id = take("tst_frm_id", _positive_int, required=True)
    gender = take("gender", _gender)
    language = take("language", _language)
    ext_id = take("ext_id", _identifier)
    group = take("group", _identifier)
    sub_com_id = take("sub_com_id", _positive_int)
    return_url = take("return_url", _url)
    context = take("context", _context)
    if errors:
        raise InvalidInvitationError(errors)
    return InvitationRequest(
        email=email,
        first_name=first_name,
        last_name=last_name,
        tst_frm_id=tst_frm_id,
        gender=gender or Gender.NOT_PROVIDED,
        language=language,
        ext_id=ext_id,
        group=group,
        sub_com_id=sub_com_id,
        return_url=return_url,
        context=context or {},
    )


def _text(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a non-empty string")
    if len(value) > MAX_TEXT_LENGTH:
        raise ValueError(f"must be at most {MAX_TEXT_LENGTH} characters")
    return value.strip()


def _email(value: object) -> str:
    text = _text(value)
    if not _EMAIL.match(text):
        raise ValueError("must be an email address")
    return text


def _positive_int(value: object) -> int:
    # Strings of digits are accepted because spreadsheets and forms send numbers as text.
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("must be a positive integer")
    if isinstance(value, str) and not value.strip().isdigit():
        raise ValueError("must be a positive integer")
    number = int(value)
    if number <= 0:
        raise ValueError("must be a positive integer")
    return number


def _identifier(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return _text(value)


def _gender(value: object) -> Gender:
    gender = _GENDERS.get(value.strip().lower()) if isinstance(value, str) else None
    if gender is None:
        raise ValueError("must be one of: male, female, not_provided")
    return gender


def _language(value: object) -> Language:
    if isinstance(value, int) and not isinstance(value, bool):
        if value in Language._value2member_map_:
            return Language(value)
    elif isinstance(value, str) and value.strip().lower() in _LANGUAGES:
        return _LANGUAGES[value.strip().lower()]
    names = ", ".join(language.name.lower() for language in Language)
    raise ValueError(f"must be an Isograd language code (1-8), an ISO code or one of: {names}")


def _url(value: object) -> str:
    text = value.strip() if isinstance(value, str) and len(value) <= MAX_URL_LENGTH else ""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"must be an absolute http(s) URL of at most {MAX_URL_LENGTH} characters")
    return text


def _context(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError("must be a JSON object")
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_CONTEXT_BYTES:
        raise ValueError(f"must be at most {MAX_CONTEXT_BYTES} bytes of JSON")
    return value
