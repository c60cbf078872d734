"""Fixtures for the store tests: a real redis-server per session and a store per backend."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from gateway.store import Event, Store, open_store
from gateway.store.protocols import Wakeups
from harness.redis_server import RedisCluster, RedisServer
from tests.waiting import eventually

#: Partitions of the store on the cluster: spread over its three masters.
CLUSTER_PARTITIONS = 16

T0 = 1_700_000_000.0
#: Fixed test keys for ``store.encryption_keys`` (base64 of 32 bytes, as the config takes them).
KEY_A = base64.b64encode(bytes(range(32))).decode()
KEY_B = "base64:" + base64.b64encode(bytes(range(100, 132))).decode()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the session; each store test flushes it first."""
    server = RedisServer()
    server.start()
    yield server
    server.close()


async def flush(url: str) -> None:
    """Empty every database of the server at ``url``."""
    client = aioredis.Redis.from_url(url)
    try:
        await client.flushall()
    finally:
        await client.aclose()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """A Redis Cluster of three masters for the session; each test flushes it first."""
    with RedisCluster(masters=3) as cluster:
        yield cluster


async def flush_cluster(cluster: RedisCluster) -> None:
    """Empty every master of ``cluster``."""
    for node in cluster.nodes:
        await flush(node.url)


@pytest.fixture(params=["sqlite", "sqlite+encrypted", "redis", "redis+encrypted", "cluster16"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """An empty store of each backend, in the clear and with payloads encrypted at rest, and
    a Redis store of 16 partitions on a three-master Redis Cluster."""
    backend, _, encrypted = request.param.partition("+")
    keys = [KEY_A] if encrypted else []
    if backend == "sqlite":
        s = await open_store(f"sqlite:///{tmp_path}/data/gateway.db", encryption_keys=keys)
    elif backend == "cluster16":
        cluster: RedisCluster = request.getfixturevalue("redis_cluster")
        await flush_cluster(cluster)
        s = await open_store(cluster.url, partitions=CLUSTER_PARTITIONS)
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        await flush(server.url)
        s = await open_store(server.url, encryption_keys=keys)
    yield s
    await s.close()


def make_event(
    id: str = "evt_1",
    *,
    source: str = "payments",
    key: str | None = None,
    received_at: float = T0,
    body: bytes = b'{"type":"payment.completed","offerId":"o1"}',
    type: str | None = "payment.completed",
) -> Event:
    """An event as ingress would hand it over; the dedupe key defaults to the id."""
    return Event(
        id=id,
        source=source,
        type=type,
        subject="o1",
        time=None,
        dedupe_key=key if key is not None else id,
        body=body,
        headers=(("content-type", "application/json"), ("x-github-event", "push")),
        request_id=f"req-{id}",
        received_at=received_at,
    )


async def announce_until_woken(sender: Wakeups, woken: asyncio.Event) -> None:
    """Announce every 50 ms until ``woken`` (a listener subscribes a moment after it starts)."""

    def announce() -> bool:
        if woken.is_set():
            return True
        sender.announce()
        return False

    await eventually(announce, "the listener to be woken", timeout=10)


@contextlib.asynccontextmanager
async def listening(listener: Wakeups) -> AsyncIterator[asyncio.Event]:
    """``listener`` listening in a task; the event it sets."""
    woken = asyncio.Event()
    task = asyncio.create_task(listener.listen(woken.set))
    try:
        yield woken
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def one_store_wakes_another(
    url: str, partitions: int = 1, *, prepare: Callable[[Store], None] | None = None
) -> None:
    """What two gateway processes do: one announces through its store on ``url``, the other
    listens through its own and is woken (within 10 s, or the test fails). ``prepare`` gets
    the announcing store first."""
    announcing = await open_store(url, partitions=partitions)
    delivering = await open_store(url, partitions=partitions)
    if prepare is not None:
        prepare(announcing)
    sender, listener = announcing.wakeups(), delivering.wakeups()
    assert sender is not None and listener is not None
    try:
        async with listening(listener) as woken:
            await announce_until_woken(sender, woken)
    finally:
        await announcing.close()
        await delivering.close()
