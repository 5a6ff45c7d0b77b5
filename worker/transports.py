"""The relay's httpx2 transports: a connection pool per thread, and HTTP/1.1 over http.client.

httpcore2's ConnectionPool walks every connection it holds twice per request (when the request
is queued and when it ends: `_assign_requests_to_connections`) and asks each idle one whether
its socket became readable (`has_expired`, one poll() system call each). A worker that has many
requests in flight keeps that many connections, so every request pays for all of them: on this
project's 2-core machine a POST cost 459 us of client CPU with 2 idle connections in one shared
pool and 516 us with 32, against 444 us with a pool per thread (`bench/connection_pool.py`;
bench/README.md has the runs).

A thread sends one request at a time, so a pool per thread holds about one connection and each
request checks only that one. The connections are as many as before (one per thread that talks
to the host), each reused by its thread while kept alive. The threads' transports share one TLS
context: each new context parses the whole CA bundle again (~1 MB; three per thread had made a
worker 166 MB).

Even then most of a request's client CPU was httpcore2 and h11 themselves (their state machines,
events and per-request bookkeeping): `HttpClientTransport` sends through the standard library's
http.client instead, behind the same httpx2.Client API (bench/http_transport.py has the figures).
"""

from __future__ import annotations

import http.client
import io
import math
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING

import httpx2

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, WriteableBuffer

# One read's size: http.client undoes chunked encoding; httpx2 decodes Content-Encoding.
_CHUNK_BYTES = 65536
# httpcore2's default (httpx2.Limits().keepalive_expiry). Servers close idle connections after a
# few seconds (uvicorn after 5), and one closed while our request is on its way fails that request
# (never retried): a connection idle longer is not reused.
KEEPALIVE_EXPIRY = 5.0
_DEFAULT_PORTS = {"http": 80, "https": 443}

Origin = tuple[str, str, int]
"""(scheme, host, port): the requests that may share a connection."""

Limit = Callable[[float | None], float | None]
"""Given a socket operation's timeout (seconds; None: none), the one it gets: the same or shorter.
Raises TimeoutError when no time is left."""


class ThreadTransports(httpx2.BaseTransport):
    """Sends each request through the calling thread's own transport, made on the thread's first
    request by `make`, which is handed the TLS context all of them share (created once, on the
    first request); `close()` closes them all. Thread-safe."""

    def __init__(self, make: Callable[[ssl.SSLContext], httpx2.BaseTransport]) -> None:
        self._make = make
        self._ssl_context: ssl.SSLContext | None = None
        self._local = threading.local()
        self._lock = threading.Lock()
        self._made: list[httpx2.BaseTransport] = []
        self._closed = False

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        transport: httpx2.BaseTransport | None = getattr(self._local, "transport", None)
        if transport is None:
            transport = self._made_for_this_thread()
        return transport.handle_request(request)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            made, self._made = self._made, []
        for transport in made:
            transport.close()

    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        self.close()

    def _made_for_this_thread(self) -> httpx2.BaseTransport:
        with self._lock:
            if self._closed:
                raise RuntimeError("the transport is closed")
            if self._ssl_context is None:
                self._ssl_context = httpx2.create_ssl_context()
            transport = self._make(self._ssl_context)
            self._made.append(transport)
        self._local.transport = transport
        return transport


