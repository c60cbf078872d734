"""The embedded store: one SQLite file in WAL mode, for a single host (DESIGN 5.4).

This module is the SQL of every store operation; ``gateway.store.sqlite_db`` holds the file
under it: connection, schema, the store's one thread and group commit. Each write operation
is one function run in the next group commit, so a caller is answered only once
the ``COMMIT`` holding its operation returned: ingress answers 202 after the event is on disk,
and a ``kill -9`` (or a power cut) after the answer loses nothing. Within a batch, every
operation sees what it would have seen had they run one by one (the second of two accepts
with one dedupe key is a duplicate).

With ``store.encryption_keys`` set, the ``body`` and ``headers`` columns of new events hold
envelopes sealed by ``gateway.store.crypto`` (``headers`` then holds a BLOB, not JSON text).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
import uuid
from collections.abc import Sequence
from typing import Any, Literal, TypeVar, cast

from gateway.errors import EventNotFound
from gateway.jsontext import dumps
from gateway.ratelimit.limiter import Limiter
from gateway.ratelimit.memory import MemoryLimiter
from gateway.store.crypto import KeyRing, open_payload, seal_payload
from gateway.store.records import (
    BACKLOG_BATCH,
    DEPTH_STATES,
    POISON_BUDGET,
    SEARCH_LIMIT,
    TIMELINE_LIMIT,
    AcceptLimit,
    AcceptResult,
    Attempt,
    Change,
    DeadLetter,
    DeliveryState,
    DeliveryView,
    Event,
    EventStatus,
    EventSummary,
    EventView,
    Lease,
    PaymentSummary,
    UnreadableEvent,
    body_status_of,
    change_order,
    decode_cursor,
    encode_cursor,
    event_status,
    excerpt,
    log_backlog_released,
)
from gateway.store.sqlite_db import SqliteDatabase
from gateway.store.stats import WINDOW_MINUTES, Stats, latency_bucket, minute_of

log = logging.getLogger("gateway.store")

T = TypeVar("T")

_EVENT_COLUMNS = (
    "e.uid, e.id, e.source, e.type, e.subject, e.time, e.dedupe_key, e.body, e.headers,"
    " e.request_id, e.received_at, e.mode, e.status, e.body_status"
)

# Expired dedupe entries are pruned a few at a time by accept, so no background job is needed
# and no single transaction grows long.
_PRUNE_BATCH = 100
#: Seconds (of the callers' clock) accept waits after a prune that found less than a full
#: batch: entries expire about as fast as they were accepted a window ago, so one look a
#: second keeps up, where a look per accept cost a statement per request.
_PRUNE_PAUSE = 1.0
#: Entries the change log keeps: a stream client away longer than that many changes starts
#: again from the latest one.
CHANGE_LOG_LIMIT = 10_000
#: Minutes of per-minute counters kept (twice the window the figures cover).
_STATS_KEEP_MINUTES = 2 * WINDOW_MINUTES
_SUMMARY_COLUMNS = (
    "uid, id, source, type, subject, received_at, status, mode, body_status, attempts"
)


class SqliteStore:
    """The SQLite implementation of ``Store``; open it with ``SqliteStore.open``."""

    def __init__(self, db: SqliteDatabase, ring: KeyRing | None = None) -> None:
        self._db = db
        self._ring = ring
        #: When accept next prunes expired dedupe entries; read and set on the store's thread.
        self._prune_at = float("-inf")

    @classmethod
    async def open(cls, url: str, ring: KeyRing | None = None) -> SqliteStore:
        """Open (creating when needed) the database a ``sqlite:///`` URL names.

        With a ``ring``, event bodies and headers are written encrypted (``store.crypto``).
        """
        return cls(await SqliteDatabase.open(url), ring)

    # -- queued mode -------------------------------------------------------------------------

    async def accept(
        self,
        event: Event,
        destinations: Sequence[str],
        window: float,
        now: float,
        limit: AcceptLimit | None = None,
    ) -> AcceptResult:
        """Dedupe, persist and enqueue one delivery per destination, in one transaction."""
        if limit is not None:
            raise ValueError("the SQLite store does not decide rate limits (decides_limits)")

        def tx(conn: sqlite3.Connection) -> AcceptResult:
            if now >= self._prune_at and _prune_dedupe(conn, now) < _PRUNE_BATCH:
                self._prune_at = now + _PRUNE_PAUSE
            row = conn.execute(
                "SELECT event_id FROM dedupe WHERE source = ? AND key = ? AND expires_at > ?",
                (event.source, event.dedupe_key, now),
            ).fetchone()
            if row is not None:
                # A live sync claim has no event id yet: the claimed event is this one.
                return AcceptResult("duplicate", row[0] if row[0] is not None else event.id)
            # Id collision: the same (source, id) accepted within the window under another key.
            # "+source": walk events_by_id (an id is all but unique), not the whole window of
            # the source in events_by_source.
            collision = conn.execute(
                "SELECT 1 FROM events WHERE +source = ? AND id = ? AND received_at > ? LIMIT 1",
                (event.source, event.id, now - window),
            ).fetchone()
            if collision is not None:
                return AcceptResult("duplicate", event.id)
            _insert_event(conn, self._ring, event, "queued", destinations, now, None)
            _mark_done(conn, event, window, now)
            return AcceptResult("queued", event.id)

        return await self._db.write(tx)

    # -- sync mode ---------------------------------------------------------------------------

    async def claim(
        self,
        source: str,
        dedupe_key: str,
        lease: float,
        now: float,
        limit: AcceptLimit | None = None,
    ) -> Literal["claimed", "in_progress", "done"]:
        """Take the dedupe key for ``lease`` seconds, unless it is claimed or done."""
        if limit is not None:
            raise ValueError("the SQLite store does not decide rate limits (decides_limits)")

        def tx(conn: sqlite3.Connection) -> Literal["claimed", "in_progress", "done"]:
            row = conn.execute(
                "SELECT state FROM dedupe WHERE source = ? AND key = ? AND expires_at > ?",
                (source, dedupe_key, now),
            ).fetchone()
            if row is not None:
                return "in_progress" if row[0] == "processing" else "done"
            conn.execute(
                "INSERT OR REPLACE INTO dedupe (source, key, state, event_id, expires_at)"
                " VALUES (?, ?, 'processing', NULL, ?)",
                (source, dedupe_key, now + lease),
            )
            return "claimed"

        # Not fsynced on its own: a claim lost to a power cut only lets the sender's resend be
        # forwarded again (at least once; the destination dedupes on webhook-id), and the
        # commit that follows a delivery fsyncs the claim with it.
        return await self._db.write(tx, durable=False)

    async def commit(
        self,
        event: Event,
        destinations: Sequence[str],
        window: float,
        now: float,
        attempt: Attempt,
    ) -> None:
        """Mark the key done for the window; record the event as delivered with the attempt."""

        def tx(conn: sqlite3.Connection) -> None:
            _insert_event(conn, self._ring, event, "sync", destinations, now, attempt.bounded())
            _mark_done(conn, event, window, now)

        await self._db.write(tx)

    async def release(self, source: str, dedupe_key: str) -> None:
        """Give a claim up; a key already done stays done."""

        def tx(conn: sqlite3.Connection) -> None:
            conn.execute(
                "DELETE FROM dedupe WHERE source = ? AND key = ? AND state = 'processing'",
                (source, dedupe_key),
            )

        await self._db.write(tx)

    # -- workers -----------------------------------------------------------------------------

    async def lease_due(self, now: float, lease: float, limit: int, worker: str) -> list[Lease]:
        """Lease due deliveries and expired leases, oldest due first."""

        def tx(conn: sqlite3.Connection) -> tuple[list[Lease], list[tuple[str, str]]]:
            leases: list[Lease] = []
            dead: list[tuple[str, str]] = []
            # Unreadable ones become dead, so each round selects new rows; rounds stop when
            # the batch is full, nothing more is due, or the poison budget is spent.
            while len(leases) < limit and len(dead) < POISON_BUDGET:
                # Each side walks its index in order and stops at the limit, so only those
                # rows are sorted, never the whole backlog (one sort of every due delivery
                # per call made leasing slower the longer the queue).
                rows = conn.execute(
                    "SELECT id FROM ("
                    " SELECT * FROM (SELECT id, lease_expires_at AS at FROM deliveries"
                    "  WHERE state = 'leased' AND lease_expires_at <= :now"
                    "  ORDER BY lease_expires_at LIMIT :limit)"
                    " UNION ALL"
                    " SELECT * FROM (SELECT id, next_attempt_at AS at FROM deliveries"
                    "  WHERE state = 'due' AND next_attempt_at <= :now"
                    "  ORDER BY next_attempt_at LIMIT :limit)"
                    ") ORDER BY at LIMIT :limit",
                    {"now": now, "limit": limit - len(leases)},
                ).fetchall()
                if not rows:
                    break
                for (delivery_id,) in rows:
                    token = uuid.uuid4().hex
                    conn.execute(
                        "UPDATE deliveries SET state = 'leased', lease_token = ?,"
                        " lease_expires_at = ?, leased_by = ? WHERE id = ?",
                        (token, now + lease, worker, delivery_id),
                    )
                    try:
                        leases.append(_load_lease(conn, self._ring, delivery_id))
                    except UnreadableEvent as exc:
                        _dead_letter_unreadable(conn, delivery_id, token, now, str(exc))
                        dead.append((delivery_id, str(exc)))
            return leases, dead

        # Not fsynced on its own (nor are the finishes below): what a power cut can take is a
        # lease or an attempt's outcome, and either way the delivery is due again and sent
        # again (at least once; the destination dedupes on webhook-id). Redis does not wait
        # for replicas on these either. The next durable commit's fsync covers them.
        leases, dead = await self._db.write(tx, durable=False)
        for delivery_id, reason in dead:
            log.error("delivery %s dead-lettered: %s", delivery_id, reason)
        return leases

    async def complete(self, lease: Lease, attempt: Attempt) -> bool:
        """Mark the leased delivery delivered and record the attempt."""
        return await self._finish(lease, attempt, "delivered", {})

    async def reschedule(self, lease: Lease, attempt: Attempt, next_at: float) -> bool:
        """Record the attempt and make the delivery due at ``next_at``."""
        return await self._finish(lease, attempt, "due", {"next_attempt_at": next_at})

    async def dead_letter(self, lease: Lease, attempt: Attempt, reason: str) -> bool:
        """Record the attempt and move the delivery to the dead letters."""
        dead_at = attempt.started_at + attempt.latency
        return await self._finish(
            lease, attempt, "dead", {"dead_reason": excerpt(reason), "dead_at": dead_at}
        )

    async def _finish(
        self, lease: Lease, attempt: Attempt, state: DeliveryState, extra: dict[str, Any]
    ) -> bool:
        """Leave the leased state for ``state`` if the lease token still matches; a delivery
        that succeeds after its destination's retries releases a batch of its backlog."""

        def tx(conn: sqlite3.Connection) -> tuple[bool, int]:
            done = _finish_delivery(conn, lease.delivery_id, lease.token, attempt, state, extra)
            released = 0
            if done and state == "delivered":
                released = _release_backlog(
                    conn, lease.destination, attempt.started_at + attempt.latency
                )
            return done, released

        done, released = await self._db.write(tx, durable=False)
        if released:
            log_backlog_released(lease.destination, released)
        return done

    # -- operator ----------------------------------------------------------------------------

    async def replay(
        self, event_id: str, destinations: Sequence[str], now: float, source: str | None = None
    ) -> list[str]:
        """New deliveries of a stored event, due now, whatever dedupe says."""

        def tx(conn: sqlite3.Connection) -> list[str]:
            uid = _find_uid(conn, event_id, source)
            if uid is None:
                raise EventNotFound(event_id)
            ids = _insert_deliveries(conn, uid, destinations, now, None)
            _refresh_status(conn, uid)
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
                    _refresh_status_of_delivery(conn, delivery_id)
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
            for status in ("delivered", "unrouted"):
                uids += conn.execute(
                    "SELECT uid FROM events WHERE status = ? AND received_at < ?"
                    " ORDER BY received_at LIMIT ?",
                    (status, before, limit - len(uids)),
                ).fetchall()
            for (uid,) in uids:
                subject = conn.execute(
                    "SELECT subject FROM events WHERE uid = ?", (uid,)
                ).fetchone()[0]
                key = f"s:{subject}" if subject is not None else f"e:{uid}"
                conn.execute("UPDATE subjects SET events = events - 1 WHERE key = ?", (key,))
                conn.execute("DELETE FROM subjects WHERE key = ? AND events <= 0", (key,))
            conn.executemany(
                "DELETE FROM attempts WHERE delivery_id IN"
                " (SELECT id FROM deliveries WHERE event_uid = ?)",
                uids,
            )
            conn.executemany("DELETE FROM deliveries WHERE event_uid = ?", uids)
            conn.executemany("DELETE FROM events WHERE uid = ?", uids)
            return len(uids)

        if limit < 1:
            return 0
        return await self._db.write(tx)

    async def get_event(self, event_id: str, source: str | None = None) -> EventView | None:
        """An event with its deliveries and all their attempts."""

        def tx(conn: sqlite3.Connection) -> EventView | None:
            uid = _find_uid(conn, event_id, source)
            return None if uid is None else _view(conn, self._ring, uid)

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
            f"SELECT {_SUMMARY_COLUMNS} FROM events"  # noqa: S608
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY received_at DESC, uid DESC LIMIT ?"
        )
        params.append(limit + 1)

        def tx(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            return conn.execute(sql, params).fetchall()

        rows = await self._db.read(tx)
        page = [_summary(r) for r in rows[:limit]]
        more = len(rows) > limit
        return page, encode_cursor(rows[limit - 1][5], rows[limit - 1][0]) if more else None

    async def list_payments(
        self, *, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[PaymentSummary], str | None]:
        """Subjects by latest event, newest first (the subjects table, by its latest index)."""
        where = ""
        params: list[Any] = []
        if cursor is not None:
            at, key = decode_cursor(cursor)
            where = " WHERE (s.latest_at, s.key) < (?, ?)"
            params += [at, key]
        # The WHERE clause is fixed text chosen above; every value is a bound parameter.
        sql = (
            "SELECT s.key, s.subject, s.latest_at, s.events, e.id, e.source, e.type,"  # noqa: S608
            " e.body_status, e.status FROM subjects s LEFT JOIN events e ON e.uid = s.latest_uid"
            + where
            + " ORDER BY s.latest_at DESC, s.key DESC LIMIT ?"
        )
        params.append(limit + 1)

        def tx(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            return conn.execute(sql, params).fetchall()

        rows = await self._db.read(tx)
        page = [
            PaymentSummary(
                subject=r[1],
                event_id=r[4],
                source=r[5],
                type=r[6],
                body_status=r[7],
                status=r[8],
                events=r[3],
                latest_at=r[2],
            )
            for r in rows[:limit]
            if r[4] is not None  # its latest event was pruned meanwhile
        ]
        more = len(rows) > limit
        return page, encode_cursor(rows[limit - 1][2], rows[limit - 1][0]) if more else None

    async def subject_timeline(self, subject: str) -> list[EventView]:
        """The subject's events in the order received, each with its deliveries."""

        def tx(conn: sqlite3.Connection) -> list[EventView]:
            uids = conn.execute(
                "SELECT uid FROM events WHERE subject = ? ORDER BY received_at DESC, uid DESC"
                " LIMIT ?",
                (subject, TIMELINE_LIMIT),
            ).fetchall()
            return [_view(conn, self._ring, uid) for (uid,) in reversed(uids)]

        return await self._db.read(tx)

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
                last_attempt=None if r[7] is None else _attempt(r[7:13]),
            )
            for r in rows[:limit]
        ]
        more = len(rows) > limit
        return page, encode_cursor(rows[limit - 1][5], rows[limit - 1][0]) if more else None

    async def queue_depth(self) -> dict[tuple[str, str], int]:
        """Deliveries per (destination, state) for due, leased and dead.

        Read from the counts the file's triggers keep (``sqlite_db``), not by counting rows: a
        count of a large backlog held up every write for as long as it took."""

        def tx(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            return conn.execute(
                "SELECT destination, state, n FROM delivery_counts"
                " WHERE state IN ('due', 'leased', 'dead') AND n > 0"
            ).fetchall()

        rows = await self._db.read(tx)
        return {(r[0], r[1]): r[2] for r in rows if r[1] in DEPTH_STATES}

    def rate_limiter(self) -> Limiter:
        """Limits kept in this process (the file is one host's; each process counts its own)."""
        return MemoryLimiter()

    def decides_limits(self, limiter: Limiter) -> bool:
        """Never: the limits are in the process, not in the file."""
        return False

    def wakeups(self) -> None:
        """None: processes sharing a file find each other's events by polling."""
        return None

    async def ping(self) -> None:
        """Read from the database file."""
        await self._db.run(
            lambda conn: conn.execute("SELECT version FROM schema_version").fetchone()
        )

    async def close(self) -> None:
        """Close the connection and stop the store's thread (after the writes called)."""
        await self._db.close()


# -- helpers, all called on the store's thread --------------------------------------------------


def _new_id() -> str:
    """A new 32-hex-digit id (an event's uid, a delivery's id) that sorts by creation time.

    The milliseconds since the epoch come first, then 80 random bits (as in a UUIDv7, RFC 9562
    section 5.7): a new key lands at the end of every index on it, where a random one (uuid4)
    landed on a random page of an index as large as the whole store, so each insert read and
    wrote a page the cache did not hold and accepts slowed down as the file grew.
    """
    return f"{time.time_ns() // 1_000_000:012x}{os.urandom(10).hex()}"


def _prune_dedupe(conn: sqlite3.Connection, now: float) -> int:
    """Delete a few expired dedupe entries (lazy expiry); how many went."""
    return conn.execute(
        "DELETE FROM dedupe WHERE (source, key) IN"
        " (SELECT source, key FROM dedupe WHERE expires_at <= ? LIMIT ?)",
        (now, _PRUNE_BATCH),
    ).rowcount


def _mark_done(conn: sqlite3.Connection, event: Event, window: float, now: float) -> None:
    """Remember the dedupe key as done for ``window`` seconds."""
    conn.execute(
        "INSERT OR REPLACE INTO dedupe (source, key, state, event_id, expires_at)"
        " VALUES (?, ?, 'done', ?, ?)",
        (event.source, event.dedupe_key, event.id, now + window),
    )


def _insert_event(
    conn: sqlite3.Connection,
    ring: KeyRing | None,
    event: Event,
    mode: Literal["queued", "sync"],
    destinations: Sequence[str],
    now: float,
    delivered: Attempt | None,
) -> str:
    """Insert the event and its deliveries (delivered with ``delivered`` when given)."""
    uid = _new_id()
    body, headers = seal_payload(ring, event.source, event.id, event.body, event.headers)
    # A new event's status follows from the deliveries about to be inserted, so it is written
    # once here rather than recomputed by ``_refresh_status`` (an UPDATE touching its index).
    pending = len(destinations) if delivered is None else 0
    status = event_status(len(destinations), pending, 0)
    conn.execute(
        "INSERT INTO events (uid, id, source, type, subject, time, dedupe_key, body, headers,"
        " request_id, received_at, mode, status, body_status, attempts)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            uid,
            event.id,
            event.source,
            event.type,
            event.subject,
            event.time,
            event.dedupe_key,
            body,
            headers,
            event.request_id,
            event.received_at,
            mode,
            status,
            body_status_of(event.body_status),
            0 if delivered is None else len(destinations),
        ),
    )
    key = f"s:{event.subject}" if event.subject is not None else f"e:{uid}"
    conn.execute(
        "INSERT INTO subjects (key, subject, latest_uid, latest_at, events)"
        " VALUES (?, ?, ?, ?, 1) ON CONFLICT (key) DO UPDATE SET events = events + 1,"
        " latest_uid = CASE WHEN excluded.latest_at >= latest_at THEN excluded.latest_uid"
        "  ELSE latest_uid END, latest_at = MAX(latest_at, excluded.latest_at)",
        (key, event.subject, uid, event.received_at),
    )
    _count(conn, now, "accepted")
    if not destinations:
        _count(conn, now, "unrouted")
    _log_change(conn, "accepted", {**_change_of(event), "event_status": status})
    _insert_deliveries(conn, uid, destinations, now, delivered)
    if delivered is not None:
        for destination in destinations:
            stored = body_status_of(event.body_status)
            row = (event.id, event.source, event.type, event.subject, stored, status)
            _record_attempt_outcome(conn, (*row, destination), delivered, "delivered")
    return uid


