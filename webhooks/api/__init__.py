"""The admin JSON API (`/api`): invite candidates, read and replay deliveries, operate
subscriptions, erase a candidate; and its OpenAPI description (`/api/openapi.json`).

`invitations.py` holds the invitation, watch, event and delivery endpoints and mounts them all,
`operations.py` the operators' listings, bulk replay, subscriptions and erasure, `answers.py` the
shapes the endpoints render, `openapi.py` the document gathered from each endpoint's declared
operation. The web app needs only what this package exports.
"""

from webhooks.api.invitations import InvalidParameterError, api_routes
from webhooks.api.openapi import openapi_routes

__all__ = ["InvalidParameterError", "api_routes", "openapi_routes"]
