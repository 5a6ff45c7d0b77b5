"""The Isograd API adapter: a typed client, its token provider, errors and values."""

from worker.isograd.client import IsogradClient
from worker.isograd.environments import IsogradEnvironment, isograd_urls

__all__ = ["IsogradClient", "IsogradEnvironment", "isograd_urls"]
