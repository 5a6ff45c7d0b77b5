"""Request models: the fields of an invitation and of a watched test, declared once.

Each request is a pydantic model (https://docs.pydantic.dev/latest/concepts/models/) whose fields
say their type and parser; the same declaration feeds the admin API's validation, the bulk CSV's
columns (`CSV_COLUMNS`), the `invite` command's flags (`field_names`) and the admin API's OpenAPI
document (`Model.model_json_schema()`: each field type carries the JSON Schema of what its parser
accepts). Input comes from decoded JSON, a CSV row or command-line flags, so numbers may arrive as
strings of digits, and JSON null means absent.

`validate(model, data)` returns the model or raises InvalidRequestError with every problem at
once, keyed by field name, in the API's documented 422 body (`{"error": "invalid_request",
"errors": {field: message}}`). Every value the database or a receiver cannot take is refused here,
not deeper: integers past 64 bits, NUL characters and lone surrogates (PostgreSQL refuses both),
NaN and infinities, contexts nested deeper than MAX_CONTEXT_DEPTH.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Annotated, Any, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, ValidationError, WithJsonSchema

from worker.errors import PermanentError
from worker.isograd.models import Gender, Language

MAX_CONTEXT_BYTES = 16 * 1024
MAX_CONTEXT_DEPTH = 32
MAX_TEXT_LENGTH = 255
MAX_URL_LENGTH = 2048
# BIGINT, the widest integer column (PostgreSQL and SQLite): a larger id cannot be an Isograd one.
MAX_ID = 2**63 - 1

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

Model = TypeVar("Model", bound=BaseModel)
T = TypeVar("T")


class InvalidRequestError(PermanentError):
    """The request is invalid; `errors` maps each bad field to a message."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        self.errors = dict(errors)
        super().__init__(f"invalid request: {', '.join(sorted(self.errors))}")


# -- parsers: one per kind of value, each raising ValueError with the message for the caller ----


def _required(value: object) -> object:
    if value is None:
        raise ValueError("is required")
    return value


def _storable(text: str) -> str:
    if "\x00" in text:
        raise ValueError("must not contain NUL characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (no lone surrogates)") from None
    return text


