"""Benchmark of the Isograd client: act 10 calls per second against the simulator over HTTP.

Starts `isograd-relay simulator` on a free port, creates one candidate and test, then one
IsogradClient makes N `get_test_status` calls (from one or more threads) and prints calls/s and
how many token requests the simulator received (1 expected: the token is cached and shared).

    .venv/bin/python bench/isograd_client.py [--calls 5000] [--threads 1]
"""

from __future__ import annotations

import argparse
import logging
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx2
import structlog

from worker.isograd import IsogradClient, isograd_urls
from worker.isograd.models import AssessmentOptions, NewCandidate

CLIENT_ID = "bench-client"
CLIENT_SECRET = "bench-secret"  # noqa: S105 - the simulator's throwaway credentials
CLI = Path(sys.executable).with_name("isograd-relay")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def simulator(port: int) -> Iterator[str]:
    """Run the simulator CLI; yields its base URL once its control API answers."""
    base_url = f"http://127.0.0.1:{port}"
    command = [str(CLI), "simulator", "--port", str(port)]
    command += ["--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        with httpx2.Client(timeout=1.0) as http:
            while True:
                try:
                    http.get(f"{base_url}/_simulator/counters").raise_for_status()
                    break
                except httpx2.TransportError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit("the simulator did not start") from None
                    time.sleep(0.05)  # polling for readiness, with a deadline
        yield base_url
    finally:
        process.terminate()
        process.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    with simulator(free_port()) as base_url:
        api_url, auth_url = isograd_urls("simulator", base_url)
        with IsogradClient(
            api_url=api_url, auth_url=auth_url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET
        ) as client:
            candidate = NewCandidate("bench@example.org", "Bench", "Mark")
            created = client.create_candidate_and_add_test(candidate, 101, AssessmentOptions())
            per_thread = args.calls // args.threads

            def work(_: int) -> None:
                for _ in range(per_thread):
                    client.get_test_status(created.pla_tst_id)

            started = time.perf_counter()
            with ThreadPoolExecutor(args.threads) as pool:
                list(pool.map(work, range(args.threads)))
            elapsed = time.perf_counter() - started

        counters = httpx2.get(f"{base_url}/_simulator/counters").json()

    calls = per_thread * args.threads
    print(f"get_test_status calls: {calls} in {elapsed:.2f} s over HTTP ({args.threads} thread(s))")
    print(f"calls/s:               {calls / elapsed:,.0f}")
    print(f"mean latency:          {elapsed / per_thread * 1000:.2f} ms per call per thread")
    print(f"token requests:        {counters['token_requests']}")
    print(f"API calls (simulator): {counters['api_calls']}")


if __name__ == "__main__":
    main()
