"""A fake BambooHR API that checks what BambooHR checks, for the bamboohr sink's tests.

Modelled on https://documentation.bamboohr.com/docs/api-details and the two endpoints the sink
uses (https://documentation.bamboohr.com/reference/add-new-employee-training-record,
https://documentation.bamboohr.com/reference/add-employee-table-row-v1-1):

- HTTP Basic with the API key as the user name (any password), else 401;
- only the company's domain, existing employees (404) and, for training records, existing
  training types; `completed` must be YYYY-MM-DD (400);
- table rows may only name the table's fields (406, "references to non-existent fields");
- JSON bodies only (400 otherwise);
- errors say why in the X-BambooHR-Error-Message header, as BambooHR does;
- `throttle(n)` makes the next n requests answer 503 + Retry-After, as BambooHR's rate limit.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import httpx2

ERROR_HEADER = "X-BambooHR-Error-Message"
_TRAINING = re.compile(r"/api/gateway\.php/([^/]+)/v1/training/record/employee/([0-9]+)")
_TABLE = re.compile(r"/api/gateway\.php/([^/]+)/v1/employees/([0-9]+)/tables/([A-Za-z0-9_]+)")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


@dataclass(frozen=True)
class Stored:
    """One record the fake accepted: training record or table row."""

    employee_id: int
    kind: str  # "training" or the table name
    body: dict[str, Any]


@dataclass
class FakeBambooHR:
    company_domain: str
    api_key: str
    employees: frozenset[int]
    training_types: frozenset[int] = frozenset({7})
    tables: dict[str, frozenset[str]] = field(default_factory=dict)
    stored: list[Stored] = field(default_factory=list)
    _throttled: int = 0
    _retry_after: str = "1"
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def throttle(self, count: int, *, retry_after: str = "1") -> None:
        with self._lock:
            self._throttled, self._retry_after = count, retry_after

    def records(self) -> list[Stored]:
        with self._lock:
            return list(self.stored)

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        with self._lock:
            if self._throttled:
                self._throttled -= 1
                return httpx2.Response(503, headers={"Retry-After": self._retry_after})
            return self._handle(request)

    def _handle(self, request: httpx2.Request) -> httpx2.Response:
        if not self._authorised(request.headers.get("authorization", "")):
            return _error(401, "Invalid API key")
        path = request.url.path
        training, table = _TRAINING.fullmatch(path), _TABLE.fullmatch(path)
        match = training or table
        if request.method != "POST" or match is None:
            return _error(404, "Not found")
        if match.group(1) != self.company_domain:
            return _error(404, "Company not found")
        employee_id = int(match.group(2))
        if employee_id not in self.employees:
            return _error(404, f"Employee {employee_id} not found")
        if not request.headers.get("content-type", "").startswith("application/json"):
            return _error(400, "Request body must be JSON")
        try:
            body = json.loads(request.content)
        except ValueError:
            return _error(400, "Malformed JSON")
        if not isinstance(body, dict):
            return _error(400, "Body must be an object")
        if training is not None:
            return self._training(employee_id, body)
        return self._row(employee_id, table.group(3) if table else "", body)

    def _training(self, employee_id: int, body: dict[str, Any]) -> httpx2.Response:
        completed = body.get("completed")
        if not isinstance(completed, str) or not _is_date(completed):
            return _error(400, "Completed is a required field and must be in yyyy-mm-dd format.")
        if body.get("type") not in self.training_types:
            return _error(400, "Type must be an existing training type ID.")
        allowed = {"completed", "type", "instructor", "hours", "credits", "notes", "cost"}
        if unknown := set(body) - allowed:
            return _error(400, f"Unknown fields: {', '.join(sorted(unknown))}")
        self.stored.append(Stored(employee_id, "training", body))
        return httpx2.Response(201, json={"id": len(self.stored), **body})

    def _row(self, employee_id: int, table: str, body: dict[str, Any]) -> httpx2.Response:
        fields = self.tables.get(table)
        if fields is None:
            return _error(404, f"Table {table} not found")
        if unknown := set(body) - fields:
            return _error(406, f"Invalid field(s): {', '.join(sorted(unknown))}")
        if "date" in body and not (isinstance(body["date"], str) and _is_date(body["date"])):
            return _error(400, "date must be in yyyy-mm-dd format.")
        self.stored.append(Stored(employee_id, table, body))
        return httpx2.Response(200)

    def _authorised(self, header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, _ = base64.b64decode(encoded, validate=True).decode().partition(":")
        except ValueError:
            return False
        return user == self.api_key


def _is_date(text: str) -> bool:
    if not _DATE.fullmatch(text):
        return False
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _error(status: int, message: str) -> httpx2.Response:
    return httpx2.Response(status, headers={ERROR_HEADER: message})