def _insert_deliveries(
    conn: sqlite3.Connection,
    uid: str,
    destinations: Sequence[str],
    now: float,
    delivered: Attempt | None,
) -> list[str]:
    """One delivery per destination: due now, or already delivered by ``delivered``."""
    ids = []
    for destination in destinations:
        delivery_id = _new_id()
        if delivered is None:
            conn.execute(
                "INSERT INTO deliveries (id, event_uid, destination, state, created_at,"
                " next_attempt_at) VALUES (?, ?, ?, 'due', ?, ?)",
                (delivery_id, uid, destination, now, now),
            )
        else:
            conn.execute(
                "INSERT INTO deliveries (id, event_uid, destination, state, attempts_made,"
                " created_at, first_attempt_at) VALUES (?, ?, ?, 'delivered', 1, ?, ?)",
                (delivery_id, uid, destination, now, delivered.started_at),
            )
            _insert_attempt(conn, delivery_id, delivered)
        ids.append(delivery_id)
    return ids


def _finish_delivery(
    conn: sqlite3.Connection,
    delivery_id: str,
    token: str,
    attempt: Attempt,
    state: DeliveryState,
    extra: dict[str, Any],
) -> bool:
    """Leave the leased state for ``state`` and record the attempt, if ``token`` still holds."""
    # RETURNING hands back what the later statements need, so no statement reads a row an
    # earlier one just wrote (this runs once per delivery attempt, on the store's one thread).
    row = conn.execute(
        "UPDATE deliveries SET state = :state, attempts_made = attempts_made + 1,"
        " first_attempt_at = COALESCE(first_attempt_at, :started_at),"
        " lease_token = NULL, lease_expires_at = NULL, leased_by = NULL,"
        " next_attempt_at = :next_attempt_at, dead_reason = :dead_reason,"
        " dead_at = :dead_at"
        " WHERE id = :id AND state = 'leased' AND lease_token = :token"
        " RETURNING event_uid, destination",
        {
            "state": state,
            "started_at": attempt.started_at,
            "next_attempt_at": extra.get("next_attempt_at"),
            "dead_reason": extra.get("dead_reason"),
            "dead_at": extra.get("dead_at"),
            "id": delivery_id,
            "token": token,
        },
    ).fetchall()
    if len(row) != 1:
        return False
    uid, destination = row[0]
    if state == "due":
        # A retry: the destination is failing; its next success releases the backlog.
        conn.execute("INSERT OR IGNORE INTO backoff (destination) VALUES (?)", (destination,))
    _insert_attempt(conn, delivery_id, attempt.bounded())
    event = conn.execute(
        f"UPDATE events SET attempts = attempts + 1, status = {_STATUS_OF_UID}"  # noqa: S608
        " WHERE uid = :u RETURNING id, source, type, subject, body_status, status",
        {"u": uid},
    ).fetchall()[0]
    _record_attempt_outcome(conn, (*event, destination), attempt, state)
    return True


