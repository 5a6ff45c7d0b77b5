"""What every inbound vendor endpoint works with, and how it finds its subscription."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx2
from starlette.concurrency import run_in_threadpool

from worker.invitations import InvitationStore
from worker.orders import Order, OrderClient, PlacedOrder, place_order
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

    async def place(self, order: Order, *, mail_template_id: int | None) -> PlacedOrder:
        """`place_order` with these collaborators, in a thread (it calls Isograd and SQL)."""
        return await run_in_threadpool(
            place_order,
            order,
            client=self.client,
            store=self.store,
            callback_keys=self.callback_keys,
            public_url=self.public_url,
            now=self.clock(),
            mail_template_id=mail_template_id,
            first_check_after=self.first_check_after,
        )
