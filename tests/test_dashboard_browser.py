"""Browser tests of the dashboard: a real Chromium, driven by Playwright, against the web app
served by uvicorn on a real SQLite store.

They skip where Chromium or Playwright is missing (a laptop) and fail when CI is set: `.ci/run`
installs Debian's `chromium`, and the dev lock installs Playwright. Playwright's own browser
downloads are never used: the system's Chromium is launched by path.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest
import uvicorn

from tests.fakes import RecordingEnqueuer
from tests.fixtures.dashboard import fail_delivery, store_event
from tests.fixtures.web import ADMIN_TOKEN
from webhooks.app import create_app
from worker.runtime import Runtime
from worker.settings import Settings
from worker.storage.records import DeliveryStatus
from worker.storage.store import SqlStore

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Page

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
# Headless and quiet: no GPU, no sandbox (CI runs as root), no calls home of any kind.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
GRACE = "grace.hopper@example.org"


def _missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this is a failure, not a skip)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("Playwright is not installed (pip install playwright)")
    if shutil.which(CHROMIUM) is None:
        _missing(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class ServedApp:
    """An ASGI app under uvicorn in a thread, on 127.0.0.1 and a free port."""

    def __init__(self, app: Any, sock: socket.socket) -> None:
        self._socket = sock
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self._server = uvicorn.Server(
            uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
        )
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True
        )

    def __enter__(self) -> ServedApp:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            assert self._thread.is_alive(), "uvicorn stopped while starting"
            assert time.monotonic() < deadline, "uvicorn did not start within 10 s"
            time.sleep(0.01)  # polling a flag with a deadline, not synchronising on time
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._socket.close()


@pytest.fixture
def served(dashboard_runtime: Runtime) -> Iterator[ServedApp]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    # Plain http here, so the session cookie is not Secure and the browser sends it back.
    settings = Settings(admin_token=ADMIN_TOKEN, public_url=f"http://{sock.getsockname()[0]}")
    app = create_app(settings, runtime=dashboard_runtime, broker_ping=lambda: None)
    with ServedApp(app, sock) as served:
        yield served


@dataclass
class Console:
    """Every console error and uncaught page error, with the page it came from."""

    errors: list[str] = field(default_factory=list)

    def watch(self, page: Page) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(f"{page.url}: {error}"))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"{message.page.url if message.page else '?'}: {message.text}")


@pytest.fixture
def page(chromium: Browser, served: ServedApp) -> Iterator[tuple[Page, Console]]:
    context = chromium.new_context(base_url=served.url)
    tab = context.new_page()
    console = Console()
    console.watch(tab)
    yield tab, console
    context.close()


def status_of(store: SqlStore, delivery_id: str) -> DeliveryStatus:
    delivery = store.get_delivery(delivery_id)
    assert delivery is not None
    return delivery.status


def test_an_operator_signs_in_finds_a_candidate_replays_enables_and_signs_out(
    page: tuple[Page, Console], store: SqlStore, enqueuer: RecordingEnqueuer
) -> None:
    tab, console = page
    ada_event, ada_deliveries = store_event(store, 1001)
    ada = fail_delivery(store, ada_deliveries[0].id, error="HTTP 503 from receiver").id
    grace_event, grace_deliveries = store_event(
        store, 1002, email=GRACE, first_name="Grace", last_name="Hopper"
    )
    grace = fail_delivery(store, grace_deliveries[0].id, error="HTTP 410 from receiver").id
    store.disable_subscription("hr", "receiver answered 410 Gone")

    # Sign in: a page asked for without a session goes to the form, and back after it.
    tab.goto("/dashboard/events")
    assert tab.locator("h1").inner_text() == "Sign in"
    tab.get_by_label("Admin token").fill(ADMIN_TOKEN)
    tab.get_by_role("button", name="Sign in").click()
    assert tab.url.endswith("/dashboard/events")
    assert tab.locator("h1").inner_text() == "Events"
    assert tab.locator("table tr").count() == 1 + 2

    # Search: by email, from the box every page has.
    tab.get_by_role("searchbox", name="Search").fill(GRACE)
    tab.get_by_role("button", name="Search", exact=True).click()
    assert tab.locator("h1").inner_text() == "Search"
    rows = tab.locator("table tr")
    assert rows.count() == 1 + 1
    assert "Grace Hopper" in rows.nth(1).inner_text()

    # Open the event found.
    rows.nth(1).get_by_role("link", name=grace_event.id).click()
    assert tab.locator("h1").inner_text() == f"Event {grace_event.id}"
    section = tab.locator(f"section#{grace}")
    assert "HTTP 410 from receiver" in section.inner_text()

    # Replay its failed delivery.
    section.get_by_role("button", name="Replay").click()
    assert "Delivery replayed" in tab.locator(".notice").inner_text()
    assert tab.locator(f"section#{grace} .badge").inner_text() == "pending"
    assert status_of(store, grace) is DeliveryStatus.PENDING

    # Bulk replay: hr's failed deliveries created on 27 November (UTC).
    tab.get_by_role("link", name="Overview").click()
    assert "disabled since" in tab.locator("#subscriptions").inner_text()
    tab.get_by_label("replay hr from (UTC)").fill("2026-11-27T00:00")
    tab.get_by_label("replay hr until (UTC)").fill("2026-11-28T00:00")
    tab.get_by_role("button", name="Replay failed").click()
    assert "1 failed deliveries of hr replayed" in tab.locator(".notice").inner_text()
    assert status_of(store, ada) is DeliveryStatus.PENDING
    assert [job.id for job in enqueuer.of_kind("delivery")] == [grace, ada]
    assert "No failed delivery." in tab.locator("main").inner_text()

    # Enable the subscription disabled by its receiver's 410.
    tab.get_by_role("button", name="Enable").click()
    assert "Subscription enabled" in tab.locator(".notice").inner_text()
    assert "healthy" in tab.locator("#subscriptions").inner_text()
    assert tab.get_by_role("button", name="Disable").count() == 1
    assert not store.subscription_state("hr").disabled

    # Sign out: the session is gone.
    tab.get_by_role("button", name="Sign out").click()
    assert tab.locator("h1").inner_text() == "Sign in"
    tab.goto(f"/dashboard/events/{ada_event.id}")
    assert tab.locator("h1").inner_text() == "Sign in"

    assert console.errors == []


def test_no_dashboard_page_logs_a_console_error(
    page: tuple[Page, Console], store: SqlStore
) -> None:
    tab, console = page
    event, deliveries = store_event(store, 1001)
    fail_delivery(store, deliveries[0].id)
    tab.goto("/dashboard/login")
    tab.get_by_label("Admin token").fill(ADMIN_TOKEN)
    tab.get_by_role("button", name="Sign in").click()

    headings = {}
    for path in (
        "/dashboard/",
        "/dashboard/invitations",
        "/dashboard/invitations?status=all",
        "/dashboard/events",
        f"/dashboard/events/{event.id}",
        "/dashboard/deliveries",
        "/dashboard/deliveries?status=failed",
        "/dashboard/search?q=1001",
    ):
        tab.goto(path)
        headings[path] = tab.locator("h1").inner_text()

    assert headings["/dashboard/"] == "Overview"
    assert headings["/dashboard/search?q=1001"] == "Search"
    assert tab.locator("svg.chart").count() == 0  # search results have no chart
    tab.goto("/dashboard/")
    assert tab.locator("svg.chart").count() == 1
    assert console.errors == []
