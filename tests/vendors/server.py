"""A real HTTP server for a vendor fake: serves a `handle(httpx2.Request) -> httpx2.Response`.

The vendor fakes (tests/vendors/bamboohr.py, fake_lti11.py, fake_lti13.py) are plain request
handlers, so the sink tests run them in-process through `httpx2.MockTransport(fake.handle)` and
the end-to-end tests serve the very same handler over HTTP with `VendorServer(fake.handle)`.
Requests are rebuilt with the URL the client used (from the Host header), so signatures over
the URL (OAuth 1.0a) verify as they would on the real host.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import httpx2

Handler = Callable[[httpx2.Request], httpx2.Response]


class VendorServer:
    """Serves `handler` on 127.0.0.1 (a free port) in a thread, HTTP/1.0, until stopped."""

    def __init__(self, handler: Handler) -> None:
        self._server = _Server(("127.0.0.1", 0), _RequestHandler)
        self._server.handler = handler
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    def __enter__(self) -> VendorServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._thread.join()
        self._server.server_close()


class _Server(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True
    handler: Handler


class _RequestHandler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"

    def _handle(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        host = self.headers.get("host") or f"127.0.0.1:{self.server.server_address[1]}"
        request = httpx2.Request(
            self.command,
            f"http://{host}{self.path}",
            headers=list(self.headers.items()),
            content=body,
        )
        response = self.server.handler(request)
        content = response.read()
        self.send_response(response.status_code)
        for name, value in response.headers.multi_items():
            if name.lower() not in {"content-length", "transfer-encoding"}:
                self.send_header(name, value)
        self.send_header("content-length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    do_GET = do_POST = do_PUT = _handle

    def log_message(self, format: str, *args: Any) -> None:
        pass
