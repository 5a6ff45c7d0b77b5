"""The Teamtailor sink: an Isograd result written back to the candidate's partner result.

Teamtailor's Partner API (https://partner.teamtailor.com, source: github.com/Teamtailor/
tt-partner-docs). A recruiter orders a test by a trigger; Teamtailor POSTs a partner event to our
webhook (webhooks/integrations/teamtailor.py), which creates the invitation with
`context.teamtailor = {partner_result_id, update_url, subscription}`. On completion this sink
PUTs the partner result: `status = "completed"`, `assessment.score` (integer 0-100, from the
grade's percent) and `duration` (seconds), `summary`, `url` (the PDF report) and `details`.

    [[subscriptions]]
    name = "teamtailor"
    kind = "teamtailor"
    api_key = "env:TEAMTAILOR_API_KEY"            # Partner API key (Integrations hub)
    provider_key = "env:TEAMTAILOR_PROVIDER_KEY"  # the bearer Teamtailor sends our webhook
    signature_key = "env:TEAMTAILOR_SIGNATURE_KEY"  # optional: Teamtailor-Signature secret
    tst_frm_id = 101                              # the test, or a webhook-data field:
    test_field = "test"                           #   its value is the tst_frm_id, or a key of
    tests = { excel = 101, word = 102 }           #   this table
    send_email = true                             # Isograd's registration email (act 42)
    mail_template_id = 7                          # required when send_email is true
    base_url = "https://api.teamtailor.com"       # api.na.teamtailor.com on the NA stack
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import httpx2
import structlog

from worker import __version__
from worker.sinks.base import AttemptResult, EventEnvelope
from worker.sinks.options import SinkOptions
from worker.sinks.vendor_api import VendorRequest, call_vendor, decode_json, failed, with_error

if TYPE_CHECKING:
    from worker.sinks.registry import SinkContext

log = structlog.get_logger(__name__)

KIND = "teamtailor"
DEFAULT_BASE_URL = "https://api.teamtailor.com"
# tt-partner-docs config.rb: `config[:api_version] = "20180828"`; "The X-Api-Version header is
# required when making requests to the API" (source/includes/partners/_versioning.md.erb).
API_VERSION = "20180828"
# JSON:API media type, as in the partner-results examples (partner_results/_update.md.erb).
MEDIA_TYPE = "application/vnd.api+json"
RESULTS_PATH = "/partner/v1/partner-results/"
USER_AGENT = f"isograd-relay/{__version__} (teamtailor)"
# partner_results/_update.md.erb: status must be one of these.
STATUSES = ("sending", "sent", "pending", "completed", "failed")
# "details ... Must be valid JSON with a maximum depth of 2."
MAX_DETAILS_DEPTH = 2

KEYS = frozenset(
    {
        "api_key",
        "base_url",
        "provider_key",
        "signature_key",
        "tst_frm_id",
        "test_field",
        "tests",
        "send_email",
        "mail_template_id",
    }
)


@dataclass(frozen=True, slots=True)
class TeamtailorTarget:
    """A Teamtailor subscription's settings; secrets are kept out of repr."""

    api_key: str = field(repr=False)
    provider_key: str = field(repr=False)
    signature_key: str | None = field(default=None, repr=False)
    base_url: str = DEFAULT_BASE_URL
    tst_frm_id: int | None = None
    test_field: str | None = None
    tests: tuple[tuple[str, int], ...] = ()
    send_email: bool = True
    mail_template_id: int | None = None

    def describe(self) -> str:
        return urlsplit(self.base_url).hostname or ""

    def secret_values(self) -> tuple[str, ...]:
        return tuple(v for v in (self.api_key, self.provider_key, self.signature_key) if v)

    def choose_test(self, webhook_data: Mapping[str, Any]) -> int:
        """The tst_frm_id a partner event orders; ValueError (a message for the recruiter) if none.

        Teamtailor sends the trigger's picked options as `webhook-data`, with `_` in field ids
        serialised as `-` (partners/webhook_config/_index.md.erb, "Serialization").
        """
        if self.test_field is not None:
            name = self.test_field
            value = webhook_data.get(name, webhook_data.get(name.replace("_", "-")))
            if value is not None and str(value).strip():
                chosen = str(value).strip()
                mapping = dict(self.tests)
                if mapping:
                    if chosen not in mapping:
                        raise ValueError(f"unknown test {chosen!r} in webhook-data {name!r}")
                    return mapping[chosen]
                if chosen.isdigit() and int(chosen) > 0:
                    return int(chosen)
                raise ValueError(f"webhook-data {name!r} must be an Isograd tst_frm_id")
        if self.tst_frm_id is not None:
            return self.tst_frm_id
        raise ValueError(f"webhook-data has no {self.test_field!r}: no test to send")

    def result_url(self, partner_result_id: str, update_url: str | None) -> str:
        """Where a partner result is updated: the event's update-url when it is on our base
        URL's origin (the API key is never sent elsewhere), else built from its id."""
        base = urlsplit(self.base_url)
        if update_url:
            given = urlsplit(update_url)
            if (given.scheme, given.netloc) == (base.scheme, base.netloc) and given.path.startswith(
                RESULTS_PATH
            ):
                return update_url
        return self.base_url.rstrip("/") + RESULTS_PATH + quote(partner_result_id, safe="")