def _release_backlog(conn: sqlite3.Connection, destination: str, now: float) -> int:
    """After a delivery to ``destination`` succeeded: if a retry was scheduled since its last
    success, make up to ``BACKLOG_BATCH`` of its deliveries waiting out a backoff due now.

    The mark stays while a full batch was moved, so the next success moves the next batch:
    a backlog of any size drains as fast as it is delivered, and no transaction grows long.
    """
    if conn.execute("SELECT 1 FROM backoff WHERE destination = ?", (destination,)).fetchone():
        moved = conn.execute(
            "UPDATE deliveries SET next_attempt_at = :now WHERE id IN (SELECT id FROM"
            " deliveries WHERE state = 'due' AND next_attempt_at > :now"
            " AND destination = :destination ORDER BY next_attempt_at LIMIT :batch)",
            {"now": now, "destination": destination, "batch": BACKLOG_BATCH},
        ).rowcount
        if moved < BACKLOG_BATCH:
            conn.execute("DELETE FROM backoff WHERE destination = ?", (destination,))
        return moved
    return 0


def _dead_letter_unreadable(
    conn: sqlite3.Connection, delivery_id: str, token: str, now: float, reason: str
) -> None:
    """Dead-letter a just-leased delivery whose event cannot be read, recording why."""
    made = conn.execute(
        "SELECT attempts_made FROM deliveries WHERE id = ?", (delivery_id,)
    ).fetchone()[0]
    attempt = Attempt(made + 1, now, None, 0.0, reason)
    extra = {"dead_reason": excerpt(reason), "dead_at": now}
    _finish_delivery(conn, delivery_id, token, attempt, "dead", extra)


