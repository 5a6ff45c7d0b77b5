"""The naive baseline: an Isograd callback handler that does everything inline, in the request.

What a user might write instead of the relay, and what bench/burst.py compares it with: no
queue, no database, no retries, no durability. Each `GET /callback/{pla_tst_id}` does, before
answering:

1. a token request (OAuth2 client credentials, as the relay's worker.isograd.auth sends it);
2. act 10 (test status; anything but 3 "completed" answers 409);
3. act 4 (result), act 5 (result per skill), act 6 (PDF URL), one after another;
4. one signed Standard Webhooks POST (standardwebhooks' `Webhook.sign`, as the relay's sink)
   of a `{"type", "timestamp", "data"}` document to each receiver URL, one after another;

then answers 200 (502 when anything failed). The candidate's `tst_frm_id` and email come from
a JSON file (`{"<pla_tst_id>": [tst_frm_id, email]}`) read at start, the handler's stand-in for
the lookup a real one would do. Starlette runs the sync endpoint in its thread pool, with one
shared httpx2.Client (the cheapest way this code has to talk HTTP).

    .venv/bin/python -m bench.naive_handler --port P --isograd-url URL --targets FILE
        --receiver URL --receiver URL --secret whsec_... --secret whsec_...
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import uvicorn
from standardwebhooks.webhooks import Webhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

CLIENT_ID = "simulator-client"
CLIENT_SECRET = "simulator-secret"  # noqa: S105 - the simulator's public default


def create_app(
    *,
    isograd_url: str,
    candidates: dict[int, tuple[int, str]],
    receivers: Sequence[str],
    secrets: Sequence[str],
) -> Starlette:
    http = httpx2.Client(
        timeout=30, limits=httpx2.Limits(max_connections=64, max_keepalive_connections=64)
    )
    signers = [Webhook(secret) for secret in secrets]

    def act(token: str, number: int, **fields: object) -> dict[str, Any]:
        form = {"act_id": str(number), **{name: str(value) for name, value in fields.items()}}
        response = http.post(
            f"{isograd_url}/api/usage", data=form, headers={"Authorization": f"Bearer {token}"}
        )
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        if not answer.get("success", True) or answer.get("error"):
            raise RuntimeError(f"act {number} failed: {answer}")
        return answer

    def callback(request: Request) -> Response:
        pla_tst_id = int(request.path_params["pla_tst_id"])
        tst_frm_id, email = candidates[pla_tst_id]
        try:
            token_answer = http.post(
                f"{isograd_url}/oauth2/token",
                params={"grant_type": "client_credentials", "scopes": "usage"},
                data={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
            )
            token_answer.raise_for_status()
            token = str(token_answer.json()["access_token"])
            status = act(token, 10, pla_tst_id=pla_tst_id)
            if int(status["sta_id"]) != 3:
                return PlainTextResponse("not completed", status_code=409)
            wanted = {"tst_frm_id": tst_frm_id, "ema": email, "pla_tst_id": pla_tst_id}
            result = act(token, 4, **wanted)
            details = act(token, 5, **wanted)
            pdf = act(token, 6, **wanted)
            now = datetime.now(UTC).replace(microsecond=0)
            event_id = f"evt_{uuid.uuid4().hex}"
            document = {
                "type": "assessment.completed",
                "timestamp": now.isoformat().replace("+00:00", "Z"),
                "data": {
                    "event_id": event_id,
                    "pla_tst_id": pla_tst_id,
                    "tst_frm_id": tst_frm_id,
                    "result": result,
                    "details": details,
                    "pdf_url": pdf.get("pdf_url"),
                },
            }
            body = json.dumps(document, separators=(",", ":")).encode()
            for url, signer in zip(receivers, signers, strict=True):
                headers = {
                    "content-type": "application/json",
                    "webhook-id": event_id,
                    "webhook-timestamp": str(int(now.timestamp())),
                    "webhook-signature": signer.sign(event_id, now, body.decode()),
                }
                http.post(url, content=body, headers=headers).raise_for_status()
        except (httpx2.HTTPError, RuntimeError, KeyError, ValueError) as exc:
            return PlainTextResponse(f"failed: {type(exc).__name__}", status_code=502)
        return PlainTextResponse("OK")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        http.close()

    return Starlette(routes=[Route("/callback/{pla_tst_id:int}", callback)], lifespan=lifespan)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--isograd-url", required=True, help="the simulator's root URL")
    parser.add_argument("--targets", type=Path, required=True, help="pla_tst_id JSON file")
    parser.add_argument("--receiver", action="append", required=True, help="a receiver URL")
    parser.add_argument("--secret", action="append", required=True, help="its whsec_ secret")
    args = parser.parse_args(argv)
    loaded = json.loads(args.targets.read_text(encoding="utf-8"))
    candidates = {int(key): (int(value[0]), str(value[1])) for key, value in loaded.items()}
    app = create_app(
        isograd_url=args.isograd_url.rstrip("/"),
        candidates=candidates,
        receivers=args.receiver,
        secrets=args.secret,
    )
    print("naive_ready", flush=True)
    # uvicorn's defaults, as `isograd-relay web` runs it, without the access log.
    uvicorn.run(app, host="127.0.0.1", port=args.port, access_log=False, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
