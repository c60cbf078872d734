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

from .conftest import (
    CLUSTER_PARTITIONS,
    announce_until_woken,
    flush,
    flush_cluster,
    listening,
    one_store_wakes_another,
)


async def _messages(client: aioredis.Redis, channel: str, seconds: float) -> int:
    """How many messages ``channel`` carries in the next ``seconds``, counted by a subscriber."""
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(channel)
    count = 0
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    try:
        while loop.time() < end:
            if await pubsub.get_message(timeout=0.05) is not None:
                count += 1
    finally:
        await pubsub.aclose()
    return count


async def test_a_burst_of_announcements_is_two_messages(redis_server):
    """Announcements made before the publish goes out share it; those made after it, within
    the window, are one more at the end of the window, so the last event of a burst is
    announced too."""
    await flush(redis_server.url)
    client = aioredis.Redis.from_url(redis_server.url)
    listener = aioredis.Redis.from_url(redis_server.url)
    wakeups = RedisWakeups(client, interval=0.05)
    try:
        counting = asyncio.ensure_future(_messages(listener, wakeups.channel, 0.5))
        async with asyncio.timeout(10):  # until the counter has subscribed
            while (await client.pubsub_numsub(wakeups.channel))[0][1] < 1:
                await asyncio.sleep(0.01)
        for _ in range(50):
            wakeups.announce()
        await asyncio.sleep(0.01)  # the first publish is out; the window lasts 50 ms
        for _ in range(50):
            wakeups.announce()
        assert await counting == 2
        await wakeups.close()
    finally:
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
