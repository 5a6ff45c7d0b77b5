"""The Kombo sink: an Isograd result written back to a Kombo assessment order.

Kombo's unified Assessment API (https://docs.kombo.dev/assessment) stands in front of many ATSs
(SmartRecruiters, SuccessFactors, Workday, Greenhouse, Recruitee, Lever, ...). We publish our
tests as packages (`PUT /assessment/packages`), the ATS orders one, Kombo sends us
`assessment:order-received` (webhooks/integrations/kombo.py) and the scheduler also polls
`GET /assessment/orders/open` (worker/scheduler/orders.py); each order becomes one invitation with
`context.kombo = {order_id, subscription}`. On completion this sink PUTs
`/assessment/orders/{order_id}/result`: `status = COMPLETED`, `result_url`, `completed_at`,
`score`/`max_score`, one `SUB_RESULT` attribute per skill and the PDF report as an attachment
when it can be fetched.

    [[subscriptions]]
    name = "kombo-acme"
    kind = "kombo"
    api_key = "env:KOMBO_API_KEY"
    integration_id = "workday:HWUTwvyx2wLoSUHphiWVrp28"   # sent as X-Integration-Id
    webhook_secret = "env:KOMBO_WEBHOOK_SECRET"           # X-Kombo-Signature
    packages = [{ id = "tosa-excel", tst_frm_id = 101, name = "TOSA Excel", type = "SKILLS_TEST" }]
    mail_template_id = 7                                  # Isograd's registration email (act 42)

Request and answer shapes are from Kombo's OpenAPI description (docs.kombo.dev/assessment/v1:
put-packages, get-orders-open, put-orders-assessment-order-id-result; ErrorResponseATS).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import httpx2
import structlog

from worker import __version__
from worker.errors import SinkRejectedError, SinkUnavailableError
from worker.sinks.base import AttemptResult, EventEnvelope
from worker.sinks.http_attempt import parse_retry_after
from worker.sinks.options import SinkOptions, is_number
from worker.sinks.vendor_api import VendorRequest, call_vendor, decode_json, failed, with_error

if TYPE_CHECKING:
    from worker.sinks.registry import SinkContext

log = structlog.get_logger(__name__)

KIND = "kombo"
# Kombo's servers: EU https://api.kombo.dev/v1, US https://api.us.kombo.dev/v1 (OpenAPI servers).
DEFAULT_BASE_URL = "https://api.kombo.dev/v1"
# PutAssessmentPackagesRequestBody.packages[].type
PACKAGE_TYPES = (
    "BEHAVIORAL",
    "VIDEO_INTERVIEW",
    "SKILLS_TEST",
    "BACKGROUND_CHECK",
    "REFERENCE_CHECK",
)
# GET /assessment/orders/open: "page_size ... Maximum is 250" (default 100). Pages carry each
# job's HTML description, so we ask for fewer to keep every answer small.
PAGE_SIZE = 50
MAX_PAGE_BYTES = 8 * 1024 * 1024
# Our choice (Kombo documents no numeric limit, only 429 PLATFORM.RATE_LIMIT_EXCEEDED).
DEFAULT_REQUESTS_PER_SECOND = 2.0
DEFAULT_POLL_INTERVAL_SECONDS = 300.0
# `result_url` is required by the result PUT; when Isograd has no PDF (a certification), the
# recruiter is sent to Isograd's platform, where the result is.
DEFAULT_FALLBACK_RESULT_URL = "https://app.isograd.com"
# attachments: "maxItems: 5"; a PDF report is a few hundred kB, far below this cap.
MAX_REPORT_BYTES = 10 * 1024 * 1024
USER_AGENT = f"isograd-relay/{__version__} (kombo)"

KEYS = frozenset(
    {
        "api_key",
        "integration_id",
        "base_url",
        "webhook_secret",
        "packages",
        "send_email",
        "mail_template_id",
        "poll_interval_seconds",
        "requests_per_second",
        "fallback_result_url",
    }
)


@dataclass(frozen=True, slots=True)
class KomboPackage:
    """One of our tests as a Kombo package: `id` is what orders name, `tst_frm_id` what we send."""

    id: str
    tst_frm_id: int
    name: str
    type: str = "SKILLS_TEST"
    description: str = ""

    def document(self) -> dict[str, str]:
        # `description` is required by Kombo; "Some ATSs will display this in their UI".
        return {
            "id": self.id,
            "type": self.type,
            "name": self.name,
            "description": self.description or self.name,
        }


@dataclass(frozen=True, slots=True)
class KomboTarget:
    """A Kombo subscription's settings (one Kombo integration); secrets are kept out of repr."""

    api_key: str = field(repr=False)
    integration_id: str
    webhook_secret: str = field(repr=False)
    packages: tuple[KomboPackage, ...]
    base_url: str = DEFAULT_BASE_URL
    send_email: bool = True
    mail_template_id: int | None = None
    poll_interval_seconds: float = DEFAULT_POLL_INTERVAL_SECONDS
    requests_per_second: float = DEFAULT_REQUESTS_PER_SECOND
    fallback_result_url: str = DEFAULT_FALLBACK_RESULT_URL

    def describe(self) -> str:
        return urlsplit(self.base_url).hostname or ""

    def secret_values(self) -> tuple[str, ...]:
        return (self.api_key, self.webhook_secret)

    def package(self, package_id: object) -> KomboPackage | None:
        return next((p for p in self.packages if p.id == package_id), None)


