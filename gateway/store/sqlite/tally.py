"""Counters a group commit adds to, written once per transaction.

Every accept adds to a per-minute counter (``minute_stats``) and every end of a delivery
attempt to two of them and to the hour's analytics (``rollups``). As statements, that is one to
three upserts per operation, each on one of a handful of rows, which the other operations of
the same group commit then add to again. A ``Tally`` sums what a transaction's operations add
and ``write`` upserts each row once, inside that transaction, just before its ``COMMIT``: a
counter never holds what was not committed, nor misses what was.

The writer's connection is a ``TallyConnection``; the engine gives it a tally for the length
of each transaction (``tallying``). ``count`` and ``add_rollups`` add to it then, and run their
statement at once on any other connection (a test's, say).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from gateway.store.stats import WINDOW_MINUTES

#: Minutes of per-minute counters kept (twice the window the figures cover).
STATS_KEEP_MINUTES = 2 * WINDOW_MINUTES

_COUNT = "UPDATE minute_stats SET count = count + ? WHERE minute = ? AND name = ?"
_NEW_MINUTE = "INSERT INTO minute_stats (minute, name, count) VALUES (?, ?, ?)"
_OLD_MINUTES = "DELETE FROM minute_stats WHERE minute < ?"
_ROLLUP = (
    "INSERT INTO rollups (hour, source, name, n) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (hour, source, name) DO UPDATE SET n = n + excluded.n"
)

_Minutes = dict[tuple[int, str], int]
_Rollups = dict[tuple[int, str, str], int]


class Tally:
    """What one transaction's operations added to the counters, not yet written."""

    __slots__ = ("minutes", "rollups")

    def __init__(self) -> None:
        self.minutes: _Minutes = {}
        self.rollups: _Rollups = {}

    def mark(self) -> tuple[_Minutes, _Rollups]:
        """The sums so far, to go back to if the next operation is rolled back."""
        return dict(self.minutes), dict(self.rollups)

    def back_to(self, mark: tuple[_Minutes, _Rollups]) -> None:
        """Forget what was added since ``mark``."""
        self.minutes, self.rollups = dict(mark[0]), dict(mark[1])

    def write(self, conn: sqlite3.Connection) -> None:
        """Add the sums to their rows, in the caller's transaction; then start again empty."""
        for (minute, name), by in self.minutes.items():
            _count_now(conn, minute, name, by)
        if self.rollups:
            rows = [(hour, source, name, n) for (hour, source, name), n in self.rollups.items()]
            conn.executemany(_ROLLUP, rows)
        self.minutes, self.rollups = {}, {}


class TallyConnection(sqlite3.Connection):
    """The writer's connection: while a transaction runs, its ``tally``."""

    tally: Tally | None = None


@contextmanager
def tallying(conn: sqlite3.Connection) -> Iterator[Tally]:
    """A new tally for the transaction the block runs, given to ``conn`` (when it is a
    ``TallyConnection``) until the block ends; the block writes it before its ``COMMIT``. On
    another connection the counters are written at once and the tally stays empty."""
    tally = Tally()
    if not isinstance(conn, TallyConnection):
        yield tally
        return
    conn.tally = tally
    try:
        yield tally
    finally:
        conn.tally = None


def count(conn: sqlite3.Connection, minute: int, name: str, by: int = 1) -> None:
    """Add ``by`` to the per-minute counter ``name`` of ``minute``."""
    tally = _tally_of(conn)
    if tally is None:
        _count_now(conn, minute, name, by)
    else:
        key = (minute, name)
        tally.minutes[key] = tally.minutes.get(key, 0) + by


def add_rollups(conn: sqlite3.Connection, hour: int, source: str, deltas: dict[str, int]) -> None:
    """Add each of ``deltas`` to the analytics counter of that name, hour and source."""
    tally = _tally_of(conn)
    if tally is None:
        if deltas:
            conn.executemany(_ROLLUP, [(hour, source, name, n) for name, n in deltas.items()])
        return
    rollups = tally.rollups
    for name, n in deltas.items():
        key = (hour, source, name)
        rollups[key] = rollups.get(key, 0) + n


def _tally_of(conn: sqlite3.Connection) -> Tally | None:
    """The tally of the transaction ``conn`` is running, if it keeps one."""
    return conn.tally if isinstance(conn, TallyConnection) else None


def _count_now(conn: sqlite3.Connection, minute: int, name: str, by: int) -> None:
    """The counter's upsert; old minutes go as new ones start."""
    if conn.execute(_COUNT, (by, minute, name)).rowcount == 0:
        conn.execute(_NEW_MINUTE, (minute, name, by))
        conn.execute(_OLD_MINUTES, (minute - STATS_KEEP_MINUTES,))
