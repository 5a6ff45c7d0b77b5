"""The demo: one invitation taken through the whole relay, from invite to a verified webhook.

`isograd-relay demo` drives a running `isograd-relay dev`: it invites a demo candidate through
the admin API, completes the test in the simulator's control API, then waits until the dev inbox
has received the signed `assessment.completed` event and prints it.
"""

from __future__ import annotations

import json
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

import httpx2

from worker.errors import RelayError

DEFAULT_RELAY_URL = "http://127.0.0.1:8000"
DEFAULT_SIMULATOR_URL = "http://127.0.0.1:8100"
DEMO_TEST = 101  # the simulator's IRT test scored on 1000
DEMO_SCORE = 720.0
EVENT_TYPE = "assessment.completed"


class DemoError(RelayError):
    """The demo could not finish; the message says what to do."""


@dataclass(frozen=True, slots=True)
class DemoOptions:
    admin_token: str
    relay_url: str = DEFAULT_RELAY_URL
    simulator_url: str = DEFAULT_SIMULATOR_URL
    tst_frm_id: int = DEMO_TEST
    score: float = DEMO_SCORE
    timeout_seconds: float = 30.0
    poll_seconds: float = 0.25


def run_demo(
    options: DemoOptions,
    *,
    out: TextIO = sys.stdout,
    transport: httpx2.BaseTransport | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Run the demo; returns the delivered event's payload. Raises DemoError."""
    relay = options.relay_url.rstrip("/")
    simulator = options.simulator_url.rstrip("/")
    with httpx2.Client(transport=transport, timeout=20.0) as http:
        _check_ready(http, relay)
        invitation = _invite(http, relay, options)
        pla_tst_id = invitation["pla_tst_id"]
        print(
            f"1/3 invited a demo candidate to test {options.tst_frm_id}"
            f" (invitation {invitation['invitation_id']}, pla_tst_id {pla_tst_id})",
            file=out,
            flush=True,
        )
        outcome = _complete(http, simulator, pla_tst_id, options.score)
        print(
            f"2/3 completed the test in the simulator with {options.score:g};"
            f" its callback to the relay: {outcome}",
            file=out,
            flush=True,
        )
        payload = _wait_for_delivery(http, relay, pla_tst_id, options, out, clock, sleep)
    print(f"3/3 the inbox received a verified {EVENT_TYPE} event:", file=out)
    print(json.dumps(payload, indent=2, ensure_ascii=False), file=out)
    print(f"See it in a browser: {relay}/inbox/", file=out, flush=True)
    return payload


def _check_ready(http: httpx2.Client, relay: str) -> None:
    try:
        response = http.get(f"{relay}/readyz")
    except httpx2.TransportError:
        raise DemoError(
            f"nothing answers at {relay}: start `isograd-relay dev` (or `make dev`) first"
        ) from None
    if response.status_code != 200:
        raise DemoError(f"the relay at {relay} is not ready: {response.text}")


def _invite(http: httpx2.Client, relay: str, options: DemoOptions) -> dict[str, Any]:
    response = http.post(
        f"{relay}/api/invitations",
        headers={"Authorization": f"Bearer {options.admin_token}"},
        json={
            # A fresh address each run: Isograd (and the simulator) refuse a second candidate
            # with the same email on act 8.
            "email": f"demo+{secrets.token_hex(4)}@example.com",
            "first_name": "Ada",
            "last_name": "Demo",
            "tst_frm_id": options.tst_frm_id,
            "context": {"source": "isograd-relay demo"},
        },
    )
    if response.status_code == 401:
        raise DemoError(
            "the admin API refused the token: run the demo in the directory where `dev` runs"
            " (it reads var/admin.token), or set ADMIN_TOKEN to the dev server's token"
        )
    if response.status_code != 201:
        raise DemoError(f"the invitation failed ({response.status_code}): {response.text}")
    body: dict[str, Any] = response.json()
    return body


def _complete(http: httpx2.Client, simulator: str, pla_tst_id: int, score: float) -> str:
    try:
        response = http.post(
            f"{simulator}/_simulator/tests/{pla_tst_id}/complete", json={"value": score}
        )
    except httpx2.TransportError:
        raise DemoError(
            f"the simulator does not answer at {simulator}: is `dev` running on the simulator"
            " (ISOGRAD_ENV unset or simulator)?"
        ) from None
    if response.status_code != 200:
        raise DemoError(f"the simulator refused to complete the test: {response.text}")
    attempts = response.json().get("callbacks") or []
    if not attempts:
        return "none sent"
    last = attempts[-1]
    return f"{last.get('outcome')} ({last.get('status_code') or last.get('error')})"


def _wait_for_delivery(
    http: httpx2.Client,
    relay: str,
    pla_tst_id: int,
    options: DemoOptions,
    out: TextIO,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> dict[str, Any]:
    started = clock()
    deadline = started + options.timeout_seconds
    next_progress = started + 1.0
    print("    waiting for the delivery to the inbox", end="", file=out, flush=True)
    while True:
        found = _find_delivery(http, relay, pla_tst_id)
        if found is not None:
            print(f" ({clock() - started:.1f} s)", file=out, flush=True)
            return found
        now = clock()
        if now > deadline:
            print(file=out)
            raise DemoError(
                f"no verified {EVENT_TYPE} for pla_tst_id {pla_tst_id} reached {relay}/inbox/"
                f" within {options.timeout_seconds:g} s; look at the dev server's log, at"
                f" {relay}/inbox/ (a rejected signature shows there) and at"
                f" GET {relay}/api/deliveries?status=failed"
            )
        if now >= next_progress:
            print(".", end="", file=out, flush=True)
            next_progress += 1.0
        sleep(options.poll_seconds)


def _find_delivery(http: httpx2.Client, relay: str, pla_tst_id: int) -> dict[str, Any] | None:
    response = http.get(f"{relay}/inbox/deliveries")
    if response.status_code != 200:
        raise DemoError(f"the inbox does not answer at {relay}/inbox/ ({response.status_code})")
    for delivery in response.json()["deliveries"]:
        payload = delivery.get("payload")
        if not (delivery.get("verified") and delivery.get("event_type") == EVENT_TYPE):
            continue
        test = (payload.get("data") or {}).get("test") or {}
        if test.get("pla_tst_id") == pla_tst_id:
            found: dict[str, Any] = payload
            return found
    return None
