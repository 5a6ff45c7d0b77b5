"""Benchmark: client CPU per request with one shared connection pool vs a pool per thread.

    .venv/bin/python -m bench.connection_pool [--idle 2,16,32] [--requests 2000]

Starts a local uvicorn server answering `POST /act` with a small JSON document (in a
subprocess, so only the client's CPU is counted), then for each `--idle` count N: warms N
connections by sending N requests at once from N threads (a worker with N calls in flight),
then sends `--requests` form POSTs one after another from one thread and prints the client's
CPU per request (getrusage: user + system), for an httpx2.Client on its default transport (one
pool holding the N connections) and on worker.transports.ThreadTransports (the thread's own
pool). The gap is httpcore2's pool bookkeeping: every request walks all its connections and
polls each idle one (worker/transports.py).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial

import httpx2

from tests.harness.processes import free_port, responds, wait_until
from worker.transports import ThreadTransports

SERVER = """
import sys, uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

async def act(request):
    await request.body()
    return JSONResponse({"success": True, "sta_id": 3})

app = Starlette(routes=[Route("/act", act, methods=["POST"])])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


@contextmanager
def act_server() -> Iterator[str]:
    """A local uvicorn answering `POST /act` (SERVER), in a process of its own so only the
    client's CPU is counted, once it answers; its URL. Stopped on exit."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port)])
    url = f"http://127.0.0.1:{port}/act"
    try:
        with httpx2.Client() as probe:
            wait_until(partial(responds, probe, url), timeout=20, what="the server")
        yield url
    finally:
        server.terminate()
        server.wait(10)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def per_request_us(client: httpx2.Client, url: str, idle: int, requests: int) -> float:
    barrier = threading.Barrier(idle, timeout=30)

    def warm(_: int) -> None:
        barrier.wait()
        client.post(url, data={"act_id": "10"}).raise_for_status()

    with ThreadPoolExecutor(idle) as pool:
        list(pool.map(warm, range(idle)))
    started = cpu_seconds()
    for _ in range(requests):
        client.post(url, data={"act_id": "10", "pla_tst_id": "9001"}).json()
    return (cpu_seconds() - started) / requests * 1e6


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", default="2,16,32", help="connections warmed, comma-separated")
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args(argv)
    limits = httpx2.Limits(max_connections=64, max_keepalive_connections=64)
    clients: dict[str, Callable[[], httpx2.Client]] = {
        "one shared pool": lambda: httpx2.Client(limits=limits),
        "pool per thread": lambda: httpx2.Client(
            transport=ThreadTransports(
                lambda context: httpx2.HTTPTransport(limits=limits, verify=context)
            )
        ),
    }
    with act_server() as url:
        print(f"client CPU per POST, {args.requests} sequential requests after N warmed at once")
        print(f"{'N idle':>7}  " + "  ".join(f"{name:>16}" for name in clients))
        for idle in (int(value) for value in args.idle.split(",")):
            figures = []
            for make in clients.values():
                with make() as client:
                    figures.append(per_request_us(client, url, idle, args.requests))
            print(f"{idle:>7}  " + "  ".join(f"{us:>13.0f} us" for us in figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
