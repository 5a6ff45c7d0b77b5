"""The operator dashboard: server-rendered pages of events, deliveries and failures, with replay.

`routes.py` serves the pages, `sessions.py` signs browsers in, `views.py` holds what the
`templates/` show and the filters that format it.
"""

from webhooks.dashboard.routes import dashboard_routes

__all__ = ["dashboard_routes"]
