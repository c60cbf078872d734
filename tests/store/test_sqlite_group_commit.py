"""SQLite group commit: writes that wait for a COMMIT share the next one, and nothing changes.

Concurrent accepts must give exactly the answers of the same accepts one by one; an operation
that fails inside a batch fails only its own caller; an answered accept survives a kill -9
even when it was committed together with others; closing the store still answers every write
already called.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import EventNotFound, StoreError
from gateway.store import Event, open_store
from gateway.store.records import AcceptResult, Attempt
from gateway.store.sqlite import SqliteStore
from gateway.store.sqlite import engine as sqlite_db
from gateway.store.sqlite.engine import MAX_BATCH

from .conftest import T0, make_event

REPO = Path(__file__).resolve().parents[2]
WINDOW = 3600.0


@pytest.fixture
def batch_sizes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every batch the store's thread runs (proves the writes were grouped)."""
    sizes: list[int] = []
    run_batch = sqlite_db._run_batch

    def spy(
        conn: sqlite3.Connection, ops: Sequence[Callable[[sqlite3.Connection], Any]], *args: Any
    ):
        sizes.append(len(ops))
        return run_batch(conn, ops, *args)

    monkeypatch.setattr(sqlite_db, "_run_batch", spy)
    return sizes


async def _open(tmp_path: Path, name: str) -> SqliteStore:
    store = await open_store(f"sqlite:///{tmp_path}/{name}.db")
    assert isinstance(store, SqliteStore)
    return store


def _workload() -> list[Event]:
    """Accepts with repeated dedupe keys, and repeated ids under different keys, interleaved."""
    events = []
    for i in range(150):
        key = f"k{i % 40}"  # keys 0..39 come back again and again
        event_id = f"evt_{i}" if i % 7 else f"evt_{i % 3}"  # some ids collide across keys
        events.append(make_event(event_id, key=key, body=b'{"n":%d}' % i))
    return events


def _expected(events: Sequence[Event]) -> list[AcceptResult]:
    """The answers of design.md 3 worked out by hand: first key wins, then first id wins."""
    first_by_key: dict[str, str] = {}
    ids_seen: set[str] = set()
    answers = []
    for event in events:
        if event.dedupe_key in first_by_key:
            answers.append(AcceptResult("duplicate", first_by_key[event.dedupe_key]))
        elif event.id in ids_seen:
            answers.append(AcceptResult("duplicate", event.id))
        else:
            first_by_key[event.dedupe_key] = event.id
            ids_seen.add(event.id)
            answers.append(AcceptResult("queued", event.id))
    return answers


async def test_concurrent_accepts_answer_exactly_as_sequential_ones(
    tmp_path: Path, batch_sizes: list[int]
):
    events = _workload()
    one_by_one = await _open(tmp_path, "sequential")
    together = await _open(tmp_path, "concurrent")
    try:
        sequential = [await one_by_one.accept(e, ["m"], WINDOW, T0) for e in events]
        batch_sizes.clear()
        concurrent = await asyncio.gather(*(together.accept(e, ["m"], WINDOW, T0) for e in events))
        assert sequential == _expected(events)
        assert concurrent == sequential
        # They did share transactions, and no transaction held more than the bound.
        assert max(batch_sizes) > 1
        assert max(batch_sizes) <= MAX_BATCH
        assert sum(batch_sizes) == len(events)
        queued = sum(1 for answer in sequential if answer.status == "queued")
        assert await together.queue_depth() == {("m", "due"): queued}
    finally:
        await one_by_one.close()
        await together.close()


async def test_a_statement_failing_inside_a_batch_fails_only_its_caller(
    tmp_path: Path, batch_sizes: list[int]
):
    store = await _open(tmp_path, "gw")
    try:
        good = [make_event(f"evt_{i}") for i in range(10)]
        bad = make_event("evt_bad")
        # A destination of None breaks the NOT NULL constraint of deliveries.destination AFTER
        # the event row was inserted: only the savepoint can take that row back out.
        bad_destinations: list[Any] = ["m", None]
        calls = [store.accept(e, ["m"], WINDOW, T0) for e in good[:5]]
        calls.append(store.accept(bad, bad_destinations, WINDOW, T0))
        calls += [store.accept(e, ["m"], WINDOW, T0) for e in good[5:]]
        answers = await asyncio.gather(*calls, return_exceptions=True)
        assert max(batch_sizes) > 1
        assert isinstance(answers[5], StoreError)
        assert isinstance(answers[5].__cause__, sqlite3.IntegrityError)
        assert answers[:5] + answers[6:] == [AcceptResult("queued", e.id) for e in good]
        # Nothing of the failed accept stayed: no event, no delivery, its key not taken.
        assert await store.get_event("evt_bad") is None
        assert await store.queue_depth() == {("m", "due"): 10}
        assert await store.accept(bad, ["m"], WINDOW, T0 + 1) == AcceptResult("queued", bad.id)
    finally:
        await store.close()


