"""SQLite's delivery counts: ``queue_depth`` reads what the file's triggers keep, not a count of
the rows, and the kept counts equal the rows' through every change a delivery goes through."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from gateway.store import open_store
from gateway.store.records import Attempt
from gateway.store.sqlite import SqliteStore

from .conftest import T0, make_event

WINDOW = 3600.0
LEASE = 30.0


def _kept(path: Path) -> dict[tuple[str, str], int]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT destination, state, n FROM delivery_counts WHERE n != 0")
        return {(d, s): n for d, s, n in rows}


def _counted(path: Path) -> dict[tuple[str, str], int]:
    """The deliveries counted row by row."""
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT destination, state, COUNT(*) FROM deliveries GROUP BY destination, state"
        )
        return {(d, s): n for d, s, n in rows}


def _attempt(number: int, at: float, status: int) -> Attempt:
    return Attempt(number, at, status, 0.05, None, "")


async def test_the_kept_counts_follow_every_change_of_a_delivery(tmp_path: Path):
    path = tmp_path / "gw.db"
    store = await open_store(f"sqlite:///{path}")
    assert isinstance(store, SqliteStore)
    steps: list[str] = []

    def check(step: str) -> None:
        steps.append(step)
        assert _kept(path) == _counted(path), steps

    try:
        for n in range(6):
            await store.accept(make_event(f"evt_{n}", key=f"k{n}"), ["a", "b"], WINDOW, T0)
        check("accepted")
        assert await store.queue_depth() == {("a", "due"): 6, ("b", "due"): 6}

        leases = await store.lease_due(T0, LEASE, 5, "w1")
        check("leased")
        first, second, third, fourth, *_ = leases
        assert await store.complete(first, _attempt(1, T0, 200))
        check("completed")
        assert await store.reschedule(second, _attempt(1, T0, 503), T0 + 1)
        check("rescheduled")
        assert await store.dead_letter(third, _attempt(1, T0, 400), "HTTP 400")
        assert await store.dead_letter(fourth, _attempt(1, T0, 400), "HTTP 400")
        check("dead-lettered")
        # The fifth lease runs out; another worker takes it (leased stays leased).
        again = await store.lease_due(T0 + LEASE + 1, LEASE, 20, "w2")
        assert again
        check("expired lease taken again")
        assert await store.redrive([third.delivery_id], T0 + 40) == 1
        check("one redriven")
        assert await store.redrive(None, T0 + 41) == 1
        check("all redriven")
        await store.replay(first.event.id, ["a", "b"], T0 + 42)
        check("replayed")
        for lease in await store.lease_due(T0 + 100, LEASE, 100, "w3"):
            assert await store.complete(lease, _attempt(2, T0 + 100, 200))
        check("all delivered")
        assert await store.queue_depth() == {}
        assert await store.prune(T0 + 1, 100) > 0
        check("pruned")
        with sqlite3.connect(path) as conn:
            assert conn.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0] == 0
        # No path of the store deletes a delivery still counted; one deleted by hand is
        # uncounted all the same.
        await store.accept(make_event("evt_late", key="k_late"), ["a", "b"], WINDOW, T0 + 200)
        with sqlite3.connect(path) as conn:
            conn.execute("DELETE FROM deliveries WHERE destination = 'a'")
        check("deleted by hand")
        assert await store.queue_depth() == {("b", "due"): 1}
    finally:
        await store.close()


async def test_a_file_from_before_the_counts_gets_them_filled_on_open(tmp_path: Path):
    path = tmp_path / "old.db"
    url = f"sqlite:///{path}"
    store = await open_store(url)
    for n in range(5):
        await store.accept(make_event(f"evt_{n}", key=f"k{n}"), ["a", "b"], WINDOW, T0)
    leases = await store.lease_due(T0, LEASE, 3, "w")
    await store.dead_letter(leases[0], _attempt(1, T0, 400), "HTTP 400")
    await store.close()
    # As a gateway from before the counts left the file: no table, no triggers.
    with sqlite3.connect(path) as conn:
        for name in ("insert", "delete", "update"):
            conn.execute(f"DROP TRIGGER delivery_counts_{name}")
        conn.execute("DROP TABLE delivery_counts")

    store = await open_store(url)
    try:
        depth = {key: n for key, n in _counted(path).items() if key[1] != "delivered"}
        assert sum(depth.values()) == 10
        assert await store.queue_depth() == depth
        assert _kept(path) == _counted(path)
        # And kept from then on.
        await store.accept(make_event("evt_new", key="k_new"), ["a"], WINDOW, T0)
        assert _kept(path) == _counted(path)
    finally:
        await store.close()
