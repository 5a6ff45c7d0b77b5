"""The BambooHR sink: the result as a training record, or a row of a table, on the employee.

BambooHR's API (https://documentation.bamboohr.com/docs/api-details): HTTPS, HTTP Basic with the
API key as the user name and any password; JSON bodies. Two modes:

- `training`: `POST /api/gateway.php/{domain}/v1/training/record/employee/{id}` with `completed`
  (YYYY-MM-DD) and `type` (an existing training type id) required, `notes` optional
  (https://documentation.bamboohr.com/reference/add-new-employee-training-record);
- `table`: `POST /api/gateway.php/{domain}/v1/employees/{id}/tables/{table}` with field name/value
  pairs (https://documentation.bamboohr.com/reference/add-employee-table-row-v1-1).

The employee id is `context.bamboohr_employee_id`, or the candidate's `ext_id` with
`employee_id_from = "ext_id"`. BambooHR throttles with 503 (and, since 2026-09-16, 429) plus
Retry-After (https://documentation.bamboohr.com/docs/planned-changes-to-the-api): both retry.
Other 4xx are permanent; BambooHR says why in the X-BambooHR-Error-Message header, recorded.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import httpx2
import structlog

from worker import __version__
from worker.sinks.base import AttemptResult, EventEnvelope
from worker.sinks.http_attempt import perform_attempt
from worker.sinks.options import SinkOptions
from worker.sinks.routing import MissingRoutingError, context_text, not_sent, text_field

if TYPE_CHECKING:
    from worker.sinks.registry import SinkContext

log = structlog.get_logger(__name__)

USER_AGENT = f"isograd-relay/{__version__} (bamboohr)"
DEFAULT_BASE_URL = "https://api.bamboohr.com"
ERROR_HEADER = "x-bamboohr-error-message"
MODES = ("training", "table")
EMPLOYEE_ID_SOURCES = ("context", "ext_id")
EMPLOYEE_ID_KEY = "bamboohr_employee_id"
# A pseudo path for table fields: the completion's date as BambooHR writes dates.
COMPLETED_DATE = "completed_date"
# The event's data keys (worker/schemas/assessment.completed.json) a `fields` path may start with.
EVENT_ROOTS = frozenset(
    {
        "event_id",
        "invitation_id",
        "sub_com_id",
        "candidate",
        "test",
        "grade",
        "duration_seconds",
        "skills",
        "report",
        "context",
    }
)

KEYS = frozenset(
    {
        "company_domain",
        "api_key",
        "base_url",
        "mode",
        "training_type_id",
        "table",
        "fields",
        "employee_id_from",
    }
)

# The company's subdomain (acme in acme.bamboohr.com) and a table's API name (customTable1).
_DOMAIN = re.compile(r"[a-z0-9][a-z0-9-]{0,62}", re.IGNORECASE)
_TABLE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,99}")
_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*")
_EMPLOYEE_ID = re.compile(r"[0-9]{1,18}")


@dataclass(frozen=True, slots=True)
class BambooHRTarget:
    """A BambooHR subscription's settings: company, key, mode and what each mode needs."""

    company_domain: str
    api_key: str = field(repr=False)
    base_url: str = DEFAULT_BASE_URL
    mode: str = "training"
    training_type_id: int | None = None
    table: str | None = None
    fields: tuple[tuple[str, str], ...] = ()  # (event path, BambooHR field name)
    employee_id_from: str = "context"

    def describe(self) -> str:
        return urlsplit(self.base_url).hostname or ""

    def secret_values(self) -> tuple[str, ...]:
        return (self.api_key, _basic_credentials(self.api_key))


