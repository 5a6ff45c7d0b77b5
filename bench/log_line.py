"""Benchmark: the CPU of one structured log line, as the web writes one per callback.

    .venv/bin/python -m bench.log_line [--lines 50000] [--rounds 5]

Logging is configured as every relay process configures it (worker.logs.configure_logging: JSON,
INFO, three registered secrets) into a file in a temporary directory, and `callback_received`
is logged `--lines` times with the endpoint's own arguments. It prints the process CPU per line
(user + system, time.process_time) of each round and their median. A loop keeps the code warm:
inside the web server, between other work, the same line costs 2-3 times as much
(bench/README.md, "callback edge", sixth pass).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import structlog

from worker.logs import configure_logging


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=50_000, help="lines per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    if args.lines < 1 or args.rounds < 1:
        parser.error("--lines and --rounds must be at least 1")
    per_line: list[float] = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-log-") as tmp,
        (Path(tmp) / "relay.log").open("w", encoding="utf-8") as output,
    ):
        secrets = ["a" * 40, "b" * 40, "c" * 32]
        configure_logging(json=True, level="INFO", secrets=secrets, stream=output)
        log = structlog.get_logger("webhooks.callbacks")
        for number in range(args.rounds):
            started = time.process_time()
            for _ in range(args.lines):
                log.info(
                    "callback_received",
                    invitation_id="inv_01JEXAMPLE0000000000000000",
                    method="GET",
                    accepted=True,
                    enqueued=True,
                    reason=None,
                    duration_ms=3.21,
                )
            per_line.append((time.process_time() - started) / args.lines * 1e6)
            print(f"round {number + 1}: {per_line[-1]:.2f} us of CPU per line")
    print(f"median: {statistics.median(per_line):.2f} us per line ({args.lines} lines a round)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
