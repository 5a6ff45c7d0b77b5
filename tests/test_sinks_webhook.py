"""The webhook sink: what it sends, how it signs, and how each answer is classified."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx2
import pytest
import standardwebhooks
import svix.webhooks
from structlog.testing import capture_logs

from tests.fakes import FakeSink
from tests.receiver import RecordingReceiver, ScriptedResponse
from worker.errors import ConfigurationError
from worker.sinks import AttemptOutcome, AttemptResult, EventEnvelope, Sink, WebhookSink
from worker.sinks.base import MAX_RESPONSE_BODY_BYTES, TRUNCATION_MARKER
from worker.sinks.http_attempt import parse_retry_after, read_response_body

SECRET_A = "whsec_" + base64.b64encode(b"a" * 32).decode()
SECRET_B = "whsec_" + base64.b64encode(b"b" * 32).decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"z" * 32).decode()
URL = "https://hooks.example.com/isograd?token=s3cr3t-token"
EMAIL = "jeanne.martin@example.org"
ENVELOPE = EventEnvelope(
    event_id="evt_01",
    type="assessment.completed",
    timestamp="2026-11-27T10:15:00Z",
    data={"event_id": "evt_01", "candidate": {"email": EMAIL, "last_name": "Martin"}},
)
FIXED_TIME = datetime(2026, 11, 27, 10, 15, tzinfo=UTC)

Handler = Callable[[httpx2.Request], httpx2.Response]


class Target:
    """A MockTransport handler that records requests and answers one fixed response."""

    def __init__(self, response: httpx2.Response | Exception | None = None) -> None:
        self.response = response if response is not None else httpx2.Response(204)
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        request.read()
        self.requests.append(request)
        if isinstance(self.response, Exception):
            raise self.response
        return self.response


@pytest.fixture
def make_sink() -> Iterator[Callable[..., WebhookSink]]:
    clients: list[httpx2.Client] = []

    def make(
        handler: Handler,
        *,
        secrets: tuple[str, ...] = (SECRET_A,),
        url: str = URL,
        timeout: float = 15.0,
    ) -> WebhookSink:
        client = httpx2.Client(transport=httpx2.MockTransport(handler))
        clients.append(client)
        return WebhookSink(url, secrets, client=client, timeout=timeout, name="crm")

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def now() -> datetime:
    # standardwebhooks.verify refuses timestamps more than 5 minutes from the real clock.
    return datetime.now(UTC).replace(microsecond=0)


def send_with(
    make_sink: Callable[..., WebhookSink],
    response: httpx2.Response | Exception,
    *,
    at: datetime = FIXED_TIME,
) -> AttemptResult:
    return make_sink(Target(response)).send(ENVELOPE, attempt_at=at)


# What we send


def test_the_event_is_posted_to_the_configured_url(make_sink: Callable[..., WebhookSink]) -> None:
    target = Target()

    make_sink(target).send(ENVELOPE, attempt_at=FIXED_TIME)

    [request] = target.requests
    assert request.method == "POST"
    assert str(request.url) == URL


def test_the_body_is_the_envelope_json(make_sink: Callable[..., WebhookSink]) -> None:
    target = Target()

    make_sink(target).send(ENVELOPE, attempt_at=FIXED_TIME)

    assert target.requests[0].content == ENVELOPE.body()
    assert json.loads(target.requests[0].content) == {
        "type": "assessment.completed",
        "timestamp": "2026-11-27T10:15:00Z",
        "data": ENVELOPE.data,
    }


def test_the_body_is_announced_as_json(make_sink: Callable[..., WebhookSink]) -> None:
    target = Target()

    make_sink(target).send(ENVELOPE, attempt_at=FIXED_TIME)

    assert target.requests[0].headers["content-type"] == "application/json"


def test_the_user_agent_names_isograd_relay(make_sink: Callable[..., WebhookSink]) -> None:
    target = Target()

    make_sink(target).send(ENVELOPE, attempt_at=FIXED_TIME)

    assert target.requests[0].headers["user-agent"].startswith("isograd-relay/")


def test_the_webhook_id_is_the_event_id(make_sink: Callable[..., WebhookSink]) -> None:
    target = Target()

    make_sink(target).send(ENVELOPE, attempt_at=FIXED_TIME)

    assert target.requests[0].headers["webhook-id"] == "evt_01"


def test_the_webhook_timestamp_is_the_attempt_time_in_whole_seconds(
    make_sink: Callable[..., WebhookSink],
) -> None:
    target = Target()

    make_sink(target).send(ENVELOPE, attempt_at=FIXED_TIME + timedelta(milliseconds=900))

    assert target.requests[0].headers["webhook-timestamp"] == str(int(FIXED_TIME.timestamp()))


def test_a_non_utc_attempt_time_is_converted_not_relabelled(
    make_sink: Callable[..., WebhookSink],
) -> None:
    target = Target()
    paris = FIXED_TIME.astimezone(ZoneInfo("Europe/Paris"))

    make_sink(target).send(ENVELOPE, attempt_at=paris)

    assert target.requests[0].headers["webhook-timestamp"] == str(int(FIXED_TIME.timestamp()))


def test_a_retry_keeps_the_webhook_id_and_moves_the_timestamp(
    make_sink: Callable[..., WebhookSink],
) -> None:
    target = Target()
    sink = make_sink(target)

    sink.send(ENVELOPE, attempt_at=FIXED_TIME)
    sink.send(ENVELOPE, attempt_at=FIXED_TIME + timedelta(seconds=5))

    first, second = target.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert int(second.headers["webhook-timestamp"]) - int(first.headers["webhook-timestamp"]) == 5


def test_redirects_are_not_followed(make_sink: Callable[..., WebhookSink]) -> None:
    target = Target(httpx2.Response(302, headers={"location": "https://elsewhere.example/"}))

    result = make_sink(target).send(ENVELOPE, attempt_at=FIXED_TIME)

    assert len(target.requests) == 1
    assert (result.outcome, result.status_code) == (AttemptOutcome.FAILED, 302)


def test_redirects_are_not_followed_even_by_a_client_that_follows_them() -> None:
    target = Target(httpx2.Response(302, headers={"location": "https://elsewhere.example/"}))
    transport = httpx2.MockTransport(target)

    with httpx2.Client(transport=transport, follow_redirects=True) as client:
        result = WebhookSink(URL, (SECRET_A,), client=client, name="crm").send(
            ENVELOPE, attempt_at=FIXED_TIME
        )

    assert [str(request.url) for request in target.requests] == [URL]
    assert result.status_code == 302


# Signatures


def test_the_signature_has_one_v1_entry_per_secret(make_sink: Callable[..., WebhookSink]) -> None:
    target = Target()

    make_sink(target, secrets=(SECRET_A, SECRET_B)).send(ENVELOPE, attempt_at=FIXED_TIME)

    entries = target.requests[0].headers["webhook-signature"].split(" ")
    assert len(entries) == 2
    assert all(entry.startswith("v1,") for entry in entries)


@pytest.mark.parametrize("secret", [SECRET_A, SECRET_B])
def test_each_secret_verifies_with_standardwebhooks(
    make_sink: Callable[..., WebhookSink], now: datetime, secret: str
) -> None:
    target = Target()
    make_sink(target, secrets=(SECRET_A, SECRET_B)).send(ENVELOPE, attempt_at=now)
    request = target.requests[0]

    payload = standardwebhooks.Webhook(secret).verify(request.content, dict(request.headers))

    assert payload["data"]["event_id"] == "evt_01"


@pytest.mark.parametrize("secret", [SECRET_A, SECRET_B])
def test_each_secret_verifies_with_svix(
    make_sink: Callable[..., WebhookSink], now: datetime, secret: str
) -> None:
    target = Target()
    make_sink(target, secrets=(SECRET_A, SECRET_B)).send(ENVELOPE, attempt_at=now)
    request = target.requests[0]

    svix.webhooks.Webhook(secret).verify(request.content, dict(request.headers))  # raises if bad


def test_a_receiver_with_another_secret_rejects_the_signature(
    make_sink: Callable[..., WebhookSink], now: datetime
) -> None:
    target = Target()
    make_sink(target, secrets=(SECRET_A, SECRET_B)).send(ENVELOPE, attempt_at=now)
    request = target.requests[0]

    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(OTHER_SECRET).verify(request.content, dict(request.headers))


def test_a_tampered_body_fails_verification(
    make_sink: Callable[..., WebhookSink], now: datetime
) -> None:
    target = Target()
    make_sink(target).send(ENVELOPE, attempt_at=now)
    request = target.requests[0]

    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(SECRET_A).verify(request.content + b" ", dict(request.headers))


# Classification


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, AttemptOutcome.DELIVERED),
        (201, AttemptOutcome.DELIVERED),
        (202, AttemptOutcome.DELIVERED),
        (204, AttemptOutcome.DELIVERED),
        (299, AttemptOutcome.DELIVERED),
        (301, AttemptOutcome.FAILED),
        (302, AttemptOutcome.FAILED),
        (307, AttemptOutcome.FAILED),
        (400, AttemptOutcome.FAILED),
        (401, AttemptOutcome.FAILED),
        (403, AttemptOutcome.FAILED),
        (404, AttemptOutcome.FAILED),
        (413, AttemptOutcome.FAILED),
        (422, AttemptOutcome.FAILED),
        (408, AttemptOutcome.RETRY),
        (410, AttemptOutcome.GONE),
        (425, AttemptOutcome.RETRY),
        (429, AttemptOutcome.RETRY),
        (500, AttemptOutcome.RETRY),
        (502, AttemptOutcome.RETRY),
        (503, AttemptOutcome.RETRY),
        (504, AttemptOutcome.RETRY),
        (599, AttemptOutcome.RETRY),
    ],
)
def test_each_status_maps_to_its_outcome(
    make_sink: Callable[..., WebhookSink], status: int, outcome: AttemptOutcome
) -> None:
    result = send_with(make_sink, httpx2.Response(status))

    assert (result.outcome, result.status_code) == (outcome, status)


def test_a_successful_attempt_reports_no_error_and_a_duration(
    make_sink: Callable[..., WebhookSink],
) -> None:
    result = send_with(make_sink, httpx2.Response(200, text="ok"))

    assert result.error is None
    assert result.duration_ms >= 0
    assert result.timed_out is False


def test_a_429_retry_after_in_seconds_is_reported(make_sink: Callable[..., WebhookSink]) -> None:
    result = send_with(make_sink, httpx2.Response(429, headers={"retry-after": "120"}))

    assert (result.outcome, result.retry_after) == (AttemptOutcome.RETRY, 120.0)


def test_a_429_retry_after_date_is_measured_from_the_attempt_time(
    make_sink: Callable[..., WebhookSink],
) -> None:
    response = httpx2.Response(429, headers={"retry-after": "Fri, 27 Nov 2026 10:17:00 GMT"})

    result = send_with(make_sink, response, at=FIXED_TIME)

    assert result.retry_after == pytest.approx(120.0)


def test_a_503_retry_after_is_reported(make_sink: Callable[..., WebhookSink]) -> None:
    result = send_with(make_sink, httpx2.Response(503, headers={"retry-after": "30"}))

    assert (result.outcome, result.retry_after) == (AttemptOutcome.RETRY, 30.0)


def test_a_retry_without_retry_after_reports_none(make_sink: Callable[..., WebhookSink]) -> None:
    assert send_with(make_sink, httpx2.Response(503)).retry_after is None


def test_retry_after_is_ignored_on_a_permanent_failure(
    make_sink: Callable[..., WebhookSink],
) -> None:
    result = send_with(make_sink, httpx2.Response(400, headers={"retry-after": "30"}))

    assert result.retry_after is None


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("0", 0.0),
        (" 45 ", 45.0),
        ("Fri, 27 Nov 2026 10:16:00 GMT", 60.0),
        ("Fri, 27 Nov 2026 10:16:00 -0000", 60.0),
        ("Fri, 27 Nov 2026 10:00:00 GMT", 0.0),
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_parsing(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, now=FIXED_TIME) == seconds


def test_a_timeout_is_retried_and_flagged(make_sink: Callable[..., WebhookSink]) -> None:
    result = send_with(make_sink, httpx2.ReadTimeout("timed out"))

    assert (result.outcome, result.status_code, result.timed_out) == (
        AttemptOutcome.RETRY,
        None,
        True,
    )
    assert result.error is not None
    assert "timed out after 15 s" in result.error


def test_a_refused_connection_is_retried(make_sink: Callable[..., WebhookSink]) -> None:
    result = send_with(make_sink, httpx2.ConnectError("[Errno 111] Connection refused"))

    assert (result.outcome, result.timed_out) == (AttemptOutcome.RETRY, False)
    assert result.error == "ConnectError: [Errno 111] Connection refused"


def test_a_protocol_error_is_retried(make_sink: Callable[..., WebhookSink]) -> None:
    result = send_with(make_sink, httpx2.RemoteProtocolError("server hung up"))

    assert result.outcome is AttemptOutcome.RETRY


def test_an_unsupported_protocol_is_a_permanent_failure(
    make_sink: Callable[..., WebhookSink],
) -> None:
    result = send_with(make_sink, httpx2.UnsupportedProtocol("no"))

    assert result.outcome is AttemptOutcome.FAILED


def test_another_httpx_error_is_a_permanent_failure(make_sink: Callable[..., WebhookSink]) -> None:
    result = send_with(make_sink, httpx2.TooManyRedirects("loop"))

    assert (result.outcome, result.error) == (AttemptOutcome.FAILED, "TooManyRedirects: loop")


def test_errors_do_not_echo_the_url_or_its_token(make_sink: Callable[..., WebhookSink]) -> None:
    result = send_with(make_sink, httpx2.ConnectError(f"cannot reach {URL}\nsecond line"))

    assert result.error == "ConnectError: cannot reach <url> second line"


def test_an_error_without_a_message_names_the_exception(
    make_sink: Callable[..., WebhookSink],
) -> None:
    assert send_with(make_sink, httpx2.ConnectError("")).error == "ConnectError"


def test_event_data_json_cannot_carry_fails_without_sending(
    make_sink: Callable[..., WebhookSink],
) -> None:
    target = Target()
    envelope = EventEnvelope("evt_02", "assessment.completed", "2026-11-27T10:15:00Z", {"x": 1e999})

    result = make_sink(target).send(envelope, attempt_at=FIXED_TIME)

    assert result.outcome is AttemptOutcome.FAILED
    assert target.requests == []


def test_a_naive_attempt_time_is_refused(make_sink: Callable[..., WebhookSink]) -> None:
    sink = make_sink(Target())

    with pytest.raises(ValueError, match="timezone-aware"):
        sink.send(ENVELOPE, attempt_at=datetime(2026, 11, 27, 10, 15))


# Response bodies


def test_a_short_response_body_is_stored_verbatim(make_sink: Callable[..., WebhookSink]) -> None:
    result = send_with(make_sink, httpx2.Response(400, text='{"error": "bad email"}'))

    assert result.response_body == '{"error": "bad email"}'


def test_a_large_response_body_is_truncated_to_20_kb(
    make_sink: Callable[..., WebhookSink],
) -> None:
    result = send_with(make_sink, httpx2.Response(500, content=b"x" * 50_000))

    assert len(result.response_body) <= MAX_RESPONSE_BODY_BYTES
    assert result.response_body.endswith(TRUNCATION_MARKER)
    assert result.response_body.startswith("x" * 1000)


def test_a_body_exactly_at_the_limit_is_not_truncated(
    make_sink: Callable[..., WebhookSink],
) -> None:
    result = send_with(make_sink, httpx2.Response(200, content=b"y" * MAX_RESPONSE_BODY_BYTES))

    assert result.response_body == "y" * MAX_RESPONSE_BODY_BYTES


def test_undecodable_bytes_and_nul_are_replaced(make_sink: Callable[..., WebhookSink]) -> None:
    result = send_with(make_sink, httpx2.Response(200, content=b"ok\xff\x00end"))

    assert result.response_body == "ok\ufffd\ufffdend"


def test_the_response_charset_is_honoured(make_sink: Callable[..., WebhookSink]) -> None:
    response = httpx2.Response(
        200,
        content="reçu".encode("latin-1"),
        headers={"content-type": "text/plain; charset=latin-1"},
    )

    assert send_with(make_sink, response).response_body == "reçu"


@pytest.mark.parametrize("charset", ["klingon", "base64"])
def test_an_unusable_charset_falls_back_to_utf8(
    make_sink: Callable[..., WebhookSink], charset: str
) -> None:
    response = httpx2.Response(
        200, content="reçu".encode(), headers={"content-type": f"text/plain; charset={charset}"}
    )

    assert send_with(make_sink, response).response_body == "reçu"


class BrokenStream(httpx2.SyncByteStream):
    def __iter__(self) -> Iterator[bytes]:
        yield b"partial"
        raise httpx2.ReadError("connection reset")


def test_a_body_that_breaks_midway_keeps_the_status_outcome(
    make_sink: Callable[..., WebhookSink],
) -> None:
    result = send_with(make_sink, httpx2.Response(200, stream=BrokenStream()))

    assert (result.outcome, result.status_code) == (AttemptOutcome.DELIVERED, 200)
    assert result.response_body == "partial" + TRUNCATION_MARKER
    assert result.error == "response body unreadable (ReadError)"


def test_body_reading_stops_once_the_deadline_has_passed() -> None:
    response = httpx2.Response(200, stream=httpx2.ByteStream(b"first"))

    text, error = read_response_body(response, deadline=0.0)

    assert (text, error) == ("first" + TRUNCATION_MARKER, None)


# Configuration and hygiene


def test_a_sink_needs_at_least_one_secret() -> None:
    with httpx2.Client() as client, pytest.raises(ConfigurationError, match="secret"):
        WebhookSink(URL, (), client=client, name="crm")


def test_an_invalid_secret_is_a_configuration_error_that_does_not_echo_it() -> None:
    with httpx2.Client() as client, pytest.raises(ConfigurationError) as caught:
        WebhookSink(URL, (SECRET_A, "whsec_"), client=client, name="crm")

    assert "secret #2" in str(caught.value)


def test_a_non_http_url_is_a_configuration_error() -> None:
    with httpx2.Client() as client, pytest.raises(ConfigurationError, match="http"):
        WebhookSink("ftp://example.com/hook", (SECRET_A,), client=client, name="crm")


def test_a_non_positive_timeout_is_a_configuration_error() -> None:
    with httpx2.Client() as client, pytest.raises(ConfigurationError, match="timeout"):
        WebhookSink(URL, (SECRET_A,), client=client, timeout=0, name="crm")


def test_the_repr_shows_no_secret(make_sink: Callable[..., WebhookSink]) -> None:
    sink = make_sink(Target(), secrets=(SECRET_A, SECRET_B))

    assert SECRET_A not in repr(sink)
    assert repr(sink) == "WebhookSink(name='crm', secrets=2)"


def test_logs_carry_neither_secret_url_nor_email(make_sink: Callable[..., WebhookSink]) -> None:
    sink = make_sink(Target(httpx2.Response(503, text=EMAIL)))

    with capture_logs() as logs:
        sink.send(ENVELOPE, attempt_at=FIXED_TIME)

    assert logs
    assert logs[0]["event"] == "webhook_attempt"
    text = repr(logs)
    for forbidden in (SECRET_A, "s3cr3t-token", EMAIL):
        assert forbidden not in text


# The envelope and the protocol


def test_the_body_is_compact_sorted_utf8_json() -> None:
    envelope = EventEnvelope("evt_03", "t", "2026-11-27T10:15:00Z", {"b": 1, "a": "é"})

    assert envelope.body() == (
        '{"data":{"a":"é","b":1},"timestamp":"2026-11-27T10:15:00Z","type":"t"}'.encode()
    )


def test_the_body_does_not_depend_on_key_order() -> None:
    first = EventEnvelope("e", "t", "ts", {"a": 1, "b": {"c": 2, "d": 3}})
    second = EventEnvelope("e", "t", "ts", {"b": {"d": 3, "c": 2}, "a": 1})

    assert first.body() == second.body()


def test_the_webhook_sink_and_the_fake_sink_satisfy_the_sink_protocol(
    make_sink: Callable[..., WebhookSink],
) -> None:
    assert isinstance(make_sink(Target()), Sink)
    assert isinstance(FakeSink(), Sink)
    assert WebhookSink.kind == "webhook"


def test_the_fake_sink_records_and_answers_its_script_then_its_default() -> None:
    retry = AttemptResult(AttemptOutcome.RETRY, status_code=503, duration_ms=1.0)
    sink = FakeSink(retry)

    answers = [sink.send(ENVELOPE, attempt_at=FIXED_TIME).outcome for _ in range(2)]

    assert answers == [AttemptOutcome.RETRY, AttemptOutcome.DELIVERED]
    assert [sent.envelope for sent in sink.sent] == [ENVELOPE, ENVELOPE]


def test_the_fake_sink_refuses_a_naive_attempt_time_like_the_real_one() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        FakeSink().send(ENVELOPE, attempt_at=datetime(2026, 11, 27))


# Against a real HTTP receiver


@pytest.fixture
def receiver() -> Iterator[RecordingReceiver]:
    with RecordingReceiver() as running:
        yield running


@pytest.fixture
def http_client() -> Iterator[httpx2.Client]:
    with httpx2.Client() as client:
        yield client


def real_sink(url: str, client: httpx2.Client, *, timeout: float = 5.0) -> WebhookSink:
    return WebhookSink(url, (SECRET_A, SECRET_B), client=client, timeout=timeout, name="real")


def test_a_real_receiver_gets_a_verifiable_delivery(
    receiver: RecordingReceiver, http_client: httpx2.Client, now: datetime
) -> None:
    result = real_sink(receiver.url("/hook"), http_client).send(ENVELOPE, attempt_at=now)

    [request] = receiver.wait_for_requests(1)
    assert (result.outcome, result.status_code) == (AttemptOutcome.DELIVERED, 200)
    assert (request.method, request.path) == ("POST", "/hook")
    standardwebhooks.Webhook(SECRET_B).verify(request.body, request.headers)


def test_a_real_503_with_retry_after_is_retried(
    receiver: RecordingReceiver, http_client: httpx2.Client
) -> None:
    receiver.script(ScriptedResponse(status=503, body=b"busy", headers=(("Retry-After", "90"),)))

    result = real_sink(receiver.url("/hook"), http_client).send(ENVELOPE, attempt_at=FIXED_TIME)

    assert (result.outcome, result.retry_after, result.response_body) == (
        AttemptOutcome.RETRY,
        90.0,
        "busy",
    )


def test_a_real_redirect_is_not_followed(
    receiver: RecordingReceiver, http_client: httpx2.Client
) -> None:
    receiver.script(ScriptedResponse(status=307, headers=(("Location", receiver.url("/new")),)))

    result = real_sink(receiver.url("/hook"), http_client).send(ENVELOPE, attempt_at=FIXED_TIME)

    assert (result.outcome, result.status_code) == (AttemptOutcome.FAILED, 307)
    assert [request.path for request in receiver.requests] == ["/hook"]


def test_a_real_slow_receiver_times_out(
    receiver: RecordingReceiver, http_client: httpx2.Client
) -> None:
    receiver.script(ScriptedResponse(status=200, delay=30.0))

    result = real_sink(receiver.url("/hook"), http_client, timeout=0.2).send(
        ENVELOPE, attempt_at=FIXED_TIME
    )

    assert (result.outcome, result.timed_out) == (AttemptOutcome.RETRY, True)
    assert result.duration_ms < 5_000


def test_a_real_refused_connection_is_retried(http_client: httpx2.Client) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{closed_port}/hook"

    result = real_sink(url, http_client).send(ENVELOPE, attempt_at=FIXED_TIME)

    assert (result.outcome, result.status_code, result.timed_out) == (
        AttemptOutcome.RETRY,
        None,
        False,
    )
    assert result.error is not None
    assert result.error.startswith("ConnectError")
