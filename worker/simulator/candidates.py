"""Candidate actions: create (1), update (51), delete (24), anonymize (12), log in as (38)."""

from __future__ import annotations

import re
import secrets

from worker.simulator.answers import Answer, Redirect, page_url, succeed
from worker.simulator.failures import (
    CANDIDATE_ALREADY_EXISTS,
    CANDIDATE_NOT_CREATED,
    CANDIDATE_NOT_FOUND,
    GROUP_NOT_FOUND,
    ActionError,
    missing_property,
)
from worker.simulator.params import Params
from worker.simulator.state import Candidate, SimulatorState

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_GENDERS = ("1", "2", "3")
_LANGUAGES = frozenset(range(1, 9))


def _valid_email(value: str) -> str:
    if not _EMAIL.fullmatch(value):
        raise ActionError(CANDIDATE_NOT_CREATED)
    return value


def _valid_gender(value: str) -> int:
    if value not in _GENDERS:
        raise ActionError(CANDIDATE_NOT_CREATED)
    return int(value)


def _valid_language(params: Params) -> int | None:
    lan_id = params.integer("lan_id", CANDIDATE_NOT_CREATED)
    if lan_id is not None and lan_id not in _LANGUAGES:
        raise ActionError(CANDIDATE_NOT_CREATED)
    return lan_id


def login_url(state: SimulatorState, candidate: Candidate) -> str:
    return page_url(
        state, f"/_simulator/pages/candidates/{candidate.can_id}?param={secrets.token_urlsafe(12)}"
    )


def create_candidate(state: SimulatorState, params: Params, sub_com_id: int | None) -> Candidate:
    """Act 1's work, shared by act 8. Order of checks: 105, 201, 202 (with can_id), 203."""
    gen_id = params.require("gen_id")
    email = params.require("ema")
    first_name = params.require("fst_nam")
    last_name = params.require("lst_nam")
    gender = _valid_gender(gen_id)
    _valid_email(email)
    lan_id = _valid_language(params)
    dep_id = params.integer("dep_id", CANDIDATE_NOT_CREATED)
    ext_dep_id = params.get("ext_dep_id")
    extra_time = params.integer("xtr_tim_fac", CANDIDATE_NOT_CREATED) or 0
    job_id = params.integer("job_id", CANDIDATE_NOT_CREATED)
    if (dep_id is not None and ext_dep_id is not None) or extra_time < 0:
        raise ActionError(CANDIDATE_NOT_CREATED)  # dep_id "must be empty" with ext_dep_id
    with state.lock:
        account = state.account(sub_com_id)
        existing = account.candidates.get(email.lower())
        if existing is not None:
            raise ActionError(CANDIDATE_ALREADY_EXISTS, can_id=existing)
        if dep_id is not None and dep_id not in account.groups:
            raise ActionError(GROUP_NOT_FOUND)
        if ext_dep_id is not None:
            name = f"ext:{ext_dep_id}"  # groups of the caller's system, created on first use
            found = [d for d, n in account.groups.items() if n == name]
            dep_id = found[0] if found else state.new_group(account, name)
        return state.new_candidate(
            account,
            email=email,
            first_name=first_name,
            last_name=last_name,
            gen_id=gender,
            lan_id=lan_id,
            ext_id=params.get("ext_id"),
            dep_id=dep_id,
            job_id=job_id,
            extra_time_percent=extra_time,
        )


def act_create_candidate(state: SimulatorState, params: Params, sub_com_id: int | None) -> Answer:
    candidate = create_candidate(state, params, sub_com_id)
    return succeed(can_id=candidate.can_id, lgn_url=login_url(state, candidate))


def act_update_candidate(state: SimulatorState, params: Params, sub_com_id: int | None) -> Answer:
    can_id = params.integer("can_id", CANDIDATE_NOT_FOUND, required=True)
    with state.lock:
        candidate = state.candidate_by_id(sub_com_id, can_id)
        gen_id = params.get("gen_id")
        email = params.get("ema")
        lan_id = _valid_language(params)
        gender = None if gen_id is None else _valid_gender(gen_id)
        account = state.account(sub_com_id)
        if email is not None:
            _valid_email(email)
            owner = account.candidates.get(email.lower())
            if owner is not None and owner != candidate.can_id:
                raise ActionError(CANDIDATE_ALREADY_EXISTS, can_id=owner)
            del account.candidates[candidate.email.lower()]
            account.candidates[email.lower()] = candidate.can_id
            candidate.email = email
        if gender is not None:
            candidate.gen_id = gender
        if lan_id is not None:
            candidate.lan_id = lan_id
        candidate.first_name = params.get("fst_nam") or candidate.first_name
        candidate.last_name = params.get("lst_nam") or candidate.last_name
    return succeed()


def _target_candidate(state: SimulatorState, params: Params, sub_com_id: int | None) -> Candidate:
    can_id = params.integer("can_id", CANDIDATE_NOT_FOUND)
    if can_id is not None:
        return state.candidate_by_id(sub_com_id, can_id)
    email = params.get("ema")
    if email is None:
        raise ActionError(missing_property("can_id"))
    return state.candidate_by_email(sub_com_id, email)


def act_delete_candidate(state: SimulatorState, params: Params, sub_com_id: int | None) -> Answer:
    """Act 24: by can_id, else by ema; the candidate's tests go with it."""
    with state.lock:
        candidate = _target_candidate(state, params, sub_com_id)
        for assessment in state.tests_of(candidate):
            del state.assessments[assessment.pla_tst_id]
        state.account(sub_com_id).candidates.pop(candidate.email.lower(), None)
        del state.candidates[candidate.can_id]
    return {"success": True}  # "a JSON object containing only a success property"


def act_anonymize_candidate(
    state: SimulatorState, params: Params, sub_com_id: int | None
) -> Answer:
    """Act 12: names and email "replaced by numbers"; the old email no longer finds anyone."""
    email = params.require("ema")
    with state.lock:
        candidate = state.candidate_by_email(sub_com_id, email)
        account = state.account(sub_com_id)
        del account.candidates[candidate.email.lower()]
        number = str(candidate.can_id)
        candidate.email = candidate.first_name = candidate.last_name = number
        candidate.anonymized = True
        account.candidates[number] = candidate.can_id
    return succeed()


def act_login_candidate(state: SimulatorState, params: Params, sub_com_id: int | None) -> Answer:
    """Act 38: always a redirect to the candidate's page."""
    candidate = state.candidate_by_email(sub_com_id, params.require("ema"))
    return Redirect(login_url(state, candidate))
