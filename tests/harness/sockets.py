"""A loopback TCP server whose connections a test serves byte by byte (HTTP edge cases, TLS)."""

from __future__ import annotations

import socket
import socketserver
import ssl
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Self

Serve = Callable[[socket.socket, "SocketServer"], None]


class SocketServer:
    """Listens on 127.0.0.1 and a free port; `serve(connection, server)` runs for each accepted
    connection in a thread of its own (after the TLS handshake when `tls` is given), and the
    connection is closed when it returns. `ports` lists the client ports in the order they
    connected. Leaving `with` sets `stopping` (a handler that holds a connection open waits on
    it), stops accepting and joins every handler."""

    def __init__(
        self,
        serve: Serve,
        *,
        tls: ssl.SSLContext | None = None,
        receive_buffer: int | None = None,
    ) -> None:
        self.serve = serve
        self.tls = tls
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._ports: list[int] = []
        self._server = _Server(("127.0.0.1", 0), _Handler, bind_and_activate=False)
        self._server.owner = self
        if receive_buffer is not None:
            # Set before listen(): accepted connections inherit it, and a fixed buffer is not
            # grown by the kernel, so a client's large body soon stops fitting.
            self._server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self._server.server_bind()
        self._server.server_activate()
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, path: str = "/", *, scheme: str = "http", host: str = "127.0.0.1") -> str:
        return f"{scheme}://{host}:{self.port}{path}"

    @property
    def ports(self) -> list[int]:
        with self._lock:
            return list(self._ports)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._thread.join()
        self._server.server_close()  # joins the (non-daemon) handler threads

    def _handle(self, connection: socket.socket, port: int) -> None:
        with self._lock:
            self._ports.append(port)
        if self.tls is None:
            self.serve(connection, self)
            return
        try:
            wrapped = self.tls.wrap_socket(connection, server_side=True)
        except (OSError, ssl.SSLError):  # the client refused our certificate: its test says so
            return
        with wrapped:
            self.serve(wrapped, self)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = False  # so server_close() joins the handler threads
    block_on_close = True
    allow_reuse_address = True
    owner: SocketServer

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that hung up is what several tests provoke


class _Handler(socketserver.BaseRequestHandler):
    server: _Server
    request: socket.socket

    def handle(self) -> None:
        self.server.owner._handle(self.request, int(self.client_address[1]))


def read_request(connection: socket.socket) -> bytes:
    """One request's head and Content-Length body as sent (b"" if the client closed first)."""
    data = b""
    while b"\r\n\r\n" not in data:
        received = connection.recv(65536)
        if not received:
            return data
        data += received
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        received = connection.recv(65536)
        if not received:
            break
        body += received
    return head + b"\r\n\r\n" + body


def answer(status: str = "200 OK", body: bytes = b"ok", *headers: str) -> bytes:
    """An HTTP/1.1 answer with a Content-Length, and `headers` ("Name: value") before it."""
    lines = [f"HTTP/1.1 {status}", *headers, f"Content-Length: {len(body)}", "", ""]
    return "\r\n".join(lines).encode("latin-1") + body
