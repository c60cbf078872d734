"""The embedded store's request path: accept (queued mode); claim, commit, release (sync)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Literal

from gateway.payments.states import Mark
from gateway.store.crypto import KeyRing, seal_payload
from gateway.store.records import (
    AcceptLimit,
    AcceptResult,
    Attempt,
    Event,
    body_status_of,
    event_change,
    event_status,
)
from gateway.store.sqlite.analytics import add_delivery
from gateway.store.sqlite.core import SqliteCore
from gateway.store.sqlite.payments import apply_payment
from gateway.store.sqlite.rows import (
    count,
    insert_deliveries,
    log_change,
    new_id,
    record_attempt_outcome,
)

# Expired dedupe entries are pruned a few at a time by accept, so no background job is needed
# and no single transaction grows long.
_PRUNE_BATCH = 100
#: Seconds (of the callers' clock) accept waits after a prune that found less than a full
#: batch: entries expire about as fast as they were accepted a window ago, so one look a
#: second keeps up, where a look per accept cost a statement per request.
_PRUNE_PAUSE = 1.0


class SqliteIngress(SqliteCore):
    """Dedupe and enqueue, or claim and record, each in one group-committed transaction."""

    # -- queued mode -------------------------------------------------------------------------

    async def accept(
        self,
        event: Event,
        destinations: Sequence[str],
        window: float,
        now: float,
        limit: AcceptLimit | None = None,
        *,
        first: AcceptLimit | None = None,
    ) -> AcceptResult:
        """Dedupe, persist and enqueue one delivery per destination, in one transaction."""
        if limit is not None or first is not None:
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
            mark, held = _insert_event(conn, self._ring, event, "queued", destinations, now, None)
            _mark_done(conn, event, window, now)
            return AcceptResult("queued", event.id, mark, held)

        return await self._db.write(tx)

    # -- sync mode ---------------------------------------------------------------------------

    async def claim(
        self,
        source: str,
        dedupe_key: str,
        lease: float,
        now: float,
        limit: AcceptLimit | None = None,
        *,
        shard_key: str | None = None,
    ) -> Literal["claimed", "in_progress", "done"]:
        """Take the dedupe key for ``lease`` seconds, unless it is claimed or done (one file
        has no parts: ``shard_key`` changes nothing)."""
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

    async def release(self, source: str, dedupe_key: str, *, shard_key: str | None = None) -> None:
        """Give a claim up; a key already done stays done."""

        def tx(conn: sqlite3.Connection) -> None:
            conn.execute(
                "DELETE FROM dedupe WHERE source = ? AND key = ? AND state = 'processing'",
                (source, dedupe_key),
            )

        await self._db.write(tx)


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
) -> tuple[Mark | None, bool]:
    """Insert the event and its deliveries (delivered with ``delivered`` when given), after
    its payment's state (``apply_payment``); the event's mark, and whether it is held: marked
    under ``order: enforce`` in queued mode, stored without deliveries (a sync event was
    forwarded already, so its mark is only recorded)."""
    uid = new_id()
    mark: Mark | None = None
    held = False
    if event.payment is not None:
        _, mark = apply_payment(conn, event.source, event.payment, now)
        if mark is not None and event.payment.order == "enforce" and delivered is None:
            destinations, held = (), True
    body, headers = seal_payload(ring, event.source, event.id, event.body, event.headers)
    # A new event's status follows from the deliveries about to be inserted, so it is written
    # once here rather than recomputed by ``refresh_status`` (an UPDATE touching its index).
    pending = len(destinations) if delivered is None else 0
    status = event_status(len(destinations), pending, 0, held)
    conn.execute(
        "INSERT INTO events (uid, id, source, type, subject, time, dedupe_key, body, headers,"
        " request_id, received_at, mode, status, body_status, attempts, payment_key, mark,"
        " origin) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
            None if event.payment is None else event.payment.key,
            mark,
            event.origin,
        ),
    )
    count(conn, now, "accepted")
    if not destinations and not held:
        count(conn, now, "unrouted")
    change = {
        **event_change(
            event.id,
            event.source,
            event.type,
            event.subject,
            body_status_of(event.body_status),
            None if event.payment is None else event.payment.key,
        ),
        "event_status": status,
    }
    log_change(conn, "accepted", change)
    insert_deliveries(conn, uid, destinations, now, delivered)
    if delivered is not None:
        for destination in destinations:
            record_attempt_outcome(conn, change, destination, delivered, "delivered")
            ended = delivered.started_at + delivered.latency
            add_delivery(conn, event.source, "delivered", event.received_at, ended)
    return mark, held
