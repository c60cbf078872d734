"""A store that cannot be reached raises StoreError and leaves nothing half-done."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.errors import StoreError
from gateway.store import open_store
from harness.redis_server import RedisServer

from .conftest import T0, make_event


async def test_redis_down_raises_store_error_and_recovers():
    server = RedisServer()
    server.start()
    try:
        store = await open_store(server.url)
        try:
            assert (await store.accept(make_event("evt_1"), ["m"], 60, T0)).status == "queued"
            server.stop()
            with pytest.raises(StoreError):
                await store.ping()
            with pytest.raises(StoreError):
                await store.accept(make_event("evt_2"), ["m"], 60, T0)
            with pytest.raises(StoreError):
                await store.lease_due(T0, 30, 10, "w")
            server.start()  # same port; the data went with the process (no persistence)
            await store.ping()
            assert (await store.accept(make_event("evt_2"), ["m"], 60, T0)).status == "queued"
        finally:
            await store.close()
    finally:
        server.close()


async def test_opening_redis_does_not_need_it_up():
    server = RedisServer()
    server.start()
    url = server.url
    server.close()
    store = await open_store(url)
    try:
        with pytest.raises(StoreError):
            await store.ping()
    finally:
        await store.close()


async def test_sqlite_locked_by_another_writer_raises_and_commits_nothing(tmp_path: Path):
    path = tmp_path / "gw.db"
    store = await open_store(f"sqlite:///{path}?busy_timeout=0.05")
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        with pytest.raises(StoreError):
            await store.accept(make_event(), ["m"], 60, T0)
        with pytest.raises(StoreError):
            await store.claim("payments", "k", 10, T0)
        other.execute("COMMIT")
        # Nothing of the refused accept was kept: the retry is new, not a duplicate.
        assert (await store.accept(make_event(), ["m"], 60, T0 + 1)).status == "queued"
        assert await store.queue_depth() == {("m", "due"): 1}
    finally:
        other.close()
        await store.close()


async def test_sqlite_path_that_cannot_be_a_database(tmp_path: Path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(StoreError):
        await open_store(f"sqlite:///{not_a_dir}/gw.db")
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database file" * 100)
    with pytest.raises(StoreError):
        await open_store(f"sqlite:///{garbage}")


async def test_closed_sqlite_store_raises(tmp_path: Path):
    store = await open_store(f"sqlite:///{tmp_path}/gw.db")
    await store.close()
    with pytest.raises(StoreError):
        await store.ping()


@pytest.mark.parametrize(
    "url", ["postgres://x", "sqlite://relative.db", "sqlite:///x.db?cache=shared", "memcached://"]
)
async def test_unsupported_urls_are_refused(url: str):
    with pytest.raises(StoreError):
        await open_store(url)


async def test_relative_sqlite_url_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.chdir(tmp_path)
    store = await open_store("sqlite:///data/gw.db")
    await store.close()
    assert (tmp_path / "data" / "gw.db").is_file()