def parse_text(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a non-empty string")
    if len(value) > MAX_TEXT_LENGTH:
        raise ValueError(f"must be at most {MAX_TEXT_LENGTH} characters")
    return _storable(value.strip())


def parse_email(value: object) -> str:
    text = parse_text(value)
    if not _EMAIL.match(text):
        raise ValueError("must be an email address")
    return text


def parse_positive_int(value: object) -> int:
    # Strings of digits are accepted because spreadsheets and forms send numbers as text.
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("must be a positive integer")
    if isinstance(value, str):
        digits = value.strip()
        if not digits.isascii() or not digits.isdigit():
            raise ValueError("must be a positive integer")
        # Checked before int(): Python refuses to convert more than 4,300 digits (ValueError).
        if len(digits.lstrip("0")) > len(str(MAX_ID)):
            raise ValueError(f"must be a positive integer of at most {MAX_ID}")
        value = int(digits)
    if value <= 0:
        raise ValueError("must be a positive integer")
    if value > MAX_ID:
        raise ValueError(f"must be a positive integer of at most {MAX_ID}")
    return value


def parse_identifier(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        if abs(value) > MAX_ID:
            raise ValueError(f"must be text or an integer of at most {MAX_ID}")
        return str(value)
    return parse_text(value)


def parse_gender(value: object) -> Gender:
    if isinstance(value, Gender):
        return value
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
    if isinstance(value, Language):
        return value
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        # Spreadsheets and command lines send Isograd's numeric codes as text.
        value = int(value) if len(value.strip()) < 4 else 0
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
    return _storable(text)


def parse_context(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError("must be a JSON object")
    problem = _json_value_problem(value, depth=1)
    if problem is not None:
        raise ValueError(problem)
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_CONTEXT_BYTES:
        raise ValueError(f"must be at most {MAX_CONTEXT_BYTES} bytes of JSON")
    return value


def _json_value_problem(value: object, depth: int) -> str | None:
    """Why `value` cannot be stored and delivered as JSON, or None."""
    if depth > MAX_CONTEXT_DEPTH:
        return f"must be nested at most {MAX_CONTEXT_DEPTH} levels deep"
    if isinstance(value, str):
        try:
            _storable(value)
        except ValueError as exc:
            return str(exc)
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return "must not contain NaN or infinite numbers (they are not JSON)"
    if isinstance(value, dict):
        for key, item in value.items():
            problem = _json_value_problem(str(key), depth) or _json_value_problem(item, depth + 1)
            if problem is not None:
                return problem
    elif isinstance(value, list):
        for item in value:
            problem = _json_value_problem(item, depth + 1)
            if problem is not None:
                return problem
    elif value is not None and not isinstance(value, bool | int | float):
        return "must be a JSON object"
    return None


# -- what each parser accepts, as JSON Schema: a PlainValidator's input is opaque to pydantic, so
# the field types carry it (WithJsonSchema, https://docs.pydantic.dev/latest/concepts/json_schema/).
# Lowercase names are documented; the parsers also take any case. Descriptions come from the fields.

JsonSchema = dict[str, Any]

TEXT_SCHEMA: JsonSchema = {"type": "string", "minLength": 1, "maxLength": MAX_TEXT_LENGTH}
EMAIL_SCHEMA: JsonSchema = {**TEXT_SCHEMA, "format": "email"}
_POSITIVE_SCHEMA: JsonSchema = {
    "oneOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": "^\\s*\\d+\\s*$"}],
}
_IDENTIFIER_SCHEMA: JsonSchema = {"oneOf": [TEXT_SCHEMA, {"type": "integer"}]}
_URL_SCHEMA: JsonSchema = {"type": "string", "format": "uri", "maxLength": MAX_URL_LENGTH}
_GENDER_SCHEMA: JsonSchema = {
    "oneOf": [
        {"type": "string", "enum": list(_GENDERS)},
        {"type": "integer", "minimum": int(min(Gender)), "maximum": int(max(Gender))},
    ],
}
_LANGUAGE_SCHEMA: JsonSchema = {
    "oneOf": [
        {"type": "integer", "minimum": int(min(Language)), "maximum": int(max(Language))},
        {"type": "string", "enum": sorted(_LANGUAGES)},
    ],
}
_CONTEXT_SCHEMA: JsonSchema = {"type": "object"}


def _field(parse: Callable[[object], T], *, required: bool = False) -> PlainValidator:
    """A field validated by `parse` alone (pydantic's own coercion would change the messages)."""

    def validate(value: object) -> T | None:
        if value is None and not required:
            return None
        return parse(_required(value))

    return PlainValidator(validate)


RequiredText = Annotated[str, _field(parse_text, required=True), WithJsonSchema(TEXT_SCHEMA)]
RequiredEmail = Annotated[str, _field(parse_email, required=True), WithJsonSchema(EMAIL_SCHEMA)]
RequiredId = Annotated[
    int,
    _field(parse_positive_int, required=True),
    WithJsonSchema(_POSITIVE_SCHEMA),
]
Text = Annotated[str | None, _field(parse_text), WithJsonSchema(TEXT_SCHEMA)]
Identifier = Annotated[str | None, _field(parse_identifier), WithJsonSchema(_IDENTIFIER_SCHEMA)]
Id = Annotated[int | None, _field(parse_positive_int), WithJsonSchema(_POSITIVE_SCHEMA)]
Url = Annotated[str | None, _field(parse_url), WithJsonSchema(_URL_SCHEMA)]


def _gender(value: object) -> Gender:
    return Gender.NOT_PROVIDED if value is None else parse_gender(value)


def _language(value: object) -> Language | None:
    return None if value is None else parse_language(value)


def _context(value: object) -> dict[str, Any]:
    return {} if value is None else parse_context(value)


GenderField = Annotated[Gender, PlainValidator(_gender), WithJsonSchema(_GENDER_SCHEMA)]
LanguageField = Annotated[
    Language | None, PlainValidator(_language), WithJsonSchema(_LANGUAGE_SCHEMA)
]
Context = Annotated[dict[str, Any], PlainValidator(_context), WithJsonSchema(_CONTEXT_SCHEMA)]
_CONTEXT_HELP = f"a JSON object passed to the event (at most {MAX_CONTEXT_BYTES} bytes of JSON)"
CONTEXT_DEFAULT: dict[str, Any] = {}  # pydantic copies a mutable default for each instance


class RequestModel(BaseModel):
    """Frozen, no unknown field (a typo must not be silently ignored), text stripped."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)


class InvitationRequest(RequestModel):
    """A request to invite one candidate to one test.

    `group` becomes Isograd's `ext_dep_id`, `return_url` its `rtn_pag`; `context` is a JSON
    object passed through to the delivered event.
    """

    email: RequiredEmail = Field(description="the candidate's email address")
    first_name: RequiredText = Field(description="the candidate's first name")
    last_name: RequiredText = Field(description="the candidate's last name")
    tst_frm_id: RequiredId = Field(description="Isograd test id")
    gender: GenderField = Field(
        Gender.NOT_PROVIDED, description="male | female | not_provided, or gen_id 1-3"
    )
    language: LanguageField = Field(None, description="Isograd code 1-8, ISO code or name")
    ext_id: Identifier = Field(None, description="your id for the candidate")
    group: Identifier = Field(None, description="your group id (Isograd ext_dep_id)")
    sub_com_id: Id = Field(None, description="Isograd sub account (distributor accounts)")
    return_url: Url = Field(None, description="where the candidate goes after the test")
    context: Context = Field(CONTEXT_DEFAULT, description=_CONTEXT_HELP)


class WatchRequest(RequestModel):
    """A test created outside the relay, to be reconciled and delivered like ours.

    Acts 4, 5 and 6 find the result by the candidate's email: it is required.
    """

    pla_tst_id: RequiredId = Field(description="Isograd's id of the candidate's test")
    tst_frm_id: RequiredId = Field(description="Isograd test id")
    email: RequiredEmail = Field(description="the candidate's email address")
    first_name: Text = Field(None, description="the candidate's first name")
    last_name: Text = Field(None, description="the candidate's last name")
    ext_id: Identifier = Field(None, description="your id for the candidate")
    sub_com_id: Id = Field(None, description="Isograd sub account (distributor accounts)")
    context: Context = Field(CONTEXT_DEFAULT, description=_CONTEXT_HELP)


def field_names(model: type[BaseModel]) -> tuple[str, ...]:
    """The model's fields in declaration order (CSV columns, CLI flags)."""
    return tuple(model.model_fields)


def field_help(model: type[BaseModel], name: str) -> str | None:
    """The description of one field (the CLI flag's help)."""
    return model.model_fields[name].description


def required_field_names(model: type[BaseModel]) -> tuple[str, ...]:
    return tuple(name for name, info in model.model_fields.items() if info.is_required())


def validate(model: type[Model], data: object) -> Model:
    """`data` (decoded JSON, a CSV row, flags) as `model`; InvalidRequestError lists every problem.

    JSON null counts as absent. A `data` that is not an object gives the single problem "body".
    """
    if not isinstance(data, Mapping):
        raise InvalidRequestError({"body": "must be a JSON object"})
    present = {str(key): value for key, value in data.items() if value is not None}
    missing = {name: None for name in required_field_names(model) if name not in present}
    try:
        return model.model_validate({**present, **missing})
    except ValidationError as exc:
        raise InvalidRequestError(_messages(exc)) from None


def _messages(exc: ValidationError) -> dict[str, str]:
    """pydantic's errors as our field → message (the messages the API has always documented)."""
    errors: dict[str, str] = {}
    for error in exc.errors(include_url=False, include_input=False):
        name = str(error["loc"][0]) if error["loc"] else "body"
        if error["type"] == "extra_forbidden":
            message = "is not a known field"
        elif error["type"] == "missing":
            message = "is required"
        elif error["type"] == "value_error":
            message = str(error.get("ctx", {}).get("error", error["msg"]))
        else:  # not produced by our parsers; pydantic's own words, still per field
            message = error["msg"]
        errors.setdefault(name, message)
    return errors
