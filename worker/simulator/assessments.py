"""Test actions: add (2, 9), create candidate and add (8), proctoring (16, 17), delete (23),
confirmation test (58), status (10)."""

from __future__ import annotations

from worker.isograd.models import AssessmentStatus
from worker.simulator.answers import Answer, page_url, start_answer, succeed
from worker.simulator.candidates import create_candidate
from worker.simulator.catalogue import PROCTORING_CREDIT
from worker.simulator.failures import (
    CANDIDATE_ALREADY_EXISTS,
    MAX_TESTS_TAKEN,
    NO_CREDITS,
    NO_PROCTORING_CREDITS,
    TEST_NOT_ALLOWED,
    TEST_NOT_FINISHED,
    TEST_STARTED_OR_MISSING,
    UNKNOWN_PLA_TST_ID,
    ActionError,
)
from worker.simulator.params import Params
from worker.simulator.state import (
    Account,
    Assessment,
    Candidate,
    ExistingCandidatePolicy,
    SimulatorState,
)

# The optional parameters of "Add a test", kept on the test as sent (cal_bac_pag among them).
ADD_TEST_OPTIONS = (
    "nee_ful_scr",
    "ses_id",
    "add_pro",
    "max_num_tst",
    "max_num_tst_per",
    "rtn_pag",
    "cal_bac_pag",
    "cpf_id",
    "nb_test_by_credit",
)
_DAY = 86_400.0


def start_url(state: SimulatorState, assessment: Assessment) -> str:
    return page_url(state, f"/_simulator/pages/tests/{assessment.pla_tst_id}")


def _spend(account: Account, credit: str, failure_if_none: ActionError) -> None:
    if account.credits.get(credit, 0) <= 0:
        raise failure_if_none
    account.credits[credit] -= 1


def _refund(account: Account, credit: str) -> None:
    account.credits[credit] = account.credits.get(credit, 0) + 1


def add_test(
    state: SimulatorState,
    params: Params,
    sub_com_id: int | None,
    *,
    force_new: bool,
    candidate: Candidate | None = None,
) -> Assessment:
    """Act 2/9's work. Order of checks: 105, 106, 107, (act 2) unfinished test, 402, 301, 303.

    303 with add_pro=1 is our reading: the reference lists it for act 16 only, but proctoring is
    paid with the same credits.
    """
    tst_frm_id = params.tst_frm_id(TEST_NOT_ALLOWED)
    email = params.require("ema") if candidate is None else candidate.email
    with state.lock:
        test = state.catalogue_test(tst_frm_id)
        if candidate is None:
            candidate = state.candidate_by_email(sub_com_id, email)
        previous = state.tests_of(candidate, tst_frm_id)
        if not force_new:
            unfinished = [a for a in previous if a.unfinished]
            if unfinished:
                return unfinished[-1]
        max_tests = params.lenient_integer("max_num_tst")
        if max_tests is not None:
            period_days = params.lenient_integer("max_num_tst_per")
            if period_days is not None:
                since = state.clock.now() - period_days * _DAY
                previous = [a for a in previous if a.created_at >= since]
            if len(previous) >= max_tests:
                raise ActionError(MAX_TESTS_TAKEN)
        account = state.account(sub_com_id)
        proctored = params.flag("add_pro")
        if proctored and account.credits.get(PROCTORING_CREDIT, 0) <= 0:
            raise ActionError(NO_PROCTORING_CREDITS)
        _spend(account, test.credit, ActionError(NO_CREDITS))
        if proctored:
            _spend(account, PROCTORING_CREDIT, ActionError(NO_PROCTORING_CREDITS))
        return state.new_assessment(
            candidate,
            tst_frm_id,
            options=params.options(ADD_TEST_OPTIONS),
            proctored=proctored,
            credit=test.credit,
        )


def act_add_test(state: SimulatorState, params: Params, sub_com_id: int | None) -> Answer:
    assessment = add_test(state, params, sub_com_id, force_new=False)
    return start_answer(params, start_url(state, assessment), pla_tst_id=assessment.pla_tst_id)


def act_add_new_test(state: SimulatorState, params: Params, sub_com_id: int | None) -> Answer:
    assessment = add_test(state, params, sub_com_id, force_new=True)
    return start_answer(params, start_url(state, assessment), pla_tst_id=assessment.pla_tst_id)