def parse_target(options: SinkOptions) -> KomboTarget | None:
    before = len(options.problems.found)
    api_key = options.secret("api_key")
    integration_id = options.text("integration_id")
    webhook_secret = options.secret("webhook_secret")
    base_url = options.url("base_url", default=DEFAULT_BASE_URL)
    fallback = options.url("fallback_result_url", default=DEFAULT_FALLBACK_RESULT_URL)
    packages = _packages(options)
    send_email = options.flag("send_email", default=True)
    mail_template_id = None
    if "mail_template_id" in options or send_email:
        mail_template_id = options.integer("mail_template_id", minimum=1)
    poll = options.number("poll_interval_seconds", default=DEFAULT_POLL_INTERVAL_SECONDS, minimum=1)
    rate = options.number(
        "requests_per_second", default=DEFAULT_REQUESTS_PER_SECOND, minimum=0.01, maximum=100
    )
    if (
        len(options.problems.found) > before
        or api_key is None
        or integration_id is None
        or webhook_secret is None
        or base_url is None
        or fallback is None
        or send_email is None
        or poll is None
        or rate is None
    ):
        return None
    return KomboTarget(
        api_key=api_key,
        integration_id=integration_id,
        webhook_secret=webhook_secret,
        packages=packages,
        base_url=base_url,
        send_email=send_email,
        mail_template_id=mail_template_id,
        poll_interval_seconds=poll,
        requests_per_second=rate,
        fallback_result_url=fallback,
    )


def _packages(options: SinkOptions) -> tuple[KomboPackage, ...]:
    values = options.table.get("packages")
    if not isinstance(values, list) or not values:
        options.problem("packages", "must be a non-empty list of {id, tst_frm_id, name, type}")
        return ()
    found: list[KomboPackage] = []
    for index, value in enumerate(values):
        key = f"packages[{index}]"
        if not isinstance(value, dict):
            options.problem(key, "must be a table {id, tst_frm_id, name, type}")
            continue
        unknown = set(value) - {"id", "tst_frm_id", "name", "type", "description"}
        for name in sorted(unknown):
            options.problem(f"{key}.{name}", "is not a package key")
        package_id, name = value.get("id"), value.get("name")
        tst_frm_id, kind = value.get("tst_frm_id"), value.get("type", "SKILLS_TEST")
        description = value.get("description", "")
        problems = len(options.problems.found)
        if not isinstance(package_id, str) or not package_id.strip():
            options.problem(f"{key}.id", "must be a non-empty string")
        if not isinstance(name, str) or not name.strip():
            options.problem(f"{key}.name", "must be a non-empty string")
        if not isinstance(tst_frm_id, int) or isinstance(tst_frm_id, bool) or tst_frm_id < 1:
            options.problem(f"{key}.tst_frm_id", "must be a tst_frm_id (a positive integer)")
        if kind not in PACKAGE_TYPES:
            options.problem(f"{key}.type", f"must be one of {', '.join(PACKAGE_TYPES)}")
        if not isinstance(description, str):
            options.problem(f"{key}.description", "must be a string")
        if len(options.problems.found) > problems:
            continue
        assert isinstance(package_id, str)
        assert isinstance(name, str)
        assert isinstance(tst_frm_id, int)
        assert isinstance(description, str)
        found.append(KomboPackage(package_id.strip(), tst_frm_id, name.strip(), kind, description))
    ids = [package.id for package in found]
    for duplicate in sorted({i for i in ids if ids.count(i) > 1}):
        options.problem("packages", f"duplicate package id {duplicate!r}")
    return tuple(found)


