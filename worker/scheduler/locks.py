"""The scheduler lock: one active scheduler, held in Redis, a PostgreSQL advisory lock or a file.

Redis when the broker is Redis (SET NX PX, renewed by a compare-and-extend script), else a
PostgreSQL advisory lock held by the scheduler's session, else (SQLite, one host) an exclusive
file lock under VAR_DIR. The last two are released by the server or the kernel as soon as the
holding process dies, so they need no TTL.
"""

from __future__ import annotations

import fcntl
import hashlib
import uuid
from pathlib import Path
from typing import IO, Protocol

import redis
import structlog
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

from worker.settings import Settings
from worker.storage.engine import make_engine

log = structlog.get_logger(__name__)


DEFAULT_LOCK_TTL = 30.0


LOCK_NAME = "isograd-relay:scheduler"


LOCK_FILE = "scheduler.lock"


REDIS_SCHEMES = frozenset({"redis", "rediss", "unix"})


# Extend the TTL only if we still hold the lock: another instance may hold it after ours expired.
_RENEW_SCRIPT = """
if redis.call("get", KEYS[1]) == ARGV[1] then
    return redis.call("pexpire", KEYS[1], ARGV[2])
end
return 0
"""


_RELEASE_SCRIPT = """
if redis.call("get", KEYS[1]) == ARGV[1] then
    return redis.call("del", KEYS[1])
end
return 0
"""


class SchedulerLock(Protocol):
    """A lock held by at most one scheduler process; every method answers instead of raising."""

    kind: str

    def acquire(self) -> bool:
        """Take the lock if it is free; True when we hold it. Never blocks."""
        ...

    def renew(self) -> bool:
        """Extend our hold; False when we no longer hold the lock."""
        ...

    def release(self) -> None: ...

    def close(self) -> None: ...


class RedisLock:
    """A Redis key holding a random token, with a TTL; see the module docstring."""

    kind = "redis"

    def __init__(self, client: redis.Redis, key: str = LOCK_NAME, ttl: float = DEFAULT_LOCK_TTL):
        self._client = client
        self._key = key
        self._ttl_ms = max(1, round(ttl * 1000))
        self._token = uuid.uuid4().hex
        self._renew = client.register_script(_RENEW_SCRIPT)
        self._release = client.register_script(_RELEASE_SCRIPT)

    @classmethod
    def from_url(cls, url: str, key: str = LOCK_NAME, ttl: float = DEFAULT_LOCK_TTL) -> RedisLock:
        client = redis.Redis.from_url(url, socket_timeout=5.0, socket_connect_timeout=5.0)
        return cls(client, key, ttl)

    def acquire(self) -> bool:
        try:
            return bool(self._client.set(self._key, self._token, nx=True, px=self._ttl_ms))
        except redis.RedisError as exc:
            log.warning("scheduler_lock_error", lock=self.kind, error=type(exc).__name__)
            return False

    def renew(self) -> bool:
        try:
            return bool(self._renew(keys=[self._key], args=[self._token, self._ttl_ms]))
        except redis.RedisError as exc:
            # We cannot tell whether the key outlived the outage: assume the lock is lost.
            log.warning("scheduler_lock_error", lock=self.kind, error=type(exc).__name__)
            return False

    def release(self) -> None:
        try:
            self._release(keys=[self._key], args=[self._token])
        except redis.RedisError as exc:
            log.warning("scheduler_lock_error", lock=self.kind, error=type(exc).__name__)

    def close(self) -> None:
        self._client.close()


class PostgresAdvisoryLock:
    """A session-level PostgreSQL advisory lock on a connection kept open while we hold it."""

    kind = "postgresql"

    def __init__(self, engine: Engine, name: str = LOCK_NAME) -> None:
        self._engine = engine
        # Advisory locks are keyed by a 64-bit integer: derive a stable one from the name.
        digest = hashlib.sha256(name.encode()).digest()
        self._key = int.from_bytes(digest[:8], "big", signed=True)
        self._connection: Connection | None = None

    def acquire(self) -> bool:
        try:
            connection = self._engine.connect()
        except SQLAlchemyError as exc:
            log.warning("scheduler_lock_error", lock=self.kind, error=type(exc).__name__)
            return False
        try:
            held = connection.execute(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": self._key}
            ).scalar_one()
            connection.commit()
        except SQLAlchemyError as exc:
            log.warning("scheduler_lock_error", lock=self.kind, error=type(exc).__name__)
            held = False
        if not held:
            connection.close()
            return False
        self._connection = connection
        return True

    def renew(self) -> bool:
        # The lock lives as long as the session: it is ours while the connection answers.
        if self._connection is None:
            return False
        try:
            self._connection.execute(text("SELECT 1"))
            self._connection.commit()
            return True
        except SQLAlchemyError:
            self._drop()
            return False

    def release(self) -> None:
        if self._connection is None:
            return
        try:
            self._connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": self._key})
            self._connection.commit()
        except SQLAlchemyError as exc:
            log.warning("scheduler_lock_error", lock=self.kind, error=type(exc).__name__)
        self._drop()

    def close(self) -> None:
        self._drop()
        self._engine.dispose()

    def _drop(self) -> None:
        if self._connection is not None:
            self._connection.invalidate()
            self._connection.close()
            self._connection = None


class FileLock:
    """An exclusive flock(2) on a file: enough when every process runs on one host (SQLite)."""

    kind = "file"

    def __init__(self, path: Path) -> None:
        self._path = path
        self._file: IO[bytes] | None = None

    def acquire(self) -> bool:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        file = self._path.open("ab")
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            file.close()
            return False
        self._file = file
        return True

    def renew(self) -> bool:
        return self._file is not None

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    def close(self) -> None:
        self.release()


def make_scheduler_lock(settings: Settings, *, ttl: float = DEFAULT_LOCK_TTL) -> SchedulerLock:
    """Redis if the broker is Redis, else PostgreSQL's advisory lock, else a file lock."""
    broker_scheme = (settings.broker_url or "").split(":", 1)[0].lower()
    if settings.broker_url and broker_scheme in REDIS_SCHEMES:
        return RedisLock.from_url(settings.broker_url, ttl=ttl)
    if settings.database_url.startswith("postgresql"):
        return PostgresAdvisoryLock(make_engine(settings.database_url))
    return FileLock(Path(settings.var_dir) / LOCK_FILE)
