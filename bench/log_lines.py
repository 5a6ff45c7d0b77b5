"""Benchmark: JSON log lines written by concurrent threads and processes stay whole.

Run from the repository root:

    .venv/bin/python -m bench.log_lines [--processes 3] [--threads 8] [--lines 1000]

`--processes` child processes share one pipe as their stderr, as `isograd-relay dev` workers and
uvicorn share a container's stdout. Each configures logging as the relay does (JSON) and runs
`--threads` threads that each write `--lines` lines, alternating structlog events and standard
library records (the two writers the relay has). The parent reads the pipe and counts the lines
that are not one JSON object. Prints lines read, unparseable lines and lines/s.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import threading
import time


def write_lines(threads: int, lines: int) -> None:
    import structlog

    from worker.logs import configure_logging

    configure_logging(json=True, stream=sys.stderr)
    struct_log = structlog.get_logger("bench")
    std_log = logging.getLogger("bench.stdlib")

    def run(index: int) -> None:
        for n in range(lines):
            if n % 2:
                struct_log.info("bench_line", writer=index, n=n, pad="x" * 300)
            else:
                std_log.warning("bench line %s %s %s", index, n, "x" * 300)

    workers = [threading.Thread(target=run, args=(index,)) for index in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--lines", type=int, default=1000)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        write_lines(args.threads, args.lines)
        return
    started = time.perf_counter()
    command = [sys.executable, "-m", "bench.log_lines", "--child"]
    command += ["--threads", str(args.threads), "--lines", str(args.lines)]
    read, bad = 0, 0
    read_end, write_end = os.pipe()
    children = [subprocess.Popen(command, stderr=write_end) for _ in range(args.processes)]
    os.close(write_end)
    with os.fdopen(read_end, encoding="utf-8", errors="replace") as pipe:
        for line in pipe:
            read += 1
            try:
                json.loads(line)
            except ValueError:
                bad += 1
    for child in children:
        child.wait()
    seconds = time.perf_counter() - started
    expected = args.processes * args.threads * args.lines
    print(f"lines expected {expected}, read {read}, unparseable {bad}")
    print(f"{read / seconds:.0f} lines/s over {seconds:.2f} s")


if __name__ == "__main__":
    main()
