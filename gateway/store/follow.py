"""Following the store's change log (``LiveReads.changes``) from its end on: what the admin
live stream and the buyers' status streams both do, each with its own use of the entries."""

from __future__ import annotations

from collections.abc import Callable

from gateway.store.protocols import LiveReads
from gateway.store.records import Change

#: Entries read per call.
BATCH = 500


async def log_end(store: LiveReads) -> str:
    """The id of the log's latest entry: a new follower reads what comes after it."""
    latest = await store.changes(None, 1)
    return latest[0].id if latest else "0-0"


async def read_after(store: LiveReads, last: str, take: Callable[[Change], None]) -> str:
    """Hand every entry after ``last`` to ``take``, oldest first; the id of the last one read
    (``last`` when there was none)."""
    while True:
        batch = await store.changes(last, BATCH)
        for change in batch:
            take(change)
        if batch:
            last = batch[-1].id
        if len(batch) < BATCH:
            return last
