"""Subscriptions: which events go to which sink, as configured in relay.toml.

    [[subscriptions]]
    name = "crm"                          # unique; a-z, 0-9, '_' and '-'
    kind = "webhook"                      # the only kind so far
    url = "https://crm.example.com/hooks/isograd"
    secrets = ["env:CRM_WEBHOOK_SECRET"]  # "whsec_<base64>" or "env:NAME"; several = rotation
    event_types = ["assessment.completed"]   # the default
    tst_frm_ids = [123, 456]              # optional filters; omitted = every test
    sub_com_ids = [42]                    # omitted = every (sub) account
    timeout_seconds = 15                  # per request
    retry_schedule = [5, 300, 1800]       # seconds between attempts, after the immediate first
    enabled = true
    disable_after_days = 5                # failing continuously this long disables it

Parsing collects every problem (unknown keys included, so a typo is never silently ignored) and
raises one ConfigurationError; problems name their location and never contain a secret.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from worker.errors import ConfigurationError
from worker.retries import SVIX_DELAYS


class SubscriptionKind(StrEnum):
    WEBHOOK = "webhook"


ASSESSMENT_COMPLETED = "assessment.completed"
EVENT_TYPES = frozenset({ASSESSMENT_COMPLETED})
WEBHOOK_SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
ENV_PREFIX = "env:"
# Standard Webhooks: a symmetric secret is random, at least 24 bytes and at most 64 (512 bits).
# https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md
MIN_SECRET_BYTES = 24
MAX_SECRET_BYTES = 64
MAX_TIMEOUT_SECONDS = 300.0

_NAME = re.compile(r"[a-z0-9_-]{1,64}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")


@dataclass(frozen=True, slots=True)
class Subscription:
    """One configured destination. `secrets` are resolved "whsec_..." strings; they and `url`
    (chat webhook URLs carry a secret in their path) are kept out of repr.

    `retry_schedule` holds the delays in seconds between attempts; the first attempt is
    immediate and not listed, so n delays allow n + 1 attempts (worker.retries.RetrySchedule).
    """

    name: str
    url: str = field(repr=False)
    secrets: tuple[str, ...] = field(repr=False)
    kind: SubscriptionKind = SubscriptionKind.WEBHOOK
    event_types: frozenset[str] = frozenset({ASSESSMENT_COMPLETED})
    tst_frm_ids: frozenset[int] | None = None
    sub_com_ids: frozenset[int] | None = None
    timeout_seconds: float = 15.0
    retry_schedule: tuple[float, ...] = SVIX_DELAYS
    enabled: bool = True
    disable_after_days: float = 5.0

    def matches(self, event_type: str, tst_frm_id: int, sub_com_id: int | None) -> bool:
        """True when this subscription is enabled and wants this event.

        With a sub_com_ids filter, events of the main account (sub_com_id None) do not match.
        """
        return (
            self.enabled
            and event_type in self.event_types
            and (self.tst_frm_ids is None or tst_frm_id in self.tst_frm_ids)
            and (self.sub_com_ids is None or sub_com_id in self.sub_com_ids)
        )


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


def parse_subscriptions(
    document: Mapping[str, Any], environ: Mapping[str, str], *, source: str = "relay.toml"
) -> tuple[Subscription, ...]:
    """The subscriptions of a parsed relay.toml; `env:NAME` secrets are resolved from `environ`.

    Raises ConfigurationError listing every problem, each prefixed by `source`.
    """
    problems: list[str] = []
    for key in document:
        if key != "subscriptions":
            problems.append(f"{source}: {_unknown_key(key, {'subscriptions'})}")
    tables = document.get("subscriptions", [])
    if not isinstance(tables, list):
        problems.append(f"{source}: subscriptions: must be an array of tables ([[subscriptions]])")
        tables = []
    subscriptions: list[Subscription] = []
    names: set[str] = set()
    for index, table in enumerate(tables):
        where = f"{source}: subscriptions[{index}]"
        if not isinstance(table, dict):
            problems.append(f"{where}: must be a table")
            continue
        found = _parse_one(table, environ, _Problems(where, problems))
        if found is None:
            continue
        if found.name in names:
            problems.append(f"{where}.name: duplicate name {found.name!r}")
        names.add(found.name)
        subscriptions.append(found)
    if problems:
        raise ConfigurationError(problems)
    return tuple(subscriptions)


@dataclass(frozen=True, slots=True)
class _Problems:
    where: str
    found: list[str]

    def add(self, key: str | None, message: str) -> None:
        self.found.append(f"{self.where}{'' if key is None else '.' + key}: {message}")


_KEYS = frozenset(
    {
        "name",
        "kind",
        "url",
        "secrets",
        "event_types",
        "tst_frm_ids",
        "sub_com_ids",
        "timeout_seconds",
        "retry_schedule",
        "enabled",
        "disable_after_days",
    }
)


def _parse_one(
    table: Mapping[str, Any], environ: Mapping[str, str], problems: _Problems
) -> Subscription | None:
    before = len(problems.found)
    for key in table:
        if key not in _KEYS:
            problems.add(None, _unknown_key(key, _KEYS))
    name = _text(table, "name", problems)
    if name is not None and not _NAME.fullmatch(name):
        problems.add("name", "must be 1-64 of a-z, 0-9, '_' and '-'")
    kind = _text(table, "kind", problems)
    if kind is not None and kind not in set(SubscriptionKind):
        problems.add("kind", f"unknown kind {kind!r} (known: {', '.join(SubscriptionKind)})")
    url = _text(table, "url", problems)
    if url is not None and not is_http_url(url):
        problems.add("url", "must be an http(s) URL")
    secrets = _secrets(table, environ, problems)
    event_types = _event_types(table, problems)
    tst_frm_ids = _id_filter(table, "tst_frm_ids", problems)
    sub_com_ids = _id_filter(table, "sub_com_ids", problems)
    timeout = _number(table, "timeout_seconds", 15.0, problems)
    if timeout is not None and not 0 < timeout <= MAX_TIMEOUT_SECONDS:
        problems.add("timeout_seconds", f"must be > 0 and <= {MAX_TIMEOUT_SECONDS:g}")
    retry_schedule = _retry_schedule(table, problems)
    enabled = table.get("enabled", True)
    if not isinstance(enabled, bool):
        problems.add("enabled", "must be true or false")
    disable_after = _number(table, "disable_after_days", 5.0, problems)
    if disable_after is not None and not disable_after > 0:
        problems.add("disable_after_days", "must be > 0")
    if (
        len(problems.found) > before
        or name is None
        or kind is None
        or url is None
        or timeout is None
        or disable_after is None
    ):
        return None
    return Subscription(
        name=name,
        kind=SubscriptionKind(kind),
        url=url,
        secrets=secrets,
        event_types=event_types,
        tst_frm_ids=tst_frm_ids,
        sub_com_ids=sub_com_ids,
        timeout_seconds=timeout,
        retry_schedule=retry_schedule,
        enabled=enabled,
        disable_after_days=disable_after,
    )


def _text(table: Mapping[str, Any], key: str, problems: _Problems) -> str | None:
    value = table.get(key)
    if value is None:
        problems.add(key, "is required")
        return None
    if not isinstance(value, str) or not value.strip():
        problems.add(key, "must be a non-empty string")
        return None
    return value.strip()


def _secrets(
    table: Mapping[str, Any], environ: Mapping[str, str], problems: _Problems
) -> tuple[str, ...]:
    values = table.get("secrets")
    if values is None:
        problems.add("secrets", "is required (a list of 'whsec_...' or 'env:NAME')")
        return ()
    if not isinstance(values, list) or not values:
        problems.add("secrets", "must be a non-empty list of 'whsec_...' or 'env:NAME'")
        return ()
    resolved: list[str] = []
    for index, value in enumerate(values):
        key = f"secrets[{index}]"
        if not isinstance(value, str):
            problems.add(key, "must be a string")
            continue
        secret = value
        if value.startswith(ENV_PREFIX):
            variable = value.removeprefix(ENV_PREFIX)
            if not _ENV_NAME.fullmatch(variable):
                problems.add(key, f"{variable!r} is not an environment variable name")
                continue
            if not environ.get(variable):
                problems.add(key, f"environment variable {variable} is not set")
                continue
            secret = environ[variable].strip()
            key = f"{key} (env:{variable})"
        problem = webhook_secret_problem(secret)
        if problem is not None:
            problems.add(key, problem)
            continue
        resolved.append(secret)
    return tuple(resolved)


def _event_types(table: Mapping[str, Any], problems: _Problems) -> frozenset[str]:
    values = table.get("event_types", [ASSESSMENT_COMPLETED])
    if not isinstance(values, list) or not values:
        problems.add("event_types", "must be a non-empty list of event types")
        return frozenset()
    for value in values:
        if value not in EVENT_TYPES:
            known = ", ".join(sorted(EVENT_TYPES))
            problems.add("event_types", f"unknown event type {value!r} (known: {known})")
    return frozenset(value for value in values if value in EVENT_TYPES)


def _id_filter(table: Mapping[str, Any], key: str, problems: _Problems) -> frozenset[int] | None:
    if key not in table:
        return None
    values = table[key]
    if not isinstance(values, list) or not values:
        problems.add(key, "must be a non-empty list of ids (leave it out to match every id)")
        return None
    if not all(isinstance(value, int) and not isinstance(value, bool) for value in values):
        problems.add(key, "must contain integers only")
        return None
    return frozenset(values)


def _number(
    table: Mapping[str, Any], key: str, default: float, problems: _Problems
) -> float | None:
    value = table.get(key, default)
    if not _is_number(value):
        problems.add(key, "must be a number")
        return None
    return float(value)


def _retry_schedule(table: Mapping[str, Any], problems: _Problems) -> tuple[float, ...]:
    values = table.get("retry_schedule", list(SVIX_DELAYS))
    if not isinstance(values, list) or not all(
        _is_number(value) and value >= 0 for value in values
    ):
        problems.add("retry_schedule", "must be a list of delays in seconds, each >= 0")
        return ()
    return tuple(float(value) for value in values)


def _is_number(value: object) -> bool:
    # TOML has inf and nan; bool is an int in Python but never a number here.
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def is_http_url(url: str) -> bool:
    """True for an absolute http:// or https:// URL with a host."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in {"http", "https"} and bool(parts.hostname)


def _unknown_key(key: str, known: set[str] | frozenset[str]) -> str:
    close = difflib.get_close_matches(key, sorted(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown key {key!r}{hint}"
