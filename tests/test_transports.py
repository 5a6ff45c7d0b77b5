"""worker.transports.ThreadTransports: one transport (so one connection pool) per thread."""

from __future__ import annotations

import ssl
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx2
import pytest

from worker.transports import ThreadTransports


class CountingTransport(httpx2.MockTransport):
    """Answers 200 with the name of the transport; remembers the threads it served."""

    def __init__(self, name: str) -> None:
        super().__init__(self._answer)
        self.name = name
        self.threads: set[str] = set()
        self.closed = False

    def _answer(self, request: httpx2.Request) -> httpx2.Response:
        self.threads.add(threading.current_thread().name)
        return httpx2.Response(200, text=self.name)

    def close(self) -> None:
        self.closed = True


def factory() -> tuple[list[CountingTransport], ThreadTransports]:
    made: list[CountingTransport] = []

    def make(context: ssl.SSLContext) -> CountingTransport:
        made.append(CountingTransport(f"t{len(made)}"))
        return made[-1]

    return made, ThreadTransports(make)


def test_each_thread_sends_through_a_transport_of_its_own_and_keeps_it() -> None:
    made, transports = factory()
    client = httpx2.Client(transport=transports)
    barrier = threading.Barrier(4, timeout=10)

    def send_three(_: int) -> set[str]:
        barrier.wait()  # all four threads are alive at once, so none reuses another's
        return {client.get("http://isograd.test/x").text for _ in range(3)}

    with ThreadPoolExecutor(4) as pool:
        answered = list(pool.map(send_three, range(4)))

    assert all(len(names) == 1 for names in answered)  # one transport per thread, kept
    assert len({name for names in answered for name in names}) == len(made) == 4
    assert all(len(transport.threads) == 1 for transport in made)
    client.close()


def test_close_closes_every_transport_made_and_refuses_new_threads() -> None:
    made, transports = factory()
    client = httpx2.Client(transport=transports)
    client.get("http://isograd.test/x")
    with ThreadPoolExecutor(1) as pool:
        pool.submit(client.get, "http://isograd.test/x").result()

    client.close()

    assert [transport.closed for transport in made] == [True, True]
    with ThreadPoolExecutor(1) as pool, pytest.raises(RuntimeError, match="closed"):
        pool.submit(transports.handle_request, httpx2.Request("GET", "http://x.test/")).result()
