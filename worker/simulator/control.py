"""The simulator's control API (JSON, under /_simulator/): drive tests through their life, read
state and counters, reset, set faults.

No authentication: the simulator is a local test tool; never expose it publicly.

    GET  /_simulator/                      this list
    GET  /_simulator/state                 accounts (credits), candidates, tests, sessions, emails
    GET  /_simulator/counters              token_requests, tokens_issued, token_rejections,
                                           api_calls, api_calls_by_act {"10": n}, errors_by_code,
                                           unauthorized, injected_errors, callbacks_sent,
                                           callbacks_failed, callbacks_dropped
    POST /_simulator/reset                 forget everything; faults and clock back to the config
    GET  /_simulator/faults                the live faults
    POST /_simulator/faults                change some: {"latency_ms": 50, "error_rate": 0.2,
                                           "error_status": 503, "fail_next": 2, "seed": 7,
                                           "token_ttl_seconds": 5, "drop_callback_rate": 1,
                                           "callback_copies": 3}   (400 on an unknown/bad value)
    POST /_simulator/tokens/expire         every issued token answers 401 from now on
    POST /_simulator/clock/advance         {"seconds": 3600}: simulated time moves forward
                                           (token expiry, max_num_tst_per, elapsed seconds)
    PUT  /_simulator/credits               {"sub_com_id": null, "credits": {"Assessment": 0}}
    GET  /_simulator/tests/{pla_tst_id}    one test (404 if unknown)
    POST /_simulator/tests/{id}/start      not started -> started (sta_id 2)
    POST /_simulator/tests/{id}/complete   -> completed (sta_id 3), then the cal_bac_pag GET
    POST /_simulator/tests/{id}/pending    -> marking pending (sta_id 4), then the cal_bac_pag GET
    POST /_simulator/tests/{id}/mark       marking pending -> completed; no callback unless
                                           {"callback": true}
    POST /_simulator/tests/{id}/callback   send the test's callback again, whatever its state
    GET  /_simulator/callbacks             the last 1000 callback attempts
    GET  /_simulator/emails                registration emails recorded by act 42

`complete` and `mark` take an optional grading, every field optional (defaults from the
catalogue's grade type): {"grade_type": 2, "value": 550, "max_value": 1000, "text": "550/1000",
"elapsed_seconds": 1834, "skills": {"45": 3.5, "46": null}} (a skill's level for IRT tests or
success rate in [0, 1] otherwise; null = not tested, -1 in act 5).

Callbacks are sent synchronously: `complete`, `pending`, `mark` and `callback` answer
{"test": {...}, "callbacks": [{"url", "outcome": "sent"|"failed"|"dropped", "status_code",
"error", "at"}]} once every GET is done (10 s timeout each). Errors answer {"error": "..."} with
400 (bad body), 404 (unknown test) or 409 (wrong state for that move).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from worker.simulator import lifecycle
from worker.simulator.callbacks import CallbackAttempt
from worker.simulator.clock import iso
from worker.simulator.lifecycle import Grading, LifecycleError
from worker.simulator.runtime import Simulator
from worker.simulator.state import Assessment

_PREFIX = "/_simulator"
Endpoint = Callable[[Request], Awaitable[Response]]


class _BadRequest(Exception):
    pass


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise _BadRequest("the body must be JSON") from None
    if not isinstance(body, dict):
        raise _BadRequest("the body must be a JSON object")
    return body


def _number(body: Mapping[str, Any], name: str) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _BadRequest(f"{name} must be a number")
    return float(value)


def _integer(body: Mapping[str, Any], name: str) -> int | None:
    value = _number(body, name)
    if value is not None and not value.is_integer():
        raise _BadRequest(f"{name} must be an integer")
    return None if value is None else int(value)


def _grading(body: Mapping[str, Any]) -> Grading:
    text = body.get("text")
    if text is not None and not isinstance(text, str):
        raise _BadRequest("text must be a string")
    skills = body.get("skills")
    if skills is not None:
        if not isinstance(skills, dict):
            raise _BadRequest("skills must be an object {skill_id: number or null}")
        skills = {str(key): _number(skills, key) for key in skills}
    return Grading(
        grade_type=_integer(body, "grade_type"),
        value=_number(body, "value"),
        max_value=_number(body, "max_value"),
        text=text,
        elapsed_seconds=_integer(body, "elapsed_seconds"),
        skills=skills,
    )


def _pla_tst_id(request: Request) -> int:
    raw = request.path_params["pla_tst_id"]
    if not str(raw).isdigit():
        raise LifecycleError(f"no test {raw}", status=404)
    return int(raw)


def _moved(assessment: Assessment, attempts: list[CallbackAttempt]) -> dict[str, Any]:
    return {"test": assessment.as_json(), "callbacks": [a.as_json() for a in attempts]}


def _guarded(handler: Endpoint) -> Endpoint:
    """Map the control errors to their JSON answers in one place."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except _BadRequest as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        except ValueError as exc:  # a fault or clock value out of range
            return JSONResponse({"error": str(exc)}, status_code=400)
        except LifecycleError as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)

    return endpoint


