"""What every part of the Redis store stands on: the client, its scripts and their calls.

``RedisCore`` holds the client and the partitions' key names, opens a store from its URL
(``gateway.redisio.connect``), checks the partition count, runs the store scripts through the
shared auto-pipeline (``_call``) and plain commands in one round trip per node (``_pipeline``),
turns every Redis failure into a ``StoreError`` (``_errors``), and appends to the change log.
The role classes beside it (ingress, queue, operator, views) add the operations.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Literal, Self

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import Sentinel
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.errors import StoreError, StoreUnreachable
from gateway.jsontext import dumpb
from gateway.ratelimit.limiter import Limiter
from gateway.ratelimit.redis_limiter import RedisLimiter
from gateway.redisio.connect import connect
from gateway.redisio.packing import use_hiredis_packing
from gateway.redisio.pipeline import AutoPipeline
from gateway.store.crypto import KeyRing
from gateway.store.redis.keys import (
    BACKOFF_KEY,
    CHANGES_CAP,
    CHANGES_KEY,
    META_KEY,
    PartitionKeys,
    partition_of,
)
from gateway.store.redis.scripts import register_scripts
from gateway.store.redis.wakeups import RedisWakeups
from gateway.store.urls import describe_schemes, store_kind

log = logging.getLogger("gateway.store")

#: Seconds a rate-limit check may take before ``on_store_error`` decides.
RATE_LIMIT_TIMEOUT = 0.25
#: What a Redis call can fail with (refused, timed out, a script error): a ``StoreError``.
STORE_FAILURES = (TimeoutError, RedisError, OSError)
#: Those of them that mean Redis was not reached or did not answer: ``StoreUnreachable``.
UNREACHABLE = (RedisConnectionError, RedisTimeoutError, TimeoutError, OSError)


class PartitionMismatch(StoreError):
    """``store.partitions`` differs from the count the store was created with."""


class RedisCore:
    """The client, the partitions and the calls the role classes of ``RedisStore`` share."""

    def __init__(
        self,
        client: Redis | RedisCluster,
        ring: KeyRing | None = None,
        *,
        partitions: int = 1,
        sentinel: Sentinel | None = None,
        wait_replicas: int = 0,
        wait_timeout: float = 1.0,
    ) -> None:
        if partitions < 1:
            raise ValueError("partitions must be at least 1")
        self._r = client
        # Decided once: an isinstance check against redis-py's client classes goes through a
        # Protocol metaclass (about 1 us), too slow to repeat on the request path.
        self._cluster = isinstance(client, RedisCluster)
        use_hiredis_packing(client)
        # The Sentinel clients that find the master; the store owns them and closes them.
        self._sentinel = sentinel
        self._ring = ring
        self._parts = [PartitionKeys(index, partitions) for index in range(partitions)]
        self._checked = False
        self._next_start = 0
        #: With one partition, what the last lease call read of the due and leased sets after
        #: it leased (``due.lua``'s answer): the next round's candidates (``RedisQueue``).
        self._ahead: list[Any] | None = None
        self._scripts: dict[str, AsyncScript] = register_scripts(client)
        # Concurrent requests' script calls share one round trip (the rate limiter's too).
        # An accept is answered only once ``wait_replicas`` replicas have it (Redis WAIT).
        self._batch = AutoPipeline(client, replicas=wait_replicas, replica_timeout=wait_timeout)
        # A slow Redis must not stall ingress: after 250 ms the source's on_store_error decides.
        self._limiter = RedisLimiter(client, timeout=RATE_LIMIT_TIMEOUT, pipeline=self._batch)
        # Ingress-only processes wake the delivering ones through this Redis; on a single
        # Redis the announcement goes in the script batches, as a cluster's cannot (it names
        # no key, so no slot says which master would take it).
        self._wakeups = RedisWakeups(client, publish=None if self._cluster else self._announce)

    async def _announce(self, channel: str) -> None:
        await self._batch.call(self._scripts["wake"], [], [channel])

    @property
    def client(self) -> Redis | RedisCluster:
        """The Redis client, shared with what else keeps state in Redis (the rate limiter)."""
        return self._r

    @property
    def _log_inline(self) -> bool:
        """Whether accept.lua and finish.lua append the change-log entries themselves: with
        one partition the log shares its hash tag (see "Change log" in the package)."""
        return len(self._parts) == 1

    @property
    def partitions(self) -> int:
        """How many partitions the store is made of."""
        return len(self._parts)

    def partition_of(self, source: str, dedupe_key: str) -> int:
        """The partition an event with this (source, dedupe key) lives in."""
        return partition_of(source, dedupe_key, len(self._parts))

    def _keys_of_uid(self, uid: str) -> PartitionKeys:
        head, dot, _ = uid.partition(".")
        index = int(head) if dot and head.isdigit() else 0
        if index >= len(self._parts):
            raise StoreError(f"event {uid} names a partition this store does not have")
        return self._parts[index]

    @classmethod
    async def open(
        cls,
        url: str,
        ring: KeyRing | None = None,
        *,
        partitions: int = 1,
        wait_replicas: int = 0,
        wait_timeout: float = 1.0,
    ) -> Self:
        """A store on the Redis (Sentinel-watched master, or Redis Cluster) a URL names.

        With a ``ring``, event bodies and headers are written encrypted (``store.crypto``).
        The partition count is checked against the one the store recorded now if Redis
        answers, else before the first operation.
        """
        kind = store_kind(url)
        if kind is None or kind == "sqlite":
            raise StoreError(f"store.url: not a Redis URL (one of {describe_schemes()})")
        clients = connect(url, kind)
        store = cls(
            clients.client,
            ring,
            partitions=partitions,
            sentinel=clients.sentinel,
            wait_replicas=wait_replicas,
            wait_timeout=wait_timeout,
        )
        try:
            await store._check_partitions()
            async with store._errors():
                await store._batch.load([*store._scripts.values(), store._limiter.script])
        except PartitionMismatch:
            await store.close()
            raise
        except StoreError:
            pass  # Redis is not up yet: checked before the first operation instead
        return store

    async def _check_partitions(self) -> None:
        """Record the partition count on first use; refuse a store made with another one."""
        if self._checked:
            return
        async with self._errors():
            await self._r.hsetnx(META_KEY, "partitions", len(self._parts))
            recorded = await self._r.hget(META_KEY, "partitions")
        if recorded is None or int(recorded) != len(self._parts):
            raise PartitionMismatch(
                f"store.partitions is {len(self._parts)}, but this store was created with"
                f" {recorded!r} partitions; changing the count would split dedupe, so the"
                " gateway refuses to start (set it back, or drain and empty the store first)"
            )
        self._checked = True

    @asynccontextmanager
    async def _errors(self) -> AsyncIterator[None]:
        """Every Redis failure (refused, timed out, script error) as a StoreError."""
        try:
            yield
        except UNREACHABLE as exc:
            raise StoreUnreachable(f"Redis store failed: {exc}") from exc
        except STORE_FAILURES as exc:
            raise StoreError(f"Redis store failed: {exc}") from exc

    async def _call(
        self, name: str, keys: Sequence[str], args: Sequence[Any], *, durable: bool = False
    ) -> Any:
        """Run one store script (EVALSHA, loading it when the server lacks it).

        ``durable``: answer only once the replicas ``store.wait_replicas`` asks for have it.
        """
        if not self._checked:
            await self._check_partitions()
        # What ``_errors`` does, inline: on the path of every request, a context manager made
        # of a generator costs more than the script call's own Python.
        try:
            return await self._batch.call(self._scripts[name], keys, args, durable=durable)
        except UNREACHABLE as exc:
            raise StoreUnreachable(f"Redis store failed: {exc}") from exc
        except STORE_FAILURES as exc:
            raise StoreError(f"Redis store failed: {exc}") from exc

    async def _pipeline(self, fill: Callable[[Any], object]) -> list[Any]:
        """One round trip (per node) of the plain commands ``fill`` queues on a pipeline."""
        if not self._checked:
            await self._check_partitions()
        async with self._errors():
            pipe = self._r.pipeline(transaction=False)
            fill(pipe)
            replies: list[Any] = await pipe.execute()
            return replies

    async def _log_changes(
        self,
        entries: Sequence[tuple[str, dict[str, object]]],
        mark: Literal["", "mark", "take"] = "",
        destination: str = "",
    ) -> bool:
        """Append to the change log after the change itself was stored (see "Change log" in
        the package), and keep ``destination``'s backoff mark: ``mark`` after a retry,
        ``take`` after a success (``True`` when that took one: the caller releases the
        backlog).

        A failure here is logged, not raised: the change is stored, only its live message (or
        an early release of a backlog, which then waits out its backoff) is lost, and failing
        the call would make a sender resend what was accepted.
        """
        args: list[Any] = [CHANGES_CAP, mark, destination]
        for kind, data in entries:
            args += [kind, dumpb(data)]
        try:
            return bool(await self._call("log", [CHANGES_KEY, BACKOFF_KEY], args))
        except StoreError as exc:
            log.warning("change log: an entry was not written: %s", exc)
            return False

    async def _find_uid(self, event_id: str, source: str | None) -> str | None:
        """The newest stored event with this id (and source, when given), in any partition."""
        replies = await self._pipeline(
            lambda pipe: [
                pipe.zrevrange(keys.ids(event_id), 0, -1, withscores=True) for keys in self._parts
            ]
        )
        found = sorted(
            ((score, raw.decode()) for reply in replies for raw, score in reply), reverse=True
        )
        if source is None:
            return found[0][1] if found else None
        for _, uid in found:
            async with self._errors():
                owner = await self._r.hget(self._keys_of_uid(uid).ev(uid), "source")
            if owner == source.encode():
                return str(uid)
        return None

    def rate_limiter(self) -> Limiter:
        """One limit shared by every process and replica, on this store's Redis client (its
        script loaded at open with the store's)."""
        return self._limiter

    def wakeups(self) -> RedisWakeups:
        """Pub/Sub wake-ups on this store's database (a cluster's too)."""
        return self._wakeups

    async def ping(self) -> None:
        """Ask Redis for PONG (and check the partition count once it answers)."""
        async with self._errors():
            await self._r.ping()
        await self._check_partitions()

    async def close(self) -> None:
        """Close the connection pool (and the connections to the Sentinels)."""
        await self._wakeups.close()
        self._batch.close()
        async with self._errors():
            try:
                await self._r.aclose()
            finally:
                if self._sentinel is not None:
                    await self._sentinel.aclose()
