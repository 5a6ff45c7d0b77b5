"""Logging: structlog's configuration, with secrets and email addresses redacted from every line.

One JSON object per line in production (a readable console format on a TTY), context variables
merged in (correlation ids), ISO 8601 UTC timestamps. Records of the standard library's `logging`
(uvicorn, dramatiq, alembic, ...) go through the same processors and the same redaction.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

REDACTED = "[redacted]"
EMAIL_REDACTED = "[email]"

# Deliberately broad: a false positive costs a log detail, a miss leaks a candidate's address.
# The second form is an address URL-encoded in a query string (jane%40example.com). Quotes, '='
# and '/' are legal in an address but left out, so `email='jane@x.fr'` and `?ema=...` keep their
# key.
_EMAIL = r"[\w.!#$%&*+^`{|}~-]+(?:@|%40)[\w-]+(?:\.[\w-]+)+"
# These hold nothing to redact. Exactly these types skip redact() (a subclass, such as an int
# enum, goes the long way); isinstance() in redact() takes the subclasses too.
_PLAIN: tuple[type, ...] = (int, float, bool, type(None))
_SCALARS = frozenset(_PLAIN)


class Redactor:
    """A structlog processor replacing registered secrets and email addresses in every value.

    Strings are searched, dicts (keys too), lists, tuples and sets are walked, and any other
    object is replaced by its redacted repr() (what the renderers would print). The event dict's
    own keys are argument names and are left alone.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so a secret containing another is replaced whole.
        unique = sorted({secret for secret in secrets if secret}, key=len, reverse=True)
        self._secrets = (
            re.compile("|".join(re.escape(secret) for secret in unique)) if unique else None
        )
        # A text shorter than every secret holds none: most values (levels, event names, ids,
        # timestamps) skip the pattern.
        self._shortest = len(unique[-1]) if unique else 0
        self._email = re.compile(_EMAIL)

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        # The usual values (text, numbers, None) are handled here without a call to redact():
        # every line of every process comes through. bench/log_line.py: 12.1-12.7 us a line with
        # this, 13.0-13.4 with `{key: self.redact(value) ...}`.
        redact_text = self._redact_text
        redacted = {}
        for key, value in event_dict.items():
            kind = type(value)
            if kind is str:
                redacted[key] = redact_text(value)
            elif kind in _SCALARS:
                redacted[key] = value
            else:
                redacted[key] = self.redact(value)
        return redacted

    def redact(self, value: object) -> Any:
        if isinstance(value, str):
            return self._redact_text(value)
        if isinstance(value, _PLAIN):
            return value
        if isinstance(value, Mapping):
            # Nested keys are data (a dict keyed by email, say); top-level keys are names.
            return {self.redact(key): self.redact(item) for key, item in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self.redact(item) for item in value]
        return self._redact_text(repr(value))

    def _redact_text(self, text: str) -> str:
        if self._secrets is not None and len(text) >= self._shortest:
            text = self._secrets.sub(REDACTED, text)
        # Most values hold no address: two substring tests cost far less than the pattern.
        if "@" not in text and "%40" not in text:
            return text
        return self._email.sub(EMAIL_REDACTED, text)


# After the Redactor every value is JSON's own (text, numbers, lists, dicts): `repr` is only a
# guard. One encoder for every line: json.dumps with a `default` builds a new one per call.
_JSON_ENCODER = json.JSONEncoder(default=repr)


def render_json(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> str:
    """structlog's final processor for JSON lines (what JSONRenderer() prints, for less CPU)."""
    return _JSON_ENCODER.encode(event_dict)


class LineWriter:
    """Writes whole lines to one stream: one write() per line, under one lock for all writers.

    structlog's PrintLogger prints the text and the newline separately, under a lock of its own
    that the standard library's handler does not share, so a concurrent writer's line could
    land between them and make two lines unparseable. Every line of ours goes through here.
    One write() per line also keeps lines whole across processes sharing a pipe (POSIX makes a
    write of at most PIPE_BUF bytes to a pipe atomic).
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._lock = threading.Lock()

    def write_line(self, text: str) -> None:
        line = text + "\n"
        with self._lock:
            self.stream.write(line)
            self.stream.flush()


class LineLogger:
    """structlog's final logger: each rendered event becomes one line of a LineWriter."""

    def __init__(self, writer: LineWriter) -> None:
        self._writer = writer

    def msg(self, message: str) -> None:
        self._writer.write_line(message)

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg


class LineHandler(logging.Handler):
    """A logging handler writing each formatted record as one line of a LineWriter."""

    def __init__(self, writer: LineWriter) -> None:
        super().__init__()
        self._writer = writer

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._writer.write_line(self.format(record))
        except Exception:
            self.handleError(record)


_QUIET_LOGGERS = ("httpx2", "httpcore2", "httpx", "httpcore")
_HANDLER_NAME = "isograd-relay"
# Loggers that uvicorn's default configuration gives handlers of their own (not propagating):
# taken back so their lines are redacted and rendered like ours.
_ADOPTED_LOGGERS = ("uvicorn", "uvicorn.error")
# uvicorn's access log is never adopted: its lines quote request paths, and a callback path holds
# the callback token (a credential). webhooks.callbacks writes one canonical line per callback.
_SILENCED_LOGGERS = ("uvicorn.access",)


def configure_logging(
    *,
    json: bool | None = None,
    level: str = "INFO",
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> None:
    """Configure structlog and the root `logging` handler; safe to call again (it replaces both).

    `json` None means JSON unless `stream` (default stderr) is a TTY. `secrets` are the values
    never to print (`Settings.redacted_secrets()`); email addresses are always redacted.

    uvicorn's loggers are taken back from any handler of their own; but uvicorn.run() installs
    them again unless started with `log_config=None`, so start it that way.
    """
    output = stream if stream is not None else sys.stderr
    if json is None:
        json = not output.isatty()
    numeric_level = logging.getLevelNamesMapping().get(level.upper())
    if numeric_level is None:
        raise ValueError(f"unknown log level {level!r}")
    redactor = Redactor(secrets)
    writer = LineWriter(output)
    renderer: Processor = (
        render_json if json else structlog.dev.ConsoleRenderer(colors=output.isatty())
    )
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    # Tracebacks are rendered to text before redaction, so what they quote is redacted too.
    finish: list[Processor] = [
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        redactor,
        renderer,
    ]
    structlog.configure(
        processors=[*shared, *finish],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=lambda *args: LineLogger(writer),
        # Not cached, so structlog.testing.capture_logs keeps working on module-level loggers.
        cache_logger_on_first_use=False,
    )

    handler = LineHandler(writer)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *finish],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(numeric_level)
    for name in _ADOPTED_LOGGERS:
        adopted = logging.getLogger(name)
        adopted.handlers.clear()
        adopted.propagate = True
        adopted.setLevel(logging.NOTSET)
    for name in _SILENCED_LOGGERS:
        silenced = logging.getLogger(name)
        silenced.handlers.clear()
        silenced.propagate = False
        silenced.disabled = True
    # The HTTP clients log every request URL at INFO; webhook URLs may carry credentials and our
    # own canonical lines (isograd_request, delivery_attempt) already say what happened.
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(numeric_level, logging.WARNING))
