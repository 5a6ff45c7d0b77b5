"""Inbound vendor endpoints: ATS webhooks that order tests (`/integrations/{vendor}/...`).

Each vendor module verifies its webhook (constant-time, within the vendor's time window) before
anything is stored, then turns the order into an invitation with worker.orders.
"""

from __future__ import annotations

from starlette.routing import BaseRoute

from webhooks.integrations import kombo, teamtailor
from webhooks.integrations.base import Collaborators

__all__ = ["Collaborators", "integration_routes"]


def integration_routes(collaborators: Collaborators) -> list[BaseRoute]:
    """Every vendor's inbound routes (`/integrations/{vendor}/{subscription}/webhook`)."""
    return [*teamtailor.routes(collaborators), *kombo.routes(collaborators)]
