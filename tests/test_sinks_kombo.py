"""The Kombo sink and API client: relay.toml keys, the order result, packages, open orders."""

from __future__ import annotations

import base64
import re
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from tests.vendors.kombo import FakeKombo, ScriptedAnswer
from worker.errors import ConfigurationError, SinkRejectedError, SinkUnavailableError
from worker.sinks.base import AttemptOutcome, EventEnvelope
from worker.sinks.kombo import KomboApi, KomboPackage, KomboSink, KomboTarget, result_body
from worker.sinks.registry import make_sink
from worker.subscriptions import Subscription, parse_subscriptions

API_KEY = "kombo-api-key-0123456789"
INTEGRATION = "workday:HWUTwvyx2wLoSUHphiWVrp28"
SECRET = "kombo-webhook-secret-0123456789"
NOW = datetime(2026, 11, 27, 10, 15, tzinfo=UTC)
PDF = b"%PDF-1.4\n%fake report\n"
TABLE: dict[str, Any] = {
    "name": "kombo",
    "kind": "kombo",
    "api_key": API_KEY,
    "integration_id": INTEGRATION,
    "webhook_secret": SECRET,
    "packages": [{"id": "tosa-excel", "tst_frm_id": 101, "name": "TOSA Excel"}],
    "mail_template_id": 7,
}


class HostRouter(httpx2.BaseTransport):
    """Sends each request to the in-process app of its host (Kombo's, the report server's)."""

    def __init__(self, routes: dict[str, httpx2.BaseTransport]) -> None:
        self.routes = routes

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        return self.routes[request.url.host].handle_request(request)


def report_app() -> Starlette:
    async def pdf(request: Any) -> Response:
        return Response(PDF, media_type="application/pdf")

    async def html(request: Any) -> Response:
        return Response(b"<html>login</html>", media_type="text/html")

    return Starlette(routes=[Route("/report.pdf", pdf), Route("/login", html)])


@pytest.fixture
def fake() -> FakeKombo:
    fake = FakeKombo(API_KEY, INTEGRATION, SECRET)
    fake.packages["tosa-excel"] = {"id": "tosa-excel"}
    return fake


@pytest.fixture
def http(fake: FakeKombo) -> Iterator[httpx2.Client]:
    with (
        TestClient(fake.app, base_url="http://kombo.test") as kombo,
        TestClient(report_app(), base_url="http://reports.test") as reports,
    ):
        router = HostRouter({"kombo.test": kombo._transport, "reports.test": reports._transport})
        client = httpx2.Client(transport=router)
        yield client
        client.close()


def target(**changes: Any) -> KomboTarget:
    settings: dict[str, Any] = {
        "api_key": API_KEY,
        "integration_id": INTEGRATION,
        "webhook_secret": SECRET,
        "packages": (KomboPackage("tosa-excel", 101, "TOSA Excel"),),
        "base_url": "http://kombo.test/v1",
    }
    return KomboTarget(**{**settings, **changes})


@pytest.fixture
def sink(http: httpx2.Client) -> KomboSink:
    return KomboSink(target(), client=http, timeout=5.0, name="kombo")


def event(order_id: str | None, **changes: Any) -> EventEnvelope:
    data: dict[str, Any] = {
        "test": {"tst_frm_id": 101, "pla_tst_id": 5000001, "status": "completed"},
        "grade": {"text": "720/1000", "value": 720, "max": 1000, "percent": 72.0},
        "skills": [
            {
                "id": "45",
                "description": "Formulas",
                "level": 3.9,
                "scale_max": 5,
                "success_rate": None,
            },
            {
                "id": "46",
                "description": "Charts",
                "level": -1,
                "scale_max": 5,
                "success_rate": None,
            },
            {
                "id": "47",
                "description": "Macros",
                "level": None,
                "scale_max": None,
                "success_rate": 0.625,
            },
        ],
        "report": {"pdf_url": "http://reports.test/report.pdf"},
        "context": {"kombo": {"order_id": order_id, "subscription": "kombo"}} if order_id else {},
    }
    data.update(changes)
    return EventEnvelope("evt_1", "assessment.completed", "2026-11-27T10:15:00Z", data)


def parse(**changes: Any) -> Subscription:
    table = {k: v for k, v in {**TABLE, **changes}.items() if v is not None}
    [subscription] = parse_subscriptions({"subscriptions": [table]}, {})
    return subscription


def problems(**changes: Any) -> str:
    with pytest.raises(ConfigurationError) as caught:
        parse(**changes)
    return "\n".join(caught.value.problems)


# relay.toml


