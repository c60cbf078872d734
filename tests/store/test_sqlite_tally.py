"""The counters a group commit adds to are written once per row, in its transaction, and hold
exactly what was committed: an operation that fails takes its counts with it."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path

from gateway.errors import StoreError
from gateway.store import open_store
from gateway.store.records import AcceptResult, Attempt
from gateway.store.sqlite import SqliteStore
from gateway.store.sqlite import engine as sqlite_db
from gateway.store.sqlite.schema import connect
from gateway.store.sqlite.tally import TallyConnection, add_rollups, count
from gateway.store.stats import minute_of

from .conftest import T0, make_event

MINUTE = minute_of(T0)
HOUR = int(T0 // 3600)
_Op = Callable[[sqlite3.Connection], None]


def _counting(name: str, *, then_fail: bool = False) -> _Op:
    def op(conn: sqlite3.Connection) -> None:
        count(conn, MINUTE, name)
        add_rollups(conn, HOUR, "payments", {name: 1, "all": 1})
        if then_fail:
            raise ValueError("refused after counting")

    return op


def _counters(conn: sqlite3.Connection) -> tuple[dict[str, int], dict[str, int]]:
    minutes = dict(conn.execute("SELECT name, count FROM minute_stats").fetchall())
    rollups = dict(conn.execute("SELECT name, n FROM rollups").fetchall())
    return minutes, rollups


def test_a_batch_writes_each_counter_row_once_before_its_commit(tmp_path: Path):
    conn = connect(str(tmp_path / "gw.db"), 1.0)
    assert isinstance(conn, TallyConnection)
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    ops = [_counting("accepted") for _ in range(5)] + [_counting("delivered")] * 2
    outcomes = sqlite_db._run_batch(conn, ops, True, 1.0)
    conn.set_trace_callback(None)
    assert outcomes == [(True, None)] * 7
    assert _counters(conn) == (
        {"accepted": 5, "delivered": 2},
        {"accepted": 5, "delivered": 2, "all": 7},
    )
    # One UPDATE per (minute, name), then one upsert per rollup row, all before the COMMIT.
    counting = [s for s in statements if "minute_stats" in s or "rollups" in s]
    assert sum("UPDATE minute_stats" in s for s in counting) == 2
    assert sum("INSERT INTO rollups" in s for s in counting) == 3
    assert statements.index(counting[-1]) < statements.index("COMMIT")
    assert conn.tally is None  # given back once the transaction ended
    conn.close()


def test_an_operation_that_fails_takes_its_counts_with_it(tmp_path: Path):
    """The first failure rolls the transaction back and the batch runs again, each operation
    in a savepoint; the second is rolled back alone, to its savepoint."""
    conn = connect(str(tmp_path / "gw.db"), 1.0)
    ops = [
        _counting("a"),
        _counting("b", then_fail=True),
        _counting("a"),
        _counting("c", then_fail=True),
        _counting("a"),
    ]
    outcomes = sqlite_db._run_batch(conn, ops, True, 1.0)
    assert [ok for ok, _ in outcomes] == [True, False, True, False, True]
    assert _counters(conn) == ({"a": 3}, {"a": 3, "all": 3})
    conn.close()


def test_a_transaction_lost_whole_is_counted_once_when_run_again(tmp_path: Path):
    """SQLite rolls back the whole transaction on a full disk: the counts of the first run
    go with it, and the run without the failing operation counts each of the others once."""
    conn = connect(str(tmp_path / "gw.db"), 1.0)

    def lose_the_transaction(c: sqlite3.Connection) -> None:
        count(c, MINUTE, "lost")
        c.execute("ROLLBACK")
        raise sqlite3.OperationalError("database or disk is full")

    ops = [_counting("a"), _counting("a"), lose_the_transaction, _counting("a")]
    outcomes = sqlite_db._run_batch(conn, ops, True, 1.0)
    assert [ok for ok, _ in outcomes] == [True, True, False, True]
    assert _counters(conn) == ({"a": 3}, {"a": 3, "all": 3})
    conn.close()


def test_another_connection_counts_at_once():
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute("CREATE TABLE minute_stats (minute INTEGER, name TEXT, count INTEGER)")
    conn.execute(
        "CREATE TABLE rollups (hour INTEGER, source TEXT, name TEXT, n INTEGER,"
        " PRIMARY KEY (hour, source, name))"
    )
    count(conn, MINUTE, "accepted", 2)
    count(conn, MINUTE, "accepted")
    add_rollups(conn, HOUR, "payments", {"accepted": 3})
    assert _counters(conn) == ({"accepted": 3}, {"accepted": 3})


async def test_the_figures_hold_what_concurrent_writes_committed(tmp_path: Path):
    """Accepts and delivery outcomes batched together, one of them failing: the per-minute
    figures and the analytics count the others, each once."""
    store = await open_store(f"sqlite:///{tmp_path}/gw.db")
    assert isinstance(store, SqliteStore)
    try:
        good = [make_event(f"evt_{i}") for i in range(12)]
        bad_destinations: list[object] = ["m", None]  # fails after its event row was written
        answers = await asyncio.gather(
            *(store.accept(e, ["m"], 60.0, T0) for e in good[:6]),
            store.accept(make_event("evt_bad"), bad_destinations, 60.0, T0),  # type: ignore[arg-type]
            *(store.accept(e, ["m"], 60.0, T0) for e in good[6:]),
            return_exceptions=True,
        )
        assert isinstance(answers[6], StoreError)
        assert answers[:6] + answers[7:] == [AcceptResult("queued", e.id) for e in good]
        leases = await store.lease_due(T0, 30.0, 20, "w")
        assert len(leases) == 12
        done = await asyncio.gather(
            *(store.complete(lease, Attempt(1, T0 + 1, 200, 0.02)) for lease in leases[:8]),
            *(
                store.reschedule(lease, Attempt(1, T0 + 1, 503, 0.02), T0 + 60)
                for lease in leases[8:]
            ),
        )
        assert all(done)
        stats = await store.stats(T0 + 1)
        figures = stats.minutes[MINUTE]
        assert (figures["accepted"], figures["delivered"], figures["retried"]) == (12, 8, 4)
        assert sum(stats.latency.values()) == 12
        rollup = await store.rollups(HOUR, HOUR, ["payments"])
        assert rollup.counts[HOUR]["dv"] == 8
    finally:
        await store.close()