def test_savepoints_are_used_only_once_an_operation_of_the_batch_failed():
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute("CREATE TABLE t (n INTEGER NOT NULL)")
    statements: list[str] = []
    conn.set_trace_callback(statements.append)

    def insert(n: int) -> Callable[[sqlite3.Connection], int]:
        return lambda c: c.execute("INSERT INTO t VALUES (?)", (n,)).rowcount

    def failing(c: sqlite3.Connection) -> None:
        c.execute("INSERT INTO t VALUES (99)")
        raise ValueError("refused after a write")

    assert sqlite_db._run_batch(conn, [insert(1), insert(2)], True, 1.0) == [(True, 1)] * 2
    assert not [s for s in statements if "SAVEPOINT" in s]
    statements.clear()
    first, refused, last = sqlite_db._run_batch(conn, [insert(3), failing, insert(4)], True, 1.0)
    assert (first, last) == ((True, 1), (True, 1))
    assert isinstance(refused[1], ValueError)
    # The failing write's own row went with it; the others were written once each.
    assert [n for (n,) in conn.execute("SELECT n FROM t ORDER BY n")] == [1, 2, 3, 4]
    # Tried as they were, rolled back at the failure, then the two others in a savepoint each.
    assert statements.count("SAVEPOINT op") == 2
    assert statements.count("ROLLBACK") == 1


async def test_an_error_raised_by_an_operation_inside_a_batch_reaches_only_its_caller(
    tmp_path: Path, batch_sizes: list[int]
):
    store = await _open(tmp_path, "gw")
    try:
        await store.accept(make_event("evt_0"), ["m"], WINDOW, T0)
        answers = await asyncio.gather(
            store.accept(make_event("evt_1"), ["m"], WINDOW, T0),
            store.replay("no_such_event", ["m"], T0),
            store.replay("evt_0", ["m"], T0),
            store.accept(make_event("evt_2"), ["m"], WINDOW, T0),
            return_exceptions=True,
        )
        assert max(batch_sizes) > 1
        assert answers[0] == AcceptResult("queued", "evt_1")
        assert isinstance(answers[1], EventNotFound)
        assert isinstance(answers[2], list)
        assert len(answers[2]) == 1
        assert answers[3] == AcceptResult("queued", "evt_2")
        assert await store.queue_depth() == {("m", "due"): 4}
    finally:
        await store.close()


async def test_an_error_that_rolls_back_the_whole_transaction_fails_only_its_caller(
    tmp_path: Path, batch_sizes: list[int]
):
    """SQLite answers a full disk or an I/O error by rolling the transaction back; the writes
    batched before it are then redone in a new one, the failing one alone is refused."""
    store = await _open(tmp_path, "gw")

    def lose_the_transaction(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO schema_version (version) VALUES (99)")
        conn.execute("ROLLBACK")  # what SQLite itself does on SQLITE_FULL or SQLITE_IOERR
        raise sqlite3.OperationalError("database or disk is full")

    try:
        answers = await asyncio.gather(
            *(store.accept(make_event(f"evt_{i}"), ["m"], WINDOW, T0) for i in range(5)),
            store._db.write(lose_the_transaction),
            *(store.accept(make_event(f"evt_{i}"), ["m"], WINDOW, T0) for i in range(5, 10)),
            return_exceptions=True,
        )
        assert max(batch_sizes) > 1
        assert isinstance(answers[5], StoreError)
        assert "disk is full" in str(answers[5])
        assert answers[:5] + answers[6:] == [AcceptResult("queued", f"evt_{i}") for i in range(10)]
        assert await store.queue_depth() == {("m", "due"): 10}
        for i in range(10):
            assert await store.get_event(f"evt_{i}") is not None
        version = await store._db.run(
            lambda conn: conn.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0]
        )
        assert version == 1
    finally:
        await store.close()