def _insert_attempt(conn: sqlite3.Connection, delivery_id: str, attempt: Attempt) -> None:
    """Record one attempt of a delivery."""
    conn.execute(
        "INSERT INTO attempts (delivery_id, number, started_at, status, latency, error,"
        " response_excerpt) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            delivery_id,
            attempt.number,
            attempt.started_at,
            attempt.status,
            attempt.latency,
            attempt.error,
            attempt.response_excerpt,
        ),
    )


#: An event's status from its deliveries (see ``base.event_status``), for the event ``:u``.
_STATUS_OF_UID = (
    "CASE"
    " WHEN NOT EXISTS (SELECT 1 FROM deliveries WHERE event_uid = :u) THEN 'unrouted'"
    " WHEN EXISTS (SELECT 1 FROM deliveries WHERE event_uid = :u"
    "  AND state IN ('due', 'leased')) THEN 'queued'"
    " WHEN EXISTS (SELECT 1 FROM deliveries WHERE event_uid = :u AND state = 'dead')"
    "  THEN 'dead_lettered'"
    " ELSE 'delivered' END"
)


def _refresh_status(conn: sqlite3.Connection, uid: str) -> None:
    """Recompute an event's status from its deliveries (see ``base.event_status``)."""
    conn.execute(
        f"UPDATE events SET status = {_STATUS_OF_UID} WHERE uid = :u",  # noqa: S608
        {"u": uid},
    )