def build_sink(target: KomboTarget, context: SinkContext) -> KomboSink:
    return KomboSink(target, client=context.http, timeout=context.timeout, name=context.name)


@dataclass(frozen=True, slots=True)
class OpenOrdersPage:
    """One page of GET /assessment/orders/open: the orders as Kombo sent them, and the cursor of
    the next page (None on the last)."""

    orders: tuple[Mapping[str, Any], ...]
    next_cursor: str | None


class KomboApi:
    """Kombo's Assessment API for one integration: `Authorization: Bearer <api key>` and
    `X-Integration-Id` on every request (OpenAPI: security ApiKey, header X-Integration-Id)."""

    def __init__(
        self,
        target: KomboTarget,
        *,
        client: httpx2.Client,
        timeout: float,
        name: str,
        page_size: int = PAGE_SIZE,
    ) -> None:
        self.target = target
        self.name = name
        self.page_size = page_size
        self._client = client
        self._timeout = timeout

    def _headers(self) -> dict[str, str]:
        return {
            "authorization": f"Bearer {self.target.api_key}",
            "x-integration-id": self.target.integration_id,
            "accept": "application/json",
            "user-agent": USER_AGENT,
        }

    def _url(self, path: str) -> str:
        return self.target.base_url.rstrip("/") + path

    def set_packages(self, *, attempt_at: datetime) -> AttemptResult:
        """PUT /assessment/packages with every configured package ("Replaces the list ...
        Packages ... not included again will be marked as deleted"): safe to repeat."""
        document = {"packages": [package.document() for package in self.target.packages]}
        return self._send("PUT", "/assessment/packages", document, attempt_at)

    def put_result(
        self, order_id: str, body: Mapping[str, Any], *, attempt_at: datetime
    ) -> AttemptResult:
        path = f"/assessment/orders/{quote(order_id, safe='')}/result"
        return self._send("PUT", path, body, attempt_at)

    def open_orders(self, cursor: str | None = None) -> OpenOrdersPage:
        """One page of open orders. Raises SinkUnavailableError (timeouts, 408/429/5xx, with the
        Retry-After hint) or SinkRejectedError (any other refusal, or an answer not of the
        documented shape)."""
        params: dict[str, str | int] = {"page_size": self.page_size}
        if cursor:
            params["cursor"] = cursor
        started = time.monotonic()
        try:
            with self._client.stream(
                "GET",
                self._url("/assessment/orders/open"),
                params=params,
                headers=self._headers(),
                timeout=httpx2.Timeout(self._timeout),
                follow_redirects=False,
            ) as response:
                status = response.status_code
                retry_after = response.headers.get("retry-after")
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > MAX_PAGE_BYTES:
                        raise SinkRejectedError(
                            "Kombo's open orders page is too large", sink=self.name
                        )
        except httpx2.TimeoutException as exc:
            raise SinkUnavailableError("Kombo timed out", sink=self.name) from exc
        except httpx2.TransportError as exc:
            raise SinkUnavailableError(
                f"Kombo unreachable ({type(exc).__name__})", sink=self.name
            ) from exc
        except (httpx2.HTTPError, httpx2.InvalidURL) as exc:
            raise SinkRejectedError(
                f"Kombo request failed ({type(exc).__name__})", sink=self.name
            ) from exc
        text = body.decode("utf-8", errors="replace")
        if status in (408, 425, 429) or status >= 500:
            raise SinkUnavailableError(
                error_text(status, text),
                sink=self.name,
                status_code=status,
                retry_after=parse_retry_after(retry_after, now=_utc_now()),
            )
        if status != 200:
            raise SinkRejectedError(error_text(status, text), sink=self.name, status_code=status)
        log.debug(
            "kombo_open_orders", sink=self.name, ms=round((time.monotonic() - started) * 1000)
        )
        return _page(decode_json(text), self.name)

    def _send(self, method: str, path: str, document: Any, attempt_at: datetime) -> AttemptResult:
        request = VendorRequest(
            method, self._url(path), self._headers(), document, secrets=self.target.secret_values()
        )
        result = call_vendor(self._client, request, timeout=self._timeout, attempt_at=attempt_at)
        if result.status_code is not None and result.status_code >= 300:
            result = with_error(result, error_text(result.status_code, result.response_body))
        return result


