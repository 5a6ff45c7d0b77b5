"""bench/burst.py's callback senders, in a process of their own (not sharing the receiver's GIL).

    .venv/bin/python -m bench.callback_sender --urls FILE --concurrency N --out FILE
        [--client raw|httpx2]

Reads the URLs (one per line, all on one `http://host:port`) and prepares its client, prints
`ready`, waits for a line on stdin, then GETs every URL over N connections at once, as Isograd
would at the end of an exam session. When all are answered it writes
`{"answers_ms": [...], "failed": n, "cpu_seconds": s}` to `--out` (answers in the order they
came, each from just before its request was written, connecting included, to the end of its
answer; `failed`: not answered 200) and exits.

`--client raw` (the default): one asyncio event loop, N keep-alive connections, each writing
one `GET` and reading its answer (status line, headers, `Content-Length` body) at a time. Its
own work stays small next to the server's: against a bare Starlette route on uvicorn, 32
connections, 10,000 requests, 26-29 us of CPU per request and answers p50 1.1 ms, p99 2.3-3.0 ms.

`--client httpx2`: N threads sharing one httpx2.Client, as this benchmark did before. Against
the same bare route it spent 650-670 us of CPU per request and measured p50 18 ms, p99 55-60 ms:
a thread whose answer has come waits for the GIL held by the 31 others, and that wait is
counted in its answer time. Kept to reproduce that comparison (bench/README.md, "fifth pass").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import httpx2


class Answers:
    """The answer times (ms, in the order they came) and how many were not 200."""

    def __init__(self) -> None:
        self.ms: list[float] = []
        self.failed = 0
        self._lock = threading.Lock()

    def add(self, started: float, ok: bool) -> None:
        took = (time.perf_counter() - started) * 1000
        with self._lock:
            self.ms.append(took)
            self.failed += not ok


def origin_and_targets(urls: Sequence[str]) -> tuple[str, int, list[str]]:
    """The one (host, port) every URL names, and each URL's request target (path?query)."""
    origins = set()
    targets = []
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme != "http" or parts.hostname is None:
            raise SystemExit(f"callback_sender: only http:// URLs, not {url!r}")
        origins.add((parts.hostname, parts.port or 80))
        targets.append(parts.path + (f"?{parts.query}" if parts.query else ""))
    if len(origins) != 1:
        raise SystemExit(f"callback_sender: the URLs name {len(origins)} origins, expected one")
    (host, port) = origins.pop()
    return host, port, targets


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """(status, keep-alive) of one HTTP/1.1 answer, its body read and dropped."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    status = int(status_line.split(" ", 2)[1])
    headers = {}
    for line in header_lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if "content-length" not in headers:
        raise ValueError(f"an answer without Content-Length (status {status})")
    await reader.readexactly(int(headers["content-length"]))
    return status, headers.get("connection", "").lower() != "close"


async def send_raw(host: str, port: int, targets: Sequence[str], connections: int) -> Answers:
    """GET every target over `connections` keep-alive connections to host:port."""
    answers = Answers()
    queue: Iterator[str] = iter(targets)
    host_header = f"Host: {host}:{port}\r\n"

    async def one_connection() -> None:
        streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        for target in queue:  # one loop, one thread: the iterator is shared safely
            started = time.perf_counter()
            try:
                if streams is None:
                    streams = await asyncio.open_connection(host, port)
                reader, writer = streams
                writer.write(f"GET {target} HTTP/1.1\r\n{host_header}\r\n".encode())
                status, keep_alive = await _read_answer(reader)
            except (OSError, ValueError, asyncio.IncompleteReadError):
                answers.add(started, ok=False)
                if streams is not None:
                    streams[1].close()
                streams = None
                continue
            answers.add(started, ok=status == 200)
            if not keep_alive:
                writer.close()
                streams = None
        if streams is not None:
            streams[1].close()

    await asyncio.gather(*(one_connection() for _ in range(connections)))
    return answers


def send_httpx2(urls: Sequence[str], concurrency: int, ready: Callable[[], None]) -> Answers:
    """GET every URL from `concurrency` threads sharing one httpx2.Client, once `ready()` (called
    with the client built) returns."""
    answers = Answers()
    limits = httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    with httpx2.Client(timeout=60, limits=limits) as http:

        def fire(url: str) -> None:
            started = time.perf_counter()
            try:
                ok = http.get(url).status_code == 200
            except httpx2.HTTPError:
                ok = False
            answers.add(started, ok)

        ready()
        with ThreadPoolExecutor(concurrency) as pool:
            for url in urls:
                pool.submit(fire, url)
    return answers


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--urls", type=Path, required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--client", choices=("raw", "httpx2"), default="raw")
    args = parser.parse_args(argv)
    urls = args.urls.read_text(encoding="utf-8").split()
    host, port, targets = origin_and_targets(urls)

    def ready() -> None:
        print("ready", flush=True)
        sys.stdin.readline()

    if args.client == "raw":
        ready()
        answers = asyncio.run(send_raw(host, port, targets, args.concurrency))
    else:
        answers = send_httpx2(urls, args.concurrency, ready)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result = {
        "answers_ms": answers.ms,
        "failed": answers.failed,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
    }
    args.out.write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