def parse_target(options: SinkOptions) -> BambooHRTarget | None:
    domain = options.text("company_domain")
    if domain is not None and not _DOMAIN.fullmatch(domain):
        options.problem("company_domain", "must be the company's subdomain, like 'acme'")
        domain = None
    api_key = options.secret("api_key")
    base_url = options.url("base_url", default=DEFAULT_BASE_URL)
    mode = options.choice("mode", MODES, default="training")
    source = options.choice("employee_id_from", EMPLOYEE_ID_SOURCES, default="context")
    training_type_id = table = None
    fields: tuple[tuple[str, str], ...] | None = ()
    if mode == "training":
        training_type_id = options.integer("training_type_id", minimum=1)
        for key in ("table", "fields"):
            if key in options:
                options.problem(key, "is only for mode = 'table'")
    elif mode == "table":
        table = options.text("table")
        if table is not None and not _TABLE.fullmatch(table):
            options.problem("table", "must be a BambooHR table name, like 'customCertifications'")
            table = None
        fields = _fields(options)
        if "training_type_id" in options:
            options.problem("training_type_id", "is only for mode = 'training'")
    if (
        domain is None
        or api_key is None
        or base_url is None
        or mode is None
        or source is None
        or fields is None
        or (mode == "training" and training_type_id is None)
        or (mode == "table" and table is None)
    ):
        return None
    return BambooHRTarget(
        domain, api_key, base_url.rstrip("/"), mode, training_type_id, table, fields, source
    )


def build_sink(target: BambooHRTarget, context: SinkContext) -> BambooHRSink:
    return BambooHRSink(target, client=context.http, timeout=context.timeout, name=context.name)


def _fields(options: SinkOptions) -> tuple[tuple[str, str], ...] | None:
    table = options.subtable("fields")
    if table is None:
        if "fields" not in options:
            options.problem("fields", "is required: a table of event path = BambooHR field name")
        return None
    if not table:
        options.problem("fields", "must map at least one event path to a BambooHR field")
        return None
    pairs = []
    for path, name in table.items():
        key = f"fields.{path!r}"
        root = path.split(".", 1)[0]
        if not _PATH.fullmatch(path) or (root not in EVENT_ROOTS and path != COMPLETED_DATE):
            roots = ", ".join(sorted(EVENT_ROOTS))
            options.problem(key, f"must be {COMPLETED_DATE!r} or a path into the event ({roots})")
        elif not isinstance(name, str) or not name.strip():
            options.problem(key, "must be a BambooHR field name")
        else:
            pairs.append((path, name.strip()))
    return tuple(pairs) if len(pairs) == len(table) else None


class BambooHRSink:
    """Writes one training record (or table row) per event on the candidate's employee record.

    Not idempotent on BambooHR's side: a delivery retried after a lost answer may add a second
    record (BambooHR has no idempotency key); retries only happen on timeouts, 429 and 5xx.
    """

    kind = "bamboohr"

    def __init__(
        self, target: BambooHRTarget, *, client: httpx2.Client, timeout: float, name: str
    ) -> None:
        self.target = target
        self.name = name
        self.timeout = timeout
        self._client = client

    def __repr__(self) -> str:  # never show the key
        return f"BambooHRSink(name={self.name!r}, mode={self.target.mode!r})"

    def send(self, envelope: EventEnvelope, *, attempt_at: datetime) -> AttemptResult:
        """One attempt (aware `attempt_at`; ValueError for a naive one, as every sink)."""
        if attempt_at.tzinfo is None:
            raise ValueError("attempt_at must be timezone-aware")
        try:
            employee_id = self._employee_id(envelope)
        except MissingRoutingError as exc:
            return self._logged(envelope, not_sent(str(exc)))
        if self.target.mode == "training":
            path = f"training/record/employee/{employee_id}"
        else:
            path = f"employees/{employee_id}/tables/{quote(self.target.table or '', safe='')}"
        try:
            if self.target.mode == "training":
                document = training_record(envelope, self.target.training_type_id or 0)
            else:
                document = table_row(envelope, self.target.fields)
            body = json.dumps(document, ensure_ascii=False, allow_nan=False).encode("utf-8")
        except ValueError as exc:  # a timestamp that is not ISO 8601, a NaN in the data
            reason = f"the event cannot be written as a BambooHR record ({type(exc).__name__})"
            return self._logged(envelope, not_sent(reason))
        url = f"{self.target.base_url}/api/gateway.php/{self.target.company_domain}/v1/{path}"
        headers = {
            "authorization": f"Basic {_basic_credentials(self.target.api_key)}",
            "content-type": "application/json",
            "accept": "application/json",
            "user-agent": USER_AGENT,
        }
        result = perform_attempt(
            self._client,
            "POST",
            url,
            content=body,
            headers=headers,
            timeout=self.timeout,
            attempt_at=attempt_at,
            explain=bamboohr_reason,
            redact=self.target.secret_values(),
        )
        return self._logged(envelope, result)

    def _employee_id(self, envelope: EventEnvelope) -> str:
        if self.target.employee_id_from == "ext_id":
            candidate = envelope.data.get("candidate")
            value = text_field(
                candidate if isinstance(candidate, Mapping) else {}, "ext_id", where="candidate"
            )
            where = "candidate.ext_id"
        else:
            value = context_text(envelope, EMPLOYEE_ID_KEY)
            where = f"context.{EMPLOYEE_ID_KEY}"
        if not _EMPLOYEE_ID.fullmatch(value):
            raise MissingRoutingError(f"{where} must be a BambooHR employee id (digits)")
        return value

    def _logged(self, envelope: EventEnvelope, result: AttemptResult) -> AttemptResult:
        log.debug(
            "bamboohr_attempt",
            sink=self.name,
            event_id=envelope.event_id,
            outcome=str(result.outcome),
            status_code=result.status_code,
        )
        return result


