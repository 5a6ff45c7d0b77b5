"""worker.transports: ThreadTransports (a transport per thread), and HttpClientTransport (HTTP/1.1
over http.client) against real servers on loopback."""

from __future__ import annotations

import socket
import ssl
import struct
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.harness.certificates import self_signed
from tests.harness.served_app import ServedApp
from tests.harness.sockets import SocketServer, answer, read_request
from worker.transports import HttpClientTransport, ThreadTransports


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


# HttpClientTransport against uvicorn (h11): what arrives, and when a connection is kept.


async def echo(request: Request) -> Response:
    """What the server received, and from which client port (one port per connection)."""
    assert request.client is not None
    return JSONResponse(
        {
            "method": request.method,
            "path": request.url.path,
            "query": request.url.query,
            "headers": request.headers.items(),
            "body": (await request.body()).decode(),
            "port": request.client.port,
        }
    )


async def chunked(request: Request) -> Response:
    async def parts() -> AsyncIterator[bytes]:
        for part in (b"first,", b"second,", b"third"):
            yield part

    return StreamingResponse(parts())  # no length: uvicorn sends it chunked


async def large(request: Request) -> Response:
    """1 MiB in 64 chunks, and the client port in a header."""

    async def parts() -> AsyncIterator[bytes]:
        for _ in range(64):
            yield b"x" * 16384

    assert request.client is not None
    return StreamingResponse(parts(), headers={"x-port": str(request.client.port)})


@pytest.fixture(scope="module")
def server() -> Iterator[ServedApp]:
    routes = [
        Route("/echo", echo, methods=["GET", "POST"]),
        Route("/chunked", chunked),
        Route("/large", large),
    ]
    with ServedApp(lambda url: Starlette(routes=routes)) as served:
        yield served


@pytest.fixture
def http() -> Iterator[httpx2.Client]:
    with httpx2.Client(transport=HttpClientTransport(), timeout=10) as client:
        yield client


def test_a_get_arrives_with_its_method_path_query_and_headers(
    server: ServedApp, http: httpx2.Client
) -> None:
    response = http.get(f"{server.url}/echo?b=2&a=%C3%A9", headers={"X-Trace": "t-1"})

    received = response.json()
    assert (response.status_code, response.http_version, response.reason_phrase) == (
        200,
        "HTTP/1.1",
        "OK",
    )
    assert (received["method"], received["path"], received["query"]) == (
        "GET",
        "/echo",
        "b=2&a=%C3%A9",
    )
    headers = dict(received["headers"])
    assert headers["host"] == f"127.0.0.1:{server.port}"
    assert headers["x-trace"] == "t-1"
    assert "content-length" not in headers
    assert received["body"] == ""


def test_a_form_post_arrives_with_its_body_length_and_content_type(
    server: ServedApp, http: httpx2.Client
) -> None:
    response = http.post(f"{server.url}/echo", data={"act_id": "10", "ema": "a b@x.test"})

    received = response.json()
    assert received["method"] == "POST"
    assert received["body"] == "act_id=10&ema=a+b%40x.test"
    headers = dict(received["headers"])
    assert headers["content-type"] == "application/x-www-form-urlencoded"
    assert headers["content-length"] == str(len(received["body"]))


def test_sequential_requests_to_one_origin_share_one_connection(
    server: ServedApp, http: httpx2.Client
) -> None:
    ports = {http.post(f"{server.url}/echo", data={"n": str(n)}).json()["port"] for n in range(3)}

    assert len(ports) == 1


def test_a_connection_idle_for_its_keepalive_expiry_is_not_reused(server: ServedApp) -> None:
    with httpx2.Client(transport=HttpClientTransport(keepalive_expiry=0)) as http:
        ports = {http.get(f"{server.url}/echo").json()["port"] for _ in range(2)}

    assert len(ports) == 2


def test_a_chunked_body_is_read_whole_and_its_connection_kept(
    server: ServedApp, http: httpx2.Client
) -> None:
    before = http.get(f"{server.url}/echo").json()["port"]

    response = http.get(f"{server.url}/chunked")

    assert response.headers["transfer-encoding"] == "chunked"
    assert response.content == b"first,second,third"
    assert http.get(f"{server.url}/echo").json()["port"] == before


def test_a_streamed_answer_read_to_its_end_keeps_its_connection(
    server: ServedApp, http: httpx2.Client
) -> None:
    with http.stream("GET", f"{server.url}/large") as response:
        size = sum(len(chunk) for chunk in response.iter_bytes())
        streamed_on = int(response.headers["x-port"])

    assert size == 64 * 16384
    assert http.get(f"{server.url}/echo").json()["port"] == streamed_on


