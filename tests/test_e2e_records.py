"""End to end with real processes for the record sinks: BambooHR, LTI 1.1 and LTI 1.3.

The simulator, `isograd-relay web` and `worker` run as subprocesses on real Redis; the vendors
are the fakes of tests/vendors/ served over real HTTP (tests/vendors/server.py), verifying as
the real ones do (Basic auth and fields; the OAuth 1.0a signature and body hash; the RS256
client assertion and the AGS score). Each of the six Isograd grade types is completed once with
routing data for every kind in its invitation's context, and must reach each vendor with the
right value: Isograd's own LTI outcome for LTI 1.1, value/max for LTI 1.3 and BambooHR.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select

from tests.harness.processes import RelayStack, relay_stack, wait_until
from tests.test_e2e import GRADE_CASES, GradeCase, reference_lti_outcome
from tests.vendors.bamboohr import FakeBambooHR
from tests.vendors.lti11 import FakeLti11Consumer
from tests.vendors.lti13 import FakeLti13Platform
from tests.vendors.server import VendorServer
from worker.storage.store import SqlStore
from worker.storage.tables import deliveries

pytestmark = pytest.mark.e2e

DELIVERY_TIMEOUT = 20.0
BAMBOO_KEY = "bamboo-e2e-key-0123456789"
LTI_SECRET = "lti-e2e-shared-secret-0123456789"
SUBSCRIPTIONS = ("bamboo-training", "bamboo-table", "lms-lti11", "lms-lti13")


def employee_id(case: GradeCase) -> int:
    return 7000 + case.tst_frm_id


@dataclass
class Vendors:
    bamboohr: FakeBambooHR
    lti11: FakeLti11Consumer
    lti13: FakeLti13Platform
    urls: dict[str, str]


@dataclass
class Records:
    stack: RelayStack
    vendors: Vendors
    http: httpx2.Client
    store: SqlStore

    def invite(self, case: GradeCase, context: dict[str, Any]) -> dict[str, Any]:
        return self.stack.invite(
            self.http,
            email=f"cand-{uuid.uuid4().hex[:12]}@example.org",
            first_name="Ada",
            last_name="Lovelace",
            tst_frm_id=case.tst_frm_id,
            ext_id=str(employee_id(case)),
            context=context,
        )


def routing(case: GradeCase, urls: dict[str, str]) -> dict[str, Any]:
    """What an LMS launch and the HR system would give the inviter for this candidate."""
    return {
        "bamboohr_employee_id": str(employee_id(case)),
        "lti": {
            "lis_outcome_service_url": f"{urls['lti11']}/outcomes?course=42",
            "lis_result_sourcedid": f"src-{case.tst_frm_id}",
        },
        "lti13": {
            "lineitem": f"{urls['lti13']}/lineitems/li-{case.tst_frm_id}",
            "user_id": f"user-{case.tst_frm_id}",
        },
    }


def subscriptions_toml(urls: dict[str, str], key_path: Path) -> str:
    return f"""
[[subscriptions]]
name = "bamboo-training"
kind = "bamboohr"
company_domain = "acme"
api_key = "env:BAMBOO_KEY"
base_url = "{urls["bamboohr"]}"
training_type_id = 7
retry_schedule = [1, 1, 1]

[[subscriptions]]
name = "bamboo-table"
kind = "bamboohr"
company_domain = "acme"
api_key = "env:BAMBOO_KEY"
base_url = "{urls["bamboohr"]}"
mode = "table"
table = "customIsograd"
employee_id_from = "ext_id"
retry_schedule = [1, 1, 1]

[subscriptions.fields]
completed_date = "customDate"
"grade.percent" = "customPercent"
"grade.text" = "customGrade"

[[subscriptions]]
name = "lms-lti11"
kind = "lti11"
consumer_key = "isograd-relay"
shared_secret = "env:LTI_SECRET"
retry_schedule = [1, 1, 1]