def training_record(envelope: EventEnvelope, training_type_id: int) -> dict[str, Any]:
    """The training record body: completed date, training type, and a note naming the result."""
    return {
        "completed": completed_date(envelope),
        "type": training_type_id,
        "notes": training_note(envelope.data),
    }


def training_note(data: Mapping[str, Any]) -> str:
    """ "Isograd test 101 (pla_tst_id 5000001): 815/1000. Report: https://…" (parts as known)."""
    test = _get(data, "test") or {}
    grade = _get(data, "grade") or {}
    text = grade.get("text") or _grade_text(grade)
    note = f"Isograd test {test.get('tst_frm_id')} (pla_tst_id {test.get('pla_tst_id')}): {text}."
    pdf_url = _get(data, "report.pdf_url")
    return f"{note} Report: {pdf_url}" if pdf_url else note


def table_row(envelope: EventEnvelope, fields: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    """One row: each configured field with the value at its event path; absent values left out."""
    row: dict[str, Any] = {}
    for path, name in fields:
        value = completed_date(envelope) if path == COMPLETED_DATE else _get(envelope.data, path)
        if value is None:
            continue
        # BambooHR's table fields are strings; lists and objects are written as JSON text.
        row[name] = value if isinstance(value, str | int | float) else json.dumps(value)
    return row


def completed_date(envelope: EventEnvelope) -> str:
    """The event's date (UTC), YYYY-MM-DD as BambooHR requires."""
    return datetime.fromisoformat(envelope.timestamp.replace("Z", "+00:00")).date().isoformat()


def _get(data: Mapping[str, Any], path: str) -> Any:
    value: Any = data
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _grade_text(grade: Mapping[str, Any]) -> str:
    value, maximum = grade.get("value"), grade.get("max")
    return f"{value}/{maximum}" if maximum is not None else str(value)


def bamboohr_reason(status: int, headers: httpx2.Headers, body: str) -> str | None:
    """BambooHR's reason for a refusal, from its X-BambooHR-Error-Message header."""
    reason = headers.get(ERROR_HEADER) if status >= 400 else None
    return f"BambooHR: {reason}" if reason else None


def _basic_credentials(api_key: str) -> str:
    # "Use your API key as the username and any random string as the password."
    return base64.b64encode(f"{api_key}:x".encode()).decode("ascii")
