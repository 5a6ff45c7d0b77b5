"""Request fields: reading a decoded JSON object (API body, CLI flags, CSV row) into typed values.

One parser per kind of value (each raises ValueError with a message for the caller), and a
FieldReader that collects every problem at once, keyed by field name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

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

T = TypeVar("T")


class FieldReader:
    """Reads the fields of `data`, collecting every problem in `errors` (field → message).

    A `data` that is not an object gives the single problem "body"; unknown fields are problems
    too (a typo must not be silently ignored).
    """

    def __init__(self, data: object, known: frozenset[str]) -> None:
        self.errors: dict[str, str] = {}
        self._data: Mapping[Any, Any] = data if isinstance(data, Mapping) else {}
        if not isinstance(data, Mapping):
            self.errors["body"] = "must be a JSON object"
            return
        for name in sorted(set(data) - known, key=str):
            self.errors[str(name)] = "is not a known field"

    def take(self, name: str, parse: Callable[[object], T], *, required: bool = False) -> T | None:
        """The parsed value of `name`, or None when absent or invalid (the problem is noted)."""
        value = self._data.get(name)
        if value is None:
            if required and "body" not in self.errors:
                self.errors[name] = "is required"
            return None
        try:
            return parse(value)
        except ValueError as exc:
            self.errors[name] = str(exc)
            return None


def parse_text(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a non-empty string")
    if len(value) > MAX_TEXT_LENGTH:
        raise ValueError(f"must be at most {MAX_TEXT_LENGTH} characters")
    return value.strip()


def parse_email(value: object) -> str:
    text = parse_text(value)
    if not _EMAIL.match(text):
        raise ValueError("must be an email address")
    return text


def parse_positive_int(value: object) -> int:
    # Strings of digits are accepted because spreadsheets and forms send numbers as text.
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("must be a positive integer")
    if isinstance(value, str) and not value.strip().isdigit():
        raise ValueError("must be a positive integer")
    number = int(value)
    if number <= 0:
        raise ValueError("must be a positive integer")
    return number


def parse_identifier(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return parse_text(value)


def parse_gender(value: object) -> Gender:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        # Isograd's own gen_id (reference, act 1: 1 male, 2 female, 3 not provided).
        if value in Gender._value2member_map_:
            return Gender(value)
    elif isinstance(value, str) and value.strip().lower() in _GENDERS:
        return _GENDERS[value.strip().lower()]
    raise ValueError("must be Isograd's gen_id (1-3) or one of: male, female, not_provided")


def parse_language(value: object) -> Language:
    if isinstance(value, str) and value.strip().isdigit():
        # Spreadsheets and command lines send Isograd's numeric codes as text.
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        if value in Language._value2member_map_:
            return Language(value)
    elif isinstance(value, str) and value.strip().lower() in _LANGUAGES:
        return _LANGUAGES[value.strip().lower()]
    names = ", ".join(language.name.lower() for language in Language)
    raise ValueError(f"must be an Isograd language code (1-8), an ISO code or one of: {names}")


def parse_url(value: object) -> str:
    text = value.strip() if isinstance(value, str) and len(value) <= MAX_URL_LENGTH else ""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"must be an absolute http(s) URL of at most {MAX_URL_LENGTH} characters")
    return text


def parse_context(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError("must be a JSON object")
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_CONTEXT_BYTES:
        raise ValueError(f"must be at most {MAX_CONTEXT_BYTES} bytes of JSON")
    return value
