"""The LTI 1.1 sink: the grade to the LMS gradebook with Basic Outcomes' replaceResult.

IMS LTI Basic Outcomes 1.1 (https://www.imsglobal.org/spec/lti-bo/v1p1/): the tool POSTs a POX
envelope (`imsx_POXEnvelopeRequest` with a `replaceResultRequest` holding the launch's
`lis_result_sourcedid` and a score in [0, 1] as `textString`) to the launch's
`lis_outcome_service_url`, signed with OAuth 1.0a HMAC-SHA1 and an `oauth_body_hash` of the body
(https://tools.ietf.org/html/draft-eaton-oauth-bodyhash-00). The consumer answers an
`imsx_POXEnvelopeResponse` whose `imsx_codeMajor` says whether the grade was stored.

The score is the event's `grade.lti_outcome`: Isograd's own LTI conversion (isograd-api.txt, last
section; worker.grades.lti_outcome), so the LMS gets what Isograd's LTI service would send.
"""

from __future__ import annotations

import math
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import httpx2
import structlog
from oauthlib.oauth1 import SIGNATURE_HMAC_SHA1, SIGNATURE_TYPE_AUTH_HEADER, Client

from worker import __version__
from worker.sinks.base import AttemptOutcome, AttemptResult, EventEnvelope
from worker.sinks.http_attempt import classify_status, perform_attempt
from worker.sinks.options import SinkOptions
from worker.sinks.routing import (
    MissingRoutingError,
    context_table,
    not_sent,
    text_field,
    url_field,
)

if TYPE_CHECKING:
    from worker.sinks.registry import SinkContext

log = structlog.get_logger(__name__)

USER_AGENT = f"isograd-relay/{__version__} (lti11)"
POX_NAMESPACE = "http://www.imsglobal.org/services/ltiv1p1/xsd/imsoms_v1p0"
CONTENT_TYPE = "application/xml"
CONTEXT_KEY = "lti"
OUTCOME_URL_KEY = "lis_outcome_service_url"
SOURCEDID_KEY = "lis_result_sourcedid"

KEYS = frozenset({"consumer_key", "shared_secret"})


@dataclass(frozen=True, slots=True)
class Lti11Target:
    """An LTI 1.1 subscription's settings: the OAuth consumer key and shared secret."""

    consumer_key: str
    shared_secret: str = field(repr=False)

    def describe(self) -> str:
        # The outcome service URL comes with each event (context.lti): there is no fixed host.
        return "LTI 1.1 outcome service (per launch)"

    def secret_values(self) -> tuple[str, ...]:
        return (self.shared_secret,)


def parse_target(options: SinkOptions) -> Lti11Target | None:
    consumer_key = options.text("consumer_key")
    shared_secret = options.secret("shared_secret")
    if consumer_key is None or shared_secret is None:
        return None
    return Lti11Target(consumer_key, shared_secret)


def build_sink(target: Lti11Target, context: SinkContext) -> Lti11Sink:
    return Lti11Sink(target, client=context.http, timeout=context.timeout, name=context.name)


class Lti11Sink:
    """Replaces the candidate's result in the LMS (safe to repeat: replaceResult overwrites).

    HTTP statuses as for webhooks (401 and other 4xx permanent, 408/429/5xx retried); a 2xx
    is only delivered when its `imsx_codeMajor` is `success` (see classify_answer), and the
    consumer's `imsx_description` is recorded otherwise.
    """

    kind = "lti11"

    def __init__(
        self, target: Lti11Target, *, client: httpx2.Client, timeout: float, name: str
    ) -> None:
        self.target = target
        self.name = name
        self.timeout = timeout
        self._client = client

    def __repr__(self) -> str:  # never show the secret
        return f"Lti11Sink(name={self.name!r})"

    def send(self, envelope: EventEnvelope, *, attempt_at: datetime) -> AttemptResult:
        """One attempt (aware `attempt_at`; ValueError for a naive one, as every sink)."""
        if attempt_at.tzinfo is None:
            raise ValueError("attempt_at must be timezone-aware")
        try:
            routing = context_table(envelope, CONTEXT_KEY)
            where = f"context.{CONTEXT_KEY}"
            url = url_field(routing, OUTCOME_URL_KEY, where=where)
            sourcedid = text_field(routing, SOURCEDID_KEY, where=where)
        except MissingRoutingError as exc:
            return self._logged(envelope, not_sent(str(exc)))
        score = _lti_outcome(envelope.data.get("grade"))
        if score is None:
            return self._logged(
                envelope, not_sent("grade.lti_outcome is missing (an unknown grade type?)")
            )
        body = replace_result_request(sourcedid, score, message_id=uuid.uuid4().hex)
        try:
            headers = self.signed_headers(url, body)
        except ValueError as exc:  # oauthlib refuses URIs it cannot sign
            return self._logged(envelope, not_sent(f"cannot sign the request ({exc})"))
        result = perform_attempt(
            self._client,
            "POST",
            url,
            content=body.encode("utf-8"),
            headers=headers,
            timeout=self.timeout,
            attempt_at=attempt_at,
            classify=classify_answer,
            explain=explain_answer,
            redact=(sourcedid, self.target.shared_secret),
        )
        return self._logged(envelope, result)

    def signed_headers(self, url: str, body: str) -> dict[str, str]:
        """The request's headers, Authorization being oauthlib's OAuth 1.0a signature.

        oauthlib adds `oauth_body_hash` (base64 SHA-1 of the UTF-8 body) because the content
        type is not form-encoded, and signs it with the other oauth_* parameters.
        """
        client = Client(
            self.target.consumer_key,
            client_secret=self.target.shared_secret,
            signature_method=SIGNATURE_HMAC_SHA1,
            signature_type=SIGNATURE_TYPE_AUTH_HEADER,
        )
        _, headers, _ = client.sign(
            url, http_method="POST", body=body, headers={"Content-Type": CONTENT_TYPE}
        )
        return {
            "authorization": str(headers["Authorization"]),
            "content-type": CONTENT_TYPE,
            "user-agent": USER_AGENT,
        }

    def _logged(self, envelope: EventEnvelope, result: AttemptResult) -> AttemptResult:
        log.debug(
            "lti11_attempt",
            sink=self.name,
            event_id=envelope.event_id,
            outcome=str(result.outcome),
            status_code=result.status_code,
        )
        return result


