"""bench/burst.py's callback senders, in a process of their own (not sharing the receiver's GIL).

    .venv/bin/python -m bench.callback_sender --urls FILE --concurrency N --out FILE

Reads the URLs (one per line) and builds its client, prints `ready`, waits for a line on stdin,
then GETs every URL from N threads at once, as Isograd would at the end of an exam session.
When all are answered it writes `{"answers_ms": [...], "failed": n, "cpu_seconds": s}` to
`--out` (answers in the order they came; `failed`: not answered 200) and exits. In the
benchmark's own process the senders shared one GIL with the receiver's threads, and their
measured answer times included waiting for it.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--urls", type=Path, required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    urls = args.urls.read_text(encoding="utf-8").split()
    answers: list[float] = []
    failed = 0
    lock = threading.Lock()
    limits = httpx2.Limits(
        max_connections=args.concurrency, max_keepalive_connections=args.concurrency
    )
    with httpx2.Client(timeout=60, limits=limits) as http:

        def fire(url: str) -> None:
            nonlocal failed
            started = time.perf_counter()
            try:
                ok = http.get(url).status_code == 200
            except httpx2.HTTPError:
                ok = False
            took = (time.perf_counter() - started) * 1000
            with lock:
                answers.append(took)
                failed += not ok

        print("ready", flush=True)
        sys.stdin.readline()
        with ThreadPoolExecutor(args.concurrency) as pool:
            for url in urls:
                pool.submit(fire, url)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result = {
        "answers_ms": answers,
        "failed": failed,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
    }
    args.out.write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