def parse_target(options: SinkOptions) -> TeamtailorTarget | None:
    before = len(options.problems.found)
    api_key = options.secret("api_key")
    provider_key = options.secret("provider_key")
    signature_key = options.secret("signature_key") if "signature_key" in options else None
    base_url = options.url("base_url", default=DEFAULT_BASE_URL)
    tst_frm_id = options.integer("tst_frm_id", minimum=1) if "tst_frm_id" in options else None
    test_field = options.text("test_field") if "test_field" in options else None
    tests = _tests(options)
    if tests and test_field is None:
        options.problem("tests", "needs test_field (the webhook-data field whose value it maps)")
    if "tst_frm_id" not in options and "test_field" not in options:
        options.problem(None, "needs tst_frm_id or test_field (which test to send)")
    send_email = options.flag("send_email", default=True)
    mail_template_id = None
    if "mail_template_id" in options or send_email:
        mail_template_id = options.integer("mail_template_id", minimum=1)
    if (
        len(options.problems.found) > before
        or api_key is None
        or provider_key is None
        or base_url is None
        or send_email is None
    ):
        return None
    return TeamtailorTarget(
        api_key=api_key,
        provider_key=provider_key,
        signature_key=signature_key,
        base_url=base_url,
        tst_frm_id=tst_frm_id,
        test_field=test_field,
        tests=tests,
        send_email=send_email,
        mail_template_id=mail_template_id,
    )


def _tests(options: SinkOptions) -> tuple[tuple[str, int], ...]:
    table = options.subtable("tests")
    if table is None:
        return ()
    found = []
    for key, value in table.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            options.problem(f"tests.{key}", "must be a tst_frm_id (a positive integer)")
            continue
        found.append((str(key), value))
    return tuple(found)


def build_sink(target: TeamtailorTarget, context: SinkContext) -> TeamtailorSink:
    return TeamtailorSink(target, client=context.http, timeout=context.timeout, name=context.name)


class PartnerResults:
    """Updates partner results with a subscription's API key (one request per call)."""

    def __init__(self, target: TeamtailorTarget, *, client: httpx2.Client, timeout: float) -> None:
        self.target = target
        self._client = client
        self._timeout = timeout

    def update(
        self,
        partner_result_id: str,
        attributes: Mapping[str, Any],
        *,
        update_url: str | None = None,
        attempt_at: datetime,
    ) -> AttemptResult:
        """PUT the attributes (JSON:API document); a refusal's JSON:API errors become `error`."""
        document = {
            "data": {"type": "partner-results", "id": partner_result_id, "attributes": attributes}
        }
        request = VendorRequest(
            "PUT",
            self.target.result_url(partner_result_id, update_url),
            {
                # The partner-results examples authenticate with "Authorization: Bearer <key>"
                # (partner_results/_update.md.erb; the older _auth page shows "Token").
                "authorization": f"Bearer {self.target.api_key}",
                "x-api-version": API_VERSION,
                "accept": MEDIA_TYPE,
                "user-agent": USER_AGENT,
            },
            document,
            content_type=MEDIA_TYPE,
            secrets=self.target.secret_values(),
        )
        result = call_vendor(self._client, request, timeout=self._timeout, attempt_at=attempt_at)
        if result.status_code is not None and result.status_code >= 400:
            result = with_error(result, _errors_text(result.status_code, result.response_body))
        return result


def _errors_text(status: int, body: str) -> str:
    """A JSON:API error document ({"errors": [{"detail", "source": {"pointer"}}]}) in one line."""
    document = decode_json(body)
    errors = document.get("errors") if isinstance(document, dict) else None
    if not isinstance(errors, list) or not errors:
        return f"Teamtailor answered {status}"
    parts = []
    for error in errors[:5]:
        if not isinstance(error, dict):
            continue
        source = error.get("source")
        pointer = source.get("pointer") if isinstance(source, dict) else None
        detail = error.get("detail") or error.get("title") or "invalid"
        parts.append(f"{pointer}: {detail}" if pointer else str(detail))
    return f"Teamtailor answered {status}: " + "; ".join(parts)


