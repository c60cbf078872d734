"""The embedded store's operator writes: replay, redrive, retry-now and retention."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from gateway.errors import EventNotFound
from gateway.store.sqlite.analytics import prune_rollups
from gateway.store.sqlite.core import SqliteCore
from gateway.store.sqlite.payments import forget_event
from gateway.store.sqlite.rows import (
    find_uid,
    insert_deliveries,
    refresh_status,
    refresh_status_of_delivery,
)


class SqliteOperator(SqliteCore):
    """What an operator (or retention) changes: new deliveries, dead ones due again."""

    # -- operator ----------------------------------------------------------------------------

    async def replay(
        self, event_id: str, destinations: Sequence[str], now: float, source: str | None = None
    ) -> list[str]:
        """New deliveries of a stored event, due now, whatever dedupe says."""

        def tx(conn: sqlite3.Connection) -> list[str]:
            uid = find_uid(conn, event_id, source)
            if uid is None:
                raise EventNotFound(event_id)
            ids = insert_deliveries(conn, uid, destinations, now, None)
            refresh_status(conn, uid)
            return ids

        return await self._db.write(tx)

    async def redrive(self, delivery_ids: Sequence[str] | None, now: float) -> int:
        """Make dead deliveries due now with their attempt count reset."""

        def tx(conn: sqlite3.Connection) -> int:
            if delivery_ids is None:
                rows = conn.execute("SELECT id FROM deliveries WHERE state = 'dead'").fetchall()
                ids = [r[0] for r in rows]
            else:
                ids = list(delivery_ids)
            moved = 0
            for delivery_id in ids:
                cur = conn.execute(
                    "UPDATE deliveries SET state = 'due', next_attempt_at = ?,"
                    " attempts_made = 0, first_attempt_at = NULL, dead_reason = NULL,"
                    " dead_at = NULL WHERE id = ? AND state = 'dead'",
                    (now, delivery_id),
                )
                if cur.rowcount == 1:
                    moved += 1
                    refresh_status_of_delivery(conn, delivery_id)
            return moved

        return await self._db.write(tx)

    async def retry_now(self, destination: str, now: float) -> int:
        """Make every delivery to ``destination`` waiting out a backoff due at ``now``."""

        def tx(conn: sqlite3.Connection) -> int:
            moved = conn.execute(
                "UPDATE deliveries SET next_attempt_at = ?"
                " WHERE state = 'due' AND next_attempt_at > ? AND destination = ?",
                (now, now, destination),
            ).rowcount
            conn.execute("DELETE FROM backoff WHERE destination = ?", (destination,))
            return moved

        return await self._db.write(tx)

    async def prune(self, before: float, limit: int) -> int:
        """Delete up to ``limit`` finished events received before ``before``, in one transaction."""

        def tx(conn: sqlite3.Connection) -> int:
            uids: list[tuple[str]] = []
            # One status at a time, so each walk is an ordered range of events_by_status that
            # stops at the limit (an IN over both would sort the whole backlog first).
            for status in ("delivered", "unrouted", "held"):
                uids += conn.execute(
                    "SELECT uid FROM events WHERE status = ? AND received_at < ?"
                    " ORDER BY received_at LIMIT ?",
                    (status, before, limit - len(uids)),
                ).fetchall()
            for (uid,) in uids:
                source, payment_key = conn.execute(
                    "SELECT source, payment_key FROM events WHERE uid = ?", (uid,)
                ).fetchone()
                if payment_key is not None:
                    forget_event(conn, source, payment_key)
            conn.executemany(
                "DELETE FROM attempts WHERE delivery_id IN"
                " (SELECT id FROM deliveries WHERE event_uid = ?)",
                uids,
            )
            conn.executemany("DELETE FROM deliveries WHERE event_uid = ?", uids)
            conn.executemany("DELETE FROM events WHERE uid = ?", uids)
            prune_rollups(conn, before)
            return len(uids)

        if limit < 1:
            return 0
        return await self._db.write(tx)