def _refresh_status_of_delivery(conn: sqlite3.Connection, delivery_id: str) -> None:
    """Recompute the status of the event a delivery belongs to."""
    row = conn.execute("SELECT event_uid FROM deliveries WHERE id = ?", (delivery_id,)).fetchone()
    _refresh_status(conn, row[0])


def _find_uid(conn: sqlite3.Connection, event_id: str, source: str | None) -> str | None:
    """The newest stored event with this id (and source, when given)."""
    if source is None:
        row = conn.execute(
            "SELECT uid FROM events WHERE id = ? ORDER BY received_at DESC, uid DESC LIMIT 1",
            (event_id,),
        ).fetchone()
    else:
        row = conn.execute(
            "SELECT uid FROM events WHERE +source = ? AND id = ?"
            " ORDER BY received_at DESC, uid DESC LIMIT 1",
            (source, event_id),
        ).fetchone()
    return None if row is None else cast(str, row[0])


def _event(row: Sequence[Any], ring: KeyRing | None) -> Event:
    """An ``Event`` from a row of ``_EVENT_COLUMNS`` (its payload decrypted when sealed)."""
    try:
        sealed_body = bytes(row[7])
    except TypeError:  # a body that is not a BLOB (NULL, a number): a corrupt row
        raise UnreadableEvent("stored event is corrupt: its body is not bytes") from None
    body, headers = open_payload(ring, row[2], row[1], sealed_body, row[8])
    return Event(
        id=row[1],
        source=row[2],
        type=row[3],
        subject=row[4],
        time=row[5],
        dedupe_key=row[6],
        body=body,
        headers=headers,
        request_id=row[9],
        received_at=row[10],
        body_status=row[13],
    )


