"""The LTI 1.1 sink: the replaceResult envelope, its oauthlib signature, what answers mean."""

from __future__ import annotations

import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import httpx2
import pytest
from structlog.testing import capture_logs

from tests.vendors.events import EMAIL, completed_event
from tests.vendors.lti11 import NS, FakeLti11Consumer
from worker.errors import ConfigurationError
from worker.sinks.base import AttemptOutcome
from worker.sinks.lti11 import Lti11Sink, Lti11Target, code_major, format_score
from worker.sinks.registry import make_sink
from worker.subscriptions import parse_subscriptions

NOW = datetime(2026, 11, 27, 10, 16, tzinfo=UTC)
SECRET = "lti-shared-secret-0123456789"
OUTCOMES = "https://lms.example.com/mod/lti/service.php"
CONFIG = """
[[subscriptions]]
name = "moodle"
kind = "lti11"
consumer_key = "isograd-tool"
shared_secret = "env:LTI_SECRET"
"""
ROUTED = {"lti": {"lis_outcome_service_url": OUTCOMES, "lis_result_sourcedid": "src-7"}}


@pytest.fixture
def consumer() -> FakeLti11Consumer:
    return FakeLti11Consumer("isograd-tool", SECRET, frozenset({"src-7"}))


@pytest.fixture
def sink(consumer: FakeLti11Consumer) -> Iterator[Lti11Sink]:
    [subscription] = parse_subscriptions(tomllib.loads(CONFIG), {"LTI_SECRET": SECRET})
    with httpx2.Client(transport=httpx2.MockTransport(consumer.handle)) as client:
        made = make_sink(subscription, client)
        assert isinstance(made, Lti11Sink)
        yield made


@contextmanager
def answering(status: int, body: str = "", **headers: str) -> Iterator[Lti11Sink]:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(status, text=body, headers=headers)

    with httpx2.Client(transport=httpx2.MockTransport(handler)) as client:
        yield Lti11Sink(Lti11Target("k", SECRET), client=client, timeout=5, name="lms")


def pox_answer(major: str, description: str = "") -> str:
    return (
        f'<imsx_POXEnvelopeResponse xmlns="{NS}"><imsx_POXHeader><imsx_POXResponseHeaderInfo>'
        f"<imsx_statusInfo><imsx_codeMajor>{major}</imsx_codeMajor>"
        f"<imsx_description>{description}</imsx_description></imsx_statusInfo>"
        "</imsx_POXResponseHeaderInfo></imsx_POXHeader></imsx_POXEnvelopeResponse>"
    )


def test_the_subscription_needs_a_key_and_a_secret() -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_subscriptions(tomllib.loads('[[subscriptions]]\nname = "x"\nkind = "lti11"'), {})

    assert caught.value.problems == [
        "relay.toml: subscriptions[0].consumer_key: is required",
        "relay.toml: subscriptions[0].shared_secret: is required",
    ]


def test_the_grade_reaches_the_consumer_signed_and_is_delivered(
    sink: Lti11Sink, consumer: FakeLti11Consumer
) -> None:
    result = sink.send(completed_event(ROUTED), attempt_at=NOW)

    assert (result.outcome, result.status_code, result.error) == (
        AttemptOutcome.DELIVERED,
        200,
        None,
    )
    assert [(g.sourcedid, g.text) for g in consumer.received()] == [("src-7", "0.815")]


def test_each_attempt_has_a_new_nonce_so_a_retry_is_not_a_replay(
    sink: Lti11Sink, consumer: FakeLti11Consumer
) -> None:
    first = sink.send(completed_event(ROUTED), attempt_at=NOW)
    second = sink.send(completed_event(ROUTED), attempt_at=NOW)

    assert (first.outcome, second.outcome) == (AttemptOutcome.DELIVERED,) * 2
    assert len(consumer.received()) == 2


def test_the_envelope_is_a_replace_result_request_with_the_lti_outcome() -> None:
    sent: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        sent.append(request)
        return httpx2.Response(200, text=pox_answer("success"))

    grade = {"gra_typ_id": 15, "value": 64, "max": 100, "normalized": 0.64, "lti_outcome": 0.064}
    with httpx2.Client(transport=httpx2.MockTransport(handler)) as client:
        Lti11Sink(Lti11Target("k", SECRET), client=client, timeout=5, name="lms").send(
            completed_event(ROUTED, grade=grade), attempt_at=NOW
        )

    [request] = sent
    root = ET.fromstring(request.content)  # noqa: S314 - our own sink's output
    assert root.tag == f"{{{NS}}}imsx_POXEnvelopeRequest"
    assert root.findtext(f".//{{{NS}}}imsx_version") == "V1.0"
    assert root.findtext(f".//{{{NS}}}replaceResultRequest//{{{NS}}}sourcedId") == "src-7"
    assert root.findtext(f".//{{{NS}}}resultScore/{{{NS}}}textString") == "0.064"
    assert request.headers["content-type"] == "application/xml"
    assert 'oauth_signature_method="HMAC-SHA1"' in request.headers["authorization"]
    assert "oauth_body_hash=" in request.headers["authorization"]


