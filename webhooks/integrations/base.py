"""What every inbound vendor endpoint works with, and how it finds its subscription."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx2

from worker.invitations import InvitationStore
from worker.orders import OrderClient
from worker.subscriptions import Subscription
from worker.tokens import CallbackKey


@dataclass(frozen=True, slots=True)
class Collaborators:
    """What an integration endpoint works with: the configured subscriptions, the store, the
    Isograd client, the shared HTTP client (for vendor API calls) and the invitation settings."""

    subscriptions: Sequence[Subscription]
    store: InvitationStore
    client: OrderClient
    http: httpx2.Client
    callback_keys: Sequence[CallbackKey]
    public_url: str
    clock: Callable[[], datetime]
    first_check_after: timedelta

    def subscription(self, kind: str, name: str) -> Subscription | None:
        """The enabled subscription `name` of `kind`, or None."""
        for subscription in self.subscriptions:
            if subscription.name == name and subscription.kind == kind and subscription.enabled:
                return subscription
        return None
