"""Transactions of the SQL store: one short connection per call, the SQLite write lock."""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, update
from sqlalchemy.exc import OperationalError

from worker.clock import Clock, utc_now
from worker.errors import RetryableError
from worker.storage.engine import WRITE_OPTION

# A "delivering" row not finished within this time is taken to belong to a crashed worker.
# Longer than the deliver actor's time limit (6 min), so a live attempt is never re-claimed.
DEFAULT_LEASE = timedelta(minutes=10)


class SqliteWriteLock:
    """One writer at a time on a SQLite file, across threads and processes: a threading.Lock,
    then an exclusive flock(2) on `path` (created if missing), held until the transaction ends.

    SQLite's own busy handler makes a writer that finds the file locked sleep 1, 2, 5, 10 … up to
    100 ms between tries (sqliteDefaultBusyCallback, https://www.sqlite.org/c3ref/busy_timeout.html),
    so another process's writers, which queue without sleeping, kept winning: a web process
    storing callbacks waited ~300 ms behind a worker's transactions during a burst. A process
    blocked in flock is woken as soon as the lock is released. Not thread-safe by itself across
    forks; one per store.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._threads = threading.Lock()
        self._fd: int | None = None

    def __enter__(self) -> SqliteWriteLock:
        self._threads.acquire()
        try:
            if self._fd is None:
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._threads.release()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()

    def close(self) -> None:
        with self._threads:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


class SqlStoreBase:
    """What every part of `SqlStore` builds on: the engine, the clock and transactions."""

    def __init__(
        self, engine: Engine, *, clock: Clock = utc_now, lease: timedelta = DEFAULT_LEASE
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._lease = lease
        # SQLite admits one writer at a time; writers queue on a lock instead of in SQLite's busy
        # handler, whose growing sleeps gave callbacks a p99 of ~1 s under load
        # (bench/callback_edge.py): the threads of this process on a threading.Lock, the
        # processes sharing the file (web, worker, scheduler) on a lock file beside it.
        self._write_lock: AbstractContextManager[object] = nullcontext()
        if engine.dialect.name == "sqlite":
            database = engine.url.database or ""
            in_memory = database in ("", ":memory:") or database.startswith("file:")
            self._write_lock = (
                threading.Lock() if in_memory else SqliteWriteLock(Path(f"{database}-write.lock"))
            )

    def _now(self, now: datetime | None) -> datetime:
        return self._clock() if now is None else now

    @contextmanager
    def _translated_errors(self) -> Iterator[None]:
        try:
            yield
        except OperationalError as exc:
            # Connection refused, server gone, SQLite lock timeout: the same call may work later.
            raise RetryableError(f"database unavailable: {type(exc.orig).__name__}") from exc

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._translated_errors(), self._engine.connect() as connection, connection.begin():
            yield connection

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._write_lock, self._translated_errors(), self._engine.connect() as connection:
            connection.execution_options(**{WRITE_OPTION: True})
            with connection.begin():
                yield connection

    @staticmethod
    def _update_one(connection: Connection, table: Any, row_id: str, changes: Any) -> None:
        result = connection.execute(update(table).where(table.c.id == row_id).values(changes))
        if result.rowcount != 1:
            raise LookupError(f"no {table.name} row with id {row_id!r}")