def _page(document: object, sink: str) -> OpenOrdersPage:
    data = document.get("data") if isinstance(document, dict) else None
    results = data.get("results") if isinstance(data, dict) else None
    if not isinstance(data, dict) or not isinstance(results, list):
        raise SinkRejectedError("Kombo's open orders answer is not the documented shape", sink=sink)
    next_cursor = data.get("next")
    orders = tuple(order for order in results if isinstance(order, dict))
    return OpenOrdersPage(
        orders, next_cursor if isinstance(next_cursor, str) and next_cursor else None
    )


def error_text(status: int, body: str) -> str:
    """Kombo's error shape (`{"status": "error", "error": {"code", "title", "message"}}`,
    OpenAPI ErrorResponseATS) in one line; the message is Kombo's, never our payload."""
    document = decode_json(body)
    error = document.get("error") if isinstance(document, dict) else None
    if not isinstance(error, dict):
        return f"Kombo answered {status}"
    code = error.get("code")
    message = error.get("message") or error.get("title") or ""
    prefix = f"Kombo answered {status}" + (f" {code}" if code else "")
    return f"{prefix}: {message}" if message else prefix


class KomboSink:
    """PUTs the completed result to the order named in the event's context."""

    kind = KIND

    def __init__(
        self, target: KomboTarget, *, client: httpx2.Client, timeout: float, name: str
    ) -> None:
        self.name = name
        self.api = KomboApi(target, client=client, timeout=timeout, name=name)
        self._client = client
        self._timeout = timeout

    def __repr__(self) -> str:  # never show the keys
        return f"KomboSink(name={self.name!r})"

    def send(self, envelope: EventEnvelope, *, attempt_at: datetime) -> AttemptResult:
        order_id, problem = order_of(envelope.data, self.name)
        if order_id is None:
            return failed(problem or "context.kombo is missing")
        body = result_body(
            envelope.data,
            envelope.timestamp,
            self.api.target.fallback_result_url,
            completed=attempt_at,
        )
        report = fetch_report(self._client, body["result_url"], timeout=self._timeout)
        if report is not None:
            test = envelope.data.get("test")
            tst_frm_id = test.get("tst_frm_id") if isinstance(test, Mapping) else None
            body["attachments"] = [
                {
                    "name": f"Isograd report {tst_frm_id}.pdf",
                    "content_type": "application/pdf",
                    "data": base64.b64encode(report).decode("ascii"),
                }
            ]
        result = self.api.put_result(order_id, body, attempt_at=attempt_at)
        log.debug(
            "kombo_attempt",
            sink=self.name,
            event_id=envelope.event_id,
            outcome=str(result.outcome),
            status_code=result.status_code,
            attachment=report is not None,
        )
        return result


def order_of(data: Mapping[str, Any], subscription: str) -> tuple[str | None, str | None]:
    """(order id, None) from `data.context.kombo`, or (None, why it is unusable)."""
    context = data.get("context")
    routing = context.get("kombo") if isinstance(context, Mapping) else None
    if not isinstance(routing, Mapping):
        return None, "context.kombo is missing: the invitation was not ordered through Kombo"
    order_id = routing.get("order_id")
    if not isinstance(order_id, str) or not order_id:
        return None, "context.kombo.order_id is missing"
    ordered_by = routing.get("subscription")
    if ordered_by is not None and ordered_by != subscription:
        return None, f"context.kombo: ordered through subscription {ordered_by!r}, not this one"
    return order_id, None


