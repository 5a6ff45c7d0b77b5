"""Tests of the Isograd token provider against httpx2.MockTransport."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from urllib.parse import parse_qsl

import httpx2
import pytest
from structlog.testing import capture_logs

from worker.errors import IsogradProtocolError, IsogradUnavailableError
from worker.isograd.auth import TokenProvider
from worker.isograd.errors import IsogradAuthError

AUTH_URL = "https://auth.example.test/oauth2/token"
SECRET = "s3cr3t-value"

Handler = Callable[[httpx2.Request], httpx2.Response]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TokenEndpoint:
    """Answers token requests with token-1, token-2, … and records them."""

    def __init__(self, answer: dict[str, object] | None = None) -> None:
        self.answer = {"expires_in": 3600, "token_type": "Bearer"} if answer is None else answer
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        return httpx2.Response(
            200, json={"access_token": f"token-{len(self.requests)}", **self.answer}
        )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_provider(clock: FakeClock) -> Iterator[Callable[[Handler], TokenProvider]]:
    clients: list[httpx2.Client] = []

    def make(handler: Handler) -> TokenProvider:
        http = httpx2.Client(transport=httpx2.MockTransport(handler))
        clients.append(http)
        return TokenProvider(
            http, auth_url=AUTH_URL, client_id="client-1", client_secret=SECRET, clock=clock
        )

    yield make
    for http in clients:
        http.close()


def test_token_request_is_a_form_post_with_grant_type_and_scope_in_the_query(
    make_provider: Callable[[Handler], TokenProvider],
) -> None:
    endpoint = TokenEndpoint()

    make_provider(endpoint).token()

    request = endpoint.requests[0]
    assert request.method == "POST"
    assert request.url.copy_with(query=None) == AUTH_URL
    assert dict(request.url.params) == {"grant_type": "client_credentials", "scopes": "usage"}
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert dict(parse_qsl(request.content.decode())) == {
        "client_id": "client-1",
        "client_secret": SECRET,
    }


def test_token_is_reused_until_it_nears_expiry(
    make_provider: Callable[[Handler], TokenProvider], clock: FakeClock
) -> None:
    endpoint = TokenEndpoint()
    provider = make_provider(endpoint)

    first = provider.token()
    clock.now += 3600 - 61
    second = provider.token()

    assert (first, second, len(endpoint.requests)) == ("token-1", "token-1", 1)


def test_token_is_refreshed_shortly_before_expiry(
    make_provider: Callable[[Handler], TokenProvider], clock: FakeClock
) -> None:
    endpoint = TokenEndpoint()
    provider = make_provider(endpoint)
    provider.token()

    clock.now += 3600 - 60

    assert provider.token() == "token-2"


def test_short_lived_token_is_kept_for_half_its_lifetime(
    make_provider: Callable[[Handler], TokenProvider], clock: FakeClock
) -> None:
    provider = make_provider(TokenEndpoint({"expires_in": 40}))
    provider.token()

    clock.now += 19
    kept = provider.token()
    clock.now += 1
    refreshed = provider.token()

    assert (kept, refreshed) == ("token-1", "token-2")


@pytest.mark.parametrize("expires_in", [None, "soon", 0, -5, "nan"])
def test_unusable_expires_in_falls_back_to_a_conservative_300_seconds(
    make_provider: Callable[[Handler], TokenProvider], clock: FakeClock, expires_in: object
) -> None:
    answer = {} if expires_in is None else {"expires_in": expires_in}
    provider = make_provider(TokenEndpoint(answer))
    provider.token()

    clock.now += 300 - 60 - 1
    kept = provider.token()
    clock.now += 1
    refreshed = provider.token()

    assert (kept, refreshed) == ("token-1", "token-2")


def test_expires_in_sent_as_a_string_is_honoured(
    make_provider: Callable[[Handler], TokenProvider], clock: FakeClock
) -> None:
    provider = make_provider(TokenEndpoint({"expires_in": "3600"}))
    provider.token()

    clock.now += 3000

    assert provider.token() == "token-1"


def test_invalidate_makes_the_next_call_fetch_a_new_token(
    make_provider: Callable[[Handler], TokenProvider],
) -> None:
    provider = make_provider(TokenEndpoint())
    stale = provider.token()

    provider.invalidate(stale)

    assert provider.token() == "token-2"


def test_invalidating_an_already_replaced_token_keeps_the_new_one(
    make_provider: Callable[[Handler], TokenProvider],
) -> None:
    endpoint = TokenEndpoint()
    provider = make_provider(endpoint)
    stale = provider.token()
    provider.invalidate(stale)
    provider.token()

    provider.invalidate(stale)

    assert (provider.token(), len(endpoint.requests)) == ("token-2", 2)


def test_concurrent_callers_share_one_token_request(
    make_provider: Callable[[Handler], TokenProvider],
) -> None:
    entered = threading.Event()
    release = threading.Event()
    endpoint = TokenEndpoint()

    def slow_endpoint(request: httpx2.Request) -> httpx2.Response:
        entered.set()
        release.wait(10)
        return endpoint(request)

    provider = make_provider(slow_endpoint)
    tokens: list[str] = []
    threads = [threading.Thread(target=lambda: tokens.append(provider.token())) for _ in range(8)]
    for thread in threads:
        thread.start()
    assert entered.wait(10)
    release.set()
    for thread in threads:
        thread.join(10)

    assert (tokens, len(endpoint.requests)) == (["token-1"] * 8, 1)


@pytest.mark.parametrize("status", [400, 401, 403])
def test_refused_credentials_raise_a_permanent_auth_error_without_the_secret(
    make_provider: Callable[[Handler], TokenProvider], status: int
) -> None:
    provider = make_provider(
        lambda request: httpx2.Response(status, json={"error": "invalid_client"})
    )

    with pytest.raises(IsogradAuthError) as caught:
        provider.token()

    assert caught.value.status_code == status
    assert "invalid_client" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_auth_error_ignores_an_error_field_that_is_not_a_constant(
    make_provider: Callable[[Handler], TokenProvider],
) -> None:
    provider = make_provider(
        lambda request: httpx2.Response(401, json={"error": f"bad secret {SECRET}"})
    )

    with pytest.raises(IsogradAuthError) as caught:
        provider.token()

    assert str(caught.value) == "Isograd refused the client credentials (HTTP 401)"


def test_auth_error_on_a_non_json_body(make_provider: Callable[[Handler], TokenProvider]) -> None:
    provider = make_provider(lambda request: httpx2.Response(401, text="Unauthorized"))

    with pytest.raises(IsogradAuthError, match=r"\(HTTP 401\)"):
        provider.token()


@pytest.mark.parametrize("status", [500, 502, 503, 429, 408])
def test_token_endpoint_server_errors_are_retryable(
    make_provider: Callable[[Handler], TokenProvider], status: int
) -> None:
    provider = make_provider(lambda request: httpx2.Response(status))

    with pytest.raises(IsogradUnavailableError) as caught:
        provider.token()

    assert caught.value.status_code == status


@pytest.mark.parametrize(
    "exception",
    [httpx2.ConnectTimeout("timed out"), httpx2.ReadTimeout("timed out"), httpx2.ConnectError("x")],
)
def test_token_endpoint_timeouts_and_connection_errors_are_retryable(
    make_provider: Callable[[Handler], TokenProvider], exception: Exception
) -> None:
    def fail(request: httpx2.Request) -> httpx2.Response:
        raise exception

    provider = make_provider(fail)

    with pytest.raises(IsogradUnavailableError) as caught:
        provider.token()

    assert caught.value.__cause__ is exception


@pytest.mark.parametrize(
    "response",
    [
        httpx2.Response(200, text="<html>login</html>"),
        httpx2.Response(200, json={"token_type": "Bearer"}),
        httpx2.Response(200, json=["token"]),
        httpx2.Response(200, json={"access_token": ""}),
        httpx2.Response(302, headers={"location": "https://elsewhere.test/"}),
    ],
    ids=["html", "no-access-token", "array", "empty-token", "redirect"],
)
def test_token_answer_without_a_token_is_a_protocol_error(
    make_provider: Callable[[Handler], TokenProvider], response: httpx2.Response
) -> None:
    provider = make_provider(lambda request: response)

    with pytest.raises(IsogradProtocolError):
        provider.token()


def test_failed_token_request_is_not_cached(
    make_provider: Callable[[Handler], TokenProvider],
) -> None:
    endpoint = TokenEndpoint()
    answers = iter([httpx2.Response(503)])
    provider = make_provider(lambda request: next(answers, None) or endpoint(request))
    with pytest.raises(IsogradUnavailableError):
        provider.token()

    assert provider.token() == "token-1"


def test_token_request_is_logged_without_the_secret_or_the_token(
    make_provider: Callable[[Handler], TokenProvider],
) -> None:
    provider = make_provider(TokenEndpoint())

    with capture_logs() as logs:
        provider.token()

    assert [(entry["event"], entry["outcome"], entry["status_code"]) for entry in logs] == [
        ("isograd_token_requested", "ok", 200)
    ]
    assert SECRET not in repr(logs)
    assert "token-1" not in repr(logs)


def test_provider_repr_shows_no_credentials(
    make_provider: Callable[[Handler], TokenProvider],
) -> None:
    assert SECRET not in repr(make_provider(TokenEndpoint()))
