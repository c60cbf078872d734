"""The embedded store's reads for the admin API and the dashboard: events, payments by
subject, figures, the change log, dead letters and queue depth. Each is one snapshot on the
store's reader connection, so a search never holds up a group commit."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from gateway.store.records import (
    DEPTH_STATES,
    SEARCH_LIMIT,
    Change,
    DeadLetter,
    EventStatus,
    EventSummary,
    EventView,
    change_order,
    decode_cursor,
    encode_cursor,
)
from gateway.store.sqlite.core import SqliteCore
from gateway.store.sqlite.rows import (
    SUMMARY_COLUMNS,
    attempt_of_row,
    find_uid,
    summary_of,
    view_of,
)
from gateway.store.stats import WINDOW_MINUTES, Stats, minute_of


class SqliteViews(SqliteCore):
    """Snapshot reads: every list is an index walk, never a scan of every event."""

    async def get_event(self, event_id: str, source: str | None = None) -> EventView | None:
        """An event with its deliveries and all their attempts."""

        def tx(conn: sqlite3.Connection) -> EventView | None:
            uid = find_uid(conn, event_id, source)
            return None if uid is None else view_of(conn, self._ring, uid)

        return await self._db.read(tx)

    async def list_events(
        self,
        *,
        source: str | None = None,
        status: EventStatus | None = None,
        limit: int = 50,
        cursor: str | None = None,
        type: str | None = None,
        q: str | None = None,
    ) -> tuple[list[EventSummary], str | None]:
        """Events newest first, filtered by source, status, type and an id or subject prefix."""
        where: list[str] = []
        params: list[Any] = []
        # With a search, the matches drive the query: "+column" keeps SQLite from walking a
        # whole source, status or type index instead and testing each row against them.
        hint = "+" if q else ""
        for column, value in (("source", source), ("status", status), ("type", type)):
            if value is not None:
                where.append(f"{hint}{column} = ?")
                params.append(value)
        if cursor is not None:
            at, uid = decode_cursor(cursor)
            where.append("(received_at, uid) < (?, ?)")
            params += [at, uid]
        if q:
            # A prefix is a range of events_by_id and of events_by_subject, each walked at most
            # SEARCH_LIMIT rows; the matches are then sorted newest first.
            upper = q + "\U0010ffff"
            where.append(
                "uid IN (SELECT uid FROM (SELECT uid FROM events WHERE id >= ? AND id < ?"
                " LIMIT ?) UNION SELECT uid FROM (SELECT uid FROM events"
                " WHERE subject >= ? AND subject < ? LIMIT ?))"
            )
            params += [q, upper, SEARCH_LIMIT, q, upper, SEARCH_LIMIT]
        # The WHERE clauses are fixed text chosen above; every value is a bound parameter.
        sql = (
            f"SELECT {SUMMARY_COLUMNS} FROM events"  # noqa: S608
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY received_at DESC, uid DESC LIMIT ?"
        )
        params.append(limit + 1)

        def tx(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            return conn.execute(sql, params).fetchall()

        rows = await self._db.read(tx)
        page = [summary_of(r) for r in rows[:limit]]
        more = len(rows) > limit
        return page, encode_cursor(rows[limit - 1][5], rows[limit - 1][0]) if more else None

    async def stats(self, now: float) -> Stats:
        """The per-minute counters of the last hour, read by the minute_stats primary key."""
        last = minute_of(now)

        def tx(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            return conn.execute(
                "SELECT minute, name, count FROM minute_stats WHERE minute > ? AND minute <= ?",
                (last - WINDOW_MINUTES, last),
            ).fetchall()

        minutes: dict[int, dict[str, int]] = {}
        latency: dict[int, int] = {}
        for minute, name, count in await self._db.read(tx):
            if name.startswith("lat"):
                bucket = int(name[3:])
                latency[bucket] = latency.get(bucket, 0) + count
            else:
                minutes.setdefault(minute, {})[name] = count
        return Stats(now, minutes, latency)

    async def changes(self, after: str | None, limit: int) -> list[Change]:
        """Change-log entries after ``after`` by sequence number (the latest for ``None``)."""

        def tx(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            if after is None:
                return conn.execute(
                    "SELECT seq, kind, data FROM changes ORDER BY seq DESC LIMIT 1"
                ).fetchall()
            return conn.execute(
                "SELECT seq, kind, data FROM changes WHERE seq > ? ORDER BY seq LIMIT ?",
                (max(change_order(after)[0], 0), limit),
            ).fetchall()

        return [
            Change(str(seq), "delivery" if kind == "delivery" else "accepted", json.loads(data))
            for seq, kind, data in await self._db.read(tx)
        ]

    async def list_dead_letters(
        self, *, destination: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[DeadLetter], str | None]:
        """Dead deliveries, most recently dead first."""
        where = ["d.state = 'dead'"]
        params: list[Any] = []
        if destination is not None:
            where.append("d.destination = ?")
            params.append(destination)
        if cursor is not None:
            at, delivery_id = decode_cursor(cursor)
            where.append("(d.dead_at, d.id) < (?, ?)")
            params += [at, delivery_id]
        # The WHERE clauses are fixed text chosen above; every value is a bound parameter.
        sql = (
            "SELECT d.id, e.id, e.source, d.destination, d.attempts_made, d.dead_at,"  # noqa: S608
            " d.dead_reason, a.number, a.started_at, a.status, a.latency, a.error,"
            " a.response_excerpt"
            " FROM deliveries d JOIN events e ON e.uid = d.event_uid"
            " LEFT JOIN attempts a ON a.seq ="
            "  (SELECT MAX(seq) FROM attempts WHERE delivery_id = d.id)"
            " WHERE " + " AND ".join(where) + " ORDER BY d.dead_at DESC, d.id DESC LIMIT ?"
        )
        params.append(limit + 1)

        def tx(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            return conn.execute(sql, params).fetchall()

        rows = await self._db.read(tx)
        page = [
            DeadLetter(
                delivery_id=r[0],
                event_id=r[1],
                source=r[2],
                destination=r[3],
                attempts_made=r[4],
                dead_at=r[5],
                reason=r[6] or "",
                last_attempt=None if r[7] is None else attempt_of_row(r[7:13]),
            )
            for r in rows[:limit]
        ]
        more = len(rows) > limit
        return page, encode_cursor(rows[limit - 1][5], rows[limit - 1][0]) if more else None

    async def queue_depth(self) -> dict[tuple[str, str], int]:
        """Deliveries per (destination, state) for due, leased and dead.

        Read from the counts the file's triggers keep (``schema``), not by counting rows: a
        count of a large backlog held up every write for as long as it took."""

        def tx(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            return conn.execute(
                "SELECT destination, state, n FROM delivery_counts"
                " WHERE state IN ('due', 'leased', 'dead') AND n > 0"
            ).fetchall()

        rows = await self._db.read(tx)
        return {(r[0], r[1]): r[2] for r in rows if r[1] in DEPTH_STATES}
