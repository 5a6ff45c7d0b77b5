"""Account actions: session (11), admin login (13), tests list (14), credits (15),
registration email (42)."""

from __future__ import annotations

from urllib.parse import urlencode

from worker.simulator.answers import Answer, Redirect, page_url, succeed
from worker.simulator.failures import (
    CANDIDATE_NOT_FOUND,
    UNKNOWN_PLA_TST_ID,
    ActionError,
    missing_property,
)
from worker.simulator.params import Params
from worker.simulator.state import SimulatorState


def act_create_session(state: SimulatorState, params: Params, sub_com_id: int | None) -> Answer:
    fields = {name: params.require(name) for name in ("des", "sta_dat", "end_dat")}
    ses_id = state.new_session(sub_com_id, **fields, has_password=params.get("psw") is not None)
    return succeed(ses_id=ses_id)


def act_login_admin(state: SimulatorState, params: Params, sub_com_id: int | None) -> Answer:
    """Act 13: always a redirect to the admin module (of the sub account, when given)."""
    query: dict[str, str] = {}
    if params.flag("use_ema_for_adm"):
        query["ema"] = params.require("ema")
    if sub_com_id is not None:
        query["sub_com_id"] = str(sub_com_id)
    suffix = f"?{urlencode(query)}" if query else ""
    return Redirect(page_url(state, f"/_simulator/pages/admin{suffix}"))


def act_list_tests(state: SimulatorState, params: Params, sub_com_id: int | None) -> Answer:
    language = params.lenient_integer("lan_id")
    tests = [
        test.tst_frm_id
        for test in state.config.catalogue.tests
        if language is None or language in test.languages
    ]
    return succeed(tests=tests)


def act_list_credits(state: SimulatorState, params: Params, sub_com_id: int | None) -> Answer:
    with state.lock:
        credits = state.account(sub_com_id).credits.items()
        return succeed(credits=[{"des": des, "amount": amount} for des, amount in credits])


def _test_ids(params: Params) -> list[int]:
    """pla_tst_ids as a comma-separated list (also accepted: PHP's repeated `pla_tst_ids[]`)."""
    raw = params.get("pla_tst_ids") or params.get("pla_tst_ids[]") or ""
    try:
        return [int(part) for part in raw.split(",") if part.strip()]
    except ValueError:
        raise ActionError(UNKNOWN_PLA_TST_ID) from None


def act_send_registration_email(
    state: SimulatorState, params: Params, sub_com_id: int | None
) -> Answer:
    """Act 42: nothing is mailed; the request is recorded (control API: GET /_simulator/emails).
    With both pla_tst_ids and can_id, the tests win (per the reference)."""
    template = params.require("mai_tem_id")
    pla_tst_ids = _test_ids(params)
    can_id = params.integer("can_id", CANDIDATE_NOT_FOUND)
    with state.lock:
        if pla_tst_ids:
            tests = [state.assessment(sub_com_id, pla_tst_id) for pla_tst_id in pla_tst_ids]
            can_ids = sorted({test.can_id for test in tests})
        elif can_id is not None:
            candidate = state.candidate_by_id(sub_com_id, can_id)
            tests = [t for t in state.tests_of(candidate) if t.unfinished]
            can_ids = [candidate.can_id]
        else:
            raise ActionError(missing_property("can_id"))
        state.emails.append(
            {
                "sub_com_id": sub_com_id,
                "mai_tem_id": template,
                "can_ids": can_ids,
                "pla_tst_ids": [test.pla_tst_id for test in tests],
                "sen_dat": params.get("sen_dat"),
                "for_sen": params.flag("for_sen"),
                "ema_sen": params.get("ema_sen"),
                "recorded_at": state.clock.now(),
            }
        )
    return {"success": True}  # "The response JSON only includes a success field"
