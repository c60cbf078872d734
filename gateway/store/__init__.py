"""Durable store-and-forward: dedupe, queue, leases, retries, dead letters and replay.

``open_store(url)`` picks the backend by URL scheme; ``gateway.store.base`` holds the
interface (``Store``) and the value objects every backend shares; ``gateway.store.crypto``
encrypts event payloads at rest.
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
from gateway.store.crypto import KeyRing

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
    ``redis[s]+cluster://...``.

    With ``encryption_keys`` (``store.encryption_keys``), event payloads are encrypted at rest
    under the first key and read with any of them (``gateway.store.crypto``).
    """
    ring = KeyRing.from_config(encryption_keys) if encryption_keys else None
    if url.startswith("sqlite:"):
        from gateway.store.sqlite import SqliteStore

        return await SqliteStore.open(url, ring)
    if url.startswith(("redis://", "rediss://", "redis+cluster://", "rediss+cluster://")):
        from gateway.store.redis import RedisStore

        return await RedisStore.open(url, ring)
    raise StoreError(f"unsupported store URL scheme in {url.split(':', 1)[0]!r}")