def test_a_minimal_table_parses_with_the_documented_defaults() -> None:
    found = parse().target

    assert isinstance(found, KomboTarget)
    assert found.base_url == "https://api.kombo.dev/v1"
    assert found.packages == (KomboPackage("tosa-excel", 101, "TOSA Excel", "SKILLS_TEST", ""),)
    assert (found.poll_interval_seconds, found.requests_per_second) == (300.0, 2.0)
    assert set(found.secret_values()) == {API_KEY, SECRET}


def test_each_bad_package_and_missing_key_is_a_problem() -> None:
    text = problems(
        integration_id=None,
        webhook_secret=None,
        packages=[
            {"id": "a", "tst_frm_id": 0, "name": "A", "type": "EXAM"},
            {"id": "b", "tst_frm_id": 102, "name": "B", "colour": "red"},
            {"id": "b", "tst_frm_id": 103, "name": "B2"},
        ],
    )

    assert "integration_id: is required" in text
    assert "webhook_secret: is required" in text
    assert "packages[0].tst_frm_id" in text
    assert "packages[0].type: must be one of BEHAVIORAL" in text
    assert "packages[1].colour: is not a package key" in text
    assert "duplicate package id 'b'" in text


def test_packages_are_required() -> None:
    assert "packages: must be a non-empty list" in problems(packages=[])


# The order result


def test_the_result_body_follows_kombos_schema() -> None:
    body = result_body(event("o1").data, "2026-11-27T10:15:00Z", "https://app.isograd.com")

    assert body == {
        "status": "COMPLETED",
        "result_url": "http://reports.test/report.pdf",
        "completed_at": "2026-11-27T10:15:00.000Z",
        "score": 720,
        "max_score": 1000,
        "attributes": [
            {"type": "TEXT", "label": "Grade", "value": "720/1000"},
            {
                "type": "SUB_RESULT",
                "id": "45",
                "label": "Formulas",
                "score": {"value": 3.9, "max": 5},
                "status": "COMPLETED",
            },
            {
                "type": "SUB_RESULT",
                "id": "47",
                "label": "Macros",
                "score": {"value": 62.5, "max": 100},
                "status": "COMPLETED",
            },
        ],
    }


def test_without_a_pdf_the_result_url_is_the_fallback_and_times_are_utc() -> None:
    data = event("o1", report={"pdf_url": None}).data

    body = result_body(data, "2026-11-27T10:15:00+01:00", "https://app.isograd.com")

    assert body["result_url"] == "https://app.isograd.com"
    assert body["completed_at"] == "2026-11-27T09:15:00.000Z"


def test_the_result_is_put_with_the_pdf_attached(fake: FakeKombo, sink: KomboSink) -> None:
    order = fake.create_order("tosa-excel", email="a@example.org")

    result = sink.send(event(order["id"]), attempt_at=NOW)

    assert result.outcome is AttemptOutcome.DELIVERED, result
    [update] = fake.results_of(order["id"])
    assert update.headers["authorization"] == f"Bearer {API_KEY}"
    assert update.headers["x-integration-id"] == INTEGRATION
    [attachment] = update.body["attachments"]
    assert attachment["content_type"] == "application/pdf"
    assert base64.b64decode(attachment["data"]) == PDF
    assert fake.orders[order["id"]]["status"] == "COMPLETED"


@pytest.mark.parametrize("url", ["http://reports.test/missing.pdf", "http://reports.test/login"])
def test_a_report_that_cannot_be_fetched_as_a_pdf_is_left_out(
    fake: FakeKombo, sink: KomboSink, url: str
) -> None:
    order = fake.create_order("tosa-excel", email="a@example.org")

    result = sink.send(event(order["id"], report={"pdf_url": url}), attempt_at=NOW)

    assert result.outcome is AttemptOutcome.DELIVERED
    [update] = fake.results_of(order["id"])
    assert "attachments" not in update.body
    assert update.body["result_url"] == url


def test_an_order_no_longer_open_is_a_permanent_failure_with_kombos_message(
    fake: FakeKombo, sink: KomboSink
) -> None:
    order = fake.create_order("tosa-excel", email="a@example.org")
    fake.orders[order["id"]]["status"] = "CANCELLED"

    result = sink.send(event(order["id"]), attempt_at=NOW)

    assert (result.outcome, result.status_code) == (AttemptOutcome.FAILED, 409)
    assert result.error == "Kombo answered 409: the status can only be changed while it is OPEN"


