"""The embedded store's analytics rollups (design.md 5.9, ``gateway.analytics.rollup``).

``add_payment_change`` and ``add_delivery`` run inside the transaction of the change they count
(the accept, a reconciliation's missing payment, the end of a delivery attempt), so a rollup
never holds what was not committed. Counters go to ``rollups`` through the transaction's tally
(``sqlite.tally``: one upsert per row per group commit); completed amounts are
whole numbers of minor units of any size, kept as text and added in Python (SQLite's integers
stop at 64 bits and would turn into floats past them).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from gateway.analytics.rollup import (
    RETENTION_DAYS,
    PaymentChange,
    Rollup,
    amount_deltas,
    delivery_deltas,
    hour_of,
    payment_deltas,
)
from gateway.store.sqlite.core import SqliteCore
from gateway.store.sqlite.tally import add_rollups


def add_payment_change(conn: sqlite3.Connection, source: str, change: PaymentChange) -> None:
    """Count one payment change in the hour it happened."""
    hour = hour_of(change.at)
    add_rollups(conn, hour, source, payment_deltas(change))
    for (currency, scale), value in amount_deltas(change).items():
        row = conn.execute(
            "SELECT value FROM rollup_amounts"
            " WHERE hour = ? AND source = ? AND currency = ? AND scale = ?",
            (hour, source, currency, scale),
        ).fetchone()
        total = value + (int(row[0]) if row is not None else 0)
        conn.execute(
            "INSERT OR REPLACE INTO rollup_amounts (hour, source, currency, scale, value)"
            " VALUES (?, ?, ?, ?, ?)",
            (hour, source, currency, scale, str(total)),
        )


def add_delivery(
    conn: sqlite3.Connection, source: str, result: str, received_at: float, ended_at: float
) -> None:
    """Count one finished delivery attempt (a retry counts nothing)."""
    add_rollups(conn, hour_of(ended_at), source, delivery_deltas(result, received_at, ended_at))


def prune_rollups(conn: sqlite3.Connection, before: float) -> None:
    """Forget the rollups ``RETENTION_DAYS`` older than the events retention prunes (those
    received before ``before``)."""
    oldest = hour_of(before) - RETENTION_DAYS * 24
    conn.execute("DELETE FROM rollups WHERE hour < ?", (oldest,))
    conn.execute("DELETE FROM rollup_amounts WHERE hour < ?", (oldest,))


class SqliteAnalytics(SqliteCore):
    """The rollups' one read: every field of every hour in a range."""

    async def rollups(self, first_hour: int, last_hour: int, sources: Sequence[str]) -> Rollup:
        """The rollups of hours ``first_hour`` to ``last_hour`` (both included) of
        ``sources``, summed."""
        names = list(dict.fromkeys(sources))
        marks = ", ".join("?" * len(names))
        where = f"hour BETWEEN ? AND ? AND source IN ({marks})"
        params = (first_hour, last_hour, *names)

        def read(conn: sqlite3.Connection) -> Rollup:
            rollup = Rollup()
            if not names:
                return rollup
            for hour, name, n in conn.execute(
                f"SELECT hour, name, n FROM rollups WHERE {where}",  # noqa: S608
                params,
            ):
                rollup.add(hour, name, n)
            for hour, currency, scale, value in conn.execute(
                f"SELECT hour, currency, scale, value FROM rollup_amounts WHERE {where}",  # noqa: S608
                params,
            ):
                rollup.add_amount(hour, currency, scale, int(value))
            return rollup

        return await self._db.read(read)
