"""The sink registry: every sink kind, how relay.toml configures it and how its sink is built.

Adding a kind is one module under worker/sinks/ that defines a frozen target dataclass (its
resolved settings), a `parse` reading its keys from a SinkOptions, and a `build` making the Sink;
then one line in KINDS below. worker.subscriptions reads the common keys and hands the rest here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import httpx2

from worker.sinks import (
    bamboohr,
    http,
    kombo,
    lti11,
    lti13,
    slack,
    teams,
    teamtailor,
    webhook,
)
from worker.sinks.base import Sink
from worker.sinks.options import SinkOptions

if TYPE_CHECKING:
    from worker.subscriptions import Subscription


class SinkTarget(Protocol):
    """A kind's resolved settings (secrets included, so never logged or shown whole)."""

    def describe(self) -> str:
        """What a page may show of the target: a host name, never a path, token or key."""
        ...

    def secret_values(self) -> tuple[str, ...]:
        """Every value the logs must never show (worker.logs redacts them)."""
        ...


TargetT = TypeVar("TargetT", bound=SinkTarget)


@dataclass(frozen=True, slots=True)
class SinkContext:
    """What a sink is built with: its subscription's name and timeout, the shared HTTP client."""

    name: str
    timeout: float
    http: httpx2.Client


@dataclass(frozen=True, slots=True)
class SinkKind(Generic[TargetT]):
    """One kind: its own relay.toml keys, their parser and the sink's factory.

    `routes(subscription name, invitation context)`, when given, says whether an invitation's
    events are for this subscription at all: an ATS sink only takes the invitations its vendor
    ordered, so other completions get no delivery (rather than a failed one that would count
    towards `disable_after_days`).
    """

    name: str
    keys: frozenset[str]
    parse: Callable[[SinkOptions], TargetT | None]
    build: Callable[[TargetT, SinkContext], Sink]
    routes: Callable[[str, Mapping[str, Any]], bool] | None = None


KINDS: Mapping[str, SinkKind[Any]] = {
    kind.name: kind
    for kind in (
        SinkKind("webhook", webhook.KEYS, webhook.parse_target, webhook.build_sink),
        SinkKind("slack", slack.KEYS, slack.parse_target, slack.build_sink),
        SinkKind("teams", teams.KEYS, teams.parse_target, teams.build_sink),
        SinkKind("http", http.KEYS, http.parse_target, http.build_sink),
        SinkKind("bamboohr", bamboohr.KEYS, bamboohr.parse_target, bamboohr.build_sink),
        SinkKind("lti11", lti11.KEYS, lti11.parse_target, lti11.build_sink),
        SinkKind("lti13", lti13.KEYS, lti13.parse_target, lti13.build_sink),
        SinkKind(
            teamtailor.KIND,
            teamtailor.KEYS,
            teamtailor.parse_target,
            teamtailor.build_sink,
            teamtailor.routes_to,
        ),
        SinkKind(kombo.KIND, kombo.KEYS, kombo.parse_target, kombo.build_sink, kombo.routes_to),
    )
}


def make_sink(subscription: Subscription, http: httpx2.Client) -> Sink:
    """The sink for one subscription, on the shared HTTP client."""
    kind = KINDS[subscription.kind]
    context = SinkContext(subscription.name, subscription.timeout_seconds, http)
    return kind.build(subscription.target, context)
