"""The engine under the embedded store: its connections and threads, snapshot reads on a
read-only connection of their own, group-committed writes.

``SqliteDatabase`` owns two connections, each with the one thread that uses it (SQLite calls
block, so they never run on the event loop): the writer, which creates the schema and runs
every ``write`` in the next group commit, and a reader (``query_only``) that runs every
``read`` in one snapshot. In WAL mode a reader neither waits for the writer nor holds it up,
so an operator's search or the dashboard's lists never delay an accept's commit.

Durability: ``journal_mode=WAL`` with ``synchronous=FULL``, so a transaction is on disk when
its ``COMMIT`` returns, and no ``write`` caller is answered before that. A write made with
``durable=False`` (a sync claim, a lease, an attempt's outcome: losing one only makes something
be sent again) may skip that fsync when its whole batch is such writes: the batch commits with
``synchronous=NORMAL``, which in WAL mode keeps the file consistent and only lets a power cut
take the last such commits; the next durable commit's fsync of the WAL covers them too. Writes
are short ``BEGIN IMMEDIATE`` transactions, so several gateway processes on one host can share
the file (``busy_timeout`` makes a writer wait for another instead of failing; a lock held
longer than that is a ``StoreError``). A writer waits for the lock by trying again every 0.1-1
ms, not through SQLite's busy handler: its sleeps grow to 100 ms, and a process whose group
commits follow one another frees the lock only for moments, which such sleeps kept missing (a
p99 of 0.2-1 s with two processes on one file, about 30 ms when polling, in bench.pinned's
layout).

Group commit: the fsync of each ``COMMIT`` bounds a file to a few thousand transactions a
second, so the writes that arrive while a transaction is being committed wait and then share
the next one (at most ``MAX_BATCH`` of them), in the order they were called. A write that
fails fails only its own caller, and every other write sees exactly what it would have seen
had they run one by one: a batch runs first as they are, and if one fails, the transaction
is rolled back and the others run again, each inside its own ``SAVEPOINT`` (rolled back alone
if it fails too). A savepoint around every write, for a failure that almost never comes, was
not cheap: SQLite copies each page a statement changes inside one into a statement journal,
a temporary file (about 53 writes to it per accept:
BENCHMARKS.md#what-each-optimisation-gave, "a group commit's writes run without savepoints").
What the writes of a batch add to the per-minute and analytics counters is summed as they run
and written once per row just before its ``COMMIT`` (``tally``).

The URL is ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``; the optional
query ``?busy_timeout=5`` (seconds) sets how long a writer waits for the lock. The parent
directory is created when missing.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar, cast

from gateway.errors import StoreError
from gateway.store.sqlite.schema import connect, connect_reader
from gateway.store.sqlite.tally import tallying

T = TypeVar("T")

#: Most write operations one group commit holds: bounds how long the write lock is held (other
#: processes on the file wait that long) and how many callers one failed COMMIT answers 503.
MAX_BATCH = 64

#: A writer's first and longest pause between tries for another process's write lock (s).
LOCK_RETRY = 0.0001
LOCK_RETRY_MAX = 0.001

#: What one write operation of a batch came to: ``(True, result)`` or ``(False, exception)``.
_Outcome = tuple[bool, Any]
_WriteOp = Callable[[sqlite3.Connection], Any]


def _path_from_url(url: str) -> tuple[str, float]:
    """The file path and busy timeout of a ``sqlite:///`` URL."""
    if not url.startswith("sqlite:///"):
        raise StoreError("a SQLite store URL starts with sqlite:///")
    rest = url[len("sqlite:///") :]
    path, _, query = rest.partition("?")
    busy = 5.0
    for part in filter(None, query.split("&")):
        name, _, value = part.partition("=")
        if name != "busy_timeout":
            raise StoreError(f"unknown SQLite store option {name!r}")
        try:
            busy = float(value)
        except ValueError as exc:
            raise StoreError("busy_timeout must be a number of seconds") from exc
    if not path:
        raise StoreError("the SQLite store URL names no file")
    return path, busy


