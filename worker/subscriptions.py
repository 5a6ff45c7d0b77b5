"""Subscriptions: which events go to which sink, as configured in relay.toml.

    [[subscriptions]]
    name = "crm"                          # unique; a-z, 0-9, '_' and '-'
    kind = "webhook"                      # a kind of worker.sinks.registry.KINDS
    url = "https://crm.example.com/hooks/isograd"
    secrets = ["env:CRM_WEBHOOK_SECRET"]  # "whsec_<base64>" or "env:NAME"; several = rotation
    event_types = ["assessment.completed"]   # the default
    tst_frm_ids = [123, 456]              # optional filters; omitted = every test
    sub_com_ids = [42]                    # omitted = every (sub) account
    min_percent = 50                      # optional, inclusive, on data.grade.percent; an
    max_percent = 100                     # event without a percent does not match either
    timeout_seconds = 15                  # per request
    retry_schedule = [5, 300, 1800]       # seconds between attempts, after the immediate first
    enabled = true
    disable_after_days = 5                # failing continuously this long disables it

The keys above from `event_types` on are common to every kind; `url` and `secrets` are the
webhook kind's own (each kind's module under worker/sinks/ documents its keys). Parsing collects
every problem (unknown keys included, so a typo is never silently ignored) and raises one
ConfigurationError; problems name their location and never contain a secret.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worker.errors import ConfigurationError
from worker.retries import SVIX_DELAYS
from worker.sinks.options import Problems, SinkOptions, is_http_url, is_number, unknown_key
from worker.sinks.registry import KINDS, SinkTarget

__all__ = ["ASSESSMENT_COMPLETED", "Subscription", "is_http_url", "parse_subscriptions"]

ASSESSMENT_COMPLETED = "assessment.completed"
EVENT_TYPES = frozenset({ASSESSMENT_COMPLETED})
MAX_TIMEOUT_SECONDS = 300.0

_NAME = re.compile(r"[a-z0-9_-]{1,64}")


@dataclass(frozen=True, slots=True)
class Subscription:
    """One configured destination; `target` holds its kind's settings, secrets included, and is
    kept out of repr (chat webhook URLs carry a secret in their path).

    `retry_schedule` holds the delays in seconds between attempts; the first attempt is
    immediate and not listed, so n delays allow n + 1 attempts (worker.retries.RetrySchedule).
    """

    name: str
    kind: str
    target: SinkTarget = field(repr=False)
    event_types: frozenset[str] = frozenset({ASSESSMENT_COMPLETED})
    tst_frm_ids: frozenset[int] | None = None
    sub_com_ids: frozenset[int] | None = None
    min_percent: float | None = None
    max_percent: float | None = None
    timeout_seconds: float = 15.0
    retry_schedule: tuple[float, ...] = SVIX_DELAYS
    enabled: bool = True
    disable_after_days: float = 5.0

    def matches(
        self,
        event_type: str,
        tst_frm_id: int,
        sub_com_id: int | None,
        *,
        percent: float | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> bool:
        """True when this subscription is enabled and wants this event.

        With a sub_com_ids filter, events of the main account (sub_com_id None) do not match;
        with a min_percent or max_percent (inclusive), an event without a percent (an unknown
        grade type) does not match. With the invitation's `context`, a kind that routes by it
        (the ATS kinds, see SinkKind.routes) only matches the invitations it was asked for.
        """
        kind = KINDS.get(self.kind)
        return (
            self.enabled
            and event_type in self.event_types
            and (self.tst_frm_ids is None or tst_frm_id in self.tst_frm_ids)
            and (self.sub_com_ids is None or sub_com_id in self.sub_com_ids)
            and self._percent_matches(percent)
            and (
                context is None
                or kind is None
                or kind.routes is None
                or kind.routes(self.name, context)
            )
        )

    def _percent_matches(self, percent: float | None) -> bool:
        if self.min_percent is None and self.max_percent is None:
            return True
        if percent is None:
            return False
        return (self.min_percent is None or percent >= self.min_percent) and (
            self.max_percent is None or percent <= self.max_percent
        )


def parse_subscriptions(
    document: Mapping[str, Any],
    environ: Mapping[str, str],
    *,
    source: str = "relay.toml",
    base_dir: Path | None = None,
) -> tuple[Subscription, ...]:
    """The subscriptions of a parsed relay.toml; `env:NAME` secrets are resolved from `environ`
    and `file:PATH` ones relative to `base_dir` (relay.toml's folder).

    Raises ConfigurationError listing every problem, each prefixed by `source`.
    """
    problems: list[str] = []
    for key in document:
        if key not in TOP_LEVEL_KEYS:
            problems.append(f"{source}: {unknown_key(key, TOP_LEVEL_KEYS)}")
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
        options = SinkOptions(table, Problems(where, problems), environ=environ, base_dir=base_dir)
        found = _parse_one(options)
        if found is None:
            continue
        if found.name in names:
            problems.append(f"{where}.name: duplicate name {found.name!r}")
        names.add(found.name)
        subscriptions.append(found)
    if problems:
        raise ConfigurationError(problems)
    return tuple(subscriptions)


# relay.toml's tables: the subscriptions, and test names (read by worker.catalogue).
TOP_LEVEL_KEYS = frozenset({"subscriptions", "test_names"})

COMMON_KEYS = frozenset(
    {
        "name",
        "kind",
        "event_types",
        "tst_frm_ids",
        "sub_com_ids",
        "min_percent",
        "max_percent",
        "timeout_seconds",
        "retry_schedule",
        "enabled",
        "disable_after_days",
    }
)


def _parse_one(options: SinkOptions) -> Subscription | None:
    before = len(options.problems.found)
    kind_name = options.table.get("kind")
    kind = KINDS.get(kind_name) if isinstance(kind_name, str) else None
    options.unknown_keys(COMMON_KEYS | (kind.keys if kind is not None else _ANY_KEYS))
    name = options.text("name")
    if name is not None and not _NAME.fullmatch(name):
        options.problem("name", "must be 1-64 of a-z, 0-9, '_' and '-'")
    kind_name = options.text("kind")
    if kind_name is not None and kind is None:
        # The kind's own keys are only checked once the kind is known.
        options.problem("kind", f"unknown kind {kind_name!r} (known: {', '.join(KINDS)})")
    target = kind.parse(options) if kind is not None else None
    event_types = _event_types(options)
    tst_frm_ids = _id_filter(options, "tst_frm_ids")
    sub_com_ids = _id_filter(options, "sub_com_ids")
    min_percent, max_percent = _percent_filter(options)
    timeout = options.number("timeout_seconds", default=15.0)
    if timeout is not None and not 0 < timeout <= MAX_TIMEOUT_SECONDS:
        options.problem("timeout_seconds", f"must be > 0 and <= {MAX_TIMEOUT_SECONDS:g}")
    retry_schedule = _retry_schedule(options)
    enabled = options.flag("enabled", default=True)
    disable_after = options.number("disable_after_days", default=5.0)
    if disable_after is not None and not disable_after > 0:
        options.problem("disable_after_days", "must be > 0")
    if (
        len(options.problems.found) > before
        or name is None
        or kind_name is None
        or target is None
        or timeout is None
        or enabled is None
        or disable_after is None
    ):
        return None
    return Subscription(
        name=name,
        kind=kind_name,
        target=target,
        event_types=event_types,
        tst_frm_ids=tst_frm_ids,
        sub_com_ids=sub_com_ids,
        min_percent=min_percent,
        max_percent=max_percent,
        timeout_seconds=timeout,
        retry_schedule=retry_schedule,
        enabled=enabled,
        disable_after_days=disable_after,
    )


# With an unknown kind, the keys of every known kind are accepted: the kind is the problem.
_ANY_KEYS = frozenset(key for kind in KINDS.values() for key in kind.keys)


def _event_types(options: SinkOptions) -> frozenset[str]:
    values = options.table.get("event_types", [ASSESSMENT_COMPLETED])
    if not isinstance(values, list) or not values:
        options.problem("event_types", "must be a non-empty list of event types")
        return frozenset()
    for value in values:
        if value not in EVENT_TYPES:
            known = ", ".join(sorted(EVENT_TYPES))
            options.problem("event_types", f"unknown event type {value!r} (known: {known})")
    return frozenset(value for value in values if value in EVENT_TYPES)


def _id_filter(options: SinkOptions, key: str) -> frozenset[int] | None:
    if key not in options:
        return None
    values = options.table[key]
    if not isinstance(values, list) or not values:
        options.problem(key, "must be a non-empty list of ids (leave it out to match every id)")
        return None
    if not all(isinstance(value, int) and not isinstance(value, bool) for value in values):
        options.problem(key, "must contain integers only")
        return None
    return frozenset(values)


def _percent_filter(options: SinkOptions) -> tuple[float | None, float | None]:
    bounds = tuple(
        options.number(key, minimum=0.0, maximum=100.0) if key in options else None
        for key in ("min_percent", "max_percent")
    )
    low, high = bounds
    if low is not None and high is not None and low > high:
        options.problem("max_percent", f"must be >= min_percent ({low:g})")
    return low, high


def _retry_schedule(options: SinkOptions) -> tuple[float, ...]:
    values = options.table.get("retry_schedule", list(SVIX_DELAYS))
    if not isinstance(values, list) or not all(is_number(value) and value >= 0 for value in values):
        options.problem("retry_schedule", "must be a list of delays in seconds, each >= 0")
        return ()
    return tuple(float(value) for value in values)
