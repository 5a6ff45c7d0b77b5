"""Logging: JSON lines, context variables, and no secret or email address in any output."""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass
from typing import Any

import pytest
import structlog

from worker.logs import Redactor, configure_logging, render_json

SECRET = "s3cr3t-value-0123456789"
EMAIL = "jane.doe+tosa@example.co.uk"


class _Stream(io.StringIO):
    def __init__(self, *, tty: bool = False) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.fixture
def stream(restore_logging: None) -> _Stream:
    """Logging configured as JSON into a buffer, with SECRET registered."""
    buffer = _Stream()
    configure_logging(json=True, level="INFO", secrets=[SECRET], stream=buffer)
    return buffer


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_structlog_event_is_one_json_line_with_level_and_iso_timestamp(
    stream: _Stream,
) -> None:
    structlog.get_logger().info("delivery_failed", status=503, attempt=3)

    (line,) = _lines(stream)
    assert line["event"] == "delivery_failed"
    assert (line["status"], line["attempt"], line["level"]) == (503, 3, "info")
    assert line["timestamp"].endswith("Z")
    assert line["timestamp"][10] == "T"


def test_context_variables_are_merged_into_every_line(stream: _Stream) -> None:
    structlog.contextvars.bind_contextvars(correlation_id="c-42")

    structlog.get_logger().info("callback_received")

    assert _lines(stream)[0]["correlation_id"] == "c-42"


def test_events_below_the_level_are_dropped(stream: _Stream) -> None:
    structlog.get_logger().debug("noise")

    assert stream.getvalue() == ""


def test_registered_secrets_never_appear(stream: _Stream) -> None:
    structlog.get_logger().info(
        f"token {SECRET}", header=f"Bearer {SECRET}", nested={"list": [SECRET, (SECRET,)]}
    )

    output = stream.getvalue()
    assert SECRET not in output
    assert _lines(stream)[0]["nested"] == {"list": ["[redacted]", ["[redacted]"]]}


def test_email_addresses_never_appear(stream: _Stream) -> None:
    structlog.get_logger().info(
        "invitation_created",
        candidate=EMAIL,
        url="https://x.test/api?ema=jane.doe%40example.com&act_id=4",
        by_email={EMAIL: 1},
    )

    output = stream.getvalue()
    assert "example.co" not in output
    line = _lines(stream)[0]
    assert (line["candidate"], line["by_email"]) == ("[email]", {"[email]": 1})
    assert line["url"] == "https://x.test/api?ema=[email]&act_id=4"


def test_objects_are_logged_by_their_redacted_repr(stream: _Stream) -> None:
    @dataclass
    class Candidate:
        email: str

    structlog.get_logger().info("candidate", candidate=Candidate(EMAIL))

    assert (
        _lines(stream)[0]["candidate"]
        == "test_objects_are_logged_by_their_redacted_repr.<locals>.Candidate(email='[email]')"
    )


def test_tracebacks_are_redacted(stream: _Stream) -> None:
    try:
        raise RuntimeError(f"refused {SECRET} for {EMAIL}")
    except RuntimeError:
        structlog.get_logger().exception("sink_crashed")

    (line,) = _lines(stream)
    assert "RuntimeError: refused [redacted] for [email]" in line["exception"]


def test_standard_library_records_go_through_the_same_redaction(stream: _Stream) -> None:
    logging.getLogger("dramatiq.worker").warning("client %s sent %s", EMAIL, SECRET)

    (line,) = _lines(stream)
    assert line["event"] == "client [email] sent [redacted]"
    assert (line["logger"], line["level"]) == ("dramatiq.worker", "warning")


@pytest.mark.usefixtures("restore_logging")
def test_uvicorns_own_handlers_are_replaced_by_ours() -> None:
    error_log = logging.getLogger("uvicorn.error")
    foreign = logging.StreamHandler(_Stream())
    error_log.addHandler(foreign)
    error_log.propagate = False
    buffer = _Stream()

    configure_logging(json=True, stream=buffer)
    error_log.warning("%s could not bind", EMAIL)

    assert (foreign not in error_log.handlers, error_log.propagate) == (True, True)
    assert _lines(buffer)[0]["event"] == "[email] could not bind"


@pytest.mark.usefixtures("restore_logging")
def test_uvicorns_access_log_is_never_written_because_paths_hold_callback_tokens() -> None:
    access = logging.getLogger("uvicorn.access")
    access.propagate = True  # as a uvicorn started without access_log=False leaves it
    buffer = _Stream()

    configure_logging(json=True, stream=buffer)
    access.info('127.0.0.1 - "GET /callbacks/isograd/k1.inv_1.mac HTTP/1.1" 200')

    assert buffer.getvalue() == ""