def test_a_request_sent_while_an_answer_is_still_open_gets_a_connection_of_its_own(
    server: ServedApp, http: httpx2.Client
) -> None:
    with http.stream("GET", f"{server.url}/large") as open_answer:
        meanwhile = http.get(f"{server.url}/echo").json()["port"]
        streamed_on = int(open_answer.headers["x-port"])
        size = sum(len(chunk) for chunk in open_answer.iter_bytes())

    after = http.get(f"{server.url}/echo").json()["port"]

    assert size == 64 * 16384
    assert meanwhile != streamed_on
    assert after == meanwhile  # the first released is kept; the other one was closed


# HttpClientTransport against servers scripted byte by byte.


def answer_each_request(connection: socket.socket, server: SocketServer) -> None:
    """Answers every request on the connection with 200 "ok" until the client closes it."""
    while read_request(connection):
        connection.sendall(answer())


def test_answer_headers_keep_their_order_and_duplicates_and_the_status_line_its_reason() -> None:
    def serve(connection: socket.socket, server: SocketServer) -> None:
        read_request(connection)
        connection.sendall(
            answer("201 Made It", b"{}", "Set-Cookie: a=1", "X-One: 1", "Set-Cookie: b=2")
        )

    with SocketServer(serve) as server, httpx2.Client(transport=HttpClientTransport()) as http:
        response = http.get(server.url())

    assert (response.status_code, response.reason_phrase) == (201, "Made It")
    assert response.headers.get_list("set-cookie") == ["a=1", "b=2"]
    assert [name for name, _ in response.headers.raw] == [
        b"Set-Cookie",
        b"X-One",
        b"Set-Cookie",
        b"Content-Length",
    ]


def test_a_connection_the_server_closed_while_idle_is_replaced_by_a_fresh_one() -> None:
    closed = threading.Event()

    def serve_once_then_close(connection: socket.socket, server: SocketServer) -> None:
        read_request(connection)
        connection.sendall(answer())  # keep-alive by HTTP/1.1's default, yet closed at once
        connection.close()
        closed.set()

    with (
        SocketServer(serve_once_then_close) as server,
        httpx2.Client(transport=HttpClientTransport()) as http,
    ):
        first = http.get(server.url())
        assert closed.wait(10)
        second = http.get(server.url())

    assert (first.text, second.text) == ("ok", "ok")
    assert len(set(server.ports)) == 2


@pytest.mark.parametrize(
    ("status_line", "headers", "connections"),
    [
        ("HTTP/1.1 200 OK", "Connection: close\r\n", 2),
        ("HTTP/1.0 200 OK", "", 2),
        ("HTTP/1.0 200 OK", "Connection: keep-alive\r\n", 1),
        ("HTTP/1.1 200 OK", "", 1),
    ],
)
def test_a_connection_is_reused_only_when_the_answer_allows_it(
    status_line: str, headers: str, connections: int
) -> None:
    def serve(connection: socket.socket, server: SocketServer) -> None:
        # Keeps the connection open whatever it announced: the client alone decides.
        while read_request(connection):
            head = f"{status_line}\r\n{headers}Content-Length: 2\r\n\r\nok"
            connection.sendall(head.encode("ascii"))

    with SocketServer(serve) as server, httpx2.Client(transport=HttpClientTransport()) as http:
        texts = [http.get(server.url()).text for _ in range(2)]

    assert texts == ["ok", "ok"]
    assert len(server.ports) == connections


def test_a_streamed_answer_closed_before_its_end_gives_up_its_connection() -> None:
    halved = threading.Event()

    def serve(connection: socket.socket, server: SocketServer) -> None:
        if not halved.is_set():
            halved.set()
            read_request(connection)
            # Half the body, the rest never: nothing waits to be read, yet the connection owes
            # two bytes, which would start the next answer if it were reused.
            connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab")
        answer_each_request(connection, server)

    with (
        SocketServer(serve) as server,
        httpx2.Client(transport=HttpClientTransport()) as http,
    ):
        with http.stream("GET", server.url()) as response:
            first = next(response.iter_bytes())
        after = http.get(server.url())

    assert (first, after.text) == (b"ab", "ok")
    assert len(server.ports) == 2


