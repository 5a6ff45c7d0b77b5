"""The admin API on edge input an audit sent: every case a 422 naming the field (or 404), never
a 500, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.fakes import FakeClock
from tests.fixtures.pipeline import EMAIL, EXCEL
from worker.storage.store import SqlStore


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[SqlStore]:
    """The API's store on each backend (PostgreSQL in a schema of its own, dropped after)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'relay.db'}"
    else:
        url = str(request.getfixturevalue("postgres_schema_url"))
    sql_store = SqlStore.from_url(url, clock=clock)
    sql_store.migrate()
    yield sql_store
    sql_store.close()


def invitation(**overrides: Any) -> dict[str, Any]:
    return {"email": EMAIL, "first_name": "Ada", "last_name": "Lovelace", "tst_frm_id": EXCEL,
            **overrides}  # fmt: skip


def post_raw(client: TestClient, path: str, raw: str) -> Any:
    return client.post(path, content=raw.encode(), headers={"content-type": "application/json"})


FIELD_CASES = [
    ("tst_frm_id", 2**63),
    ("tst_frm_id", -(2**63) - 1),
    ("sub_com_id", 10**30),
    ("tst_frm_id", "9" * 5000),
    ("ext_id", 2**64),
    ("first_name", "\ud800"),
    ("last_name", "Love\udfffLace"),
    ("first_name", "Ada\x00"),
    ("group", "g\x00"),
    ("return_url", "https://x.example/\x00"),
    ("context", {"note": "a\x00b"}),
    ("context", {"k\x00": 1}),
    ("context", {"note": "\ud83d"}),
    ("context", {"deep": json.loads("[" * 40 + "]" * 40)}),
    ("language", "9" * 5000),
]


@pytest.mark.parametrize(("field", "value"), FIELD_CASES)
def test_an_unstorable_invitation_field_is_a_422_naming_it(
    admin: TestClient, field: str, value: object
) -> None:
    # ensure_ascii (the default) writes lone surrogates as \\ud800 escapes, as a client would.
    response = post_raw(admin, "/api/invitations", json.dumps(invitation(**{field: value})))

    assert response.status_code == 422
    assert response.json()["error"] == "invalid_request"
    assert list(response.json()["errors"]) == [field]


@pytest.mark.parametrize(("field", "value"), [("pla_tst_id", 2**63), ("email", "a\x00@x.fr")])
def test_an_unstorable_watch_field_is_a_422_naming_it(
    admin: TestClient, field: str, value: object
) -> None:
    body = {"pla_tst_id": 1, "tst_frm_id": EXCEL, "email": EMAIL, field: value}

    response = post_raw(admin, "/api/watch", json.dumps(body))

    assert response.status_code == 422
    assert list(response.json()["errors"]) == [field]


@pytest.mark.parametrize(
    "raw",
    [
        json.dumps(invitation())[:-1] + ', "context": {"x": NaN}}',
        json.dumps(invitation())[:-1] + ', "context": {"x": Infinity}}',
        json.dumps(invitation())[:-1] + ', "context": {"x": -Infinity}}',
        '{"context": ' + "[" * 5000 + "]" * 5000 + "}",
        '{"tst_frm_id": ' + "1" * 5000 + "}",
    ],
    ids=["nan", "infinity", "minus-infinity", "nested-5000", "int-5000-digits"],
)
def test_a_body_json_cannot_represent_is_a_422_on_the_body(admin: TestClient, raw: str) -> None:
    response = post_raw(admin, "/api/invitations", raw)

    assert response.status_code == 422
    assert list(response.json()["errors"]) == ["body"]


@pytest.mark.parametrize("path", ["/api/invitations/", "/api/events/", "/api/deliveries/"])
@pytest.mark.parametrize("record_id", ["%00", "inv_%00x", "%ED%A0%80", "x" * 300])
def test_an_id_no_record_can_have_is_a_404(admin: TestClient, path: str, record_id: str) -> None:
    response = admin.get(path + record_id)

    assert response.status_code == 404


def test_replaying_an_impossible_id_is_a_404(admin: TestClient) -> None:
    response = admin.post("/api/deliveries/%00/replay")

    assert response.status_code == 404
