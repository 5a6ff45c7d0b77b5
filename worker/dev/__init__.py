"""Development mode: the whole relay in one process on embedded defaults (`isograd-relay dev`)."""

from worker.errors import RelayError


class DevStartError(RelayError):
    """A part of the dev process could not start (a port in use, Redis failing, ...)."""
