"""The webhook sink: a signed Standard Webhooks POST of the event to a user's URL."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx2
import structlog
from standardwebhooks.webhooks import Webhook

from worker import __version__
from worker.errors import ConfigurationError
from worker.sinks.base import AttemptOutcome, AttemptResult, EventEnvelope

# The shared HTTP attempt code lived here first; these names stay importable from this module.
from worker.sinks.http_attempt import classify_status as classify_status
from worker.sinks.http_attempt import parse_retry_after as parse_retry_after
from worker.sinks.http_attempt import perform_attempt
from worker.sinks.http_attempt import read_response_body as read_response_body
from worker.sinks.options import ENV_PREFIX, SinkOptions

if TYPE_CHECKING:
    from worker.sinks.registry import SinkContext

log = structlog.get_logger(__name__)

USER_AGENT = f"isograd-relay/{__version__} (webhook)"
DEFAULT_TIMEOUT_SECONDS = (
    15.0  # DESIGN §3.4; also what Svix allows a receiver (docs.svix.com/retries)
)

WEBHOOK_SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
# Standard Webhooks: a symmetric secret is random, at least 24 bytes and at most 64 (512 bits).
# https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md
MIN_SECRET_BYTES = 24
MAX_SECRET_BYTES = 64
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")

KEYS = frozenset({"url", "secrets"})


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    """A webhook subscription's settings: the receiver's URL and the resolved whsec_ secrets."""

    url: str = field(repr=False)
    secrets: tuple[str, ...] = field(repr=False)

    def describe(self) -> str:
        return urlsplit(self.url).hostname or ""

    def secret_values(self) -> tuple[str, ...]:
        return tuple(
            value
            for secret in self.secrets
            for value in (secret, secret.removeprefix(WEBHOOK_SECRET_PREFIX))
        )


def parse_target(options: SinkOptions) -> WebhookTarget | None:
    """`url` and `secrets` ("whsec_..." or "env:NAME"; several = rotation) of a webhook."""
    url = options.url("url")
    secrets = _secrets(options)
    if url is None or secrets is None:
        return None
    return WebhookTarget(url, secrets)


def build_sink(target: WebhookTarget, context: SinkContext) -> WebhookSink:
    return WebhookSink(
        target.url, target.secrets, client=context.http, timeout=context.timeout, name=context.name
    )


def _secrets(options: SinkOptions) -> tuple[str, ...] | None:
    values = options.table.get("secrets")
    if values is None:
        options.problem("secrets", "is required (a list of 'whsec_...' or 'env:NAME')")
        return None
    if not isinstance(values, list) or not values:
        options.problem("secrets", "must be a non-empty list of 'whsec_...' or 'env:NAME'")
        return None
    resolved: list[str] = []
    for index, value in enumerate(values):
        key = f"secrets[{index}]"
        if not isinstance(value, str):
            options.problem(key, "must be a string")
            continue
        secret = options.resolve(key, value)
        if secret is None:
            continue
        if value.startswith(ENV_PREFIX):
            key = f"{key} ({value})"
        problem = webhook_secret_problem(secret)
        if problem is not None:
            options.problem(key, problem)
            continue
        resolved.append(secret)
    return tuple(resolved) if len(resolved) == len(values) else None


def webhook_secret_problem(secret: str) -> str | None:
    """Why `secret` is not a usable "whsec_<base64>" secret, or None when it is."""
    if not secret.startswith(WEBHOOK_SECRET_PREFIX):
        return f"must start with {WEBHOOK_SECRET_PREFIX!r}"
    encoded = secret.removeprefix(WEBHOOK_SECRET_PREFIX)
    if not _BASE64.fullmatch(encoded):
        return f"must be {WEBHOOK_SECRET_PREFIX!r} followed by base64"
    try:
        # standardwebhooks accepts unpadded base64 too: pad before decoding, as it does.
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        return f"must be {WEBHOOK_SECRET_PREFIX!r} followed by base64"
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        return f"must decode to {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes, not {len(key)}"
    return None


class WebhookSink:
    """Delivers events as Standard Webhooks (https://www.standardwebhooks.com/, DESIGN §3.4).

    Each attempt POSTs `envelope.body()` with `webhook-id` (the event id, so receivers can
    deduplicate retries), `webhook-timestamp` (the attempt time, integer seconds) and
    `webhook-signature`: one `v1,<base64>` entry per configured secret, space-separated, so a
    receiver can switch to a new secret while we still sign with the old one. Redirects are not
    followed. `client` is owned by the caller, who closes it.
    """

    kind = "webhook"

    def __init__(
        self,
        url: str,
        secrets: Sequence[str],
        *,
        client: httpx2.Client,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        name: str,
    ) -> None:
        if urlsplit(url).scheme not in ("http", "https"):
            raise ConfigurationError(f"sink {name!r}: url must be http:// or https://")
        if not secrets:
            raise ConfigurationError(f"sink {name!r}: at least one signing secret is required")
        if not timeout > 0:
            raise ConfigurationError(f"sink {name!r}: timeout must be > 0 seconds")
        self.name = name
        self.url = url
        self.timeout = timeout
        self._client = client
        self._signers = tuple(
            _make_signer(name, position, secret) for position, secret in enumerate(secrets, start=1)
        )

    def __repr__(self) -> str:  # never show the secrets
        return f"WebhookSink(name={self.name!r}, secrets={len(self._signers)})"

    def send(self, envelope: EventEnvelope, *, attempt_at: datetime) -> AttemptResult:
        """POST the event once and classify the answer; never raises for HTTP or network trouble.

        `attempt_at` must be timezone-aware: it is signed and sent as webhook-timestamp, and
        Retry-After dates are measured from it. Raises ValueError for a naive datetime.
        """
        if attempt_at.tzinfo is None:
            raise ValueError("attempt_at must be timezone-aware")
        attempt_at = attempt_at.astimezone(UTC)
        try:
            body = envelope.body()
        except (TypeError, ValueError) as exc:
            return self._logged(
                envelope,
                AttemptResult(
                    AttemptOutcome.FAILED,
                    status_code=None,
                    duration_ms=0.0,
                    error=f"event data is not valid JSON ({type(exc).__name__})",
                ),
            )
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            **self.signature_headers(envelope.event_id, attempt_at, body),
        }
        result = perform_attempt(
            self._client,
            "POST",
            self.url,
            content=body,
            headers=headers,
            timeout=self.timeout,
            attempt_at=attempt_at,
        )
        return self._logged(envelope, result)

    def signature_headers(self, event_id: str, attempt_at: datetime, body: bytes) -> dict[str, str]:
        """The three Standard Webhooks headers for one attempt (aware `attempt_at`)."""
        # standardwebhooks' sign() *replaces* tzinfo with UTC instead of converting, so it must be
        # handed a UTC datetime (see standardwebhooks/webhooks.py, Webhook.sign).
        utc_time = attempt_at.astimezone(UTC)
        payload = body.decode("utf-8")
        signatures = " ".join(signer.sign(event_id, utc_time, payload) for signer in self._signers)
        return {
            "webhook-id": event_id,
            "webhook-timestamp": str(int(utc_time.timestamp())),
            "webhook-signature": signatures,
        }

    def _logged(self, envelope: EventEnvelope, result: AttemptResult) -> AttemptResult:
        # Only identifiers and the classification: never the URL, secrets or body (it holds the
        # candidate's email).
        log.debug(
            "webhook_attempt",
            sink=self.name,
            event_id=envelope.event_id,
            outcome=str(result.outcome),
            status_code=result.status_code,
            duration_ms=round(result.duration_ms, 1),
            timed_out=result.timed_out,
        )
        return result


def _make_signer(name: str, position: int, secret: str) -> Webhook:
    try:
        return Webhook(secret)
    except Exception as exc:  # the package raises binascii.Error, its own errors, RuntimeError
        raise ConfigurationError(
            f"sink {name!r}: secret #{position} is not a valid whsec_ base64 secret"
        ) from exc
