"""Benchmark: `isograd-relay dev` from the command to a ready relay (GET /readyz answers 200).

Run from the repository root (needs nothing running: dev embeds Redis and SQLite):

    .venv/bin/python -m bench.dev_startup [--runs 5]

Each run starts `isograd-relay dev` as a process in a temporary directory (the sample relay.toml,
the inbox on the run's port, no REDIS_URL/DATABASE_URL), polls /readyz every 10 ms until it
answers 200, then sends SIGINT and times the clean stop. The first run of each directory is "cold"
(empty var/: callback key, admin token, migrations, new Redis files); the next runs reuse it
("warm": the usual `make dev` after the first). Prints every run, then min and median of each.
Process start includes the Python interpreter and every import (starlette, dramatiq,
SQLAlchemy, alembic, ...), which is most of the figure.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2

ROOT = Path(__file__).resolve().parent.parent
CLI = str(Path(sys.executable).with_name("isograd-relay"))
READY_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def one_run(site: Path, port: int, simulator_port: int) -> tuple[float, float]:
    """Seconds to ready, seconds to stop after SIGINT."""
    environ = {
        key: value
        for key, value in os.environ.items()
        if key not in {"REDIS_URL", "BROKER_URL", "DATABASE_URL", "ADMIN_TOKEN"}
    }
    environ["SIMULATOR_URL"] = f"http://127.0.0.1:{simulator_port}"
    with (site / "dev.log").open("ab") as log:
        started = time.perf_counter()
        process = subprocess.Popen(
            [CLI, "dev", "--port", str(port)], cwd=site, env=environ, stdout=log, stderr=log
        )
    try:
        ready = wait_ready(f"http://127.0.0.1:{port}/readyz", process, started)
    except BaseException:
        process.kill()
        process.wait()
        raise
    stopping = time.perf_counter()
    process.send_signal(signal.SIGINT)
    code = process.wait(60)
    stopped = time.perf_counter() - stopping
    if code != 0:
        raise SystemExit(f"dev exited with {code}; see {site / 'dev.log'}")
    return ready, stopped


def wait_ready(url: str, process: subprocess.Popen[bytes], started: float) -> float:
    with httpx2.Client(timeout=1.0) as http:
        while time.perf_counter() - started < READY_TIMEOUT:
            if process.poll() is not None:
                raise SystemExit(f"dev exited with {process.returncode} before it was ready")
            try:
                if http.get(url).status_code == 200:
                    return time.perf_counter() - started
            except httpx2.TransportError:
                pass
            time.sleep(0.01)
    raise SystemExit(f"dev was not ready within {READY_TIMEOUT} s")


def prepare(site: Path, port: int) -> None:
    config = (ROOT / "relay.toml").read_text()
    site.mkdir(parents=True, exist_ok=True)
    (site / "relay.toml").write_text(
        config.replace(
            "http://127.0.0.1:8000/inbox/webhook", f"http://127.0.0.1:{port}/inbox/webhook"
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="warm runs after the cold one")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dev-startup-"))
    try:
        cold_ready: list[float] = []
        warm_ready: list[float] = []
        stops: list[float] = []
        for attempt in range(2):
            site, port, simulator_port = work / f"site{attempt}", free_port(), free_port()
            prepare(site, port)
            for run in range(args.runs + 1):
                ready, stopped = one_run(site, port, simulator_port)
                (warm_ready if run else cold_ready).append(ready)
                stops.append(stopped)
                label = "warm" if run else "cold"
                print(
                    f"site {attempt} run {run} ({label}): ready {ready:.3f} s, stop {stopped:.3f} s"
                )
        for name, values in (
            ("cold ready", cold_ready),
            ("warm ready", warm_ready),
            ("stop", stops),
        ):
            print(
                f"{name:>10}: min {min(values):.3f} s, median {statistics.median(values):.3f} s,"
                f" max {max(values):.3f} s (n={len(values)})"
            )
        print(f"load1 after the runs: {os.getloadavg()[0]:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