async def test_a_failed_commit_fails_every_caller_of_the_batch_and_keeps_nothing(
    tmp_path: Path,
):
    path = tmp_path / "gw.db"
    store = await open_store(f"sqlite:///{path}?busy_timeout=0.05")
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        answers = await asyncio.gather(
            *(store.accept(make_event(f"evt_{i}"), ["m"], WINDOW, T0) for i in range(8)),
            return_exceptions=True,
        )
        assert all(isinstance(answer, StoreError) for answer in answers)
        other.execute("COMMIT")
        # Nothing was kept: the retries are new events, not duplicates.
        retried = await asyncio.gather(
            *(store.accept(make_event(f"evt_{i}"), ["m"], WINDOW, T0 + 1) for i in range(8))
        )
        assert [answer.status for answer in retried] == ["queued"] * 8
    finally:
        other.close()
        await store.close()


async def test_close_answers_every_write_already_called(tmp_path: Path):
    url = f"sqlite:///{tmp_path}/gw.db"
    store = await open_store(url)
    tasks = [
        asyncio.create_task(store.accept(make_event(f"evt_{i}"), ["m"], WINDOW, T0))
        for i in range(200)
    ]
    await asyncio.sleep(0)  # every task has called accept and waits for its batch
    await store.close()
    answers = await asyncio.gather(*tasks)
    assert [answer.status for answer in answers] == ["queued"] * 200
    with pytest.raises(StoreError):
        await store.accept(make_event("evt_late"), ["m"], WINDOW, T0)
    reopened = await open_store(url)
    try:
        assert await reopened.queue_depth() == {("m", "due"): 200}
    finally:
        await reopened.close()


CHILD = textwrap.dedent(
    """
    import asyncio, itertools, sys
    from gateway.store import Event, open_store

    async def accept(store, i):
        event = Event(f"evt_{i}", "payments", "t", None, None, f"key_{i}", b"body-%d" % i,
                      (("content-type", "application/json"),), f"req-{i}", 1.7e9)
        result = await store.accept(event, ["market"], 3600.0, 1.7e9)
        assert result.status == "queued"
        sys.stdout.write(f"{event.id}\\n")   # the 202 would go out now
        sys.stdout.flush()

    async def main(url):
        store = await open_store(url)
        counter = itertools.count()
        async def sender():
            while True:
                await accept(store, next(counter))
        await asyncio.gather(*(sender() for _ in range(48)))   # killed long before it ends

    asyncio.run(main(sys.argv[1]))
    """
)


async def test_answered_accepts_survive_kill_9_under_concurrency(tmp_path: Path):
    url = f"sqlite:///{tmp_path}/gw.db"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, url],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    answered: list[str] = []
    try:
        assert child.stdout is not None
        # Killed in the middle of the stream: batches are being committed while it dies.
        while len(answered) < 600:
            line = child.stdout.readline()
            assert line, "the child stopped before it was killed"
            answered.append(line.decode().strip())
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        # Everything it wrote before it died was answered too, up to the last whole line.
        rest = child.stdout.read().decode()
        answered += rest.split("\n")[:-1]
    finally:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    store = await open_store(url)
    try:
        missing = [i for i in answered if await store.get_event(i) is None]
        assert missing == []
        depth = (await store.queue_depth())[("market", "due")]
        assert depth >= len(answered)
    finally:
        await store.close()


def _synchronous(conn: sqlite3.Connection) -> int:
    """The connection's ``PRAGMA synchronous`` as a write sees it: 1 NORMAL, 2 FULL."""
    return int(conn.execute("PRAGMA synchronous").fetchone()[0])


async def test_a_batch_of_writes_that_need_not_be_durable_alone_skips_the_fsync(tmp_path: Path):
    """Only a batch made of ``durable=False`` writes alone commits with synchronous=NORMAL;
    one durable write makes its whole batch FULL, and every batch after is FULL again."""
    store = await _open(tmp_path, "gw")
    db = store._db
    try:
        # The first write starts a batch at once; the two after it wait and share the next.
        answers = await asyncio.gather(
            db.write(_synchronous, durable=False),
            db.write(_synchronous, durable=True),
            db.write(_synchronous, durable=False),
        )
        assert answers == [1, 2, 2]
        assert await db.write(_synchronous) == 2
        assert await db.run(_synchronous) == 2, "left FULL for every other use"
    finally:
        await store.close()


