"""The SQLite file under the embedded store: connection, schema, one thread, group commit.

``SqliteDatabase`` owns the connection and the one thread that uses it (SQLite calls block, so
they never run on the event loop), creates the schema, and runs the store's operations:
``read`` in one snapshot, ``write`` in the next group commit.

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
a temporary file (about 53 writes to it per accept, BENCHMARKS.md).

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
from pathlib import Path
from typing import Any, TypeVar, cast

from gateway.errors import StoreError

T = TypeVar("T")

SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    uid TEXT PRIMARY KEY,
    id TEXT NOT NULL,
    source TEXT NOT NULL,
    type TEXT,
    subject TEXT,
    time TEXT,
    dedupe_key TEXT NOT NULL,
    body BLOB NOT NULL,
    headers TEXT NOT NULL,
    request_id TEXT NOT NULL,
    received_at REAL NOT NULL,
    mode TEXT NOT NULL,
    status TEXT NOT NULL,
    body_status TEXT,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS events_by_id ON events (id, received_at);
CREATE INDEX IF NOT EXISTS events_newest ON events (received_at, uid);
CREATE INDEX IF NOT EXISTS events_by_source ON events (source, received_at, uid);
CREATE INDEX IF NOT EXISTS events_by_status ON events (status, received_at, uid);
CREATE TABLE IF NOT EXISTS dedupe (
    source TEXT NOT NULL,
    key TEXT NOT NULL,
    state TEXT NOT NULL,          -- 'processing' (sync claim) or 'done'
    event_id TEXT,
    expires_at REAL NOT NULL,
    PRIMARY KEY (source, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dedupe_expiry ON dedupe (expires_at);
CREATE TABLE IF NOT EXISTS deliveries (
    id TEXT PRIMARY KEY,
    event_uid TEXT NOT NULL REFERENCES events (uid),
    destination TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts_made INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    next_attempt_at REAL,
    first_attempt_at REAL,
    lease_token TEXT,
    lease_expires_at REAL,
    leased_by TEXT,
    dead_reason TEXT,
    dead_at REAL
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (state, next_attempt_at);
CREATE INDEX IF NOT EXISTS deliveries_leased ON deliveries (state, lease_expires_at);
CREATE INDEX IF NOT EXISTS deliveries_dead ON deliveries (state, dead_at, id);
CREATE INDEX IF NOT EXISTS deliveries_by_event ON deliveries (event_uid);
CREATE TABLE IF NOT EXISTS attempts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id TEXT NOT NULL REFERENCES deliveries (id),
    number INTEGER NOT NULL,
    started_at REAL NOT NULL,
    status INTEGER,
    latency REAL NOT NULL,
    error TEXT,
    response_excerpt TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS attempts_by_delivery ON attempts (delivery_id, seq);
CREATE INDEX IF NOT EXISTS events_by_type ON events (type, received_at, uid);
CREATE INDEX IF NOT EXISTS events_by_subject ON events (subject, received_at, uid);
CREATE TABLE IF NOT EXISTS subjects (
    key TEXT PRIMARY KEY,         -- 's:' + subject, or 'e:' + uid for an event without one
    subject TEXT,
    latest_uid TEXT NOT NULL,
    latest_at REAL NOT NULL,
    events INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS subjects_latest ON subjects (latest_at, key);
CREATE TABLE IF NOT EXISTS minute_stats (
    minute INTEGER NOT NULL,
    name TEXT NOT NULL,           -- a counter of store.stats.COUNTERS, or 'lat<bucket>'
    count INTEGER NOT NULL,
    PRIMARY KEY (minute, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS backoff (
    destination TEXT PRIMARY KEY  -- a retry was scheduled since its last delivery succeeded
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS delivery_counts (
    destination TEXT NOT NULL,
    state TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (destination, state)
) WITHOUT ROWID;
"""

#: ``delivery_counts`` holds how many deliveries each (destination, state) has, kept by these
#: triggers in the transaction of every change, whichever code (or gateway version) makes it.
#: Counting the rows instead took 200 ms with 300,000 due, on the thread every write waits
#: for, at each ``/metrics`` scrape. Run whole: a trigger's body holds semicolons.
_COUNT_UP = """INSERT INTO delivery_counts (destination, state, n)
            VALUES (NEW.destination, NEW.state, 1)
            ON CONFLICT (destination, state) DO UPDATE SET n = n + 1;"""
_COUNT_DOWN = """UPDATE delivery_counts SET n = n - 1
            WHERE destination = OLD.destination AND state = OLD.state;"""
_TRIGGERS = (
    f"""CREATE TRIGGER IF NOT EXISTS delivery_counts_insert AFTER INSERT ON deliveries BEGIN
        {_COUNT_UP}
    END""",
    f"""CREATE TRIGGER IF NOT EXISTS delivery_counts_delete AFTER DELETE ON deliveries BEGIN
        {_COUNT_DOWN}
    END""",
    f"""CREATE TRIGGER IF NOT EXISTS delivery_counts_update
        AFTER UPDATE OF destination, state ON deliveries
        WHEN OLD.destination IS NOT NEW.destination OR OLD.state IS NOT NEW.state BEGIN
        {_COUNT_DOWN}
        {_COUNT_UP}
    END""",
)

