"""Isograd request forms: typed inputs turned into the form fields `/api/usage` reads."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from enum import IntEnum

from worker.isograd.models import AssessmentOptions, Language, NewCandidate

Form = Mapping[str, object]


def candidate_form(candidate: NewCandidate) -> dict[str, object]:
    return {
        "gen_id": candidate.gender,
        "ema": candidate.email,
        "fst_nam": candidate.first_name,
        "lst_nam": candidate.last_name,
        "lan_id": candidate.language,
        "ext_id": candidate.ext_id,
        "dep_id": candidate.dep_id,
        "ext_dep_id": candidate.ext_dep_id,
        "psw": candidate.password,
        "no_psw_rst": candidate.no_password_reset,
        "job_id": candidate.job_id,
        "xtr_tim_fac": candidate.extra_time_percent,
    }


def assessment_form(tst_frm_id: int, options: AssessmentOptions | None) -> dict[str, object]:
    # The reference also names tst_frm_id "rea_tst_id" until 31/12/2025; tst_frm_id is the name
    # that stays.
    options = options or AssessmentOptions()
    return {
        "tst_frm_id": tst_frm_id,
        "nee_ful_scr": options.full_screen,
        "ses_id": options.session_id,
        "add_pro": options.proctoring,
        "max_num_tst": options.max_tests,
        "max_num_tst_per": options.max_tests_period_days,
        "rtn_pag": options.return_url,
        "cal_bac_pag": options.callback_url,
        "cpf_id": options.cpf_id,
        "nb_test_by_credit": options.tests_per_credit,
    }


def add_test_form(
    email: str, tst_frm_id: int, options: AssessmentOptions | None
) -> dict[str, object]:
    return {**assessment_form(tst_frm_id, options), "ema": email}


def pdf_form(
    tst_frm_id: int, email: str, pla_tst_id: int | None, language: Language | None
) -> dict[str, object]:
    return {"tst_frm_id": tst_frm_id, "ema": email, "pla_tst_id": pla_tst_id, "lan_id": language}


def encode_form(act: int, fields: Form, sub_com_id: int | None) -> dict[str, str]:
    """Form fields as Isograd reads them; None and False (an unset flag) are left out."""
    form = {"act_id": str(act)}
    if sub_com_id is not None:
        form["sub_com_id"] = str(sub_com_id)
    for name, value in fields.items():
        encoded = _encode_value(value)
        if encoded is not None:
            form[name] = encoded
    return form


def _encode_value(value: object) -> str | None:
    match value:
        case None | False:
            return None
        case True:
            return "1"
        case IntEnum():
            return str(value.value)
        case datetime():
            return value.strftime("%Y-%m-%d %H:%M")  # reference, act 11: YYYY-MM-DD hh:mm
        case date():
            return value.isoformat()  # reference, act 42: YYYY-MM-DD
        case tuple():
            # Several pla_tst_ids (act 42) go comma-separated; the reference does not say more.
            return ",".join(str(item) for item in value) or None
        case _:
            return str(value)