class HttpClientTransport(httpx2.BaseTransport):
    """HTTP/1.1 over the standard library's http.client, one kept-alive connection per origin.

    Not thread-safe: use one per thread (ThreadTransports makes them). A connection is reused
    only when the previous response on it was read to its end and did not ask to close it
    (`Connection: close`, HTTP/1.0 without keep-alive, a body delimited by the server closing),
    when it has been idle less than `keepalive_expiry` seconds and when the server has not closed
    it meanwhile (its socket is not readable). A request sent while another response from the
    same origin is still open gets a connection of its own; one of them is kept afterwards.
    Requests are never retried (a POST may not be idempotent). https uses `ssl_context` (made by
    httpx2.create_ssl_context on first use when None): certificate and hostname checks are the
    context's. Timeouts are httpx2's: `connect` for the TCP connect and for the TLS handshake,
    `write` for sending, `read` for each receive of the answer; `pool` has no meaning here. A
    `limit` is asked for each operation's timeout (the TCP connect, the TLS handshake, every send
    and every receive), so it can shorten them all (worker.sinks.deadline: an attempt's deadline).
    Errors are httpx2's (ConnectError, ReadTimeout, RemoteProtocolError, ...), the cause chained.

    Not supported (RemoteProtocolError): 1xx answers other than 100 Continue, more than 100 answer
    headers (http.client's limit). Nor are HTTP/2, proxies or Unix sockets. Unlike httpcore2, an
    answer cut inside its header block is taken as complete (http.client's parse_headers stops at
    EOF), and a failed write raises at once instead of first trying to read an early answer.
    """

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        keepalive_expiry: float | None = KEEPALIVE_EXPIRY,
        limit: Limit | None = None,
    ) -> None:
        self._ssl_context = ssl_context
        self._limit = limit
        self._keepalive_expiry = math.inf if keepalive_expiry is None else keepalive_expiry
        self._idle: dict[Origin, tuple[http.client.HTTPConnection, float]] = {}
        self._busy: set[http.client.HTTPConnection] = set()
        self._closed = False

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        origin = _origin(request)
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        connection = self._idle_connection(origin)
        if connection is None:
            connection = self._connect(origin, timeouts.get("connect"), request)
        self._busy.add(connection)
        try:
            _send(connection, request, timeouts.get("write"))
            response = _receive(connection, request, timeouts.get("read"))
        except BaseException:
            self._release(origin, connection, keep=False)
            raise
        return httpx2.Response(
            response.status,
            headers=[
                (name.encode("latin-1"), value.encode("latin-1"))
                for name, value in response.getheaders()
            ],
            stream=_ResponseBody(
                response, request, lambda keep: self._release(origin, connection, keep=keep)
            ),
            extensions={
                "http_version": b"HTTP/1.0" if response.version == 10 else b"HTTP/1.1",
                "reason_phrase": response.reason.encode("latin-1"),
            },
        )

    def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, {}
        busy, self._busy = self._busy, set()
        for connection in [*(connection for connection, _ in idle.values()), *busy]:
            connection.close()

    def _idle_connection(self, origin: Origin) -> http.client.HTTPConnection | None:
        """The origin's kept-alive connection if it is still usable; a stale one is closed."""
        idle = self._idle.pop(origin, None)
        if idle is None:
            return None
        connection, expires_at = idle
        # Readable while idle means the server closed it (or sent junk): never send on it.
        if time.monotonic() >= expires_at or _is_readable(connection.sock.fileno()):
            connection.close()
            return None
        return connection

    def _connect(
        self, origin: Origin, timeout: float | None, request: httpx2.Request
    ) -> http.client.HTTPConnection:
        scheme, host, port = origin
        limit = self._limit or _unlimited
        connection = http.client.HTTPConnection(host, port)
        try:
            connection.timeout = limit(timeout)
            connection.connect()
            if scheme == "https":
                # What http.client.HTTPSConnection.connect does, with the handshake's own timeout.
                connection.sock.settimeout(limit(timeout))
                connection.sock = self._tls().wrap_socket(connection.sock, server_hostname=host)
        except TimeoutError as exc:
            connection.close()
            raise httpx2.ConnectTimeout(str(exc) or "timed out", request=request) from exc
        except OSError as exc:  # refused, unreachable, DNS, TLS (ssl.SSLError is an OSError)
            connection.close()
            raise httpx2.ConnectError(str(exc), request=request) from exc
        if self._limit is not None:
            connection.sock = _LimitedSocket(connection.sock, self._limit)
        return connection

    def _tls(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = httpx2.create_ssl_context()
        return self._ssl_context

    def _release(self, origin: Origin, connection: http.client.HTTPConnection, keep: bool) -> None:
        self._busy.discard(connection)
        if keep and not self._closed and origin not in self._idle:
            self._idle[origin] = (connection, time.monotonic() + self._keepalive_expiry)
        else:
            connection.close()


class _ResponseBody(httpx2.SyncByteStream):
    """A response's body, read from its connection as it is iterated; `close()` hands the
    connection back through `release(keep)`, kept only if the body was read to its end."""

    def __init__(
        self,
        response: http.client.HTTPResponse,
        request: httpx2.Request,
        release: Callable[[bool], None],
    ) -> None:
        self._response = response
        self._request = request
        self._release = release
        self._failed = False
        self._released = False

    def __iter__(self) -> Iterator[bytes]:
        try:
            while chunk := self._response.read1(_CHUNK_BYTES):
                yield chunk
        except (OSError, http.client.HTTPException) as exc:
            self._failed = True
            raise _read_error(exc, self._request) from exc
        if self._response.length:  # http.client ends a short Content-Length body silently
            self._failed = True
            raise httpx2.RemoteProtocolError(
                "the server closed the connection before the end of the body",
                request=self._request,
            )

    def close(self) -> None:
        if self._released:
            return
        self._released = True
        response = self._response
        # length 0: a Content-Length body (or one that has none: HEAD, 204, 304) read to its end;
        # isclosed(): a chunked body read to its last chunk.
        ended = response.length == 0 or response.isclosed()
        keep = ended and not self._failed and not response.will_close
        response.close()
        self._release(keep)


def _origin(request: httpx2.Request) -> Origin:
    url = request.url
    if url.scheme not in _DEFAULT_PORTS:
        raise httpx2.UnsupportedProtocol(
            f"Request URL has an unsupported protocol '{url.scheme}://'.", request=request
        )
    return (url.scheme, url.raw_host.decode("ascii"), url.port or _DEFAULT_PORTS[url.scheme])


def _send(
    connection: http.client.HTTPConnection, request: httpx2.Request, timeout: float | None
) -> None:
    """Send the request line, headers (httpx2 has set Host, Content-Length...) and body."""
    connection.sock.settimeout(timeout)
    try:
        connection.putrequest(
            request.method,
            request.url.raw_path.decode("ascii"),
            skip_host=True,
            skip_accept_encoding=True,
        )
        for name, value in request.headers.raw:
            connection.putheader(name, value)
        # A streamed request body (no Content-Length) is sent whole, chunked as httpx2 announced.
        chunked = "transfer-encoding" in request.headers
        connection.endheaders(request.read(), encode_chunked=chunked)
    except TimeoutError as exc:
        raise httpx2.WriteTimeout(str(exc) or "timed out", request=request) from exc
    except OSError as exc:
        raise httpx2.WriteError(str(exc), request=request) from exc
    except (ValueError, http.client.HTTPException) as exc:  # a header http.client refuses
        raise httpx2.LocalProtocolError(str(exc), request=request) from exc


def _receive(
    connection: http.client.HTTPConnection, request: httpx2.Request, timeout: float | None
) -> http.client.HTTPResponse:
    """The status line and headers (a 100 Continue skipped); the body is left to read."""
    connection.sock.settimeout(timeout)  # and for the body's reads too: the socket keeps it
    try:
        response = connection.getresponse()
    except (OSError, http.client.HTTPException) as exc:
        raise _read_error(exc, request) from exc
    if response.status < 200:
        # http.client skips 100 Continue only: it would take any other 1xx (103 Early Hints) for
        # the answer, and the real one, which follows, may already sit in that one's buffer.
        response.close()
        raise httpx2.RemoteProtocolError(
            f"an informational answer ({response.status}) other than 100 is not supported",
            request=request,
        )
    return response


def _read_error(exc: Exception, request: httpx2.Request) -> httpx2.TransportError:
    if isinstance(exc, TimeoutError):
        return httpx2.ReadTimeout(str(exc) or "timed out", request=request)
    # Before OSError: RemoteDisconnected (closed without an answer) is both.
    if isinstance(exc, http.client.HTTPException):
        return httpx2.RemoteProtocolError(str(exc) or type(exc).__name__, request=request)
    return httpx2.ReadError(str(exc), request=request)


def _is_readable(fd: int) -> bool:
    """Whether a read would not block: on an idle connection, the server's EOF (or junk)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


def _unlimited(timeout: float | None) -> float | None:
    return timeout


class _LimitedSocket:
    """A connected socket as http.client uses it (sendall, makefile, settimeout, close) whose
    every send and receive waits at most `limit(timeout)`, asked again each time; `timeout` is
    the phase's, as set by settimeout."""

    def __init__(self, sock: socket.socket, limit: Limit) -> None:
        self._sock = sock
        self._limit = limit
        self._timeout = sock.gettimeout()
        self._readers = 0
        self._closed = False

    def settimeout(self, timeout: float | None) -> None:
        self._timeout = timeout

    def fileno(self) -> int:
        return self._sock.fileno()

    def sendall(self, data: ReadableBuffer) -> None:
        with memoryview(data).cast("B") as view:
            sent = 0
            while sent < len(view):
                self._sock.settimeout(self._limit(self._timeout))
                sent += self._sock.send(view[sent:])

    def recv_into(self, buffer: WriteableBuffer) -> int:
        self._sock.settimeout(self._limit(self._timeout))
        return self._sock.recv_into(buffer)

    def makefile(self, mode: str) -> io.BufferedReader:
        """A reader of answers (http.client asks one per answer, mode "rb")."""
        self._readers += 1
        return io.BufferedReader(_LimitedReader(self))

    def close(self) -> None:
        # As socket.close with makefile's readers: http.client closes the connection of a
        # `Connection: close` answer before its body is read, through the answer's reader.
        self._closed = True
        if not self._readers:
            self._sock.close()

    def reader_closed(self) -> None:
        self._readers -= 1
        if self._closed and not self._readers:
            self._sock.close()


class _LimitedReader(io.RawIOBase):
    def __init__(self, sock: _LimitedSocket) -> None:
        super().__init__()
        self._limited = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        return self._limited.recv_into(buffer)

    def close(self) -> None:
        if not self.closed:
            self._limited.reader_closed()
        super().close()