def _attempt(row: Sequence[Any]) -> Attempt:
    """An ``Attempt`` from (number, started_at, status, latency, error, excerpt)."""
    return Attempt(
        number=row[0],
        started_at=row[1],
        status=row[2],
        latency=row[3],
        error=row[4],
        response_excerpt=row[5],
    )


def _load_lease(conn: sqlite3.Connection, ring: KeyRing | None, delivery_id: str) -> Lease:
    """The ``Lease`` for a delivery just leased."""
    row = conn.execute(
        f"SELECT {_EVENT_COLUMNS}, d.destination, d.attempts_made, d.lease_token,"  # noqa: S608
        " d.lease_expires_at, d.first_attempt_at, d.created_at"
        " FROM deliveries d JOIN events e ON e.uid = d.event_uid WHERE d.id = ?",
        (delivery_id,),
    ).fetchone()
    return Lease(
        delivery_id=delivery_id,
        event=_event(row, ring),
        destination=row[14],
        attempt=row[15] + 1,
        token=row[16],
        expires_at=row[17],
        first_attempt_at=row[18],
        created_at=row[19],
    )


def _view(conn: sqlite3.Connection, ring: KeyRing | None, uid: str) -> EventView:
    """The event stored under ``uid`` with its deliveries and all their attempts."""
    row = conn.execute(
        f"SELECT {_EVENT_COLUMNS} FROM events e WHERE e.uid = ?",  # noqa: S608
        (uid,),
    ).fetchone()
    deliveries = []
    for d in conn.execute(
        "SELECT id, destination, state, attempts_made, created_at, next_attempt_at,"
        " dead_reason, dead_at FROM deliveries WHERE event_uid = ?"
        " ORDER BY created_at, rowid",
        (uid,),
    ).fetchall():
        attempts = tuple(
            _attempt(a)
            for a in conn.execute(
                "SELECT number, started_at, status, latency, error, response_excerpt"
                " FROM attempts WHERE delivery_id = ? ORDER BY seq",
                (d[0],),
            ).fetchall()
        )
        deliveries.append(
            DeliveryView(
                id=d[0],
                destination=d[1],
                state=d[2],
                attempts_made=d[3],
                created_at=d[4],
                next_attempt_at=d[5] if d[2] == "due" else None,
                dead_reason=d[6],
                dead_at=d[7],
                attempts=attempts,
            )
        )
    return EventView(
        event=_event(row, ring), mode=row[11], status=row[12], deliveries=tuple(deliveries)
    )


