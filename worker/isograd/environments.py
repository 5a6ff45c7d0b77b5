"""Isograd environments and their API and token URLs."""

from __future__ import annotations

from enum import StrEnum

# Reference, "API / Connexion" and "API / Environments".
ISOGRAD_AUTH_URL = "https://auth.isograd.com/oauth2/token"
TESTING_API_URL = "https://recette.isograd.com/api/usage"
PRODUCTION_API_URL = "https://app.isograd.com/api/usage"
SIMULATOR_BASE_URL = "http://127.0.0.1:8100"


class IsogradEnvironment(StrEnum):
    TESTING = "testing"
    PRODUCTION = "production"
    SIMULATOR = "simulator"


def isograd_urls(
    env: IsogradEnvironment | str, simulator_base: str | None = None
) -> tuple[str, str]:
    """`(api_url, auth_url)` of an environment; `simulator_base` is the simulator's root URL.

    Raises ValueError for an unknown environment name.
    """
    environment = IsogradEnvironment(env)
    if environment is IsogradEnvironment.SIMULATOR:
        base = (simulator_base or SIMULATOR_BASE_URL).rstrip("/")
        return f"{base}/api/usage", f"{base}/oauth2/token"
    if environment is IsogradEnvironment.TESTING:
        return TESTING_API_URL, ISOGRAD_AUTH_URL
    return PRODUCTION_API_URL, ISOGRAD_AUTH_URL
