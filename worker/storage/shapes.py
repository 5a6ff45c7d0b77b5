"""Batches cut to a few statement shapes, so the drivers' statement caches stay small.

A batch written as one multi-row INSERT, or matched with one `IN (...)`, is a different SQL text
for every batch size, and each text is prepared and kept on its own: sqlite3 keeps up to 128
prepared statements per connection, psycopg those run 5 times or more. Multi-row statements of
every size from 1 to 32 grew a worker by ~8 MB (bench/README.md, "fifth pass"). Cut into chunks
whose sizes are powers of two (`insert_in_chunks`), and `IN` lists padded to one (`padded`), a
statement has at most a handful of shapes, at the cost of a few statements per batch instead of
one.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from typing import Any, TypeVar

from sqlalchemy import Connection, Executable, Row

T = TypeVar("T")


def power_of_two_chunks(rows: Sequence[T]) -> Iterator[Sequence[T]]:
    """`rows` in order, in chunks whose sizes are powers of two, largest first: 13 rows give
    chunks of 8, 4 and 1 (as many chunks as 1-bits in the count)."""
    start = 0
    while start < len(rows):
        size = 1 << ((len(rows) - start).bit_length() - 1)
        yield rows[start : start + size]
        start += size


def insert_in_chunks(
    connection: Connection, statement: Executable, rows: Sequence[dict[str, Any]]
) -> list[Row[Any]]:
    """Run an INSERT … RETURNING for `rows`, one multi-row statement per power-of-two chunk;
    the rows it returned. SQLAlchemy sends a list of rows as one multi-row INSERT only when the
    statement has RETURNING and its rows need not come back in order ("insertmanyvalues",
    https://docs.sqlalchemy.org/en/20/core/connections.html#engine-insertmanyvalues); otherwise
    SQLite runs it once per row."""
    return [
        row for chunk in power_of_two_chunks(rows) for row in connection.execute(statement, chunk)
    ]


def padded(values: Collection[str]) -> list[str]:
    """The distinct `values` (one at least), sorted, the last one repeated up to the next power
    of two: the same set for `IN (...)`, in one of few shapes."""
    distinct = sorted(set(values))
    if not distinct:
        raise ValueError("padded: no values")
    size = 1 << (len(distinct) - 1).bit_length()
    return [*distinct, *[distinct[-1]] * (size - len(distinct))]