@pytest.mark.parametrize(
    ("answer", "outcome", "retry_after"),
    [
        (
            ScriptedAnswer(
                429,
                {"Retry-After": "30"},
                '{"status":"error","error":{"code":"PLATFORM.RATE_LIMIT_EXCEEDED",'
                '"title":null,"message":"slow down","log_url":null}}',
            ),
            AttemptOutcome.RETRY,
            30.0,
        ),
        (ScriptedAnswer(503), AttemptOutcome.RETRY, None),
        (ScriptedAnswer(410), AttemptOutcome.FAILED, None),
    ],
)
def test_each_answer_is_classified(
    fake: FakeKombo,
    sink: KomboSink,
    answer: ScriptedAnswer,
    outcome: AttemptOutcome,
    retry_after: float | None,
) -> None:
    order = fake.create_order("tosa-excel", email="a@example.org")
    fake.script(answer)

    result = sink.send(event(order["id"]), attempt_at=NOW)

    assert (result.outcome, result.retry_after) == (outcome, retry_after)


def test_a_rate_limit_error_names_kombos_code(fake: FakeKombo, sink: KomboSink) -> None:
    order = fake.create_order("tosa-excel", email="a@example.org")
    fake.script(
        ScriptedAnswer(
            429,
            {},
            '{"status":"error","error":{"code":"PLATFORM.RATE_LIMIT_EXCEEDED","message":"slow"}}',
        )
    )

    result = sink.send(event(order["id"]), attempt_at=NOW)

    assert result.error == "Kombo answered 429 PLATFORM.RATE_LIMIT_EXCEEDED: slow"


def test_an_event_not_ordered_through_kombo_fails_naming_the_key(
    fake: FakeKombo, sink: KomboSink
) -> None:
    result = sink.send(event(None), attempt_at=NOW)

    assert result.outcome is AttemptOutcome.FAILED
    assert result.error is not None
    assert "context.kombo" in result.error
    assert fake.results == []


# Packages and open orders


def test_packages_are_published_with_a_description(fake: FakeKombo, http: httpx2.Client) -> None:
    api = KomboApi(target(), client=http, timeout=5.0, name="kombo")

    result = api.set_packages(attempt_at=NOW)

    assert result.outcome is AttemptOutcome.DELIVERED
    assert fake.packages == {
        "tosa-excel": {
            "id": "tosa-excel",
            "type": "SKILLS_TEST",
            "name": "TOSA Excel",
            "description": "TOSA Excel",
        }
    }


def test_open_orders_follow_the_cursor(fake: FakeKombo, http: httpx2.Client) -> None:
    api = KomboApi(target(), client=http, timeout=5.0, name="kombo")
    for index in range(3):
        fake.create_order("tosa-excel", email=f"c{index}@example.org")

    first = api.open_orders()

    assert len(first.orders) == 3
    assert first.next_cursor is None
    assert fake.open_order_requests == [{"page_size": "50"}]


def test_a_rate_limited_poll_is_retryable_with_the_hint(
    fake: FakeKombo, http: httpx2.Client
) -> None:
    api = KomboApi(target(), client=http, timeout=5.0, name="kombo")
    fake.script(ScriptedAnswer(429, {"Retry-After": "12"}, path_suffix="/open"))

    with pytest.raises(SinkUnavailableError) as caught:
        api.open_orders()

    assert (caught.value.status_code, caught.value.retry_after) == (429, 12.0)


def test_a_refused_poll_is_permanent(http: httpx2.Client) -> None:
    api = KomboApi(target(api_key="wrong-key-0123456789"), client=http, timeout=5.0, name="kombo")

    with pytest.raises(SinkRejectedError, match=r"PLATFORM\.AUTHENTICATION_INVALID"):
        api.open_orders()


def test_the_registry_builds_a_kombo_sink(http: httpx2.Client) -> None:
    sink = make_sink(parse(), http)

    assert isinstance(sink, KomboSink)
    assert API_KEY not in repr(sink)


def test_the_readme_relay_toml_block_is_a_valid_subscription() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```toml\n(.*?)```", readme, flags=re.DOTALL)
    [block] = [b for b in blocks if 'kind = "kombo"' in b]
    environ = {"KOMBO_API_KEY": "k" * 20, "KOMBO_WEBHOOK_SECRET": "s" * 20}

    [subscription] = parse_subscriptions(tomllib.loads(block), environ)

    assert isinstance(subscription.target, KomboTarget)
    assert [p.tst_frm_id for p in subscription.target.packages] == [101, 102]


def test_an_unreadable_event_timestamp_falls_back_to_the_attempt_time() -> None:
    body = result_body(event("o1").data, "yesterday", "https://x.example", completed=NOW)

    assert body["completed_at"] == "2026-11-27T10:15:00.000Z"
