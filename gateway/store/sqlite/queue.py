"""The embedded store's delivery queue: leases, and each way a lease ends."""

from __future__ import annotations

import logging
import sqlite3
import uuid
from typing import Any

from gateway.store.records import (
    BACKLOG_BATCH,
    POISON_BUDGET,
    Attempt,
    DeliveryState,
    Lease,
    UnreadableEvent,
    event_change,
    excerpt,
    log_backlog_released,
)
from gateway.store.sqlite.analytics import add_delivery
from gateway.store.sqlite.core import SqliteCore
from gateway.store.sqlite.rows import (
    STATUS_OF_UID,
    insert_attempt,
    load_lease,
    record_attempt_outcome,
)

log = logging.getLogger("gateway.store")


class SqliteQueue(SqliteCore):
    """Lease due deliveries; complete, reschedule or dead-letter what was leased."""

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
                        leases.append(load_lease(conn, self._ring, delivery_id))
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


def _finish_delivery(
    conn: sqlite3.Connection,
    delivery_id: str,
    token: str,
    attempt: Attempt,
    state: DeliveryState,
    extra: dict[str, Any],
    counted: bool = True,
) -> bool:
    """Leave the leased state for ``state`` and record the attempt, if ``token`` still holds;
    ``counted``: in the analytics too (not for an event that could not be read, as on Redis,
    where nothing tells which source's rollups to add to)."""
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
    insert_attempt(conn, delivery_id, attempt.bounded())
    row = conn.execute(
        f"UPDATE events SET attempts = attempts + 1, status = {STATUS_OF_UID}"  # noqa: S608
        " WHERE uid = :u RETURNING id, source, type, subject, body_status, status, payment_key,"
        " received_at",
        {"u": uid},
    ).fetchall()[0]
    event_id, source, type_, subject, body_status, status, payment_key, received_at = row
    change = {
        **event_change(event_id, source, type_, subject, body_status, payment_key),
        "event_status": status,
    }
    result = record_attempt_outcome(conn, change, destination, attempt, state)
    if counted:
        add_delivery(conn, source, result, received_at, attempt.started_at + attempt.latency)
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
    _finish_delivery(conn, delivery_id, token, attempt, "dead", extra, counted=False)
