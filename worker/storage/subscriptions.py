"""Stored subscription state: a subscription's failure streak and whether it is disabled."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, bindparam, func, select
from sqlalchemy.dialects import postgresql, sqlite

from worker.storage.records import SubscriptionState
from worker.storage.tables import UtcDateTime, subscription_state
from worker.storage.transactions import SqlStoreBase


class SubscriptionStatesMixin(SqlStoreBase):
    def subscription_state(self, name: str) -> SubscriptionState:
        with self._read() as connection:
            return self._subscription(connection, name)

    def list_subscription_states(self) -> list[SubscriptionState]:
        query = select(subscription_state).order_by(subscription_state.c.name)
        with self._read() as connection:
            return [_subscription(row) for row in connection.execute(query)]

    def disable_subscription(
        self, name: str, reason: str, now: datetime | None = None
    ) -> SubscriptionState:
        """Safe to run twice: the first `disabled_at` and reason are kept."""
        now = self._now(now)
        column = subscription_state.c
        return self._upsert_subscription(
            name,
            {"disabled_at": now, "disabled_reason": reason},
            {
                "disabled_at": func.coalesce(column.disabled_at, now),
                "disabled_reason": func.coalesce(column.disabled_reason, reason),
            },
        )

    def enable_subscription(self, name: str) -> SubscriptionState:
        """Undo a disable; the failure streak starts over."""
        cleared = {"disabled_at": None, "disabled_reason": None, "failing_since": None}
        return self._upsert_subscription(name, cleared, cleared)

    def record_subscription_success(
        self, name: str, now: datetime | None = None
    ) -> SubscriptionState:
        """Ends the failure streak."""
        values = {"last_success_at": self._now(now), "failing_since": None}
        return self._upsert_subscription(name, values, values)

    def record_subscription_failure(
        self, name: str, now: datetime | None = None
    ) -> SubscriptionState:
        """Starts the failure streak (`failing_since`) unless one is running."""
        now = self._now(now)
        return self._upsert_subscription(
            name,
            {"failing_since": now},
            {"failing_since": func.coalesce(subscription_state.c.failing_since, now)},
        )

    def _upsert_subscription(
        self, name: str, insert_values: dict[str, Any], update_values: dict[str, Any]
    ) -> SubscriptionState:
        query = subscription_upsert(self._engine.dialect.name, name, insert_values, update_values)
        with self._write() as connection:
            connection.execute(query)
            return self._subscription(connection, name)

    @staticmethod
    def _subscription(connection: Connection, name: str) -> SubscriptionState:
        row = connection.execute(
            select(subscription_state).where(subscription_state.c.name == name)
        ).first()
        return SubscriptionState(name=name) if row is None else _subscription(row)


def subscription_upsert(
    dialect_name: str, name: str, insert_values: dict[str, Any], update_values: dict[str, Any]
) -> Any:
    """INSERT … ON CONFLICT (name) DO UPDATE for one subscription's state row."""
    dialect = postgresql if dialect_name == "postgresql" else sqlite
    return (
        dialect.insert(subscription_state)
        .values(name=name, **insert_values)
        .on_conflict_do_update(index_elements=["name"], set_=update_values)
    )


_DISABLED_AMONG = select(subscription_state.c.name).where(
    subscription_state.c.name.in_(bindparam("p_names", expanding=True)),
    subscription_state.c.disabled_at.is_not(None),
)
# A delivered attempt's write to its subscription's state: the failure streak ends. One
# statement per dialect, built once (worker.storage.deliveries says why).
_SUCCESS = {
    "last_success_at": bindparam("p_now", type_=UtcDateTime),
    "failing_since": None,
}
_SUCCESS_UPSERTS = {
    "postgresql": postgresql.insert(subscription_state)
    .values(name=bindparam("p_name"), **_SUCCESS)
    .on_conflict_do_update(index_elements=["name"], set_=_SUCCESS),
    "sqlite": sqlite.insert(subscription_state)
    .values(name=bindparam("p_name"), **_SUCCESS)
    .on_conflict_do_update(index_elements=["name"], set_=_SUCCESS),
}


def disabled_among(connection: Connection, names: Iterable[str]) -> set[str]:
    """Which of `names` are stored as disabled, in one statement."""
    wanted = list(dict.fromkeys(names))
    if not wanted:
        return set()
    return set(connection.execute(_DISABLED_AMONG, {"p_names": wanted}).scalars())


def record_success(
    connection: Connection, dialect_name: str, names: Iterable[str], now: datetime
) -> None:
    """`record_subscription_success` of each of `names`, inside the caller's transaction (one
    executemany)."""
    upsert = _SUCCESS_UPSERTS["postgresql" if dialect_name == "postgresql" else "sqlite"]
    wanted = list(dict.fromkeys(names))
    if wanted:
        connection.execute(upsert, [{"p_name": name, "p_now": now} for name in wanted])


def _subscription(row: Row[Any]) -> SubscriptionState:
    return SubscriptionState(**row._asdict())
