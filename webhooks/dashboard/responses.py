"""Dashboard responses: template pages and redirects with the security headers, and what a
request carries back (its form, the page to return to, the notice to show)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from webhooks.dashboard.sessions import Session
from webhooks.dashboard.views import ROOT, Form, path, templates
from worker.replay import ReplayOutcome

# Scripts are never needed; the inline <style> is the only thing a page loads.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Pages show candidates' names and emails: keep them out of shared caches and history.
    "Cache-Control": "no-store",
}
NOTICES = {
    ReplayOutcome.REQUEUED.value: "Delivery replayed: it is being sent again now.",
    ReplayOutcome.REQUEUED_ONLY.value: (
        "Delivery requeued in the database; the scheduler will send it shortly."
    ),
    ReplayOutcome.UNKNOWN.value: "No such delivery.",
    ReplayOutcome.BUSY.value: "The delivery is being sent right now; try again in a moment.",
    ReplayOutcome.DELIVERED.value: "The delivery was already delivered; nothing replayed.",
    "enabled": "Subscription enabled: new deliveries go to it again.",
    "disabled": (
        "Subscription disabled: new events get no delivery for it, and its pending deliveries are "
        "cancelled when their turn comes (replay them once it is enabled again)."
    ),
    "bad_range": "Not replayed: the times must look like 2026-11-27T08:00 (UTC).",
}


def page(
    request: Request,
    template: str,
    title: str,
    *,
    form: Form | None = None,
    status_code: int = 200,
    **context: object,
) -> Response:
    """A page of `templates/`: every page gets its title, the form pieces and the notice."""
    values = {"title": title, "form": form, "notice": notice_of(request), **context}
    return templates.TemplateResponse(
        request, template, values, status_code=status_code, headers=SECURITY_HEADERS
    )


def not_found(request: Request, session: Session, what: str) -> Response:
    form = form_of(request, session)
    return page(request, "not_found.html", "Not found", form=form, what=what, status_code=404)


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, 303, headers=SECURITY_HEADERS)


def form_of(request: Request, session: Session) -> Form:
    return Form(csrf_token=session.csrf_token, here=here(request))


async def read_form(request: Request) -> dict[str, str]:
    """An urlencoded form body, first value of each field (no python-multipart needed)."""
    body = await request.body()
    try:
        parsed = parse_qs(body.decode(), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        return {}
    return {key: values[0] for key, values in parsed.items()}


def here(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def safe_next(value: str | None) -> str:
    """A dashboard path to go back to; anything else (another site, `//host`) → the overview."""
    default = path("")
    if not value or "\\" in value or any(ord(c) < 0x20 for c in value):
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not parts.path.startswith(ROOT + "/"):
        return default
    return value


def notice_of(request: Request) -> str | None:
    notice = request.query_params.get("notice", "")
    if notice == "bulk":
        # Only a number and a subscription name are echoed, and the page escapes both.
        count = request.query_params.get("requeued", "")
        name = request.query_params.get("subscription", "")
        if not count.isdigit():
            return None
        if count == "0":
            return f"No failed delivery of {name} matched: nothing replayed."
        return f"{count} failed deliveries of {name} replayed: they are being sent again."
    return NOTICES.get(notice)