[[subscriptions]]
name = "lms-lti13"
kind = "lti13"
client_id = "relay-tool"
token_url = "{urls["lti13"]}/token"
private_key = "file:{key_path}"
key_id = "relay-key-1"
retry_schedule = [1, 1, 1]
"""


@pytest.fixture(scope="module")
def vendors() -> Iterator[Vendors]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    employees = frozenset(employee_id(case) for case in GRADE_CASES)
    bamboohr = FakeBambooHR(
        "acme",
        BAMBOO_KEY,
        employees,
        tables={"customIsograd": frozenset({"customDate", "customPercent", "customGrade"})},
    )
    lti11 = FakeLti11Consumer(
        "isograd-relay", LTI_SECRET, frozenset(f"src-{c.tst_frm_id}" for c in GRADE_CASES)
    )
    lti13 = FakeLti13Platform(
        "relay-tool",
        key.public_key(),
        "relay-key-1",
        "",  # the audience is the token URL, known once the server listens
        frozenset(f"li-{c.tst_frm_id}" for c in GRADE_CASES),
    )
    with (
        VendorServer(bamboohr.handle) as bamboo_server,
        VendorServer(lti11.handle) as lti11_server,
        VendorServer(lti13.handle) as lti13_server,
    ):
        urls = {
            "bamboohr": bamboo_server.url(),
            "lti11": lti11_server.url(),
            "lti13": lti13_server.url(),
        }
        lti13.audience = f"{urls['lti13']}/token"
        found = Vendors(bamboohr, lti11, lti13, urls)
        found.urls["key_pem"] = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        yield found


@pytest.fixture(scope="module")
def records(
    redis_url: str, tmp_path_factory: pytest.TempPathFactory, vendors: Vendors
) -> Iterator[Records]:
    directory: Path = tmp_path_factory.mktemp("e2e-records")
    key_path = directory / "tool-key.pem"
    key_path.write_text(vendors.urls["key_pem"], encoding="utf-8")
    with (
        relay_stack(
            directory,
            redis_url=redis_url,
            receiver_url="http://127.0.0.1:9",  # no webhook subscription
            targets=(),
            extra_env={"BAMBOO_KEY": BAMBOO_KEY, "LTI_SECRET": LTI_SECRET},
            config=subscriptions_toml(vendors.urls, key_path),
        ) as stack,
        httpx2.Client(timeout=10) as http,
    ):
        store = SqlStore.from_url(stack.database_url)
        try:
            yield Records(stack, vendors, http, store)
        finally:
            store.close()


@pytest.fixture(scope="module")
def graded(records: Records) -> dict[int, dict[str, Any]]:
    """One completion per grade type, routed to every kind; waits until each vendor has all."""
    invitations = {}
    for case in GRADE_CASES:
        invitation = records.invite(case, routing(case, records.vendors.urls))
        records.stack.complete(
            records.http,
            invitation["pla_tst_id"],
            value=case.value,
            max_value=case.max_value,
            text=case.text,
        )
        invitations[case.tst_frm_id] = invitation
    count = len(GRADE_CASES)
    vendors = records.vendors
    wait_until(
        lambda: (
            len(vendors.bamboohr.records()) == 2 * count
            and len(vendors.lti11.received()) == count
            and len(vendors.lti13.received()) == count
        ),
        timeout=DELIVERY_TIMEOUT,
        what="every grade at every vendor",
        watch=records.stack.services,
    )
    return invitations


@pytest.mark.parametrize("case", GRADE_CASES, ids=lambda c: f"type-{c.gra_typ_id}")
def test_lti11_gets_isograds_own_lti_outcome(
    records: Records, graded: dict[int, dict[str, Any]], case: GradeCase
) -> None:
    [grade] = [
        g for g in records.vendors.lti11.received() if g.sourcedid == f"src-{case.tst_frm_id}"
    ]

    assert grade.score == pytest.approx(
        reference_lti_outcome(case.gra_typ_id, case.value, case.max_value)
    )


@pytest.mark.parametrize("case", GRADE_CASES, ids=lambda c: f"type-{c.gra_typ_id}")
def test_lti13_gets_the_score_out_of_the_grades_maximum(
    records: Records, graded: dict[int, dict[str, Any]], case: GradeCase
) -> None:
    [score] = [s for s in records.vendors.lti13.received() if s.lineitem == f"li-{case.tst_frm_id}"]

    assert (score.body["userId"], score.body["scoreGiven"], score.body["scoreMaximum"]) == (
        f"user-{case.tst_frm_id}",
        case.value,
        case.max_value,
    )
    assert (score.body["activityProgress"], score.body["gradingProgress"]) == (
        "Completed",
        "FullyGraded",
    )


def test_lti13_asked_one_token_for_all_the_scores(
    records: Records, graded: dict[int, dict[str, Any]]
) -> None:
    assert records.vendors.lti13.tokens_issued == 1


@pytest.mark.parametrize("case", GRADE_CASES, ids=lambda c: f"type-{c.gra_typ_id}")
def test_bamboohr_gets_a_training_record_and_a_table_row_on_the_employee(
    records: Records, graded: dict[int, dict[str, Any]], case: GradeCase
) -> None:
    found = [r for r in records.vendors.bamboohr.records() if r.employee_id == employee_id(case)]
    by_kind = {r.kind: r.body for r in found}

    assert sorted(by_kind) == ["customIsograd", "training"]
    assert by_kind["training"]["type"] == 7
    assert f": {case.text}." in by_kind["training"]["notes"]
    assert by_kind["customIsograd"]["customPercent"] == pytest.approx(
        case.value / case.max_value * 100
    )
    assert by_kind["customIsograd"]["customGrade"] == case.text
    assert by_kind["customIsograd"]["customDate"] == by_kind["training"]["completed"]


def test_every_delivery_is_recorded_delivered(
    records: Records, graded: dict[int, dict[str, Any]]
) -> None:
    with records.store.engine.connect() as connection:
        rows = connection.execute(select(deliveries.c.subscription, deliveries.c.status)).all()

    assert sorted((row.subscription, row.status) for row in rows) == sorted(
        (kind, "delivered") for kind in SUBSCRIPTIONS for _ in GRADE_CASES
    )


def test_an_invitation_without_routing_data_fails_each_delivery_naming_the_key(
    records: Records, graded: dict[int, dict[str, Any]]
) -> None:
    before = len(records.vendors.lti11.received())
    invitation = records.invite(GRADE_CASES[0], {"note": "no routing"})
    records.stack.complete(records.http, invitation["pla_tst_id"], value=500)

    def failed() -> dict[str, str | None]:
        with records.store.engine.connect() as connection:
            rows = connection.execute(
                select(
                    deliveries.c.subscription, deliveries.c.status, deliveries.c.last_error
                ).where(deliveries.c.status == "failed")
            ).all()
        return {row.subscription: row.last_error for row in rows}

    wait_until(
        lambda: len(failed()) == 3,
        timeout=DELIVERY_TIMEOUT,
        what="the unroutable deliveries to fail",
        watch=records.stack.services,
    )
    assert failed() == {
        "bamboo-training": "context.bamboohr_employee_id is missing",
        "lms-lti11": "context.lti is missing",
        "lms-lti13": "context.lti13 is missing",
    }
    assert len(records.vendors.lti11.received()) == before


def test_no_secret_or_key_appears_in_the_relays_logs(
    records: Records, graded: dict[int, dict[str, Any]]
) -> None:
    logs = records.stack.logs()

    assert BAMBOO_KEY not in logs
    assert LTI_SECRET not in logs
    assert records.vendors.urls["key_pem"].splitlines()[1] not in logs
