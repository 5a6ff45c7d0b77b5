"""Isograd answers: `/api/usage` responses read as JSON, a redirect or HTML, or raised as errors."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import httpx2

from worker.errors import IsogradApiError, IsogradProtocolError
from worker.isograd.errors import error_for_code
from worker.isograd.models import read_int

T = TypeVar("T")
Answer = Mapping[str, Any]


def read_json(act: int, response: httpx2.Response) -> Answer:
    """The answer of a successful action; raises the documented error for `success: false`."""
    answer = _decode(response)
    if answer is None:
        raise IsogradProtocolError(
            f"Isograd answered act {act} with HTTP {response.status_code} and no JSON object",
            action=act,
        )
    if not _succeeded(act, answer):
        raise _api_error(act, answer)
    if not response.is_success:
        raise IsogradProtocolError(
            f"Isograd answered act {act} with success and HTTP {response.status_code}",
            action=act,
        )
    return answer


def read_redirect(act: int, response: httpx2.Response) -> str:
    if response.has_redirect_location:
        return str(response.url.join(response.headers["location"]))
    read_json(act, response)
    raise IsogradProtocolError(
        f"Isograd answered act {act} with JSON where a redirect was asked for", action=act
    )


def read_html(act: int, response: httpx2.Response) -> str:
    if _decode(response) is not None:
        read_json(act, response)
        raise IsogradProtocolError(
            f"Isograd answered act {act} with JSON where HTML was asked for", action=act
        )
    if not response.is_success:
        raise IsogradProtocolError(
            f"Isograd answered act {act} with HTTP {response.status_code}", action=act
        )
    return response.text


def parse_answer(act: int, parse: Callable[[Answer], T], answer: Answer) -> T:
    """`parse(answer)`, any missing or mistyped field raised as IsogradProtocolError."""
    try:
        return parse(answer)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise IsogradProtocolError(
            f"Isograd's answer to act {act} is malformed ({type(exc).__name__}: {exc})",
            action=act,
        ) from exc


def url_field(name: str) -> Callable[[Answer], str]:
    def read(answer: Answer) -> str:
        url = answer[name]
        if not isinstance(url, str) or not url:
            raise ValueError(f"{name} is not a URL")
        return url

    return read


def retry_after(response: httpx2.Response) -> float | None:
    """Retry-After in seconds; the HTTP-date form is ignored (the backoff bounds the wait)."""
    try:
        return max(0.0, float(response.headers["retry-after"]))
    except (KeyError, ValueError):
        return None


def _decode(response: httpx2.Response) -> Answer | None:
    try:
        answer = response.json()
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else None


def _succeeded(act: int, answer: Answer) -> bool:
    success = answer.get("success")
    if success in (True, 1, "1", "true", "True"):
        return True
    if success in (False, 0, "0", "false", "False") or "error_code" in answer:
        return False
    raise IsogradProtocolError(f"Isograd's answer to act {act} has no success field", action=act)


def _api_error(act: int, answer: Answer) -> IsogradApiError:
    try:
        code: int | None = read_int(answer.get("error_code"))
    except (TypeError, ValueError):
        code = None
    message = answer.get("error_message")
    return error_for_code(code, "" if message is None else str(message), act, answer)