def routes_to(subscription: str, context: Mapping[str, Any]) -> bool:
    """True when the invitation was ordered through Kombo by `subscription`."""
    return order_of({"context": context}, subscription)[0] is not None


def result_body(
    data: Mapping[str, Any],
    timestamp: str,
    fallback_url: str,
    *,
    completed: datetime | None = None,
) -> dict[str, Any]:
    """The order result of a completed event (PutAssessmentOrdersAssessmentOrderIdResult...
    RequestBody): COMPLETED, `completed_at` as YYYY-MM-DDTHH:mm:ss.sssZ, the grade's value on its
    maximum, a TEXT attribute with the grade text and one SUB_RESULT per tested skill
    (`score.max` must be at least 1; untested skills are left out)."""
    grade = data.get("grade")
    grade = grade if isinstance(grade, Mapping) else {}
    report = data.get("report")
    pdf_url = report.get("pdf_url") if isinstance(report, Mapping) else None
    body: dict[str, Any] = {
        "status": "COMPLETED",
        "result_url": pdf_url if _is_http_url(pdf_url) else fallback_url,
        "completed_at": _kombo_time(timestamp, completed),
    }
    value, maximum = grade.get("value"), grade.get("max")
    if is_number(value) and is_number(maximum) and maximum > 0:
        body["score"] = value
        body["max_score"] = maximum
    attributes: list[dict[str, Any]] = []
    if grade.get("text"):
        attributes.append({"type": "TEXT", "label": "Grade", "value": str(grade["text"])})
    skills = data.get("skills")
    for skill in skills if isinstance(skills, list) else []:
        score = _skill_score(skill) if isinstance(skill, Mapping) else None
        if score is None:
            continue
        attributes.append(
            {
                "type": "SUB_RESULT",
                "id": str(skill.get("id")),
                "label": str(skill.get("description") or skill.get("id")),
                "score": score,
                "status": "COMPLETED",
            }
        )
    body["attributes"] = attributes
    return body


def _skill_score(skill: Mapping[str, Any]) -> dict[str, float] | None:
    # Isograd's act 5: -1 means "not tested on this skill" (isograd-api.txt, results details).
    level, scale, rate = skill.get("level"), skill.get("scale_max"), skill.get("success_rate")
    if is_number(level) and level >= 0 and is_number(scale) and scale >= 1:
        return {"value": level, "max": scale}
    if is_number(rate) and 0 <= rate <= 1:
        return {"value": round(rate * 100, 1), "max": 100}
    return None


def _kombo_time(timestamp: str, fallback: datetime | None) -> str:
    """ISO 8601 to Kombo's `YYYY-MM-DDTHH:mm:ss.sssZ` (UTC, milliseconds); `fallback` (else now)
    when the event's timestamp cannot be read, since a sink never raises."""
    try:
        moment = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        moment = fallback or datetime.now(UTC)
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def fetch_report(client: httpx2.Client, url: str, *, timeout: float) -> bytes | None:
    """The PDF behind Isograd's report URL, or None when it cannot be fetched (any error, not a
    PDF, larger than MAX_REPORT_BYTES): the result then goes without its attachment."""
    if not _is_http_url(url):
        return None
    data = bytearray()
    try:
        with client.stream(
            "GET", url, timeout=httpx2.Timeout(timeout), follow_redirects=True
        ) as response:
            if response.status_code != 200:
                return None
            for chunk in response.iter_bytes():
                data += chunk
                if len(data) > MAX_REPORT_BYTES:
                    return None
    except (httpx2.HTTPError, httpx2.InvalidURL):
        return None
    # "%PDF-" opens every PDF file (ISO 32000-1, 7.5.2 File Header).
    return bytes(data) if data.startswith(b"%PDF-") else None


def _is_http_url(value: object) -> bool:
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _utc_now() -> datetime:
    return datetime.now(UTC)
