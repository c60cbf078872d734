"""A Redis client for a store URL: one server (plain or TLS), a Redis Cluster, or a Sentinel's.

URLs: ``redis://host:port/db``, ``rediss://...`` (TLS); ``redis+cluster://host:port`` or
``rediss+cluster://...`` for Redis Cluster (any node as the seed); and
``redis+sentinel://[[user]:password@]host1:26379,host2:26379/<service>[/<db>][?options]`` or
``rediss+sentinel://...`` (TLS to the master) for a master that Redis Sentinel watches
(``gateway.redisio.sentinel`` documents the form and its options). Which of these a URL is,
``gateway.store.urls`` says (the one table of store schemes); this module makes its client.

Connecting is lazy: the client is made without Redis up and connects on its first command.
With Sentinel, every new connection first asks a Sentinel for the current master, so after a
failover the client reconnects to the promoted replica by itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import RedisError

from gateway.errors import StoreError
from gateway.redisio.sentinel import parse_sentinel_url, sentinel_client

#: What a Redis store URL opens (``gateway.store.urls.StoreKind`` without SQLite).
RedisKind = Literal["redis", "cluster", "sentinel"]
#: Seconds to open a connection and to wait for an answer on it (the Sentinels' too).
SOCKET_TIMEOUT = 5.0
CONNECT_TIMEOUT = 5.0


@dataclass(frozen=True)
class RedisClients:
    """The client of a store URL, and with Sentinel the clients that find its master (whoever
    closes ``client`` closes those too)."""

    client: Redis | RedisCluster
    sentinel: Sentinel | None = None


def connect(url: str, kind: RedisKind) -> RedisClients:
    """The client of the Redis a store URL of ``kind`` names; ``StoreError`` for a bad URL."""
    options: dict[str, Any] = {
        "socket_timeout": SOCKET_TIMEOUT,
        "socket_connect_timeout": CONNECT_TIMEOUT,
    }
    if kind == "sentinel":
        try:
            target = parse_sentinel_url(url)
        except ValueError as exc:
            raise StoreError(f"store.url: bad Redis Sentinel URL: {exc}") from None
        sentinel, master = sentinel_client(target, options)
        return RedisClients(master, sentinel)
    try:
        if kind == "cluster":
            # redis-py reads the seed node from a plain redis[s]:// URL.
            return RedisClients(RedisCluster.from_url(url.replace("+cluster", "", 1), **options))
        return RedisClients(Redis.from_url(url, **options))
    except (RedisError, ValueError) as exc:
        raise StoreError(f"bad Redis store URL: {exc}") from exc
