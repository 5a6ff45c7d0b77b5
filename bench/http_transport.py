"""Benchmark: client CPU per request on httpx2's default transport vs HttpClientTransport.

    .venv/bin/python -m bench.http_transport [--threads 1,8,32] [--requests 3000]

Starts a local uvicorn server answering `POST /act` with a small JSON document (in a subprocess,
so only the client's CPU is counted: bench/connection_pool.py's server), then for each
`--threads` count T sends `--requests` form POSTs from T threads, each thread with an
httpx2.Client of its own, and prints the client's CPU per request (getrusage: user + system)
for httpx2.Client on its default transport (httpcore2 and h11) and on
ThreadTransports(HttpClientTransport) (http.client), as the Isograd client sends. Each thread
sends `--requests` // 10 requests first, unmeasured, so every connection is open.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import httpx2

from bench.connection_pool import act_server, cpu_seconds
from worker.transports import HttpClientTransport, ThreadTransports

CLIENTS: dict[str, Callable[[], httpx2.Client]] = {
    "httpx2 default": httpx2.Client,
    "HttpClientTransport": lambda: httpx2.Client(
        transport=ThreadTransports(lambda context: HttpClientTransport(ssl_context=context))
    ),
}


def measure(
    make: Callable[[], httpx2.Client], url: str, threads: int, requests: int
) -> tuple[float, float]:
    """(client CPU per request in us, requests per second) with a client per thread."""
    local = threading.local()
    made: list[httpx2.Client] = []
    lock = threading.Lock()

    def post(_: int) -> None:
        client: httpx2.Client | None = getattr(local, "client", None)
        if client is None:
            client = local.client = make()
            with lock:
                made.append(client)
        client.post(url, data={"act_id": "10", "pla_tst_id": "9001"}).json()

    try:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(post, range(max(threads, requests // 10))))
            started, wall = cpu_seconds(), time.perf_counter()
            list(pool.map(post, range(requests)))
            cpu, elapsed = cpu_seconds() - started, time.perf_counter() - wall
    finally:
        for client in made:
            client.close()
    return cpu / requests * 1e6, requests / elapsed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,8,32", help="thread counts, comma-separated")
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args(argv)
    with act_server() as url:
        print(f"client CPU per form POST (and requests/s), {args.requests} requests per cell")
        print(f"{'threads':>7}  " + "  ".join(f"{name:>24}" for name in CLIENTS) + "  saved")
        for threads in (int(value) for value in args.threads.split(",")):
            figures = [measure(make, url, threads, args.requests) for make in CLIENTS.values()]
            cells = "  ".join(f"{us:>9.0f} us ({rate:>6.0f}/s)" for us, rate in figures)
            saved = 1 - figures[1][0] / figures[0][0]
            print(f"{threads:>7}  {cells}  {saved:>5.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
