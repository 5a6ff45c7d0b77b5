"""End to end with real processes: simulator, `isograd-relay web` and `worker` on real Redis, a
real HTTP receiver; from invitation to a signed `assessment.completed` per subscription.

The processes start once for the module (see tests/harness/processes.py) and the tests run in file
order; each test uses invitations of its own, except the log scan, which reads everything the
earlier tests made the processes write.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest
import standardwebhooks
import svix.webhooks
from sqlalchemy import func, select

from tests.harness.processes import (
    RelayStack,
    WebhookTarget,
    new_webhook_secret,
    relay_stack,
    wait_until,
)
from tests.receiver import RecordedRequest, RecordingReceiver
from worker.storage.store import SqlStore
from worker.storage.tables import callbacks, deliveries, events

pytestmark = pytest.mark.e2e

DELIVERY_TIMEOUT = 15.0
# Long enough for one Dramatiq retry of process_completion (backoff 5-10 s) and its delivery.
RETRY_TIMEOUT = 30.0

ALPHA = WebhookTarget("alpha", (new_webhook_secret(),))
# Two secrets: the relay signs with both, so a receiver can move to the new one without downtime.
BETA = WebhookTarget("beta", (new_webhook_secret(), new_webhook_secret()))
TARGETS = (ALPHA, BETA)


@dataclass(frozen=True)
class GradeCase:
    """One catalogue test of the simulator (worker/simulator/catalogue.py) and the grade its
    completion is given."""

    tst_frm_id: int
    gra_typ_id: int
    type_name: str
    value: float
    max_value: float
    text: str


# One test per grade type, with values away from the defaults and from type 5's range bounds.
GRADE_CASES = (
    GradeCase(101, 2, "irt_score_1000", 815, 1000, "815/1000"),
    GradeCase(102, 1, "level_5", 4, 5, "Advanced \u2013 4/5"),
    GradeCase(103, 5, "irt_range_1000", 760, 1000, "700-1000"),
    GradeCase(104, 3, "average_score_1000", 430, 1000, "430/1000"),
    GradeCase(105, 4, "correct_answers", 33, 40, "33/40"),
    GradeCase(106, 15, "average_score_100", 64, 100, "64/100"),
)


def reference_lti_outcome(gra_typ_id: int, value: float, max_value: float) -> float:
    """Isograd's LTI Basic Outcome rules, as isograd-api.txt's last section states them."""
    if gra_typ_id == 1:
        return value / 10  # "the level divided by 10"
    if gra_typ_id in (2, 3, 15):
        return value / 1000  # "the score divided by 1000" (type 15 too, though on 100)
    if gra_typ_id == 4:
        return value / max_value  # correct answers / number of questions
    if gra_typ_id == 5:
        # "the middle value of the relevant range divided by 1000": 1-350, 350-700, 700-1000.
        low, high = next((lo, hi) for lo, hi in ((700, 1000), (350, 700), (1, 350)) if value > lo)
        return (low + high) / 2 / 1000
    raise AssertionError(f"no reference rule for grade type {gra_typ_id}")


def expected_grade(case: GradeCase) -> dict[str, Any]:
    """The event's grade object, computed independently from Isograd's documented rules."""
    normalized = min(max(case.value / case.max_value, 0.0), 1.0)
    return {
        "gra_typ_id": case.gra_typ_id,
        "type": case.type_name,
        "value": case.value,
        "max": case.max_value,
        "text": case.text,
        "normalized": pytest.approx(normalized),
        "lti_outcome": pytest.approx(
            reference_lti_outcome(case.gra_typ_id, case.value, case.max_value)
        ),
        "percent": pytest.approx(normalized * 100),
    }


@dataclass(frozen=True)
class Delivered:
    """One webhook the receiver got, decoded."""

    target: str
    request: RecordedRequest
    payload: dict[str, Any]

    @property
    def pla_tst_id(self) -> int:
        return int(self.payload["data"]["test"]["pla_tst_id"])


@dataclass(frozen=True)
class Completion:
    invitation: dict[str, Any]
    email: str
    callback_url: str
    simulator_callbacks: list[dict[str, Any]]


@dataclass
class E2E:
    """The running stack and what the tests need around it."""

    stack: RelayStack
    receiver: RecordingReceiver
    http: httpx2.Client
    store: SqlStore
    emails: list[str] = field(default_factory=list)
    callback_urls: list[str] = field(default_factory=list)

    def deliveries(self) -> list[Delivered]:
        found = []
        for request in self.receiver.requests:
            target = next(t.name for t in TARGETS if request.path == t.path)
            found.append(Delivered(target, request, json.loads(request.body)))
        return found

    def deliveries_for(self, pla_tst_id: int) -> list[Delivered]:
        return [d for d in self.deliveries() if d.pla_tst_id == pla_tst_id]

    def invite(self, tst_frm_id: int) -> tuple[dict[str, Any], str]:
        email = f"cand-{uuid.uuid4().hex[:12]}@example.org"
        self.emails.append(email)
        invitation = self.stack.invite(
            self.http,
            email=email,
            first_name="Grace",
            last_name="Hopper",
            tst_frm_id=tst_frm_id,
            context={"case": "e2e"},
        )
        return invitation, email

    def complete(self, invitation: dict[str, Any], email: str, **grading: Any) -> Completion:
        answer = self.stack.complete(self.http, invitation["pla_tst_id"], **grading)
        url = answer["test"]["options"]["cal_bac_pag"]
        self.callback_urls.append(url)
        return Completion(invitation, email, url, answer["callbacks"])

    def wait_for_deliveries(self, pla_tst_id: int, timeout: float = DELIVERY_TIMEOUT) -> None:
        """Until every subscription has had (at least) one webhook for `pla_tst_id`."""
        wait_until(
            lambda: {d.target for d in self.deliveries_for(pla_tst_id)} >= {"alpha", "beta"},
            timeout=timeout,
            what=f"the deliveries of test {pla_tst_id}",
            watch=self.stack.services,
        )

    def complete_and_deliver(self, tst_frm_id: int = 101, **grading: Any) -> Completion:
        invitation, email = self.invite(tst_frm_id)
        completion = self.complete(invitation, email, **grading)
        self.wait_for_deliveries(invitation["pla_tst_id"])
        return completion

    def count(self, table: Any, **where: Any) -> int:
        query = select(func.count()).select_from(table)
        for column, value in where.items():
            query = query.where(table.c[column] == value)
        with self.store.engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

    def receipts(self, invitation_id: str) -> list[tuple[bool, str | None]]:
        query = (
            select(callbacks.c.accepted, callbacks.c.reason)
            .where(callbacks.c.invitation_id == invitation_id)
            .order_by(callbacks.c.id)
        )
        with self.store.engine.connect() as connection:
            return [(bool(row.accepted), row.reason) for row in connection.execute(query)]

    def act_10_calls(self) -> int:
        counters = self.stack.simulator(self.http, "/counters")
        return int(counters["api_calls_by_act"].get("10", 0))


@pytest.fixture(scope="module")
def e2e(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2E]:
    directory: Path = tmp_path_factory.mktemp("e2e")
    with (
        RecordingReceiver() as receiver,
        relay_stack(
            directory, redis_url=redis_url, receiver_url=receiver.url(), targets=TARGETS
        ) as stack,
        httpx2.Client(timeout=10) as http,
    ):
        store = SqlStore.from_url(stack.database_url)
        try:
            yield E2E(stack, receiver, http, store)
        finally:
            store.close()


@pytest.fixture(scope="module")
def graded(e2e: E2E) -> dict[int, Completion]:
    """One completion per grade type, all delivered."""
    invited = [(case, *e2e.invite(case.tst_frm_id)) for case in GRADE_CASES]
    completions = {
        case.tst_frm_id: e2e.complete(
            invitation,
            email,
            value=case.value,
            max_value=case.max_value,
            text=case.text,
            elapsed_seconds=1200 + case.tst_frm_id,
        )
        for case, invitation, email in invited
    }
    for completion in completions.values():
        e2e.wait_for_deliveries(completion.invitation["pla_tst_id"])
    return completions


def test_the_simulator_callback_is_answered_200(graded: dict[int, Completion]) -> None:
    outcomes = [
        (attempt["outcome"], attempt["status_code"])
        for completion in graded.values()
        for attempt in completion.simulator_callbacks
    ]

    assert outcomes == [("sent", 200)] * len(GRADE_CASES)


def test_each_completion_reaches_each_subscription_exactly_once(
    e2e: E2E, graded: dict[int, Completion]
) -> None:
    pla_tst_ids = {c.invitation["pla_tst_id"] for c in graded.values()}

    delivered = Counter(
        (d.target, d.pla_tst_id) for d in e2e.deliveries() if d.pla_tst_id in pla_tst_ids
    )

    assert delivered == Counter((t.name, p) for t in TARGETS for p in pla_tst_ids)


def test_both_subscriptions_receive_the_same_event_id(
    e2e: E2E, graded: dict[int, Completion]
) -> None:
    for completion in graded.values():
        found = e2e.deliveries_for(completion.invitation["pla_tst_id"])

        ids = {d.request.headers["webhook-id"] for d in found}
        assert ids == {d.payload["data"]["event_id"] for d in found}
        assert len(ids) == 1


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.name)
def test_every_webhook_verifies_with_standardwebhooks_and_svix_for_each_secret(
    e2e: E2E, graded: dict[int, Completion], target: WebhookTarget
) -> None:
    received = [d for d in e2e.deliveries() if d.target == target.name]

    for delivered in received:
        for secret in target.secrets:
            signed = standardwebhooks.Webhook(secret).verify(
                delivered.request.body, delivered.request.headers
            )
            svix.webhooks.Webhook(secret).verify(delivered.request.body, delivered.request.headers)
            assert signed == delivered.payload
    assert len(received) >= len(GRADE_CASES)


def test_a_webhook_does_not_verify_with_another_subscriptions_secret(
    e2e: E2E, graded: dict[int, Completion]
) -> None:
    delivered = next(d for d in e2e.deliveries() if d.target == BETA.name)

    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(ALPHA.secrets[0]).verify(
            delivered.request.body, delivered.request.headers
        )


@pytest.mark.parametrize("case", GRADE_CASES, ids=lambda c: f"type-{c.gra_typ_id}")
def test_the_delivered_grade_follows_the_reference_rules(
    e2e: E2E, graded: dict[int, Completion], case: GradeCase
) -> None:
    completion = graded[case.tst_frm_id]

    found = e2e.deliveries_for(completion.invitation["pla_tst_id"])

    assert [d.payload["data"]["grade"] for d in found] == [expected_grade(case)] * 2


@pytest.mark.parametrize("case", GRADE_CASES, ids=lambda c: f"type-{c.gra_typ_id}")
def test_the_delivered_event_names_the_candidate_test_and_invitation(
    e2e: E2E, graded: dict[int, Completion], case: GradeCase
) -> None:
    completion = graded[case.tst_frm_id]
    invitation = completion.invitation

    [first, *_] = e2e.deliveries_for(invitation["pla_tst_id"])
    data = first.payload["data"]

    assert first.payload["type"] == "assessment.completed"
    assert data["invitation_id"] == invitation["invitation_id"]
    assert data["candidate"]["email"] == completion.email
    assert data["candidate"]["can_id"] == invitation["can_id"]
    assert data["test"] == {
        "tst_frm_id": case.tst_frm_id,
        "pla_tst_id": invitation["pla_tst_id"],
        "status": "completed",
    }
    assert data["duration_seconds"] == 1200 + case.tst_frm_id
    assert data["context"] == {"case": "e2e"}


def test_a_repeated_callback_creates_no_second_event_and_no_second_delivery(e2e: E2E) -> None:
    invitation, email = e2e.invite(101)
    completion = e2e.complete(invitation, email, value=640)
    pla_tst_id = invitation["pla_tst_id"]
    # Once while the first processing may still run, once after everything was delivered.
    early = e2e.http.get(completion.callback_url)
    e2e.wait_for_deliveries(pla_tst_id)
    late = e2e.http.get(completion.callback_url)
    # A later completion delivered means the queue moved past anything the repeats could add.
    e2e.complete_and_deliver(value=500)

    assert (early.status_code, late.status_code) == (200, 200)
    assert Counter(d.target for d in e2e.deliveries_for(pla_tst_id)) == {"alpha": 1, "beta": 1}
    assert e2e.count(events, pla_tst_id=pla_tst_id) == 1
    [event_id] = {d.request.headers["webhook-id"] for d in e2e.deliveries_for(pla_tst_id)}
    assert e2e.count(deliveries, event_id=event_id) == 2
    receipts = e2e.receipts(invitation["invitation_id"])
    assert [accepted for accepted, _ in receipts] == [True, True, True]
    assert receipts[-1] == (True, "already_completed")


def forged(url: str) -> str:
    _kid, _invitation_id, mac = url.rsplit("/", 1)[1].split(".")
    return url.replace(mac, ("A" if mac[0] != "A" else "B") + mac[1:])


def tampered(url: str) -> str:
    # Another invitation id under the original MAC.
    return url.replace(".inv_", ".inv_x")


def unknown_kid(url: str) -> str:
    return url.replace("/e2e.", "/old.")


@pytest.mark.parametrize(
    ("make_url", "reason"),
    [(forged, "bad_mac"), (tampered, "bad_mac"), (unknown_kid, "unknown_kid")],
    ids=["forged", "tampered", "unknown-kid"],
)
def test_a_bad_callback_token_answers_404_and_starts_nothing(
    e2e: E2E, make_url: Any, reason: str
) -> None:
    # A real cal_bac_pag URL of a test nobody completed, as the simulator holds it.
    invitation, _ = e2e.invite(102)
    test = e2e.stack.simulator(e2e.http, f"/tests/{invitation['pla_tst_id']}")
    good_url = test["options"]["cal_bac_pag"]
    e2e.callback_urls.append(good_url)
    act_10_before = e2e.act_10_calls()

    response = e2e.http.get(make_url(good_url))
    # A later completion delivered means the queue moved past anything the callback could add.
    e2e.complete_and_deliver(value=500)

    assert response.status_code == 404
    assert e2e.act_10_calls() == act_10_before + 1  # the later completion's own
    claimed = make_url(good_url).rsplit("/", 1)[1].split(".")[1]
    assert e2e.receipts(claimed) == [(False, reason)]
    status = e2e.http.get(
        f"{e2e.stack.web_url}/api/invitations/{invitation['invitation_id']}",
        headers=e2e.stack.admin_headers(),
    ).json()["status"]
    assert status == "pending"


def test_an_isograd_5xx_during_processing_is_retried_by_the_worker_then_delivered(
    e2e: E2E,
) -> None:
    invitation, email = e2e.invite(104)
    errors_before = e2e.stack.simulator(e2e.http, "/counters")["injected_errors"]
    # A first run asks acts 10, 4, 5 and 6 at once, each up to three times: twelve 503s exhaust
    # them all, so the job itself fails with a retryable error and Dramatiq runs it again after
    # its backoff.
    e2e.stack.simulator(e2e.http, "/faults", json={"fail_next": 12, "error_status": 503})

    e2e.complete(invitation, email, value=700)
    e2e.wait_for_deliveries(invitation["pla_tst_id"], timeout=RETRY_TIMEOUT)

    assert e2e.stack.simulator(e2e.http, "/counters")["injected_errors"] == errors_before + 12
    assert '"event": "job_will_retry"' in e2e.stack.processes["worker"].output()
    assert Counter(d.target for d in e2e.deliveries_for(invitation["pla_tst_id"])) == {
        "alpha": 1,
        "beta": 1,
    }


def test_no_secret_or_candidate_email_appears_in_the_relay_logs(e2e: E2E) -> None:
    # Runs after the flows above: the logs then hold every callback, completion and delivery.
    logs = e2e.stack.logs()
    webhook_secrets = [s for t in TARGETS for s in t.secrets]
    secrets = {
        **{f"webhook secret {i}": s for i, s in enumerate(webhook_secrets)},
        **{f"webhook key {i}": s.removeprefix("whsec_") for i, s in enumerate(webhook_secrets)},
        "CALLBACK_KEYS secret": e2e.stack.callback_secret,
        "ADMIN_TOKEN": e2e.stack.admin_token,
    }

    leaked_secrets = [name for name, secret in secrets.items() if secret in logs]
    leaked_emails = [email for email in e2e.emails if email in logs]

    # The scan must have something to scan: the canonical lines of callbacks and attempts.
    assert '"event": "callback_received"' in logs
    assert '"event": "delivery_attempt"' in logs
    assert len(e2e.emails) >= len(GRADE_CASES)
    assert leaked_secrets == []
    assert leaked_emails == []


def test_no_callback_token_appears_in_the_relay_logs(e2e: E2E) -> None:
    # A token's MAC is a bearer credential for its invitation's callback.
    logs = e2e.stack.logs()
    macs = [url.rsplit(".", 1)[1] for url in e2e.callback_urls]

    leaked = [mac for mac in macs if mac in logs]

    assert macs
    assert leaked == []
