"""Subscription status: each subscription's health and counts, and turning it on or off.

A subscription is configured in relay.toml; its state (disabled, failing since, last success)
lives in the store, so an operator's enable/disable holds across restarts and processes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import structlog

from worker.storage.records import DeliveryStatus, SubscriptionCounts, SubscriptionState
from worker.subscriptions import Subscription

log = structlog.get_logger(__name__)

OPERATOR_REASON = "disabled by an operator"


class UnknownSubscriptionError(LookupError):
    """No subscription of that name is configured in relay.toml."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"no subscription named {name!r} is configured")


class SubscriptionStateStore(Protocol):
    def subscription_state(self, name: str) -> SubscriptionState: ...

    def list_subscription_states(self) -> list[SubscriptionState]: ...

    def count_deliveries_by_subscription(self) -> list[SubscriptionCounts]: ...

    def enable_subscription(self, name: str) -> SubscriptionState: ...

    def disable_subscription(
        self, name: str, reason: str, now: datetime | None = None
    ) -> SubscriptionState: ...


@dataclass(frozen=True, slots=True)
class SubscriptionStatus:
    """One subscription as an operator sees it.

    `configured` is false for a name only the store knows (removed from relay.toml, with
    deliveries left); `active` is whether new events go to it (configured, enabled in relay.toml
    and not disabled in the store).
    """

    name: str
    kind: str | None
    configured: bool
    enabled_in_config: bool
    state: SubscriptionState
    deliveries: dict[DeliveryStatus, int]

    @property
    def active(self) -> bool:
        return self.configured and self.enabled_in_config and not self.state.disabled


def subscription_statuses(
    configured: Sequence[Subscription], store: SubscriptionStateStore
) -> list[SubscriptionStatus]:
    """Every configured subscription in relay.toml order, then names only the store knows."""
    states = {state.name: state for state in store.list_subscription_states()}
    counts = {entry.name: entry.by_status for entry in store.count_deliveries_by_subscription()}
    zero = dict.fromkeys(DeliveryStatus, 0)
    statuses = [
        SubscriptionStatus(
            name=subscription.name,
            kind=subscription.kind,
            configured=True,
            enabled_in_config=subscription.enabled,
            state=states.get(subscription.name, SubscriptionState(subscription.name)),
            deliveries=counts.get(subscription.name, zero),
        )
        for subscription in configured
    ]
    known = {subscription.name for subscription in configured}
    for name in sorted((set(states) | set(counts)) - known):
        statuses.append(
            SubscriptionStatus(
                name=name,
                kind=None,
                configured=False,
                enabled_in_config=False,
                state=states.get(name, SubscriptionState(name)),
                deliveries=counts.get(name, zero),
            )
        )
    return statuses


def set_subscription_enabled(
    name: str,
    enabled: bool,
    *,
    configured: Sequence[Subscription],
    store: SubscriptionStateStore,
    now: datetime,
    reason: str = OPERATOR_REASON,
) -> SubscriptionStatus:
    """Enable (the failure streak starts over) or disable a configured subscription; safe to run
    twice. Raises UnknownSubscriptionError for a name relay.toml does not configure.

    Disabling stops new deliveries; deliveries already queued are cancelled when a worker picks
    them up, and can be replayed once it is enabled again.
    """
    if not any(subscription.name == name for subscription in configured):
        raise UnknownSubscriptionError(name)
    if enabled:
        store.enable_subscription(name)
        log.info("subscription_enabled", subscription=name)
    else:
        store.disable_subscription(name, reason, now)
        log.info("subscription_disabled", subscription=name, reason=reason)
    [status] = [s for s in subscription_statuses(configured, store) if s.name == name]
    return status
