"""A fake LTI 1.1 tool consumer (an LMS's Basic Outcomes service) that verifies like a real one.

It checks what an LMS checks on an outcome request (https://www.imsglobal.org/spec/lti-bo/v1p1/):

- the OAuth 1.0a signature, with oauthlib's SignatureOnlyEndpoint and a RequestValidator that
  knows the consumer key and secret and refuses a nonce seen before (replays) and stale
  timestamps (oauthlib's 600 s window) — 401 otherwise;
- `oauth_body_hash` recomputed over the raw body bytes (base64 SHA-1,
  https://tools.ietf.org/html/draft-eaton-oauth-bodyhash-00) — 401 if it differs or is absent;
- an `application/xml` POX envelope (415 otherwise); a `replaceResultRequest` for a known
  sourcedId with a score in [0.0, 1.0] is stored and answered `success`; an unknown sourcedId
  or a bad score is answered `failure`, any other operation `unsupported` (all HTTP 200, as
  the spec's POX responses are).
"""

from __future__ import annotations

import base64
import hashlib
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape

import httpx2
from oauthlib.oauth1 import RequestValidator, SignatureOnlyEndpoint

NS = "http://www.imsglobal.org/services/ltiv1p1/xsd/imsoms_v1p0"


@dataclass(frozen=True)
class Grade:
    sourcedid: str
    score: float
    text: str  # the textString as sent


class _Validator(RequestValidator):  # type: ignore[misc]
    """What the consumer knows: one key and secret, and every nonce already used."""

    def __init__(self, consumer_key: str, shared_secret: str) -> None:
        super().__init__()
        self.consumer_key = consumer_key
        self.shared_secret = shared_secret
        self.nonces: set[tuple[str, str, str]] = set()

    @property
    def enforce_ssl(self) -> bool:
        return False  # the tests serve plain HTTP on 127.0.0.1

    @property
    def dummy_client(self) -> str:
        return "dummy-client"

    def check_client_key(self, client_key: str) -> bool:
        return bool(client_key)  # LMSs accept any consumer key they issued, of any length

    def validate_client_key(self, client_key: str, request: Any) -> bool:
        return client_key == self.consumer_key

    def get_client_secret(self, client_key: str, request: Any) -> str:
        return self.shared_secret if client_key == self.consumer_key else "dummy-secret"

    def validate_timestamp_and_nonce(
        self, client_key: str, timestamp: str, nonce: str, request: Any, **kwargs: Any
    ) -> bool:
        seen = (client_key, timestamp, nonce)
        if seen in self.nonces:
            return False
        self.nonces.add(seen)
        return True


@dataclass
class FakeLti11Consumer:
    consumer_key: str
    shared_secret: str
    sourcedids: frozenset[str]
    grades: list[Grade] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._validator = _Validator(self.consumer_key, self.shared_secret)
        self._endpoint = SignatureOnlyEndpoint(self._validator)

    def received(self) -> list[Grade]:
        with self._lock:
            return list(self.grades)

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        with self._lock:
            return self._handle(request)

    def _handle(self, request: httpx2.Request) -> httpx2.Response:
        if request.method != "POST":
            return self._refuse(405, "only POST")
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/xml":
            return self._refuse(415, "not application/xml")
        raw = request.content
        headers = {"Authorization": request.headers.get("authorization", "")}
        valid, oauth = self._endpoint.validate_request(
            str(request.url), "POST", raw.decode("utf-8"), headers
        )
        if not valid or oauth is None:
            return self._refuse(401, "bad OAuth signature, key, timestamp or replayed nonce")
        sent_hash = dict(oauth.params).get("oauth_body_hash")
        expected = base64.b64encode(hashlib.sha1(raw).digest()).decode()  # noqa: S324 - the spec's hash
        if sent_hash != expected:
            return self._refuse(401, "oauth_body_hash does not match the body")
        return self._outcome(raw)

    def _outcome(self, raw: bytes) -> httpx2.Response:
        try:
            root = ET.fromstring(raw)  # noqa: S314 - test fake, our own sink's XML
        except ET.ParseError:
            return _pox("failure", "malformed XML", "?")
        message_id = root.findtext(f".//{{{NS}}}imsx_messageIdentifier") or "?"
        if root.tag != f"{{{NS}}}imsx_POXEnvelopeRequest":
            return _pox("failure", "not an imsx_POXEnvelopeRequest", message_id)
        operation = root.find(f"{{{NS}}}imsx_POXBody/*")
        if operation is None or operation.tag != f"{{{NS}}}replaceResultRequest":
            name = "none" if operation is None else operation.tag.split("}")[-1]
            return _pox("unsupported", f"{name} is not supported", message_id)
        sourcedid = operation.findtext(f".//{{{NS}}}sourcedGUID/{{{NS}}}sourcedId")
        text = operation.findtext(f".//{{{NS}}}resultScore/{{{NS}}}textString")
        if sourcedid not in self.sourcedids:
            return _pox("failure", "unknown sourcedId", message_id)
        try:
            score = float(text or "")
        except ValueError:
            return _pox("failure", "textString is not a number", message_id)
        if not 0.0 <= score <= 1.0:
            return _pox("failure", "score must be between 0.0 and 1.0", message_id)
        self.grades.append(Grade(sourcedid or "", score, text or ""))
        return _pox("success", f"score of {sourcedid} is now {text}", message_id)

    def _refuse(self, status: int, reason: str) -> httpx2.Response:
        self.refusals.append(reason)
        return httpx2.Response(status, text=reason)


def _pox(major: str, description: str, message_id: str) -> httpx2.Response:
    description, message_id = escape(description), escape(message_id)
    body = f"""<?xml version="1.0" encoding="UTF-8"?>
<imsx_POXEnvelopeResponse xmlns="{NS}">
  <imsx_POXHeader><imsx_POXResponseHeaderInfo>
    <imsx_version>V1.0</imsx_version><imsx_messageIdentifier>r-{message_id}</imsx_messageIdentifier>
    <imsx_statusInfo>
      <imsx_codeMajor>{major}</imsx_codeMajor><imsx_severity>status</imsx_severity>
      <imsx_description>{description}</imsx_description>
      <imsx_messageRefIdentifier>{message_id}</imsx_messageRefIdentifier>
    </imsx_statusInfo>
  </imsx_POXResponseHeaderInfo></imsx_POXHeader>
  <imsx_POXBody><replaceResultResponse/></imsx_POXBody>
</imsx_POXEnvelopeResponse>"""
    return httpx2.Response(200, content=body.encode(), headers={"content-type": "application/xml"})
