"""Durable store-and-forward: dedupe, queue, leases, retries, dead letters and replay.

``open_store(url)`` picks the backend by URL scheme; ``gateway.store.base`` holds the
interface (``Store``) and the value objects every backend shares.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.errors import StoreError
from gateway.store.base import (
    AcceptResult,
    Attempt,
    DeadLetter,
    DeliveryView,
    Event,
    EventNotFound,
    EventSummary,
    EventView,
    InvalidCursor,
    Lease,
    NewEvent,
    Store,
)

__all__ = [
    "AcceptResult",
    "Attempt",
    "DeadLetter",
    "DeliveryView",
    "Event",
    "EventNotFound",
    "EventSummary",
    "EventView",
    "InvalidCursor",
    "Lease",
    "NewEvent",
    "Store",
    "open_store",
]


async def open_store(url: str, *, encryption_keys: Sequence[str] = ()) -> Store:
    """Open the store a ``store.url`` names: ``sqlite:///...``, ``redis[s]://...``,
    ``redis[s]+cluster://...``."""
    if encryption_keys:
        raise StoreError("store.encryption_keys is not supported by this version")
    if url.startswith("sqlite:"):
        from gateway.store.sqlite import SqliteStore

        return await SqliteStore.open(url)
    if url.startswith(("redis://", "rediss://", "redis+cluster://", "rediss+cluster://")):
        from gateway.store.redis import RedisStore

        return await RedisStore.open(url)
    raise StoreError(f"unsupported store URL scheme in {url.split(':', 1)[0]!r}")
