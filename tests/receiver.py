"""A real HTTP receiver for tests: records what it is sent and answers scripted responses.

Usage (in a fixture)::

    with RecordingReceiver() as receiver:
        receiver.script(ScriptedResponse(status=503), ScriptedResponse(status=200))
        ...  # POST to receiver.url("/hook")
        [request] = receiver.wait_for_requests(1)

It listens on 127.0.0.1 on a free port, serves each request in its own thread, answers HTTP/1.0
(one request per connection, so no handler lingers on a kept-alive socket) and, on exit, wakes any
handler still delaying its answer and joins every thread before closing the socket.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

Responder = Callable[["RecordedRequest"], "ScriptedResponse"]


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the receiver saw it; header names are lower-cased."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class ScriptedResponse:
    """One answer: `delay` seconds are waited before the status line is sent."""

    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = field(default=())
    delay: float = 0.0


class RecordingReceiver:
    """A threaded HTTP server that answers from a script, then from `responder` (a vendor fake,
    tests/vendors/chat_hris.py) when one is given, else with `default` (200 with an empty body)."""

    def __init__(
        self, default: ScriptedResponse | None = None, *, responder: Responder | None = None
    ) -> None:
        self.default = default or ScriptedResponse()
        self.responder = responder
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._script: deque[ScriptedResponse] = deque()
        self._requests: list[RecordedRequest] = []
        self._stopping = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.receiver = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> RecordingReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Wake delayed handlers, stop serving, join every handler thread, close the socket."""
        self._stopping.set()
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()  # joins the (non-daemon) handler threads

    def __enter__(self) -> RecordingReceiver:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def script(self, *responses: ScriptedResponse) -> None:
        """Queue answers for the next requests, in order; the default answers once they run out."""
        with self._lock:
            self._script.extend(responses)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> list[RecordedRequest]:
        """Block until `count` requests have arrived (AssertionError after `timeout` seconds)."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(self._requests) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"expected {count} request(s), got {len(self._requests)} in {timeout} s"
                    )
                self._arrived.wait(remaining)
            return list(self._requests)

    def _record(self, request: RecordedRequest) -> ScriptedResponse:
        with self._arrived:
            self._requests.append(request)
            self._arrived.notify_all()
            if self._script:
                return self._script.popleft()
        return self.responder(request) if self.responder is not None else self.default

    def _pause(self, seconds: float) -> None:
        # An Event wait, not a sleep: stop() cuts it short so no handler outlives the receiver.
        self._stopping.wait(seconds)


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # so server_close() joins the handler threads
    block_on_close = True
    # socketserver's default listen backlog is 5: a burst of concurrent senders (bench/burst.py
    # has 32 handlers POSTing at once) overflowed it and saw connections reset.
    request_queue_size = 128
    receiver: RecordingReceiver

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The client may have hung up (a test of our timeout): that is expected, not an error.
        pass


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"

    def _handle(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        recorded = RecordedRequest(
            method=self.command,
            path=self.path,
            headers={name.lower(): value for name, value in self.headers.items()},
            body=body,
        )
        receiver = self.server.receiver
        answer = receiver._record(recorded)
        if answer.delay:
            receiver._pause(answer.delay)
        self.send_response(answer.status)
        for name, value in answer.headers:
            self.send_header(name, value)
        self.send_header("content-length", str(len(answer.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer.body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output quiet
