"""The simulated Isograd account: configuration, candidates, tests, credits, sessions, emails."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from worker.isograd.models import AssessmentStatus
from worker.simulator.catalogue import Catalogue, CatalogueTest
from worker.simulator.clock import SimulatedClock, iso
from worker.simulator.failures import (
    CANDIDATE_NOT_FOUND,
    TEST_NOT_ALLOWED,
    UNKNOWN_PLA_TST_ID,
    ActionError,
    Failure,
)
from worker.simulator.faults import SimulatorFaults
from worker.simulator.results import SimulatedResult, result_json


class ExistingCandidatePolicy(StrEnum):
    """What act 8 does when the email already has a candidate on the account.

    The reference only says act 8 "performs successively Create Candidate and Add a Test", so a
    202 from the first step most likely stops it: FAIL (the default) answers 202 with the can_id
    and adds no test; CONTINUE adds the test to the existing candidate (the lenient reading).
    """

    FAIL = "fail"
    CONTINUE = "continue"


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """Everything the simulator is started with. `public_url` is its own base URL, used in the
    URLs it hands out (lgn_url, tst_url, pdf_url, redirects)."""

    client_id: str
    client_secret: str
    public_url: str = "http://127.0.0.1:8100"
    catalogue: Catalogue = field(default_factory=Catalogue)
    faults: SimulatorFaults = field(default_factory=SimulatorFaults)
    callback_timeout_seconds: float = 10.0
    act8_existing_candidate: ExistingCandidatePolicy = ExistingCandidatePolicy.FAIL


@dataclass(slots=True)
class Candidate:
    can_id: int
    sub_com_id: int | None
    email: str
    first_name: str
    last_name: str
    gen_id: int
    lan_id: int | None = None
    ext_id: str | None = None
    dep_id: int | None = None
    job_id: int | None = None
    extra_time_percent: int = 0
    anonymized: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "can_id": self.can_id,
            "sub_com_id": self.sub_com_id,
            "ema": self.email,
            "fst_nam": self.first_name,
            "lst_nam": self.last_name,
            "gen_id": self.gen_id,
            "lan_id": self.lan_id,
            "ext_id": self.ext_id,
            "dep_id": self.dep_id,
            "job_id": self.job_id,
            "xtr_tim_fac": self.extra_time_percent,
            "anonymized": self.anonymized,
        }


@dataclass(slots=True)
class Assessment:
    """A test added to a candidate (a `pla_tst_id`)."""

    pla_tst_id: int
    sub_com_id: int | None
    can_id: int
    tst_frm_id: int
    created_at: float
    options: dict[str, str] = field(default_factory=dict)  # the optional parameters as sent
    status: AssessmentStatus = AssessmentStatus.NOT_STARTED
    proctored: bool = False
    credit: str | None = None  # the credit type consumed, refunded on delete
    confirmation_of: int | None = None
    started_at: float | None = None
    finished_at: float | None = None
    result: SimulatedResult | None = None

    @property
    def callback_url(self) -> str | None:
        return self.options.get("cal_bac_pag") or None

    @property
    def unfinished(self) -> bool:
        return self.status in (AssessmentStatus.NOT_STARTED, AssessmentStatus.STARTED)

    def as_json(self) -> dict[str, Any]:
        return {
            "pla_tst_id": self.pla_tst_id,
            "sub_com_id": self.sub_com_id,
            "can_id": self.can_id,
            "tst_frm_id": self.tst_frm_id,
            "sta_id": int(self.status),
            "status": self.status.name.lower(),
            "proctored": self.proctored,
            "confirmation_of": self.confirmation_of,
            "options": dict(self.options),
            "created_at": iso(self.created_at),
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "result": None if self.result is None else result_json(self.result),
        }


@dataclass(slots=True)
class Account:
    """The master account (sub_com_id None) or one sub account; state is partitioned by it."""

    sub_com_id: int | None
    credits: dict[str, int]
    candidates: dict[str, int] = field(default_factory=dict)  # lower-cased email -> can_id
    groups: dict[int, str] = field(default_factory=dict)  # dep_id -> name (or ext_dep_id)


class SimulatorState:
    """All mutable state behind one re-entrant lock (`lock`): hold it across a whole action."""

    def __init__(self, config: SimulatorConfig, clock: SimulatedClock) -> None:
        self.config = config
        self.clock = clock
        self.lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.accounts: dict[int | None, Account] = {}
            self.candidates: dict[int, Candidate] = {}
            self.assessments: dict[int, Assessment] = {}
            self.sessions: dict[int, dict[str, Any]] = {}
            self.emails: list[dict[str, Any]] = []
            # Id ranges look like production ones (the reference's example can_id is 1381134).
            self._can_ids: Iterator[int] = itertools.count(1381134)
            self._pla_tst_ids: Iterator[int] = itertools.count(5_000_001)
            self._ses_ids: Iterator[int] = itertools.count(9001)
            self._dep_ids: Iterator[int] = itertools.count(701)

    def account(self, sub_com_id: int | None) -> Account:
        """The account, created on first use with the catalogue's starting credits."""
        with self.lock:
            account = self.accounts.get(sub_com_id)
            if account is None:
                account = Account(
                    sub_com_id, dict(self.config.catalogue.credits), groups={1: "Default"}
                )
                self.accounts[sub_com_id] = account
            return account

    def catalogue_test(
        self, tst_frm_id: int | None, failure: Failure = TEST_NOT_ALLOWED
    ) -> CatalogueTest:
        test = None if tst_frm_id is None else self.config.catalogue.find(tst_frm_id)
        if test is None:
            raise ActionError(failure)
        return test

    def candidate_by_email(
        self, sub_com_id: int | None, email: str, failure: Failure = CANDIDATE_NOT_FOUND
    ) -> Candidate:
        with self.lock:
            can_id = self.account(sub_com_id).candidates.get(email.strip().lower())
            if can_id is None:
                raise ActionError(failure)
            return self.candidates[can_id]

    def candidate_by_id(self, sub_com_id: int | None, can_id: int | None) -> Candidate:
        with self.lock:
            candidate = None if can_id is None else self.candidates.get(can_id)
            if candidate is None or candidate.sub_com_id != sub_com_id:
                raise ActionError(CANDIDATE_NOT_FOUND)
            return candidate

    def assessment(
        self, sub_com_id: int | None, pla_tst_id: int | None, failure: Failure = UNKNOWN_PLA_TST_ID
    ) -> Assessment:
        """The test `pla_tst_id` of this account; tests of other (sub) accounts are not visible."""
        with self.lock:
            found = None if pla_tst_id is None else self.assessments.get(pla_tst_id)
            if found is None or found.sub_com_id != sub_com_id:
                raise ActionError(failure)
            return found

    def assessment_for_control(self, pla_tst_id: int) -> Assessment | None:
        with self.lock:
            return self.assessments.get(pla_tst_id)

    def new_candidate(self, account: Account, **fields: Any) -> Candidate:
        with self.lock:
            candidate = Candidate(
                can_id=next(self._can_ids), sub_com_id=account.sub_com_id, **fields
            )
            self.candidates[candidate.can_id] = candidate
            account.candidates[candidate.email.lower()] = candidate.can_id
            return candidate

    def new_assessment(self, candidate: Candidate, tst_frm_id: int, **fields: Any) -> Assessment:
        with self.lock:
            assessment = Assessment(
                pla_tst_id=next(self._pla_tst_ids),
                sub_com_id=candidate.sub_com_id,
                can_id=candidate.can_id,
                tst_frm_id=tst_frm_id,
                created_at=self.clock.now(),
                **fields,
            )
            self.assessments[assessment.pla_tst_id] = assessment
            return assessment

    def new_group(self, account: Account, name: str) -> int:
        with self.lock:
            dep_id = next(self._dep_ids)
            account.groups[dep_id] = name
            return dep_id

    def new_session(self, sub_com_id: int | None, **fields: Any) -> int:
        with self.lock:
            ses_id = next(self._ses_ids)
            self.sessions[ses_id] = {"ses_id": ses_id, "sub_com_id": sub_com_id, **fields}
            return ses_id

    def tests_of(self, candidate: Candidate, tst_frm_id: int | None = None) -> list[Assessment]:
        """The candidate's tests (optionally of one tst_frm_id), oldest first."""
        with self.lock:
            return [
                a
                for a in self.assessments.values()
                if a.can_id == candidate.can_id and tst_frm_id in (None, a.tst_frm_id)
            ]

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "now": iso(self.clock.now()),
                "accounts": [
                    {
                        "sub_com_id": a.sub_com_id,
                        "credits": dict(a.credits),
                        "groups": dict(a.groups),
                    }
                    for a in self.accounts.values()
                ],
                "candidates": [c.as_json() for c in self.candidates.values()],
                "tests": [a.as_json() for a in self.assessments.values()],
                "sessions": list(self.sessions.values()),
                "emails": [{**e, "recorded_at": iso(e["recorded_at"])} for e in self.emails],
            }
