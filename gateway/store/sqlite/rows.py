"""The rows of the embedded store: columns, row readers and the helpers every role's SQL
shares (ids, attempts, an event's status, the per-minute counts and the change log).

All of it runs on the store's threads, inside a transaction the caller holds.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Sequence
from typing import Any, cast

from gateway.jsontext import dumps
from gateway.payments.states import MARKS
from gateway.store.crypto import KeyRing, open_payload
from gateway.store.records import (
    ORIGINS,
    Attempt,
    DeliveryState,
    DeliveryView,
    Event,
    EventSummary,
    EventView,
    Lease,
    UnreadableEvent,
    delivery_change,
    one_of,
)
from gateway.store.sqlite import tally
from gateway.store.stats import latency_bucket, minute_of

EVENT_COLUMNS = (
    "e.uid, e.id, e.source, e.type, e.subject, e.time, e.dedupe_key, e.body, e.headers,"
    " e.request_id, e.received_at, e.mode, e.status, e.body_status, e.payment_key, e.mark,"
    " e.origin"
)


CHANGE_LOG_LIMIT = 10_000
SUMMARY_COLUMNS = "uid, id, source, type, subject, received_at, status, mode, body_status, attempts"


def new_id() -> str:
    """A new 32-hex-digit id (an event's uid, a delivery's id) that sorts by creation time.

    The milliseconds since the epoch come first, then 80 random bits (as in a UUIDv7, RFC 9562
    section 5.7): a new key lands at the end of every index on it, where a random one (uuid4)
    landed on a random page of an index as large as the whole store, so each insert read and
    wrote a page the cache did not hold and accepts slowed down as the file grew.
    """
    return f"{time.time_ns() // 1_000_000:012x}{os.urandom(10).hex()}"


def insert_deliveries(
    conn: sqlite3.Connection,
    uid: str,
    destinations: Sequence[str],
    now: float,
    delivered: Attempt | None,
) -> list[str]:
    """One delivery per destination: due now, or already delivered by ``delivered``."""
    ids = []
    for destination in destinations:
        delivery_id = new_id()
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
            insert_attempt(conn, delivery_id, delivered)
        ids.append(delivery_id)
    return ids


def insert_attempt(conn: sqlite3.Connection, delivery_id: str, attempt: Attempt) -> None:
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
STATUS_OF_UID = (
    "CASE"
    " WHEN NOT EXISTS (SELECT 1 FROM deliveries WHERE event_uid = :u) THEN"
    "  CASE WHEN (SELECT mark FROM events WHERE uid = :u) IS NULL THEN 'unrouted'"
    "  ELSE 'held' END"
    " WHEN EXISTS (SELECT 1 FROM deliveries WHERE event_uid = :u"
    "  AND state IN ('due', 'leased')) THEN 'queued'"
    " WHEN EXISTS (SELECT 1 FROM deliveries WHERE event_uid = :u AND state = 'dead')"
    "  THEN 'dead_lettered'"
    " ELSE 'delivered' END"
)


def refresh_status(conn: sqlite3.Connection, uid: str) -> None:
    """Recompute an event's status from its deliveries (see ``base.event_status``)."""
    conn.execute(
        f"UPDATE events SET status = {STATUS_OF_UID} WHERE uid = :u",  # noqa: S608
        {"u": uid},
    )


def refresh_status_of_delivery(conn: sqlite3.Connection, delivery_id: str) -> None:
    """Recompute the status of the event a delivery belongs to."""
    row = conn.execute("SELECT event_uid FROM deliveries WHERE id = ?", (delivery_id,)).fetchone()
    refresh_status(conn, row[0])


def find_uid(conn: sqlite3.Connection, event_id: str, source: str | None) -> str | None:
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


def event_of_row(row: Sequence[Any], ring: KeyRing | None) -> Event:
    """An ``Event`` from a row of ``EVENT_COLUMNS`` (its payload decrypted when sealed)."""
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
        origin=one_of(row[16], ORIGINS, "origin"),
    )


def attempt_of_row(row: Sequence[Any]) -> Attempt:
    """An ``Attempt`` from (number, started_at, status, latency, error, excerpt)."""
    return Attempt(
        number=row[0],
        started_at=row[1],
        status=row[2],
        latency=row[3],
        error=row[4],
        response_excerpt=row[5],
    )


def load_lease(conn: sqlite3.Connection, ring: KeyRing | None, delivery_id: str) -> Lease:
    """The ``Lease`` for a delivery just leased."""
    row = conn.execute(
        f"SELECT {EVENT_COLUMNS}, d.destination, d.attempts_made, d.lease_token,"  # noqa: S608
        " d.lease_expires_at, d.first_attempt_at, d.created_at"
        " FROM deliveries d JOIN events e ON e.uid = d.event_uid WHERE d.id = ?",
        (delivery_id,),
    ).fetchone()
    return Lease(
        delivery_id=delivery_id,
        event=event_of_row(row, ring),
        destination=row[17],
        attempt=row[18] + 1,
        token=row[19],
        expires_at=row[20],
        first_attempt_at=row[21],
        created_at=row[22],
    )


def view_of(conn: sqlite3.Connection, ring: KeyRing | None, uid: str) -> EventView:
    """The event stored under ``uid`` with its deliveries and all their attempts."""
    row = conn.execute(
        f"SELECT {EVENT_COLUMNS} FROM events e WHERE e.uid = ?",  # noqa: S608
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
            attempt_of_row(a)
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
        event=event_of_row(row, ring),
        mode=row[11],
        status=row[12],
        deliveries=tuple(deliveries),
        payment_key=row[14],
        mark=None if row[15] is None else one_of(row[15], MARKS, "mark"),
    )


def summary_of(r: Sequence[Any]) -> EventSummary:
    """An ``EventSummary`` from a row of ``SUMMARY_COLUMNS``."""
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


def count(conn: sqlite3.Connection, at: float, name: str, by: int = 1) -> None:
    """Add to a per-minute counter (``store.stats``), in the transaction's tally."""
    tally.count(conn, minute_of(at), name, by)


def log_change(conn: sqlite3.Connection, kind: str, data: dict[str, Any]) -> None:
    """Append to the change log the live stream polls, keeping its last CHANGE_LOG_LIMIT."""
    cur = conn.execute(
        "INSERT INTO changes (kind, data) VALUES (?, ?)",
        (kind, dumps(data)),
    )
    if cur.lastrowid is not None and cur.lastrowid % 100 == 0:
        conn.execute("DELETE FROM changes WHERE seq <= ?", (cur.lastrowid - CHANGE_LOG_LIMIT,))


def record_attempt_outcome(
    conn: sqlite3.Connection,
    event: dict[str, object],
    destination: str,
    attempt: Attempt,
    state: DeliveryState,
) -> str:
    """Count an attempt's result and latency, and log it as a delivery change; ``event`` is
    what the change log says of the event (``event_change`` and its status). Answers the
    result (delivered, retried or dead_lettered)."""
    result = {"delivered": "delivered", "due": "retried"}.get(state, "dead_lettered")
    at = attempt.started_at + attempt.latency
    count(conn, at, result)
    count(conn, at, f"lat{latency_bucket(attempt.latency)}")
    log_change(conn, "delivery", delivery_change(event, destination, attempt.number, result))
    return result
