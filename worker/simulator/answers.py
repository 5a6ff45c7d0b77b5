"""What an action answers: a JSON object, a 302 redirect or an HTML fragment."""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from worker.simulator.params import Params
from worker.simulator.state import SimulatorState


@dataclass(frozen=True, slots=True)
class Redirect:
    url: str


@dataclass(frozen=True, slots=True)
class Html:
    body: str


Answer = dict[str, Any] | Redirect | Html
Handler = Callable[[SimulatorState, Params, int | None], Answer]


def succeed(**properties: Any) -> dict[str, Any]:
    """A successful answer; `error_message: null` as in the reference's worked example."""
    return {"error_message": None, "success": True, **properties}


def start_answer(
    params: Params, url: str, *, html_allowed: bool = True, **properties: Any
) -> Answer:
    """The answer of an action that starts a test: `redirect=1` wins over `html=1`."""
    if params.flag("redirect"):
        return Redirect(url)
    if html_allowed and params.flag("html"):
        href = html.escape(url, quote=True)
        return Html(f'<a class="isograd_start_test_button" href="{href}">Start the test</a>')
    return succeed(tst_url=url, **properties)


def page_url(state: SimulatorState, path: str) -> str:
    return state.config.public_url.rstrip("/") + path
