"""The embedded store's file: its schema, migrations, and opening it (WAL, fsync on commit).

Tables and indexes are created with ``IF NOT EXISTS`` on every open, so a table a newer
version adds appears in an older file by itself; a column is added by a migration step.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from gateway.store.sqlite.tally import TallyConnection

SCHEMA_VERSION = 4

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
    attempts INTEGER NOT NULL DEFAULT 0,
    payment_key TEXT,             -- the payment it belongs to (with source), or NULL
    mark TEXT,                    -- 'superseded' or 'conflict', or NULL
    origin TEXT NOT NULL DEFAULT 'webhook'
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
-- One partial index per state a query looks a delivery up by: a row is in at most one of
-- them, and a delivered one (most rows) in none, so an insert or a change of state touches
-- at most two of them.
CREATE INDEX IF NOT EXISTS deliveries_due_at ON deliveries (next_attempt_at)
    WHERE state = 'due';
CREATE INDEX IF NOT EXISTS deliveries_lease_ends ON deliveries (lease_expires_at)
    WHERE state = 'leased';
CREATE INDEX IF NOT EXISTS deliveries_dead_at ON deliveries (dead_at, id)
    WHERE state = 'dead';
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
CREATE INDEX IF NOT EXISTS events_by_payment ON events (source, payment_key, received_at)
    WHERE payment_key IS NOT NULL;
CREATE TABLE IF NOT EXISTS payments (
    source TEXT NOT NULL,
    key TEXT NOT NULL,
    reference TEXT,
    state TEXT NOT NULL,
    amount_value TEXT,            -- minor units, as decimal digits (exact at any size)
    amount_scale INTEGER,
    currency TEXT,
    events INTEGER NOT NULL,
    first_seen REAL NOT NULL,
    updated_at REAL NOT NULL,
    conflict INTEGER NOT NULL DEFAULT 0,
    missing INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (source, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS payments_latest ON payments (updated_at, source, key);
CREATE INDEX IF NOT EXISTS payments_by_state ON payments (state, updated_at);
CREATE INDEX IF NOT EXISTS payments_by_key ON payments (key);
CREATE INDEX IF NOT EXISTS payments_by_reference ON payments (reference)
    WHERE reference IS NOT NULL;
CREATE INDEX IF NOT EXISTS payments_first_seen ON payments (source, first_seen);
CREATE TABLE IF NOT EXISTS reconcile_leases (
    source TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    until REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS reconcile_runs (
    id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    started_at REAL NOT NULL,
    run TEXT NOT NULL             -- the run as JSON (records.ReconcileRun.to_json)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS reconcile_runs_by_source ON reconcile_runs (source, started_at);
CREATE TABLE IF NOT EXISTS reconcile_sightings (
    source TEXT NOT NULL,
    key TEXT NOT NULL,
    state TEXT NOT NULL,
    since REAL NOT NULL,
    PRIMARY KEY (source, key)
) WITHOUT ROWID;
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
CREATE TABLE IF NOT EXISTS rollups (
    hour INTEGER NOT NULL,        -- Unix seconds // 3600 (UTC)
    source TEXT NOT NULL,
    name TEXT NOT NULL,           -- a field of gateway.analytics.rollup
    n INTEGER NOT NULL,
    PRIMARY KEY (hour, source, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rollup_amounts (
    hour INTEGER NOT NULL,
    source TEXT NOT NULL,
    currency TEXT NOT NULL,
    scale INTEGER NOT NULL,
    value TEXT NOT NULL,          -- completed minor units: a whole number of any size
    PRIMARY KEY (hour, source, currency, scale)
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
#: for, at each ``/metrics`` scrape (BENCHMARKS.md, "The pinned part again, on 0a24d5e, with
#: SQLite's kept counts"). Run whole: a trigger's body holds semicolons.
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
#: ``deliveries_due``, ``deliveries_leased``, ``deliveries_dead`` ((state, ...) over every
#: delivery): each change of state moved a row in all three; the partial indexes above
#: replace them.
_DROPPED_INDEXES = (
    "events_by_source_id",
    "deliveries_due",
    "deliveries_leased",
    "deliveries_dead",
)

#: Version 2 files lack what payments need (design.md 5.7); their ``subjects`` table (the
#: first payments view, one row per subject) is no longer kept.
_MIGRATE_2_TO_3 = (
    "ALTER TABLE events ADD COLUMN payment_key TEXT",
    "ALTER TABLE events ADD COLUMN mark TEXT",
    "ALTER TABLE events ADD COLUMN origin TEXT NOT NULL DEFAULT 'webhook'",
)
_DROPPED_TABLES = ("subjects",)


def connect(path: str, busy_timeout: float) -> sqlite3.Connection:
    """Open the file with the durability settings and create the schema when missing."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: transactions are begun explicitly (BEGIN IMMEDIATE for writes).
    conn = sqlite3.connect(
        path,
        timeout=busy_timeout,
        isolation_level=None,
        check_same_thread=False,
        factory=TallyConnection,
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
            if columns and "payment_key" not in columns:
                for statement in _MIGRATE_2_TO_3:
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
            for table in _DROPPED_TABLES:
                conn.execute(f"DROP TABLE IF EXISTS {table}")
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


def connect_reader(path: str, busy_timeout: float) -> sqlite3.Connection:
    """A second connection to a file ``connect`` opened, for snapshot reads only
    (``query_only``: a bug in a read can never write)."""
    conn = sqlite3.connect(
        path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        conn.execute("PRAGMA query_only = ON")
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