def classify_answer(status: int, body: str) -> AttemptOutcome:
    """HTTP statuses as for webhooks (classify_status); a 2xx is judged by its imsx_codeMajor.

    `success` is delivered, `processing` retried (the consumer has not stored it yet), anything
    else (`failure`, `unsupported`, or a 2xx that is no POX response) a permanent failure.
    """
    if not 200 <= status < 300:
        return classify_status(status)
    answer = code_major(body)
    major = None if answer is None else answer[0]
    if major == "success":
        return AttemptOutcome.DELIVERED
    return AttemptOutcome.RETRY if major == "processing" else AttemptOutcome.FAILED


def explain_answer(status: int, headers: httpx2.Headers, body: str) -> str | None:
    """The consumer's imsx_description of a 2xx that is not a success."""
    if not 200 <= status < 300:
        return None
    answer = code_major(body)
    if answer is None:
        return "the answer is not an imsx_POXEnvelopeResponse"
    major, description = answer
    if major == "success":
        return None
    return f"imsx_codeMajor {major}: {description or 'no description'}"


def replace_result_request(sourcedid: str, score: float, *, message_id: str) -> str:
    """The replaceResultRequest POX envelope (LTI Basic Outcomes 1.1 §6), as UTF-8 XML text."""

    def add(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
        element = ET.SubElement(parent, f"{{{POX_NAMESPACE}}}{tag}")
        element.text = text
        return element

    envelope = ET.Element(f"{{{POX_NAMESPACE}}}imsx_POXEnvelopeRequest")
    info = add(add(envelope, "imsx_POXHeader"), "imsx_POXRequestHeaderInfo")
    add(info, "imsx_version", "V1.0")
    add(info, "imsx_messageIdentifier", message_id)
    record = add(add(add(envelope, "imsx_POXBody"), "replaceResultRequest"), "resultRecord")
    add(add(record, "sourcedGUID"), "sourcedId", sourcedid)
    result_score = add(add(record, "result"), "resultScore")
    add(result_score, "language", "en")
    add(result_score, "textString", format_score(score))
    return ET.tostring(
        envelope, encoding="unicode", xml_declaration=True, default_namespace=POX_NAMESPACE
    )


def format_score(score: float) -> str:
    """A decimal in [0, 1] without exponent ("0.815", "0.0001", "1.0"): consumers parse floats."""
    text = f"{min(max(score, 0.0), 1.0):.10f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def code_major(body: str) -> tuple[str, str | None] | None:
    """(imsx_codeMajor, imsx_description) of a POX response, or None if the body is not one.

    The body is at most 20 kB (read bounded). ElementTree resolves no external entities, and the
    expat it uses (>= 2.4.1 in supported Pythons) limits entity expansion (billion laughs).
    """
    try:
        root = ET.fromstring(body)  # noqa: S314 - bounded input, see the docstring
    except ET.ParseError:
        return None
    if root.tag != f"{{{POX_NAMESPACE}}}imsx_POXEnvelopeResponse":
        return None
    major = root.find(f".//{{{POX_NAMESPACE}}}imsx_codeMajor")
    if major is None or not (major.text or "").strip():
        return None
    description = root.find(f".//{{{POX_NAMESPACE}}}imsx_description")
    text = None if description is None else (description.text or "").strip() or None
    return (major.text or "").strip(), text


def _lti_outcome(grade: Any) -> float | None:
    value = grade.get("lti_outcome") if isinstance(grade, Mapping) else None
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None
