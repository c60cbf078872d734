"""Several gateway processes may open one new SQLite file at the same moment (design.md 5.4, 7)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from gateway.store import open_store
from gateway.store.sqlite.schema import SCHEMA_VERSION


def _rewrite(path: Path, *statements: str) -> None:
    """Run ``statements`` on the file and commit them: how a test turns a file into one an
    earlier version of the store left."""
    conn = sqlite3.connect(path)
    try:
        for statement in statements:
            conn.execute(statement)
        conn.commit()
    finally:
        conn.close()


async def test_many_openers_of_one_new_file_all_get_the_store(tmp_path: Path):
    """Switching a new file to WAL takes a lock SQLite does not wait for by itself; each opener
    must wait for the others within busy_timeout, not fail with "database is locked"."""
    for round_ in range(150):
        url = f"sqlite:///{tmp_path}/{round_}/gw.db"
        stores = await asyncio.gather(*(open_store(url) for _ in range(4)))
        for store in stores:
            await store.ping()
            await store.close()


async def test_a_schema_1_file_gains_the_dashboard_columns_on_open(tmp_path: Path):
    from tests.store.conftest import T0, make_event

    url = f"sqlite:///{tmp_path}/old.db"
    store = await open_store(url)
    await store.accept(make_event("old"), ["m"], 60.0, T0)
    await store.close()
    # Make it a file as schema 1 left it: no body_status or attempts column.
    _rewrite(
        tmp_path / "old.db",
        "ALTER TABLE events DROP COLUMN body_status",
        "ALTER TABLE events DROP COLUMN attempts",
        "UPDATE schema_version SET version = 1",
    )
    store = await open_store(url)
    try:
        [line], _ = await store.list_events()
        assert (line.id, line.attempts, line.body_status) == ("old", 0, None)
        await store.accept(make_event("new"), ["m"], 60.0, T0 + 1)
        assert len((await store.list_events())[0]) == 2
    finally:
        await store.close()
    conn = sqlite3.connect(tmp_path / "old.db")
    assert conn.execute("SELECT version FROM schema_version").fetchone() == (SCHEMA_VERSION,)
    conn.close()


async def test_a_schema_2_file_gains_payments_on_open(tmp_path: Path):
    from tests.store.conftest import T0, make_event

    url = f"sqlite:///{tmp_path}/old.db"
    store = await open_store(url)
    await store.accept(make_event("old"), ["m"], 60.0, T0)
    await store.close()
    # As schema 2 left it: no payment columns, a subjects table, no payments table.
    _rewrite(
        tmp_path / "old.db",
        "DROP INDEX events_by_payment",
        *(
            f"ALTER TABLE events DROP COLUMN {column}"
            for column in ("payment_key", "mark", "origin")
        ),
        "DROP TABLE payments",
        "CREATE TABLE subjects (key TEXT PRIMARY KEY, events INTEGER)",
        "UPDATE schema_version SET version = 2",
    )
    store = await open_store(url)
    try:
        view = await store.get_event("old")
        assert view is not None
        assert (view.payment_key, view.mark, view.event.origin) == (None, None, "webhook")
        assert await store.list_payments() == ([], None)
    finally:
        await store.close()
    conn = sqlite3.connect(tmp_path / "old.db")
    assert conn.execute("SELECT version FROM schema_version").fetchone() == (SCHEMA_VERSION,)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "subjects" not in tables and "payments" in tables
    conn.close()


async def test_a_schema_3_file_gains_the_analytics_rollups_on_open(tmp_path):
    from dataclasses import replace

    from gateway.payments.amounts import Amount
    from gateway.payments.rules import PaymentFacts
    from tests.store.conftest import T0, make_event

    url = f"sqlite:///{tmp_path}/old.db"
    store = await open_store(url)
    await store.close()
    # As schema 3 left it: no rollup tables.
    _rewrite(
        tmp_path / "old.db",
        "DROP TABLE rollups",
        "DROP TABLE rollup_amounts",
        "UPDATE schema_version SET version = 3",
    )
    store = await open_store(url)
    try:
        facts = PaymentFacts("p", None, "completed", Amount(5, 0, "EUR"), "enforce")
        event = replace(make_event("new"), payment=facts)
        assert (await store.accept(event, ["m"], 60.0, T0)).status == "queued"
        hour = int(T0 // 3600)
        rollup = await store.rollups(hour, hour, ["payments"])
        assert rollup.amounts == {hour: {("EUR", 0): 5}}
    finally:
        await store.close()
    conn = sqlite3.connect(tmp_path / "old.db")
    assert conn.execute("SELECT version FROM schema_version").fetchone() == (SCHEMA_VERSION,)
    conn.close()


async def test_a_file_with_the_whole_state_indexes_gets_the_partial_ones_on_open(tmp_path):
    """Before the partial indexes, three indexes led with the state and held every delivery;
    on open they are dropped for the partial ones, and a delivery due, leased and dead before
    is found by each lookup after."""
    from gateway.store.records import Attempt
    from tests.store.conftest import T0, make_event

    url = f"sqlite:///{tmp_path}/old.db"
    store = await open_store(url)
    try:
        for name in ("a", "b", "c"):
            await store.accept(make_event(name), ["m"], 60.0, T0)
        leases = await store.lease_due(T0, 30.0, 2, "w")
        assert len(leases) == 2
        failed = Attempt(1, T0, 500, 0.01)
        assert await store.dead_letter(leases[0], failed, "gave up")
    finally:
        await store.close()
    # As the earlier versions left the file: the whole-table indexes, none of the partial ones.
    _rewrite(
        tmp_path / "old.db",
        "DROP INDEX deliveries_due_at",
        "DROP INDEX deliveries_lease_ends",
        "DROP INDEX deliveries_dead_at",
        "CREATE INDEX deliveries_due ON deliveries (state, next_attempt_at)",
        "CREATE INDEX deliveries_leased ON deliveries (state, lease_expires_at)",
        "CREATE INDEX deliveries_dead ON deliveries (state, dead_at, id)",
    )

    store = await open_store(url)
    try:
        # The one still due, then (its lease run out) the one still leased.
        (due,) = await store.lease_due(T0 + 10, 30.0, 5, "w")
        assert due.delivery_id not in {lease.delivery_id for lease in leases}
        (expired,) = await store.lease_due(T0 + 31, 30.0, 5, "w")
        assert expired.delivery_id == leases[1].delivery_id
        dead, _ = await store.list_dead_letters()
        assert [d.delivery_id for d in dead] == [leases[0].delivery_id]
    finally:
        await store.close()
    conn = sqlite3.connect(tmp_path / "old.db")
    indexes = {
        row[0]: row[1]
        for row in conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'deliveries'"
        )
    }
    conn.close()
    assert not {"deliveries_due", "deliveries_leased", "deliveries_dead"} & indexes.keys()
    for partial, state in (
        ("deliveries_due_at", "due"),
        ("deliveries_lease_ends", "leased"),
        ("deliveries_dead_at", "dead"),
    ):
        assert f"WHERE state = '{state}'" in indexes[partial]
