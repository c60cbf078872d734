"""Durable store-and-forward: dedupe, queue, leases, retries, dead letters and replay.

``open_store(url)`` picks the backend by URL scheme; ``gateway.store.protocols`` holds the
interface (``Store``, one protocol per role), ``gateway.store.records`` the value objects every
backend shares; ``gateway.store.crypto`` encrypts event payloads at rest.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.errors import EventNotFound, InvalidCursor, StoreError
from gateway.store.crypto import KeyRing
from gateway.store.protocols import Store
from gateway.store.records import (
    AcceptResult,
    Attempt,
    DeadLetter,
    DeliveryView,
    Event,
    EventSummary,
    EventView,
    Lease,
)
from gateway.store.urls import describe_schemes, store_kind

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
    "Store",
    "open_store",
]


async def open_store(
    url: str,
    *,
    encryption_keys: Sequence[str] = (),
    partitions: int = 1,
    wait_replicas: int = 0,
    wait_timeout: float = 1.0,
) -> Store:
    """Open the store a ``store.url`` names: ``sqlite:///...``, ``redis[s]://...``,
    ``redis[s]+cluster://...`` or
    ``redis[s]+sentinel://[[user]:password@]host1:26379,host2:26379/<service>[/<db>]``.

    A Sentinel URL takes options in its query string (``sentinel_password``, ...; see
    ``gateway.redisio.sentinel``); a malformed one is a ``StoreError`` naming ``store.url``.

    With ``encryption_keys`` (``store.encryption_keys``), event payloads are encrypted at rest
    under the first key and read with any of them (``gateway.store.crypto``). ``partitions``
    (``store.partitions``) splits a Redis store; a SQLite store is one part. ``wait_replicas``
    (``store.wait_replicas``) makes a Redis store answer an accept only once that many replicas
    have it, waiting up to ``wait_timeout`` seconds.
    """
    ring = KeyRing.from_config(encryption_keys) if encryption_keys else None
    kind = store_kind(url)
    if kind == "sqlite":
        from gateway.store.sqlite import SqliteStore

        return await SqliteStore.open(url, ring)
    if kind is not None:
        from gateway.store.redis import RedisStore

        return await RedisStore.open(
            url,
            ring,
            partitions=partitions,
            wait_replicas=wait_replicas,
            wait_timeout=wait_timeout,
        )
    raise StoreError(f"store.url: the scheme is not one of {describe_schemes()}")