def test_close_closes_the_kept_alive_connection() -> None:
    ended = threading.Event()

    def serve(connection: socket.socket, server: SocketServer) -> None:
        answer_each_request(connection, server)
        ended.set()  # read_request saw the client's end of the connection

    transport = HttpClientTransport()
    with SocketServer(serve) as server:
        httpx2.Client(transport=transport).get(server.url())
        assert not ended.is_set()

        transport.close()

        assert ended.wait(10)


# Errors: each as httpx2's own, the cause chained, the request attached.


def test_a_refused_connection_raises_connect_error(http: httpx2.Client) -> None:
    with socket.socket() as bound:  # bound, never listening: connecting is refused
        bound.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{bound.getsockname()[1]}/x"
        with pytest.raises(httpx2.ConnectError) as raised:
            http.get(url)

    assert isinstance(raised.value.__cause__, ConnectionRefusedError)
    assert str(raised.value.request.url) == url


def test_a_tls_handshake_left_unanswered_raises_connect_timeout() -> None:
    def never_answer(connection: socket.socket, server: SocketServer) -> None:
        server.stopping.wait()

    with (
        SocketServer(never_answer) as server,
        httpx2.Client(
            transport=HttpClientTransport(), timeout=httpx2.Timeout(5, connect=0.2)
        ) as http,
        pytest.raises(httpx2.ConnectTimeout),
    ):
        http.get(server.url(scheme="https"))


def test_a_server_that_never_answers_raises_read_timeout() -> None:
    def read_and_wait(connection: socket.socket, server: SocketServer) -> None:
        read_request(connection)
        server.stopping.wait()

    with (
        SocketServer(read_and_wait) as server,
        httpx2.Client(transport=HttpClientTransport(), timeout=httpx2.Timeout(5, read=0.2)) as http,
        pytest.raises(httpx2.ReadTimeout) as raised,
    ):
        http.get(server.url())

    assert isinstance(raised.value.__cause__, TimeoutError)


def test_a_body_that_stalls_raises_read_timeout() -> None:
    def stall(connection: socket.socket, server: SocketServer) -> None:
        read_request(connection)
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nok")
        server.stopping.wait()

    with (
        SocketServer(stall) as server,
        httpx2.Client(transport=HttpClientTransport(), timeout=httpx2.Timeout(5, read=0.2)) as http,
        pytest.raises(httpx2.ReadTimeout),
    ):
        http.get(server.url())


def test_a_server_that_closes_without_answering_raises_remote_protocol_error(
    http: httpx2.Client,
) -> None:
    def hang_up(connection: socket.socket, server: SocketServer) -> None:
        read_request(connection)

    with SocketServer(hang_up) as server, pytest.raises(httpx2.RemoteProtocolError) as raised:
        http.post(server.url(), content=b"payload")

    assert isinstance(raised.value.__cause__, ConnectionError)  # http.client.RemoteDisconnected


@pytest.mark.parametrize(
    "cut",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabc",
        b"SMTP ready\r\n",
    ],
    ids=["short-body", "short-chunk", "not-http"],
)
def test_a_malformed_or_cut_answer_raises_remote_protocol_error(
    http: httpx2.Client, cut: bytes
) -> None:
    def serve(connection: socket.socket, server: SocketServer) -> None:
        read_request(connection)
        connection.sendall(cut)

    with SocketServer(serve) as server, pytest.raises(httpx2.RemoteProtocolError):
        http.get(server.url())


def test_a_100_continue_is_skipped() -> None:
    def serve(connection: socket.socket, server: SocketServer) -> None:
        read_request(connection)
        connection.sendall(b"HTTP/1.1 100 Continue\r\n\r\n" + answer())

    with SocketServer(serve) as server, httpx2.Client(transport=HttpClientTransport()) as http:
        response = http.post(server.url(), content=b"payload")

    assert (response.status_code, response.text) == (200, "ok")


def test_another_informational_answer_raises_remote_protocol_error(http: httpx2.Client) -> None:
    def serve(connection: socket.socket, server: SocketServer) -> None:
        read_request(connection)
        connection.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n" + answer())

    with SocketServer(serve) as server, pytest.raises(httpx2.RemoteProtocolError, match="103"):
        http.get(server.url())


LARGE_BODY = b"x" * (16 * 1024 * 1024)  # more than loopback's socket buffers hold unread


def test_a_server_that_stops_reading_raises_write_timeout() -> None:
    def never_read(connection: socket.socket, server: SocketServer) -> None:
        server.stopping.wait()

    with (
        SocketServer(never_read, receive_buffer=4096) as server,
        httpx2.Client(
            transport=HttpClientTransport(), timeout=httpx2.Timeout(5, write=0.2)
        ) as http,
        pytest.raises(httpx2.WriteTimeout),
    ):
        http.post(server.url(), content=LARGE_BODY)


