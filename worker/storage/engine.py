"""Database connections: one SQLAlchemy engine per DATABASE_URL, tuned per backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool

# Execution option marking a connection whose transactions will write (see _begin_sqlite).
WRITE_OPTION = "relay_write"

SQLITE_BUSY_TIMEOUT_MS = 30_000


def make_engine(database_url: str) -> Engine:
    """An engine for `database_url`; for a SQLite file, its parent directory is created.

    Statement parameters are kept out of error messages and logs (`hide_parameters`): they hold
    candidates' names and emails and invitation contexts
    (https://docs.sqlalchemy.org/en/20/core/engines.html#sqlalchemy.create_engine.params.hide_parameters).
    """
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        # pre_ping: a PostgreSQL restart must not surface as an error on the next job.
        return create_engine(url, pool_pre_ping=True, hide_parameters=True)
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        # One shared connection, or every checkout would see its own empty in-memory database.
        engine = create_engine(
            url,
            poolclass=StaticPool,
            connect_args={"check_same_thread": False},
            hide_parameters=True,
        )
    else:
        Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, hide_parameters=True)
    event.listen(engine, "connect", _configure_sqlite_connection)
    event.listen(engine, "begin", _begin_sqlite)
    return engine


def _configure_sqlite_connection(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy, not the sqlite3 module, emit BEGIN (see _begin_sqlite); this is the
    # documented recipe of SQLAlchemy's SQLite dialect ("Serializable isolation / Savepoints /
    # Transactional DDL").
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        # WAL: readers never block the writer; NORMAL sync is durable enough under WAL
        # (https://www.sqlite.org/wal.html, https://www.sqlite.org/pragma.html#pragma_synchronous).
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
    finally:
        cursor.close()


def _begin_sqlite(connection: Connection) -> None:
    # A deferred transaction that reads and then writes cannot wait for a concurrent writer: SQLite
    # answers SQLITE_BUSY at once, ignoring busy_timeout. Writers therefore take the write lock up
    # front with BEGIN IMMEDIATE, and wait their turn (https://www.sqlite.org/lang_transaction.html).
    if connection.get_execution_options().get(WRITE_OPTION):
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        connection.exec_driver_sql("BEGIN")
