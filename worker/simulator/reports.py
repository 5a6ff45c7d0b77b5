"""Result actions: PDF report URL (6), result (4), result details by skill (5)."""

from __future__ import annotations

from worker.isograd.models import AssessmentStatus, Language
from worker.simulator.answers import Answer, Redirect, page_url, succeed
from worker.simulator.catalogue import CatalogueTest
from worker.simulator.failures import (
    NOT_AN_ASSESSMENT,
    RESULT_CANDIDATE_NOT_FOUND,
    RESULT_TEST_NOT_ALLOWED,
    TEST_NOT_FINISHED,
    TEST_NOT_TAKEN,
    ActionError,
)
from worker.simulator.params import Params
from worker.simulator.results import SimulatedResult, details_json, result_json
from worker.simulator.state import Assessment, SimulatorState


def _taken_test(
    state: SimulatorState, params: Params, sub_com_id: int | None, *, report: bool
) -> tuple[CatalogueTest, Assessment, SimulatedResult]:
    """The completed test the call designates. Order of checks: 105, 106, 107, 501, 601 (act 6
    only), 502. Without pla_tst_id, "the last test taken": the latest finished one, else the
    latest added (which then answers 502)."""
    tst_frm_id = params.tst_frm_id(RESULT_TEST_NOT_ALLOWED)
    email = params.require("ema")
    pla_tst_id = params.integer("pla_tst_id", TEST_NOT_TAKEN)
    with state.lock:
        test = state.catalogue_test(tst_frm_id, RESULT_TEST_NOT_ALLOWED)
        candidate = state.candidate_by_email(sub_com_id, email, RESULT_CANDIDATE_NOT_FOUND)
        taken = state.tests_of(candidate, tst_frm_id)
        if pla_tst_id is not None:
            taken = [a for a in taken if a.pla_tst_id == pla_tst_id]
        if not taken:
            raise ActionError(TEST_NOT_TAKEN)
        finished = [a for a in taken if a.finished_at is not None]
        assessment = (
            max(finished, key=lambda a: (a.finished_at or 0, a.pla_tst_id))
            if finished
            else taken[-1]
        )
        if report and not test.assessment:
            raise ActionError(NOT_AN_ASSESSMENT)
        if assessment.status is not AssessmentStatus.COMPLETED or assessment.result is None:
            raise ActionError(TEST_NOT_FINISHED)
        return test, assessment, assessment.result


def act_pdf_report(state: SimulatorState, params: Params, sub_com_id: int | None) -> Answer:
    _, assessment, _ = _taken_test(state, params, sub_com_id, report=True)
    language = params.lenient_integer("lan_id") or Language.ENGLISH
    url = page_url(state, f"/_simulator/reports/{assessment.pla_tst_id}.pdf?lan_id={language}")
    if params.flag("redirect"):
        return Redirect(url)
    return succeed(pdf_url=url)


def act_result(state: SimulatorState, params: Params, sub_com_id: int | None) -> Answer:
    _, _, result = _taken_test(state, params, sub_com_id, report=False)
    return succeed(**result_json(result))


def act_result_details(state: SimulatorState, params: Params, sub_com_id: int | None) -> Answer:
    test, _, result = _taken_test(state, params, sub_com_id, report=False)
    language = params.lenient_integer("des_lan_id") or Language.ENGLISH
    return succeed(**details_json(test, result, language))