def test_a_server_that_resets_the_connection_raises_write_error(http: httpx2.Client) -> None:
    def reset(connection: socket.socket, server: SocketServer) -> None:
        connection.recv(1)  # the request has started: reset earlier, and the connect could fail
        # Linger 0: closing sends a reset, not a FIN.
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        connection.close()

    with (
        SocketServer(reset, receive_buffer=4096) as server,
        pytest.raises(httpx2.WriteError) as raised,
    ):
        http.post(server.url(), content=LARGE_BODY)

    assert isinstance(raised.value.__cause__, OSError)


def test_an_unsupported_scheme_raises_unsupported_protocol() -> None:
    request = httpx2.Request("GET", "ftp://files.example.test/report.pdf")

    with HttpClientTransport() as transport, pytest.raises(httpx2.UnsupportedProtocol):
        transport.handle_request(request)


# A limit on every socket operation (worker.sinks.deadline's seam).

PHASE_TIMEOUTS = httpx2.Timeout(pool=None, connect=1.0, write=2.0, read=3.0)


def test_a_limit_is_asked_for_every_operation_in_order_with_its_phase_timeout(
    tmp_path: Path,
) -> None:
    asked: list[float] = []

    def record(timeout: float | None) -> float | None:
        assert timeout is not None
        asked.append(timeout)
        return timeout

    certificate = self_signed("127.0.0.1")
    transport = HttpClientTransport(ssl_context=certificate.client_context(), limit=record)
    with (
        SocketServer(answer_each_request, tls=certificate.server_context(tmp_path)) as server,
        httpx2.Client(transport=transport, timeout=PHASE_TIMEOUTS) as http,
    ):
        http.post(server.url(scheme="https"), content=b"payload").raise_for_status()

    assert asked[:2] == [1.0, 1.0]  # the TCP connect, then the TLS handshake
    assert asked == sorted(asked)  # then the sends, then the receives
    assert {2.0, 3.0} <= set(asked)


@pytest.mark.parametrize(
    ("phase_timeout", "raised"),
    [(1.0, httpx2.ConnectTimeout), (2.0, httpx2.WriteTimeout), (3.0, httpx2.ReadTimeout)],
)
def test_a_limit_that_has_no_time_left_raises_the_phase_timeout(
    phase_timeout: float, raised: type[httpx2.TimeoutException]
) -> None:
    def run_out_in_one_phase(timeout: float | None) -> float | None:
        if timeout == phase_timeout:
            raise TimeoutError("no time left")
        return timeout

    transport = HttpClientTransport(limit=run_out_in_one_phase)
    with (
        SocketServer(answer_each_request) as server,
        httpx2.Client(transport=transport, timeout=PHASE_TIMEOUTS) as http,
        pytest.raises(raised),
    ):
        http.post(server.url(), content=b"payload")


def test_a_limited_transport_reads_a_connection_close_answer_to_its_end() -> None:
    body = bytes(range(256)) * 1024  # many receives after http.client let go of the connection

    def answer_then_close(connection: socket.socket, server: SocketServer) -> None:
        read_request(connection)
        connection.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + body)

    transport = HttpClientTransport(limit=lambda timeout: timeout)
    with (
        SocketServer(answer_then_close) as server,
        httpx2.Client(transport=transport) as http,
    ):
        response = http.get(server.url())

    assert response.content == body


# https, against a certificate made for the test.


def test_an_https_request_is_verified_and_its_connection_reused(tmp_path: Path) -> None:
    certificate = self_signed("127.0.0.1")
    transport = HttpClientTransport(ssl_context=certificate.client_context())
    with (
        SocketServer(answer_each_request, tls=certificate.server_context(tmp_path)) as server,
        httpx2.Client(transport=transport) as http,
    ):
        texts = [http.get(server.url(scheme="https")).text for _ in range(2)]

    assert texts == ["ok", "ok"]
    assert len(server.ports) == 1


def test_a_certificate_for_another_host_raises_connect_error(tmp_path: Path) -> None:
    certificate = self_signed("relay.example.test")
    transport = HttpClientTransport(ssl_context=certificate.client_context())
    with (
        SocketServer(answer_each_request, tls=certificate.server_context(tmp_path)) as server,
        httpx2.Client(transport=transport) as http,
        pytest.raises(httpx2.ConnectError) as raised,
    ):
        http.get(server.url(scheme="https"))

    assert isinstance(raised.value.__cause__, ssl.SSLCertVerificationError)
