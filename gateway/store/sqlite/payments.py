"""The embedded store's payments (design.md 5.7): the state decided with each accept, and the
reads of the Payments view.

``apply_payment`` runs inside the accept's transaction: it creates the payment on its first
event, moves its state forward (``gateway.payments.states.advance``), keeps its reference and
amount from its latest unmarked event, counts the change in the analytics rollups
(``analytics``), and answers the event's mark. A payment's ``delivered``
and its ``dead_letter`` attention are read from its events' statuses, never kept twice.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from gateway.analytics.rollup import PaymentChange
from gateway.payments.amounts import Amount
from gateway.payments.rules import PaymentFacts
from gateway.payments.states import STATES, Mark, State, advance
from gateway.store.records import (
    TIMELINE_LIMIT,
    Attention,
    EventView,
    PaymentView,
    decode_cursor,
    encode_cursor,
    one_of,
)
from gateway.store.sqlite.analytics import add_payment_change
from gateway.store.sqlite.core import SqliteCore
from gateway.store.sqlite.rows import view_of

_COLUMNS = (
    "p.source, p.key, p.reference, p.state, p.amount_value, p.amount_scale, p.currency,"
    " p.events, p.first_seen, p.updated_at, p.conflict, p.missing"
)
#: Most matches a search (``q``) considers per index walked (key, reference).
SEARCH_LIMIT = 1000


def apply_payment(
    conn: sqlite3.Connection, source: str, facts: PaymentFacts, at: float
) -> tuple[State | None, Mark | None]:
    """Record an event of the payment ``facts`` names, received at ``at``: the payment's state
    after it and the event's mark. The change is counted in the analytics rollups."""
    row = conn.execute(
        "SELECT state, amount_value, amount_scale, currency, first_seen FROM payments"
        " WHERE source = ? AND key = ?",
        (source, facts.key),
    ).fetchone()
    current: State | None = None if row is None else one_of(row[0], STATES, "payment state")
    state, mark = advance(current, facts.state)
    amount = facts.amount
    if row is None:
        conn.execute(
            "INSERT INTO payments (source, key, reference, state, amount_value, amount_scale,"
            " currency, events, first_seen, updated_at, conflict)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?, 0)",
            (
                source,
                facts.key,
                facts.reference,
                state or "pending",
                None if amount is None else str(amount.value),
                None if amount is None else amount.scale,
                None if amount is None else amount.currency,
                at,
                at,
            ),
        )
        change = PaymentChange(None, state or "pending", None, amount, at, at)
        add_payment_change(conn, source, change)
        return state or "pending", None
    if mark is not None:
        conn.execute(
            "UPDATE payments SET events = events + 1, updated_at = MAX(updated_at, ?),"
            " conflict = conflict OR ?, missing = 0 WHERE source = ? AND key = ?",
            (at, mark == "conflict", source, facts.key),
        )
        return state, mark
    assert current is not None  # an existing payment
    assert state is not None  # keeps a state
    conn.execute(
        "UPDATE payments SET events = events + 1, updated_at = MAX(updated_at, ?), state = ?,"
        " missing = 0, reference = COALESCE(?, reference),"
        " amount_value = CASE WHEN ? IS NULL THEN amount_value ELSE ? END,"
        " amount_scale = CASE WHEN ? IS NULL THEN amount_scale ELSE ? END,"
        " currency = CASE WHEN ? IS NULL THEN currency ELSE ? END"
        " WHERE source = ? AND key = ?",
        (
            at,
            state,
            facts.reference,
            *(None if amount is None else str(amount.value),) * 2,
            *(None if amount is None else amount.scale,) * 2,
            *(None if amount is None else amount.currency,) * 2,
            source,
            facts.key,
        ),
    )
    before = None if row[1] is None else Amount(int(row[1]), int(row[2]), str(row[3]))
    change = PaymentChange(current, state, before, amount or before, row[4], at)
    add_payment_change(conn, source, change)
    return state, None


def forget_event(conn: sqlite3.Connection, source: str, key: str) -> None:
    """One event of the payment was pruned; the payment goes with its last event."""
    conn.execute(
        "UPDATE payments SET events = events - 1 WHERE source = ? AND key = ?", (source, key)
    )
    conn.execute("DELETE FROM payments WHERE source = ? AND key = ? AND events <= 0", (source, key))