class SqliteDatabase:
    """One SQLite file, its connection and thread: snapshot reads, group-committed writes."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        executor: ThreadPoolExecutor,
        busy_timeout: float,
        reader: sqlite3.Connection,
        reader_executor: ThreadPoolExecutor,
    ) -> None:
        self._conn = conn
        self._executor = executor
        self._reader = reader
        self._reader_executor = reader_executor
        self._busy_timeout = busy_timeout
        self._closed = False
        # Group commit (see the module docstring): writes waiting for the next transaction,
        # and whether one is being run now. Touched on the event loop's thread only.
        self._waiting: deque[tuple[_WriteOp, asyncio.Future[Any], bool]] = deque()
        self._committing = False
        self._idle = asyncio.Event()
        self._idle.set()

    @classmethod
    async def open(cls, url: str) -> SqliteDatabase:
        """Open (creating when needed) the database a ``sqlite:///`` URL names."""
        path, busy = _path_from_url(url)
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        reader_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-reader")
        loop = asyncio.get_running_loop()
        try:
            conn = await loop.run_in_executor(executor, connect, path, busy)
        except (sqlite3.Error, OSError) as exc:
            executor.shutdown(wait=False)
            reader_executor.shutdown(wait=False)
            raise StoreError(f"cannot open the SQLite store: {exc}") from exc
        try:
            reader = await loop.run_in_executor(reader_executor, connect_reader, path, busy)
        except (sqlite3.Error, OSError) as exc:
            await loop.run_in_executor(executor, conn.close)
            executor.shutdown(wait=False)
            reader_executor.shutdown(wait=False)
            raise StoreError(f"cannot open the SQLite store for reading: {exc}") from exc
        return cls(conn, executor, busy, reader, reader_executor)

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` on the store's thread; map every SQLite failure to StoreError."""
        if self._closed:
            raise StoreError("the store is closed")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, self._conn)
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite store failed: {exc}") from exc

    async def write(self, fn: Callable[[sqlite3.Connection], T], *, durable: bool = True) -> T:
        """Run ``fn`` in the next group commit; answer once committed.

        ``fn`` sees the effects of every write called before it and none after; an error it
        raises undoes only its own changes and comes back here (a SQLite one as StoreError).
        ``fn`` may run twice: when another write of its batch fails, the batch is rolled back
        and run again without that one, so whatever ``fn`` does besides its SQL must be safe
        to do twice.
        ``durable=False``: its commit need not reach the disk before the answer (see the
        module's docstring); only for a write whose loss in a power cut loses nothing else.
        """
        if self._closed:
            raise StoreError("the store is closed")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.append((fn, future, durable))
        if not self._committing:
            self._start_batch()
        return cast(T, await future)

    def _start_batch(self) -> None:
        """Hand the waiting writes (up to ``MAX_BATCH``) to the store's thread as one batch."""
        batch: list[tuple[_WriteOp, asyncio.Future[Any]]] = []
        durable = False
        while self._waiting and len(batch) < MAX_BATCH:
            fn, future, durable_op = self._waiting.popleft()
            # A caller cancelled before its turn: its write is never run, as with any
            # executor job cancelled before it started.
            if not future.done():
                batch.append((fn, future))
                durable = durable or durable_op
        if not batch:
            self._committing = False
            self._idle.set()
            return
        self._committing = True
        self._idle.clear()
        job = self._executor.submit(
            _run_batch, self._conn, [fn for fn, _ in batch], durable, self._busy_timeout
        )
        job.add_done_callback(
            functools.partial(_call_soon, asyncio.get_running_loop(), self._batch_done, batch)
        )

    def _batch_done(
        self, batch: list[tuple[_WriteOp, asyncio.Future[Any]]], job: Future[list[_Outcome]]
    ) -> None:
        """Answer every caller of a batch (its COMMIT has returned, or failed), then go on."""
        try:
            outcomes = job.result()
        except Exception as exc:  # noqa: BLE001 - handed to every caller, nothing is swallowed
            # BEGIN or COMMIT failed: the whole transaction is gone, so is every write in it.
            outcomes = [(False, exc)] * len(batch)
        for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
            if future.done():  # cancelled meanwhile; what it wrote stays written
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(_as_store_error(value))
        self._start_batch()

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in one read transaction on the reader connection, so it sees a single
        snapshot (every write answered before the call) and holds up no write."""

        def tx(conn: sqlite3.Connection) -> T:
            conn.execute("BEGIN")
            try:
                return fn(conn)
            finally:
                conn.rollback()

        if self._closed:
            raise StoreError("the store is closed")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._reader_executor, tx, self._reader)
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite store failed: {exc}") from exc

    async def close(self) -> None:
        """Close the connection and stop the store's thread."""
        if self._closed:
            return
        self._closed = True
        # Every write already called was promised an answer: let its batch commit first.
        await self._idle.wait()
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._reader_executor, self._reader.close)
            await loop.run_in_executor(self._executor, self._conn.close)
        except sqlite3.Error as exc:
            raise StoreError(f"closing the SQLite store failed: {exc}") from exc
        finally:
            self._reader_executor.shutdown(wait=True)
            self._executor.shutdown(wait=True)


def _call_soon(
    loop: asyncio.AbstractEventLoop,
    callback: Callable[[list[tuple[_WriteOp, asyncio.Future[Any]]], Future[list[_Outcome]]], None],
    batch: list[tuple[_WriteOp, asyncio.Future[Any]]],
    job: Future[list[_Outcome]],
) -> None:
    """Run ``callback(batch, job)`` on the event loop (``job`` finished on the store's thread)."""
    loop.call_soon_threadsafe(callback, batch, job)


def _as_store_error(exc: BaseException) -> BaseException:
    """What a write's caller gets for ``exc``: SQLite failures become ``StoreError``."""
    if isinstance(exc, sqlite3.Error):
        error = StoreError(f"SQLite store failed: {exc}")
        error.__cause__ = exc
        return error
    return exc


def _run_batch(
    conn: sqlite3.Connection,
    ops: Sequence[_WriteOp],
    durable: bool,
    busy_timeout: float,
) -> list[_Outcome]:
    """Run ``ops`` in order in one transaction; the outcome of each.

    Not ``durable``: committed with ``synchronous=NORMAL`` (no fsync), then set back to FULL,
    so every other batch stays FULL whatever happens in this one.

    An error that SQLite answers by rolling back the whole transaction (a full disk, an I/O
    error) takes the earlier operations' work with it: that operation fails and the others are
    run again in a new transaction, so each run drops one operation and the loop ends. A
    failing ``BEGIN`` or ``COMMIT`` raises: then nothing of the batch was written.
    """
    outcomes: list[_Outcome] = [(False, None)] * len(ops)
    todo = list(range(len(ops)))
    # The first attempt runs without savepoints (see the module's docstring): most batches
    # have no failing operation. One that fails rolls the whole transaction back like
    # a lost one does; the others then run again, each in its own savepoint.
    savepoints = False
    if not durable:
        conn.execute("PRAGMA synchronous = NORMAL")
    try:
        while todo:
            lost = _try_batch(conn, ops, todo, outcomes, busy_timeout, savepoints=savepoints)
            if lost is None:
                break
            todo.remove(lost)
            savepoints = True
    finally:
        if not durable:
            conn.execute("PRAGMA synchronous = FULL")
    return outcomes


def _try_batch(
    conn: sqlite3.Connection,
    ops: Sequence[_WriteOp],
    todo: list[int],
    outcomes: list[_Outcome],
    busy_timeout: float,
    *,
    savepoints: bool,
) -> int | None:
    """One attempt of ``_run_batch``: ``None`` once committed, else the operation whose error
    rolled the transaction back (its outcome recorded, the others' to be redone).

    With ``savepoints``, each operation runs in its own and one that fails is rolled back
    alone; without, a failing operation rolls back the whole transaction."""
    _begin_immediate(conn, busy_timeout)
    with tallying(conn) as tally:
        try:
            for index in todo:
                if savepoints:
                    conn.execute("SAVEPOINT op")
                    mark = tally.mark()
                try:
                    result = ops[index](conn)
                except Exception as exc:  # noqa: BLE001 - handed to this operation's caller
                    outcomes[index] = (False, exc)
                    if savepoints and conn.in_transaction:
                        conn.execute("ROLLBACK TO op")
                        conn.execute("RELEASE op")
                        tally.back_to(mark)
                        continue
                    if conn.in_transaction:
                        conn.rollback()
                    return index
                else:
                    if savepoints:
                        conn.execute("RELEASE op")
                    outcomes[index] = (True, result)
            # The counters the operations added to, one upsert per row; failing, they fail
            # the whole batch as a failed COMMIT does.
            tally.write(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.rollback()
            raise
    return None


def _begin_immediate(conn: sqlite3.Connection, busy_timeout: float) -> None:
    """``BEGIN IMMEDIATE``, trying again every ``LOCK_RETRY`` (doubling up to
    ``LOCK_RETRY_MAX``) while another process holds the write lock, for ``busy_timeout``
    seconds at most; then SQLite's "database is locked" (see the module's docstring)."""
    conn.execute("PRAGMA busy_timeout = 0")
    try:
        deadline = time.monotonic() + busy_timeout
        pause = LOCK_RETRY
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, LOCK_RETRY_MAX)
    finally:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