def test_standard_library_exceptions_are_redacted(stream: _Stream) -> None:
    try:
        raise ValueError(SECRET)
    except ValueError:
        logging.getLogger("dramatiq").exception("actor failed")

    output = stream.getvalue()
    assert "ValueError" in output
    assert SECRET not in output


def test_configuring_twice_keeps_a_single_root_handler(stream: _Stream) -> None:
    configure_logging(json=True, secrets=[SECRET], stream=stream)

    logging.getLogger("alembic").warning("once")

    assert len(_lines(stream)) == 1


@pytest.mark.usefixtures("restore_logging")
def test_a_tty_gets_the_console_renderer_by_default() -> None:
    tty = _Stream(tty=True)

    configure_logging(secrets=[SECRET], stream=tty)
    structlog.get_logger().info("started", key=SECRET, who=EMAIL)

    output = tty.getvalue()
    assert not output.startswith("{")
    assert "started" in output
    assert SECRET not in output
    assert EMAIL not in output


def test_an_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log level"):
        configure_logging(level="LOUD", stream=_Stream())


def test_values_of_a_str_subclass_are_redacted_too(stream: _Stream) -> None:
    class Reason(str):
        pass

    structlog.get_logger().info("rejected", reason=Reason(f"{SECRET} for {EMAIL}"))

    assert _lines(stream)[0]["reason"] == "[redacted] for [email]"


def test_numbers_booleans_and_none_are_kept_as_they_are(stream: _Stream) -> None:
    structlog.get_logger().info("attempt", status=503, seconds=0.25, ok=False, reason=None)

    line = _lines(stream)[0]
    assert (line["status"], line["seconds"], line["ok"], line["reason"]) == (503, 0.25, False, None)


def test_json_lines_are_what_structlogs_json_renderer_prints() -> None:
    event = {
        "event": "callback_received",
        "invitation_id": "inv_01J",
        "accepted": True,
        "reason": None,
        "duration_ms": 3.21,
        "names": ["a", "é"],
        "nested": {"n": 1},
    }

    rendered = render_json(None, "info", dict(event))

    assert rendered == structlog.processors.JSONRenderer()(None, "info", dict(event))
    assert json.loads(rendered) == event


def test_a_secret_containing_another_is_replaced_whole() -> None:
    redactor = Redactor(["abcdef", "abcdefghij"])

    assert redactor.redact("x abcdefghij y") == "x [redacted] y"


def test_a_text_as_long_as_the_shortest_secret_is_still_searched() -> None:
    redactor = Redactor(["a-long-secret-value", "short"])

    assert redactor.redact("short") == "[redacted]"
    assert redactor.redact("shor") == "shor"  # shorter than every secret: holds none
    assert redactor(None, "info", {"event": "short", "k": "a-long-secret-value"}) == {
        "event": "[redacted]",
        "k": "[redacted]",
    }


def test_without_secrets_only_emails_are_redacted() -> None:
    redactor = Redactor()

    assert redactor.redact(f"to {EMAIL}: ok") == "to [email]: ok"


class _RecordingStream(_Stream):
    """Keeps each write() call apart, to see how lines reach the stream."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


def test_each_line_reaches_the_stream_in_one_write(restore_logging: None) -> None:
    # Two writes per line (text, then newline) let a concurrent writer's line land in between.
    recording = _RecordingStream()
    configure_logging(json=True, stream=recording)
    structlog.get_logger("test").info("from_structlog", n=1)
    logging.getLogger("test.stdlib").warning("from the standard library")

    assert len(recording.writes) == 2
    assert all(write.endswith("\n") and write.count("\n") == 1 for write in recording.writes)


def test_concurrent_writers_never_interleave_their_lines(restore_logging: None) -> None:
    import threading

    buffer = _Stream()
    configure_logging(json=True, stream=buffer)
    structlog_log = structlog.get_logger("test")
    stdlib_log = logging.getLogger("test.stdlib")

    def write(index: int) -> None:
        for n in range(200):
            if index % 2:
                structlog_log.info("concurrent", writer=index, n=n, pad="x" * 200)
            else:
                stdlib_log.warning("concurrent %s %s %s", index, n, "x" * 200)

    threads = [threading.Thread(target=write, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    lines = _lines(buffer)
    assert len(lines) == 8 * 200