def control_routes(simulator: Simulator) -> list[BaseRoute]:
    state = simulator.state

    async def index(request: Request) -> Response:
        return JSONResponse({"documentation": __doc__})

    async def show_state(request: Request) -> Response:
        return JSONResponse(state.snapshot())

    async def counters(request: Request) -> Response:
        return JSONResponse(simulator.counters.snapshot())

    async def reset(request: Request) -> Response:
        simulator.reset()
        return JSONResponse({"reset": True})

    async def faults(request: Request) -> Response:
        if request.method == "POST":
            simulator.faults.update(await _body(request))
        return JSONResponse(simulator.faults.faults.as_json())

    async def expire_tokens(request: Request) -> Response:
        return JSONResponse({"expired": simulator.tokens.expire_all()})

    async def advance_clock(request: Request) -> Response:
        seconds = _number(await _body(request), "seconds")
        if seconds is None:
            raise _BadRequest("seconds is required")
        simulator.clock.advance(seconds)
        return JSONResponse({"now": iso(simulator.clock.now())})

    async def set_credits(request: Request) -> Response:
        body = await _body(request)
        credits = body.get("credits")
        if not isinstance(credits, dict):
            raise _BadRequest('credits must be an object {"description": amount}')
        amounts = {str(des): _integer(credits, des) for des in credits}
        if any(amount is None or amount < 0 for amount in amounts.values()):
            raise _BadRequest("amounts must be integers >= 0")
        with state.lock:
            account = state.account(_integer(body, "sub_com_id"))
            account.credits.update({des: int(amount or 0) for des, amount in amounts.items()})
            return JSONResponse({"sub_com_id": account.sub_com_id, "credits": account.credits})

    async def show_test(request: Request) -> Response:
        assessment = state.assessment_for_control(_pla_tst_id(request))
        if assessment is None:
            raise LifecycleError("no such test", status=404)
        with state.lock:
            return JSONResponse(assessment.as_json())

    async def start(request: Request) -> Response:
        with state.lock:
            return JSONResponse(_moved(lifecycle.start(state, _pla_tst_id(request)), []))

    async def complete(request: Request) -> Response:
        grading = _grading(await _body(request))
        moved = await run_in_threadpool(
            lifecycle.finish, state, simulator.callbacks, _pla_tst_id(request), grading
        )
        return JSONResponse(_moved(*moved))

    async def pending(request: Request) -> Response:
        moved = await run_in_threadpool(
            lambda: lifecycle.finish(
                state, simulator.callbacks, _pla_tst_id(request), Grading(), marking_pending=True
            )
        )
        return JSONResponse(_moved(*moved))

    async def mark(request: Request) -> Response:
        body = await _body(request)
        grading = _grading(body)
        callback = body.get("callback") is True
        moved = await run_in_threadpool(
            lambda: lifecycle.mark(
                state, simulator.callbacks, _pla_tst_id(request), grading, callback=callback
            )
        )
        return JSONResponse(_moved(*moved))

    async def callback(request: Request) -> Response:
        pla_tst_id = _pla_tst_id(request)
        attempts = await run_in_threadpool(
            lifecycle.resend_callback, state, simulator.callbacks, pla_tst_id
        )
        assessment = state.assessment_for_control(pla_tst_id)
        assert assessment is not None
        return JSONResponse(_moved(assessment, attempts))

    async def callbacks(request: Request) -> Response:
        return JSONResponse([attempt.as_json() for attempt in simulator.callbacks.history()])

    async def emails(request: Request) -> Response:
        return JSONResponse(state.snapshot()["emails"])

    test = _PREFIX + "/tests/{pla_tst_id}"
    table: list[tuple[str, Endpoint, list[str]]] = [
        (_PREFIX + "/", index, ["GET"]),
        (_PREFIX + "/state", show_state, ["GET"]),
        (_PREFIX + "/counters", counters, ["GET"]),
        (_PREFIX + "/reset", reset, ["POST"]),
        (_PREFIX + "/faults", faults, ["GET", "POST"]),
        (_PREFIX + "/tokens/expire", expire_tokens, ["POST"]),
        (_PREFIX + "/clock/advance", advance_clock, ["POST"]),
        (_PREFIX + "/credits", set_credits, ["PUT"]),
        (test, show_test, ["GET"]),
        (test + "/start", start, ["POST"]),
        (test + "/complete", complete, ["POST"]),
        (test + "/pending", pending, ["POST"]),
        (test + "/mark", mark, ["POST"]),
        (test + "/callback", callback, ["POST"]),
        (_PREFIX + "/callbacks", callbacks, ["GET"]),
        (_PREFIX + "/emails", emails, ["GET"]),
    ]
    return [Route(path, _guarded(handler), methods=methods) for path, handler, methods in table]
