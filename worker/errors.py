"""The relay's exception tree; every error the relay raises on purpose is one of these.

    RelayError
    ├── ConfigurationError        invalid settings or relay.toml (fails at start, lists all)
    ├── CallbackRejectedError     an inbound callback we refuse (→ 404, nothing enqueued)
    ├── RetryableError            transient: timeouts, connection errors, 408/425/429/5xx,
    │                             "not ready yet"
    │   ├── IsogradUnavailableError   Isograd could not be reached or answered 5xx
    │   └── SinkUnavailableError      a delivery target could not be reached or asked us to retry
    └── PermanentError            retrying cannot help
        ├── IsogradProtocolError      Isograd answered something that is not the documented JSON
        ├── IsogradApiError           Isograd answered success=false (worker.isograd.errors has one
        │                             subclass per documented error_code)
        ├── SinkRejectedError         a delivery target refused the request for good (4xx, 3xx)
        └── MissingRoutingError       an event lacks the routing data its sink needs (a key of
                                      the invitation's context), named in the message

Errors carry their context as attributes and chain their cause (`raise ... from exc`); third-party
exceptions never leave the adapter that caught them.
"""

from __future__ import annotations


class RelayError(Exception):
    """Base class of every error the relay raises on purpose."""


class ConfigurationError(RelayError):
    """The configuration is invalid; `problems` lists every problem found, one per line."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        summary = "; ".join(self.problems)
        super().__init__(f"invalid configuration ({len(self.problems)} problem(s)): {summary}")


class CallbackRejectedError(RelayError):
    """An inbound callback was refused; `reason` is a short constant for logs, never echoed."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"callback rejected: {reason}")


class RetryableError(RelayError):
    """A transient failure: the same request may succeed later.

    `retry_after` is a hint in seconds (from a Retry-After header, for instance) or None.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class PermanentError(RelayError):
    """A failure that retrying cannot fix."""


class IsogradUnavailableError(RetryableError):
    """Isograd timed out, refused the connection or answered 5xx."""

    def __init__(
        self,
        message: str,
        *,
        action: int | None = None,
        status_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.action = action
        self.status_code = status_code
        super().__init__(message, retry_after=retry_after)


class IsogradProtocolError(PermanentError):
    """Isograd answered something that is not the documented shape (non-JSON, missing fields)."""

    def __init__(self, message: str, *, action: int | None = None) -> None:
        self.action = action
        super().__init__(message)


class IsogradApiError(PermanentError):
    """Isograd answered `success: false` with an error code not documented in the reference."""

    def __init__(self, code: int | None, message: str, *, action: int | None = None) -> None:
        self.code = code
        self.error_message = message
        self.action = action
        super().__init__(f"Isograd error {code} on act {action}: {message}")


class SinkUnavailableError(RetryableError):
    """A delivery target could not be reached, timed out, or answered 408/425/429/5xx."""

    def __init__(
        self,
        message: str,
        *,
        sink: str,
        status_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.sink = sink
        self.status_code = status_code
        super().__init__(message, retry_after=retry_after)


class SinkRejectedError(PermanentError):
    """A delivery target refused the request for good; `gone` is True for 410 (disable)."""

    def __init__(
        self, message: str, *, sink: str, status_code: int | None = None, gone: bool = False
    ) -> None:
        self.sink = sink
        self.status_code = status_code
        self.gone = gone
        super().__init__(message)


class MissingRoutingError(PermanentError):
    """An event lacks routing data; the message names the key (`context.lti13.user_id`)."""