def _summary(r: Sequence[Any]) -> EventSummary:
    """An ``EventSummary`` from a row of ``_SUMMARY_COLUMNS``."""
    return EventSummary(
        id=r[1],
        source=r[2],
        type=r[3],
        subject=r[4],
        received_at=r[5],
        status=r[6],
        mode=r[7],
        body_status=r[8],
        attempts=r[9],
    )


def _count(conn: sqlite3.Connection, at: float, name: str, by: int = 1) -> None:
    """Add to a per-minute counter (``store.stats``); old minutes go as new ones start."""
    minute = minute_of(at)
    cur = conn.execute(
        "UPDATE minute_stats SET count = count + ? WHERE minute = ? AND name = ?",
        (by, minute, name),
    )
    if cur.rowcount == 0:
        conn.execute(
            "INSERT INTO minute_stats (minute, name, count) VALUES (?, ?, ?)", (minute, name, by)
        )
        conn.execute("DELETE FROM minute_stats WHERE minute < ?", (minute - _STATS_KEEP_MINUTES,))


def _log_change(conn: sqlite3.Connection, kind: str, data: dict[str, Any]) -> None:
    """Append to the change log the live stream polls, keeping its last CHANGE_LOG_LIMIT."""
    cur = conn.execute(
        "INSERT INTO changes (kind, data) VALUES (?, ?)",
        (kind, dumps(data)),
    )
    if cur.lastrowid is not None and cur.lastrowid % 100 == 0:
        conn.execute("DELETE FROM changes WHERE seq <= ?", (cur.lastrowid - CHANGE_LOG_LIMIT,))


def _change_of(event: Event) -> dict[str, Any]:
    """What the change log says about an event."""
    return {
        "event_id": event.id,
        "source": event.source,
        "type": event.type,
        "subject": event.subject,
        "status": event.body_status,
    }


def _record_attempt_outcome(
    conn: sqlite3.Connection, row: Sequence[Any], attempt: Attempt, state: DeliveryState
) -> None:
    """Count an attempt's result and latency, and log it as a delivery change; ``row`` is the
    event's id, source, type, subject, body status and status, and the destination."""
    result = {"delivered": "delivered", "due": "retried"}.get(state, "dead_lettered")
    at = attempt.started_at + attempt.latency
    _count(conn, at, result)
    _count(conn, at, f"lat{latency_bucket(attempt.latency)}")
    _log_change(
        conn,
        "delivery",
        {
            "event_id": row[0],
            "source": row[1],
            "type": row[2],
            "subject": row[3],
            "status": row[4],
            "event_status": row[5],
            "destination": row[6],
            "attempt": attempt.number,
            "result": result,
        },
    )
