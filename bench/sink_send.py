"""Sink send cost: one `send()` per kind against an in-process target that answers at once.

    .venv/bin/python -m bench.sink_send [--events 3000]

Measures what a worker thread spends per attempt inside the sink (rendering, JSON, signing or
templating, httpx2 request building) with the network taken out: an httpx2.MockTransport
answers 200 immediately. The HTTP kind renders the README's HiBob example (a sandboxed Jinja2
body); the ATS kinds build their vendor's document (Kombo also tries the PDF download, a second
request). Prints µs per send and the ratio to the webhook kind; compare ratios, not absolutes.
"""

from __future__ import annotations

import argparse
import base64
import logging
import os
import re
import time
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import httpx2
import structlog

from tests.vendors.events import DATA, envelope
from worker.sinks.registry import make_sink
from worker.subscriptions import parse_subscriptions

ROOT = Path(__file__).resolve().parents[1]
SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()


def hibob_example() -> str:
    text = (ROOT / "README.md").read_text("utf-8")
    blocks: list[str] = re.findall(r"```toml\n(.*?)```", text, re.S)
    return next(block for block in blocks if block.startswith("# example: hibob\n"))


CONFIGS = {
    "webhook": f'[[subscriptions]]\nname = "b"\nkind = "webhook"\n'
    f'url = "https://hooks.example/x"\nsecrets = ["{SECRET}"]\n',
    "slack": '[[subscriptions]]\nname = "b"\nkind = "slack"\n'
    'url = "https://hooks.slack.com/services/T/B/x"\n',
    "teams": '[[subscriptions]]\nname = "b"\nkind = "teams"\n'
    'url = "https://flow.example/workflows/1?sig=x"\n',
    "http": hibob_example(),
    "teamtailor": '[[subscriptions]]\nname = "b"\nkind = "teamtailor"\napi_key = "k"\n'
    'provider_key = "p"\ntst_frm_id = 123\nsend_email = false\n',
    # The mock answers the report download too: not a PDF, so no attachment is encoded.
    "kombo": '[[subscriptions]]\nname = "b"\nkind = "kombo"\napi_key = "k"\n'
    'integration_id = "workday:x"\nwebhook_secret = "s"\nsend_email = false\n'
    'packages = [{ id = "excel", tst_frm_id = 123, name = "Excel" }]\n',
}
# The ATS kinds only take invitations they ordered: their routing data in the context.
CONTEXT = {
    **DATA["context"],
    "teamtailor": {"partner_result_id": "r1", "update_url": None, "subscription": "b"},
    "kombo": {"order_id": "o1", "subscription": "b"},
}
ENVIRON = {"HIBOB_SERVICE_USER_ID": "svc", "HIBOB_SERVICE_USER_TOKEN": "token"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=3000)
    args = parser.parse_args()
    # The sinks log each attempt at debug: keep the console renderer out of the measurement.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    event = envelope(context=CONTEXT)
    now = datetime.now(UTC)
    results: dict[str, float] = {}
    transport = httpx2.MockTransport(lambda request: httpx2.Response(200, text="ok"))
    with httpx2.Client(transport=transport) as client:
        for kind, toml in CONFIGS.items():
            (subscription,) = parse_subscriptions(tomllib.loads(toml), ENVIRON)
            sink = make_sink(subscription, client)
            for _ in range(100):  # warm up
                sink.send(event, attempt_at=now)
            started = time.perf_counter()
            for _ in range(args.events):
                result = sink.send(event, attempt_at=now)
            elapsed = time.perf_counter() - started
            assert result.status_code == 200, (kind, result)
            results[kind] = elapsed / args.events * 1e6
    print(f"load1 {os.getloadavg()[0]:.2f}, {args.events} sends per kind")
    for kind, micros in results.items():
        print(f"{kind:10} {micros:8.1f} µs/send  {micros / results['webhook']:5.2f}x webhook")


if __name__ == "__main__":
    main()
