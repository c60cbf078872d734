"""Several gateway processes may open one new SQLite file at the same moment (DESIGN 5.4, 7)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.store import open_store


async def test_many_openers_of_one_new_file_all_get_the_store(tmp_path: Path):
    """Switching a new file to WAL takes a lock SQLite does not wait for by itself; each opener
    must wait for the others within busy_timeout, not fail with "database is locked"."""
    for round_ in range(150):
        url = f"sqlite:///{tmp_path}/{round_}/gw.db"
        stores = await asyncio.gather(*(open_store(url) for _ in range(4)))
        for store in stores:
            await store.ping()
            await store.close()