async def test_a_non_durable_batch_that_fails_leaves_the_connection_full(tmp_path: Path):
    store = await _open(tmp_path, "gw")
    db = store._db

    def fail(conn: sqlite3.Connection) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    try:
        with pytest.raises(StoreError, match="disk I/O error"):
            await db.write(fail, durable=False)
        assert await db.write(_synchronous) == 2
    finally:
        await store.close()


def _batches_durable(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each group commit from now on is durable (fsynced), in order."""
    seen: list[bool] = []
    run_batch = sqlite_db._run_batch

    def spy(conn: sqlite3.Connection, ops: Sequence[Any], durable: bool, *args: Any):
        seen.append(durable)
        return run_batch(conn, ops, durable, *args)

    monkeypatch.setattr(sqlite_db, "_run_batch", spy)
    return seen


async def test_a_sync_claim_is_written_without_its_own_fsync_and_the_commit_with_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A claim lost to a power cut only lets a resend through again (the destination
    dedupes); the commit that records the delivery is durable."""
    seen = _batches_durable(monkeypatch)
    store = await _open(tmp_path, "gw")
    try:
        assert await store.claim("payments", "k1", 30.0, T0) == "claimed"
        assert seen == [False]
        event = make_event("evt_1", key="k1")
        await store.commit(event, ["m"], WINDOW, T0 + 1, Attempt(1, T0, 200, 0.05, None, "ok"))
        assert seen == [False, True]
        assert await store.claim("payments", "k1", 30.0, T0 + 2) == "done"
    finally:
        await store.close()


async def test_leases_and_attempt_outcomes_are_written_without_their_own_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The accept is durable; a lease, a reschedule, a dead letter or a completion lost to a
    power cut only makes the delivery due again (sent again, at least once)."""
    seen = _batches_durable(monkeypatch)
    store = await _open(tmp_path, "gw")
    try:
        await store.accept(make_event("evt_1", key="k1"), ["m"], WINDOW, T0)
        await store.accept(make_event("evt_2", key="k2"), ["m"], WINDOW, T0)
        assert seen == [True, True]
        first, second = await store.lease_due(T0, 30.0, 10, "w")
        assert await store.reschedule(first, Attempt(1, T0, 503, 0.05, None, ""), T0 + 1)
        assert await store.dead_letter(second, Attempt(1, T0, 400, 0.05, None, ""), "HTTP 400")
        (again,) = await store.lease_due(T0 + 2, 30.0, 10, "w")
        assert await store.complete(again, Attempt(2, T0 + 2, 200, 0.05, None, "ok"))
        assert seen == [True, True, False, False, False, False, False]
    finally:
        await store.close()


async def test_a_writer_polls_for_another_processs_lock_in_short_pauses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Another process holding the write lock is waited for by trying again every 0.1 ms,
    doubling to 1 ms, not by SQLite's busy handler (whose sleeps grow to 100 ms); once it
    lets go the batch goes ahead, and the connection's busy_timeout is as configured again."""
    path = tmp_path / "gw.db"
    store = await open_store(f"sqlite:///{path}?busy_timeout=2")
    assert isinstance(store, SqliteStore)
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    pauses: list[float] = []
    real_sleep = sqlite_db.time.sleep

    def pause(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 6:
            other.execute("COMMIT")  # the other process is done with the lock
        real_sleep(seconds)

    monkeypatch.setattr(sqlite_db.time, "sleep", pause)
    try:
        other.execute("BEGIN IMMEDIATE")
        assert await store.accept(make_event("evt_1"), ["m"], WINDOW, T0) == AcceptResult(
            "queued", "evt_1"
        )
        assert pauses == [0.0001, 0.0002, 0.0004, 0.0008, 0.001, 0.001]
        assert await store._db.run(_busy_timeout_ms) == 2000
    finally:
        other.close()
        await store.close()


def _busy_timeout_ms(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA busy_timeout").fetchone()[0])
