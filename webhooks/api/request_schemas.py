"""Request bodies of the admin API as JSON Schema components (what the validators accept).

Written by hand until the request models generate them (issue 14: one source for the fields);
tests/test_openapi.py checks the documented bodies against real requests.
"""

from __future__ import annotations

from typing import Any

from worker.queries import REPLAYABLE_STATUSES
from worker.requests import MAX_CONTEXT_BYTES, MAX_TEXT_LENGTH, MAX_URL_LENGTH

Schema = dict[str, Any]

_TEXT: Schema = {"type": "string", "minLength": 1, "maxLength": MAX_TEXT_LENGTH}
_EMAIL: Schema = {**_TEXT, "format": "email"}
_POSITIVE: Schema = {
    "description": "A positive integer; a string of digits is accepted too.",
    "oneOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": "^\\s*\\d+\\s*$"}],
}
_IDENTIFIER: Schema = {"oneOf": [_TEXT, {"type": "integer"}]}
_CONTEXT: Schema = {
    "type": "object",
    "description": f"Passed through to the event's data.context; at most {MAX_CONTEXT_BYTES} "
    "bytes of JSON.",
}
_TIME: Schema = {
    "type": "string",
    "description": "ISO 8601 with a UTC offset (2026-12-03T22:00:00Z), or a date (midnight UTC).",
}
_REPLAYABLE: Schema = {"type": "string", "enum": [status.value for status in REPLAYABLE_STATUSES]}


def _object(required: list[str], properties: dict[str, Schema]) -> Schema:
    return {
        "type": "object",
        "required": required,
        "properties": properties,
        "additionalProperties": False,
    }


REQUEST_SCHEMAS: dict[str, Schema] = {
    "InvitationRequest": _object(
        ["email", "first_name", "last_name", "tst_frm_id"],
        {
            "email": _EMAIL,
            "first_name": _TEXT,
            "last_name": _TEXT,
            "tst_frm_id": {**_POSITIVE, "description": "The Isograd test to take."},
            "gender": {
                "description": "Isograd's gen_id (1 male, 2 female, 3 not provided) or its name.",
                "oneOf": [
                    {"enum": ["male", "female", "not_provided"]},
                    {"type": "integer", "minimum": 1, "maximum": 3},
                ],
            },
            "language": {
                "description": "Isograd language code (1-8), ISO 639-1 code or English name.",
                "oneOf": [{"type": "integer", "minimum": 1, "maximum": 8}, {"type": "string"}],
            },
            "ext_id": _IDENTIFIER,
            "group": _IDENTIFIER,
            "sub_com_id": _POSITIVE,
            "return_url": {"type": "string", "format": "uri", "maxLength": MAX_URL_LENGTH},
            "context": _CONTEXT,
        },
    ),
    "WatchRequest": _object(
        ["pla_tst_id", "tst_frm_id", "email"],
        {
            "pla_tst_id": {**_POSITIVE, "description": "The Isograd test session to watch."},
            "tst_frm_id": _POSITIVE,
            "email": _EMAIL,
            "first_name": _TEXT,
            "last_name": _TEXT,
            "ext_id": _IDENTIFIER,
            "sub_com_id": _POSITIVE,
            "context": _CONTEXT,
        },
    ),
    "ReplayRequest": _object(
        [],
        {
            "subscription": {**_TEXT, "description": "Only this subscription's deliveries."},
            "status": {
                "description": "failed (the default), cancelled, or both.",
                "oneOf": [_REPLAYABLE, {"type": "array", "items": _REPLAYABLE, "minItems": 1}],
            },
            "created_from": {**_TIME, "description": "Deliveries created at or after this."},
            "created_until": {**_TIME, "description": "Deliveries created before this."},
        },
    ),
    "ErasureRequest": _object(
        ["email"],
        {
            "email": _EMAIL,
            "isograd": {
                "type": "boolean",
                "default": False,
                "description": "Also anonymize the candidate at Isograd (act 12).",
            },
            "requested_by": {
                **_TEXT,
                "description": "Who asked, for the audit row (default: admin-api).",
            },
        },
    ),
}