#: Fills ``delivery_counts`` once, in the transaction that creates it (a file from before it).
_FILL_COUNTS = (
    "INSERT INTO delivery_counts (destination, state, n)"
    " SELECT destination, state, COUNT(*) FROM deliveries GROUP BY destination, state"
)

#: Version 1 files lack the columns the dashboard reads; the tables and indexes of version 2
#: are created by the schema above (``IF NOT EXISTS``), the columns by these.
_MIGRATE_1_TO_2 = (
    "ALTER TABLE events ADD COLUMN body_status TEXT",
    "ALTER TABLE events ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0",
)

#: Indexes earlier versions created that no query needs any more; dropped on open (a file
#: still opened by an older gateway gets them back, which costs it time, not correctness).
#: ``events_by_source_id`` (source, id, received_at): a lookup by source and id walks
#: ``events_by_id`` (an id is all but unique), so it only cost every accept one more insert.
_DROPPED_INDEXES = ("events_by_source_id",)


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
        self, conn: sqlite3.Connection, executor: ThreadPoolExecutor, busy_timeout: float
    ) -> None:
        self._conn = conn
        self._executor = executor
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
        loop = asyncio.get_running_loop()
        try:
            conn = await loop.run_in_executor(executor, _connect, path, busy)
        except (sqlite3.Error, OSError) as exc:
            executor.shutdown(wait=False)
            raise StoreError(f"cannot open the SQLite store: {exc}") from exc
        return cls(conn, executor, busy)

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
        """Run ``fn`` in one read transaction, so it sees a single snapshot."""

        def tx(conn: sqlite3.Connection) -> T:
            conn.execute("BEGIN")
            try:
                return fn(conn)
            finally:
                conn.rollback()

        return await self.run(tx)

    async def close(self) -> None:
        """Close the connection and stop the store's thread."""
        if self._closed:
            return
        self._closed = True
        # Every write already called was promised an answer: let its batch commit first.
        await self._idle.wait()
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._conn.close)
        except sqlite3.Error as exc:
            raise StoreError(f"closing the SQLite store failed: {exc}") from exc
        finally:
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
    try:
        for index in todo:
            if savepoints:
                conn.execute("SAVEPOINT op")
            try:
                result = ops[index](conn)
            except Exception as exc:  # noqa: BLE001 - handed to this operation's caller
                outcomes[index] = (False, exc)
                if savepoints and conn.in_transaction:
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                    continue
                if conn.in_transaction:
                    conn.rollback()
                return index
            else:
                if savepoints:
                    conn.execute("RELEASE op")
                outcomes[index] = (True, result)
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


def _connect(path: str, busy_timeout: float) -> sqlite3.Connection:
    """Open the file with the durability settings and create the schema when missing."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: transactions are begun explicitly (BEGIN IMMEDIATE for writes).
    conn = sqlite3.connect(
        path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        mode = _enable_wal(conn, busy_timeout)
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"cannot switch {path} to WAL (got {mode})")
        # FULL: fsync the WAL at every commit, so an answered request survives a power cut.
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("BEGIN IMMEDIATE")
        try:
            columns = {r[1] for r in conn.execute("PRAGMA table_info(events)").fetchall()}
            if columns and "body_status" not in columns:
                for statement in _MIGRATE_1_TO_2:
                    conn.execute(statement)
            counted = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'delivery_counts'"
            ).fetchone()
            # Statement by statement: executescript would commit the open transaction.
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            for trigger in _TRIGGERS:
                conn.execute(trigger)
            if counted is None:
                conn.execute(_FILL_COUNTS)
            for index in _DROPPED_INDEXES:
                conn.execute(f"DROP INDEX IF EXISTS {index}")
            row = conn.execute("SELECT version FROM schema_version").fetchone()
            if row is None:
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            elif row[0] < SCHEMA_VERSION:
                conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
            elif row[0] > SCHEMA_VERSION:
                raise sqlite3.OperationalError(
                    f"the store schema is version {row[0]}, newer than this gateway's"
                    f" {SCHEMA_VERSION}"
                )
        except BaseException:
            conn.rollback()
            raise
        conn.commit()
    except BaseException:
        conn.close()
        raise
    return conn


def _enable_wal(conn: sqlite3.Connection, busy_timeout: float) -> object:
    """``PRAGMA journal_mode = WAL``, retried while another process holds the lock it needs.

    Switching the journal mode of a new file takes a lock for which SQLite does not call the
    busy handler, so processes opening one new file together got "database is locked" at once;
    this waits for the other as ``busy_timeout`` promises. Answers the mode now in force.
    """
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            return conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                raise
        time.sleep(0.01)