def _view(conn: sqlite3.Connection, row: Sequence[Any]) -> PaymentView:
    """A ``PaymentView`` from a row of ``_COLUMNS``, its delivery figures read from its events."""
    source, key = row[0], row[1]
    pending, dead, delivered = conn.execute(
        "SELECT COALESCE(MAX(status = 'queued'), 0), COALESCE(MAX(status = 'dead_lettered'), 0),"
        " COALESCE(MAX(status = 'delivered'), 0) FROM events"
        " WHERE source = ? AND payment_key = ?",
        (source, key),
    ).fetchone()
    attention: Attention | None = None
    if row[10]:
        attention = "conflict"
    elif dead:
        attention = "dead_letter"
    elif row[11]:
        attention = "missing"
    amount = None if row[4] is None else Amount(int(row[4]), int(row[5]), str(row[6]))
    return PaymentView(
        source=source,
        key=key,
        reference=row[2],
        state=one_of(row[3], STATES, "payment state"),
        amount=amount,
        events=row[7],
        delivered=bool(delivered) and not pending and not dead,
        attention=attention,
        first_seen=row[8],
        updated_at=row[9],
    )


class SqlitePayments(SqliteCore):
    """The Payments view's reads: payments by latest update, one payment with its events."""

    async def list_payments(
        self,
        *,
        source: str | None = None,
        state: State | None = None,
        q: str | None = None,
        attention: Attention | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[PaymentView], str | None]:
        """Payments, latest update first, filtered; an index walk for each filter."""
        where: list[str] = []
        params: list[Any] = []
        # With a narrower set to start from (a search, an attention), "+column" keeps SQLite
        # from walking a whole state or source index instead and testing each row.
        hint = "+" if q or attention else ""
        for column, value in (("source", source), ("state", state)):
            if value is not None:
                where.append(f"{hint}p.{column} = ?")
                params.append(value)
        if cursor is not None:
            at, member = decode_cursor(cursor)
            where.append("(p.updated_at, p.source || char(10) || p.key) < (?, ?)")
            params += [at, member]
        if q:
            upper = q + "\U0010ffff"
            where.append(
                "(p.source, p.key) IN (SELECT source, key FROM (SELECT source, key FROM payments"
                " WHERE key >= ? AND key < ? LIMIT ?) UNION SELECT source, key FROM"
                " (SELECT source, key FROM payments WHERE reference >= ? AND reference < ?"
                " LIMIT ?))"
            )
            params += [q, upper, SEARCH_LIMIT, q, upper, SEARCH_LIMIT]
        if attention == "conflict":
            where.append("p.conflict")
        elif attention == "missing":
            where.append("p.missing AND NOT p.conflict")
        elif attention == "dead_letter":
            # Dead letters are few: start from them (events_by_status), not from every payment.
            where.append(
                "NOT p.conflict AND (p.source, p.key) IN (SELECT source, payment_key FROM events"
                " WHERE status = 'dead_lettered' AND payment_key IS NOT NULL)"
            )
        # The WHERE clauses are fixed text chosen above; every value is a bound parameter.
        sql = (
            f"SELECT {_COLUMNS} FROM payments p"  # noqa: S608
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY p.updated_at DESC, p.source DESC, p.key DESC LIMIT ?"
        )
        params.append(limit + 1)

        def tx(conn: sqlite3.Connection) -> list[PaymentView]:
            return [_view(conn, row) for row in conn.execute(sql, params).fetchall()]

        rows = await self._db.read(tx)
        page = rows[:limit]
        if len(rows) <= limit:
            return page, None
        last = page[-1]
        return page, encode_cursor(last.updated_at, f"{last.source}\n{last.key}")

    async def find_payments(self, keys: Sequence[tuple[str, str]]) -> list[PaymentView | None]:
        """The payment of each ``(source, key)`` (``None`` where there is none), in one read."""

        def tx(conn: sqlite3.Connection) -> list[PaymentView | None]:
            out: list[PaymentView | None] = []
            for source, key in keys:
                row = conn.execute(
                    f"SELECT {_COLUMNS} FROM payments p"  # noqa: S608
                    " WHERE p.source = ? AND p.key = ?",
                    (source, key),
                ).fetchone()
                out.append(None if row is None else _view(conn, row))
            return out

        return await self._db.read(tx)

    async def get_payment(
        self, source: str, key: str
    ) -> tuple[PaymentView, list[EventView]] | None:
        """The payment and its events in the order received (the last ``TIMELINE_LIMIT``)."""

        def tx(conn: sqlite3.Connection) -> tuple[PaymentView, list[EventView]] | None:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM payments p WHERE p.source = ? AND p.key = ?",  # noqa: S608
                (source, key),
            ).fetchone()
            if row is None:
                return None
            uids = conn.execute(
                "SELECT uid FROM events WHERE source = ? AND payment_key = ?"
                " ORDER BY received_at DESC, uid DESC LIMIT ?",
                (source, key, TIMELINE_LIMIT),
            ).fetchall()
            views = [view_of(conn, self._ring, uid) for (uid,) in reversed(uids)]
            return _view(conn, row), views

        return await self._db.read(tx)