def act_create_candidate_and_add_test(
    state: SimulatorState, params: Params, sub_com_id: int | None
) -> Answer:
    """Act 8: create the candidate, then add the test (act 2 semantics) to it. A candidate created
    before the add-test step fails stays created, as two successive actions would leave it."""
    with state.lock:
        try:
            candidate = create_candidate(state, params, sub_com_id)
        except ActionError as exc:
            policy = state.config.act8_existing_candidate
            if exc.failure != CANDIDATE_ALREADY_EXISTS or policy is ExistingCandidatePolicy.FAIL:
                raise
            candidate = state.candidate_by_id(sub_com_id, exc.extra["can_id"])
        assessment = add_test(state, params, sub_com_id, force_new=False, candidate=candidate)
    return start_answer(
        params,
        start_url(state, assessment),
        pla_tst_id=assessment.pla_tst_id,
        can_id=candidate.can_id,
    )


def _pla_tst_id(params: Params) -> int | None:
    return params.integer("pla_tst_id", UNKNOWN_PLA_TST_ID, required=True)


def act_add_proctoring(state: SimulatorState, params: Params, sub_com_id: int | None) -> Answer:
    """Act 16; adding it twice spends one credit. An unknown pla_tst_id answers 501 (not in the
    reference's table for this action; the code act 10 uses for it)."""
    with state.lock:
        assessment = state.assessment(sub_com_id, _pla_tst_id(params))
        if not assessment.proctored:
            account = state.account(sub_com_id)
            _spend(account, PROCTORING_CREDIT, ActionError(NO_PROCTORING_CREDITS))
            assessment.proctored = True
    return succeed()


def act_remove_proctoring(state: SimulatorState, params: Params, sub_com_id: int | None) -> Answer:
    """Act 17: the proctoring credit is given back."""
    with state.lock:
        assessment = state.assessment(sub_com_id, _pla_tst_id(params))
        if assessment.proctored:
            _refund(state.account(sub_com_id), PROCTORING_CREDIT)
            assessment.proctored = False
    return succeed()


def act_delete_test(state: SimulatorState, params: Params, sub_com_id: int | None) -> Answer:
    """Act 23: only a test not started yet; its credits are given back."""
    pla_tst_id = params.integer("pla_tst_id", TEST_STARTED_OR_MISSING, required=True)
    with state.lock:
        assessment = state.assessment(sub_com_id, pla_tst_id, TEST_STARTED_OR_MISSING)
        if assessment.status is not AssessmentStatus.NOT_STARTED:
            raise ActionError(TEST_STARTED_OR_MISSING)
        account = state.account(sub_com_id)
        if assessment.credit is not None:
            _refund(account, assessment.credit)
        if assessment.proctored:
            _refund(account, PROCTORING_CREDIT)
        del state.assessments[assessment.pla_tst_id]
    return succeed()


def act_add_confirmation_test(
    state: SimulatorState, params: Params, sub_com_id: int | None
) -> Answer:
    """Act 58: a new test of the same tst_frm_id linked to a completed one. The reference lists no
    errors; we answer 501 for an unknown test and 502 for one not completed."""
    with state.lock:
        original = state.assessment(sub_com_id, _pla_tst_id(params))
        if original.status is not AssessmentStatus.COMPLETED:
            raise ActionError(TEST_NOT_FINISHED)
        test = state.catalogue_test(original.tst_frm_id)
        account = state.account(sub_com_id)
        _spend(account, test.credit, ActionError(NO_CREDITS))
        candidate = state.candidate_by_id(sub_com_id, original.can_id)
        options = {k: v for k, v in original.options.items() if k in ("cal_bac_pag", "rtn_pag")}
        confirmation = state.new_assessment(
            candidate,
            original.tst_frm_id,
            options=options,
            credit=test.credit,
            confirmation_of=original.pla_tst_id,
        )
    return start_answer(params, start_url(state, confirmation), html_allowed=False)


def act_test_status(state: SimulatorState, params: Params, sub_com_id: int | None) -> Answer:
    assessment = state.assessment(sub_com_id, _pla_tst_id(params))
    return succeed(sta_id=int(assessment.status))
