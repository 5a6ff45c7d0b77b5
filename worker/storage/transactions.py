"""Transactions of the SQL store: one short connection per call, the SQLite write lock."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, update
from sqlalchemy.exc import OperationalError

from worker.clock import Clock, utc_now
from worker.errors import RetryableError
from worker.storage.engine import WRITE_OPTION

# A "delivering" row not finished within this time is taken to belong to a crashed worker.
# Longer than the deliver actor's time limit (6 min), so a live attempt is never re-claimed.
DEFAULT_LEASE = timedelta(minutes=10)


class SqlStoreBase:
    """What every part of `SqlStore` builds on: the engine, the clock and transactions."""

    def __init__(
        self, engine: Engine, *, clock: Clock = utc_now, lease: timedelta = DEFAULT_LEASE
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._lease = lease
        # SQLite admits one writer at a time; writers of this process queue on a lock instead of
        # in SQLite's busy handler, whose growing sleeps gave callbacks a p99 of ~1 s under load
        # (bench/callback_edge.py). Other processes still wait through busy_timeout.
        self._write_lock: AbstractContextManager[object] = (
            threading.Lock() if engine.dialect.name == "sqlite" else nullcontext()
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