class TeamtailorSink:
    """PUTs the completed result to the partner result named in the event's context."""

    kind = KIND

    def __init__(
        self, target: TeamtailorTarget, *, client: httpx2.Client, timeout: float, name: str
    ) -> None:
        self.name = name
        self.results = PartnerResults(target, client=client, timeout=timeout)

    def __repr__(self) -> str:  # never show the keys
        return f"TeamtailorSink(name={self.name!r})"

    def send(self, envelope: EventEnvelope, *, attempt_at: datetime) -> AttemptResult:
        routing = routing_of(envelope.data, self.name)
        if isinstance(routing, str):
            return failed(routing)
        partner_result_id, update_url = routing
        result = self.results.update(
            partner_result_id,
            completed_attributes(envelope.data),
            update_url=update_url,
            attempt_at=attempt_at,
        )
        log.debug(
            "teamtailor_attempt",
            sink=self.name,
            event_id=envelope.event_id,
            outcome=str(result.outcome),
            status_code=result.status_code,
        )
        return result


def routing_of(data: Mapping[str, Any], subscription: str) -> tuple[str, str | None] | str:
    """(partner_result_id, update_url) from `data.context.teamtailor`, or why it is unusable."""
    context = data.get("context")
    routing = context.get("teamtailor") if isinstance(context, Mapping) else None
    if not isinstance(routing, Mapping):
        return "context.teamtailor is missing: the invitation was not ordered from Teamtailor"
    partner_result_id = routing.get("partner_result_id")
    if not isinstance(partner_result_id, str) or not partner_result_id:
        return "context.teamtailor.partner_result_id is missing"
    ordered_by = routing.get("subscription")
    if ordered_by is not None and ordered_by != subscription:
        return f"context.teamtailor: ordered through subscription {ordered_by!r}, not this one"
    update_url = routing.get("update_url")
    return partner_result_id, update_url if isinstance(update_url, str) else None


def routes_to(subscription: str, context: Mapping[str, Any]) -> bool:
    """True when the invitation was ordered from Teamtailor through `subscription`."""
    return not isinstance(routing_of({"context": context}, subscription), str)


def completed_attributes(data: Mapping[str, Any]) -> dict[str, Any]:
    """The partner result's attributes for a completed assessment.completed event.

    Within Teamtailor's validation rules (partner_results/_update.md.erb): score an integer
    between 0 and 100, duration in seconds, url HTTP(S), details at most two levels deep. The
    grade (top_fit, ...) is left out: it needs a threshold only the recruiter knows.
    """
    grade = _mapping(data.get("grade"))
    test = _mapping(data.get("test"))
    text = grade.get("text")
    assessment: dict[str, Any] = {}
    percent = grade.get("percent")
    if isinstance(percent, int | float) and math.isfinite(percent):
        assessment["score"] = min(100, max(0, round(percent)))
    duration = data.get("duration_seconds")
    if isinstance(duration, int | float) and math.isfinite(duration) and duration >= 0:
        assessment["duration"] = round(duration)
    attributes: dict[str, Any] = {
        "status": "completed",
        "summary": f"{_test_name(test)}: {text or 'completed'}",
        "details": _details(grade, data.get("skills")),
    }
    if assessment:
        attributes["assessment"] = assessment
    report = data.get("report")
    pdf_url = report.get("pdf_url") if isinstance(report, Mapping) else None
    if isinstance(pdf_url, str) and urlsplit(pdf_url).scheme in ("http", "https"):
        attributes["url"] = pdf_url
    return attributes


def _test_name(test: Mapping[str, Any]) -> str:
    # `test.name` is Isograd's name of the test when the event carries it.
    name = test.get("name")
    return str(name) if name else f"Isograd test {test.get('tst_frm_id')}"


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _details(grade: Mapping[str, Any], skills: object) -> dict[str, Any]:
    """{"Grade": text, "Skills": {description: result}}: two levels, strings only."""
    details: dict[str, Any] = {}
    if grade.get("text"):
        details["Grade"] = str(grade["text"])
    by_skill: dict[str, str] = {}
    for skill in skills if isinstance(skills, list) else []:
        if not isinstance(skill, Mapping):
            continue
        label = str(skill.get("description") or skill.get("id") or "skill")
        if label in by_skill:
            label = f"{label} ({skill.get('id')})"
        by_skill[label] = _skill_result(skill)
    if by_skill:
        details["Skills"] = by_skill
    return details


def _skill_result(skill: Mapping[str, Any]) -> str:
    # Isograd's act 5: -1 means "not tested on this skill" (isograd-api.txt, results details).
    level, rate = skill.get("level"), skill.get("success_rate")
    if isinstance(level, int | float) and level >= 0:
        scale = skill.get("scale_max")
        text = f"{level:g}/{scale:g}" if isinstance(scale, int | float) else f"{level:g}"
        described = skill.get("level_description")
        return f"{text} ({described})" if described else text
    if isinstance(rate, int | float) and rate >= 0:
        return f"{round(rate * 100)} %"
    return "not tested"


def sent_attributes(test_url: str | None) -> dict[str, Any]:
    """The partner result once the invitation exists: `sent`, with the test's URL."""
    attributes: dict[str, Any] = {"status": "sent"}
    if test_url:
        attributes["url"] = test_url
    return attributes
