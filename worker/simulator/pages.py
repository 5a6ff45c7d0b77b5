"""The pages behind the URLs the simulator hands out (tst_url, lgn_url, admin, PDF report), so a
person can click through a test in `dev`: opening tst_url starts the test, the form finishes it."""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from worker.isograd.models import AssessmentStatus
from worker.simulator import lifecycle
from worker.simulator.lifecycle import Grading, LifecycleError
from worker.simulator.runtime import Simulator

# The smallest valid PDF with one empty page: enough for a client that downloads the report.
_PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
    b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
    b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 595 842]>>endobj\n"
    b"trailer<</Root 1 0 R>>\n%%EOF\n"
)


def _page(title: str, body: str) -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><html><head><title>{html.escape(title)}</title></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )


def page_routes(simulator: Simulator) -> list[BaseRoute]:
    state = simulator.state

    def _test_id(request: Request) -> int | None:
        raw = str(request.path_params["pla_tst_id"])
        return int(raw) if raw.isdigit() else None

    async def test_page(request: Request) -> Response:
        pla_tst_id = _test_id(request)
        assessment = None if pla_tst_id is None else state.assessment_for_control(pla_tst_id)
        if assessment is None or pla_tst_id is None:
            return _page("Unknown test", "")
        if assessment.status is AssessmentStatus.NOT_STARTED:
            lifecycle.start(state, pla_tst_id)
        if not assessment.unfinished:
            return _page(
                f"Test {pla_tst_id}", f"<p>Finished (sta_id {int(assessment.status)}).</p>"
            )
        form = (
            f'<form method="post" action="/_simulator/pages/tests/{pla_tst_id}/finish">'
            '<label>Score (empty = default) <input name="value"></label> '
            '<label><input type="checkbox" name="pending" value="1"> marking pending</label> '
            "<button>Submit the test</button></form>"
        )
        return _page(f"Test {pla_tst_id} (tst_frm_id {assessment.tst_frm_id})", form)

    async def finish_page(request: Request) -> Response:
        pla_tst_id = _test_id(request)
        if pla_tst_id is None:
            return _page("Unknown test", "")
        form = dict(parse_qsl((await request.body()).decode("utf-8", errors="replace")))
        try:
            value = float(form["value"]) if form.get("value") else None
        except ValueError:
            value = None
        try:
            assessment, _ = await run_in_threadpool(
                lambda: lifecycle.finish(
                    state,
                    simulator.callbacks,
                    pla_tst_id,
                    Grading(value=value),
                    marking_pending=form.get("pending") == "1",
                )
            )
        except LifecycleError as exc:
            return _page("Cannot submit", f"<p>{html.escape(str(exc))}</p>")
        return_page = assessment.options.get("rtn_pag")
        if return_page:
            return RedirectResponse(return_page, status_code=302)
        return _page("Thank you", f"<p>Test {pla_tst_id} submitted.</p>")

    async def candidate_page(request: Request) -> Response:
        return _page("Candidate account (simulated)", "<p>Tests, diplomas and reports.</p>")

    async def admin_page(request: Request) -> Response:
        return _page("Administration (simulated)", "<p>See /_simulator/state.</p>")

    async def report(request: Request) -> Response:
        return Response(_PDF, media_type="application/pdf")

    handlers: list[tuple[str, Callable[[Request], Awaitable[Response]], list[str]]] = [
        ("/_simulator/pages/tests/{pla_tst_id}", test_page, ["GET"]),
        ("/_simulator/pages/tests/{pla_tst_id}/finish", finish_page, ["POST"]),
        ("/_simulator/pages/candidates/{can_id}", candidate_page, ["GET"]),
        ("/_simulator/pages/admin", admin_page, ["GET"]),
        ("/_simulator/reports/{pla_tst_id}.pdf", report, ["GET"]),
    ]
    return [Route(path, handler, methods=methods) for path, handler, methods in handlers]