@pytest.mark.parametrize(
    ("score", "text"), [(0.0, "0.0"), (1.0, "1.0"), (0.4, "0.4"), (0.00005, "0.00005"), (2, "1.0")]
)
def test_scores_are_written_as_plain_decimals_in_0_1(score: float, text: str) -> None:
    assert format_score(score) == text


def test_a_wrong_secret_is_a_permanent_401(consumer: FakeLti11Consumer) -> None:
    with httpx2.Client(transport=httpx2.MockTransport(consumer.handle)) as client:
        wrong = Lti11Sink(Lti11Target("isograd-tool", "nope"), client=client, timeout=5, name="x")
        result = wrong.send(completed_event(ROUTED), attempt_at=NOW)

    assert (result.outcome, result.status_code) == (AttemptOutcome.FAILED, 401)
    assert consumer.received() == []


def test_an_unknown_sourcedid_is_a_permanent_failure_with_the_consumers_description(
    sink: Lti11Sink,
) -> None:
    routed = {"lti": {**ROUTED["lti"], "lis_result_sourcedid": "src-gone"}}

    result = sink.send(completed_event(routed), attempt_at=NOW)

    assert (result.outcome, result.status_code) == (AttemptOutcome.FAILED, 200)
    assert result.error == "imsx_codeMajor failure: unknown sourcedId"


@pytest.mark.parametrize(
    ("major", "outcome", "error"),
    [
        ("success", AttemptOutcome.DELIVERED, None),
        ("unsupported", AttemptOutcome.FAILED, "imsx_codeMajor unsupported: not here"),
        ("failure", AttemptOutcome.FAILED, "imsx_codeMajor failure: not here"),
        ("processing", AttemptOutcome.RETRY, "imsx_codeMajor processing: not here"),
    ],
)
def test_each_code_major_has_its_outcome(
    major: str, outcome: AttemptOutcome, error: str | None
) -> None:
    with answering(200, pox_answer(major, "not here")) as sink:
        result = sink.send(completed_event(ROUTED), attempt_at=NOW)

    assert (result.outcome, result.error) == (outcome, error)


@pytest.mark.parametrize(
    ("status", "body", "outcome"),
    [
        (200, "<html>ok</html>", AttemptOutcome.FAILED),
        (200, "not xml at all", AttemptOutcome.FAILED),
        (401, "", AttemptOutcome.FAILED),
        (500, "", AttemptOutcome.RETRY),
        (503, "", AttemptOutcome.RETRY),
        (302, "", AttemptOutcome.FAILED),
    ],
)
def test_http_statuses_follow_design_3_4_and_a_2xx_must_be_a_pox_response(
    status: int, body: str, outcome: AttemptOutcome
) -> None:
    with answering(status, body, **{"retry-after": "9"}) as sink:
        result = sink.send(completed_event(ROUTED), attempt_at=NOW)

    assert (result.outcome, result.status_code) == (outcome, status)
    if outcome is AttemptOutcome.RETRY:
        assert result.retry_after == 9.0
    if status == 200:
        assert result.error == "the answer is not an imsx_POXEnvelopeResponse"


@pytest.mark.parametrize(
    ("context", "grade", "error"),
    [
        ({}, None, "context.lti is missing"),
        ({"lti": "x"}, None, "context.lti must be an object"),
        ({"lti": {"lis_result_sourcedid": "s"}}, None, "context.lti.lis_outcome_service_url is"),
        (
            {"lti": {"lis_outcome_service_url": "ftp://x", "lis_result_sourcedid": "s"}},
            None,
            "context.lti.lis_outcome_service_url must be an http(s) URL",
        ),
        (
            {"lti": {"lis_outcome_service_url": OUTCOMES}},
            None,
            "context.lti.lis_result_sourcedid is missing",
        ),
        (ROUTED, {"gra_typ_id": 99, "value": 3, "lti_outcome": None}, "grade.lti_outcome"),
    ],
    ids=["no-lti", "not-object", "no-url", "bad-url", "no-sourcedid", "no-outcome"],
)
def test_missing_routing_data_or_outcome_fails_naming_it_and_sends_nothing(
    sink: Lti11Sink,
    consumer: FakeLti11Consumer,
    context: dict[str, Any],
    grade: dict[str, Any] | None,
    error: str,
) -> None:
    result = sink.send(completed_event(context, grade=grade), attempt_at=NOW)

    assert (result.outcome, result.status_code) == (AttemptOutcome.FAILED, None)
    assert result.error is not None
    assert error in result.error
    assert consumer.received() == []
    assert consumer.refusals == []


def test_code_major_reads_only_pox_responses() -> None:
    assert code_major(pox_answer("success", "fine")) == ("success", "fine")
    assert code_major(pox_answer("failure")) == ("failure", None)
    assert code_major("<imsx_POXEnvelopeResponse/>") is None
    assert code_major("") is None


def test_the_secret_and_email_never_appear_in_logs_or_errors(sink: Lti11Sink) -> None:
    with capture_logs() as logs:
        results = [sink.send(completed_event(c), attempt_at=NOW) for c in (ROUTED, {})]

    text = repr(logs) + repr(results) + repr(sink)
    assert SECRET not in text
    assert EMAIL not in text


def test_a_naive_attempt_time_is_refused(sink: Lti11Sink) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        sink.send(completed_event(ROUTED), attempt_at=datetime(2026, 11, 27))
