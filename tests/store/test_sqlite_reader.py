"""The embedded store reads on a connection and thread of its own: a search or a dashboard
list never waits for a group commit, nor holds one up, and still sees every answered write."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

import pytest

from gateway.errors import StoreError
from gateway.store.sqlite import SqliteStore

from .conftest import T0, make_event


async def test_a_read_runs_while_a_write_holds_the_writer(tmp_path):
    store = await SqliteStore.open(f"sqlite:///{tmp_path}/gw.db")
    try:
        await store.accept(make_event("evt_before"), ["m"], 3600.0, T0)
        held, release = threading.Event(), threading.Event()

        def slow_write(conn: sqlite3.Connection) -> None:
            held.set()
            release.wait(30)  # the writer thread is busy until the read has answered

        write = asyncio.create_task(store._db.write(slow_write))
        await asyncio.to_thread(held.wait, 10)
        async with asyncio.timeout(10):  # on the writer's thread this read would wait forever
            events, _ = await store.list_events()
        assert [e.id for e in events] == ["evt_before"]  # what was answered before is seen
        assert not write.done()
        release.set()
        await write
    finally:
        await store.close()


async def test_the_reader_cannot_write(tmp_path):
    store = await SqliteStore.open(f"sqlite:///{tmp_path}/gw.db")
    try:
        with pytest.raises(StoreError, match="readonly"):
            await store._db.read(lambda conn: conn.execute("DELETE FROM events"))
    finally:
        await store.close()
