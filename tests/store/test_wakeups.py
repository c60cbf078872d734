"""Wake-ups between processes on one Redis: coalesced announcements, a listener that
resubscribes, a channel per database."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from redis import asyncio as aioredis

from gateway.store import Store, open_store
from gateway.store.redis import RedisStore
from gateway.store.redis.wakeups import RedisWakeups, channel_of
from tests.waiting import eventually

from .conftest import (
    CLUSTER_PARTITIONS,
    announce_until_woken,
    flush,
    flush_cluster,
    listening,
    one_store_wakes_another,
)


async def _count(client: aioredis.Redis, channel: str, seen: list[object]) -> None:
    """Note every message on ``channel`` in ``seen``, until cancelled."""
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(channel)
    try:
        while True:
            message = await pubsub.get_message(timeout=1.0)
            if message is not None:
                seen.append(message)
    finally:
        await pubsub.aclose()


async def test_a_burst_of_announcements_is_two_messages(redis_server):
    """Announcements made before the publish goes out share it; those made after it, within
    the window, are one more at the end of the window, so the last event of a burst is
    announced too.

    The first publish is held open once its message is out, so the second half of the burst
    lands inside its window whatever the machine's speed."""
    await flush(redis_server.url)
    client = aioredis.Redis.from_url(redis_server.url)
    listener = aioredis.Redis.from_url(redis_server.url)
    held = asyncio.Event()
    published: list[str] = []

    async def publish(channel: str) -> None:
        await client.publish(channel, b"")
        published.append(channel)
        if len(published) == 1:
            await held.wait()  # out, and its window not over until the test says so

    wakeups = RedisWakeups(client, interval=0.01, publish=publish)
    seen: list[object] = []
    counting = asyncio.create_task(_count(listener, wakeups.channel, seen))
    try:

        async def subscribed() -> int:
            return int((await client.pubsub_numsub(wakeups.channel))[0][1])

        await eventually(subscribed, "the counter to subscribe")
        for _ in range(50):
            wakeups.announce()
        await eventually(lambda: seen, "the first announcement's message")
        for _ in range(50):
            wakeups.announce()  # within the first publish's window
        held.set()
        await eventually(
            lambda: seen, "the message at the end of the window", until=lambda s: len(s) >= 2
        )
        await wakeups.close()  # its publishing is over: no message can follow
        assert len(published) == 2
        assert len(seen) == 2
    finally:
        held.set()
        counting.cancel()
        await asyncio.gather(counting, return_exceptions=True)
        await client.aclose()
        await listener.aclose()


async def test_the_listener_wakes_for_each_announcement_and_resubscribes(redis_server):
    await flush(redis_server.url)
    client = aioredis.Redis.from_url(redis_server.url)
    admin = aioredis.Redis.from_url(redis_server.url)
    wakeups = RedisWakeups(client, interval=0.01)
    try:
        async with listening(wakeups) as woken:
            await announce_until_woken(wakeups, woken)
            woken.clear()
            # Its connection cut by the server: it subscribes again and still wakes.
            assert await admin.client_kill_filter(_type="pubsub") >= 1
            await announce_until_woken(wakeups, woken)
    finally:
        await wakeups.close()
        await client.aclose()
        await admin.aclose()


def test_each_database_has_its_own_channel(redis_server):
    base = redis_server.url.rstrip("/0123456789")
    assert channel_of(aioredis.Redis.from_url(f"{base}/3")) == "wg:wake:3"
    assert channel_of(aioredis.Redis.from_url(base)) == "wg:wake:0"


@pytest.mark.parametrize("backend", ["redis", "cluster16"])
async def test_one_store_announces_and_another_on_the_same_redis_is_woken(
    backend: str, request: pytest.FixtureRequest
):
    """The ingress-only process announces through its store, the delivering one listens
    through its own (on a cluster, each may talk to another node)."""
    if backend == "cluster16":
        cluster = request.getfixturevalue("redis_cluster")
        await flush_cluster(cluster)
        url, partitions = cluster.url, CLUSTER_PARTITIONS
    else:
        server = request.getfixturevalue("redis_server")
        await flush(server.url)
        url, partitions = server.url, 1
    await one_store_wakes_another(url, partitions)


async def test_on_a_single_redis_the_announcement_rides_in_the_script_batches(
    redis_server, monkeypatch: pytest.MonkeyPatch
):
    """A command of its own (redis-py's ``publish``) costs an ingress-only process more than
    the batched script call; the other process is woken all the same."""
    await flush(redis_server.url)

    async def refuse(*args: object) -> None:
        raise AssertionError("published through a command of its own")

    def no_publish_command(store: Store) -> None:
        assert isinstance(store, RedisStore)
        monkeypatch.setattr(store.client, "publish", refuse)

    await one_store_wakes_another(redis_server.url, prepare=no_publish_command)


async def test_sqlite_processes_keep_to_polling(tmp_path: Path):
    store = await open_store(f"sqlite:///{tmp_path}/gw.db")
    try:
        assert store.wakeups() is None
    finally:
        await store.close()
