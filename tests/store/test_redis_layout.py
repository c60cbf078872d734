"""Redis specifics: every key in one hash slot, and the scripts run on a real Redis Cluster."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
from redis.crc import key_slot

from gateway.store import Attempt, open_store
from tests.redis_server import RedisServer

from .conftest import T0, flush, make_event


async def exercise(url: str) -> None:
    """Every kind of write the store does, once."""
    store = await open_store(url)
    try:
        await store.accept(make_event("evt_1", source="pay:ments"), ["a", "b"], 60, T0)
        await store.claim("pay:ments", "k{x}", 10, T0)
        await store.commit(make_event("evt_2", key="k{x}"), ["a"], 60, T0, Attempt(1, T0, 200, 0.1))
        leases = await store.lease_due(T0, 30, 10, "w")
        await store.complete(leases[0], Attempt(1, T0, 200, 0.1))
        await store.dead_letter(leases[1], Attempt(1, T0, 400, 0.1), "bad")
        await store.redrive(None, T0 + 1)
        [lease] = await store.lease_due(T0 + 1, 30, 10, "w")
        await store.reschedule(lease, Attempt(1, T0 + 1, 503, 0.1), T0 + 5)
        await store.replay("evt_1", ["c"], T0 + 2)
        await store.release("pay:ments", "other")
        view = await store.get_event("evt_1")
        assert view is not None
        assert {d.destination for d in view.deliveries} == {"a", "b", "c"}
        events, _ = await store.list_events()
        assert {e.id for e in events} == {"evt_1", "evt_2"}
        redriven = leases[1].destination
        assert await store.queue_depth() == {(redriven, "due"): 1, ("c", "due"): 1}
        assert await store.prune(T0 + 10, 100) == 1  # evt_2, delivered in sync mode
        events, _ = await store.list_events()
        assert [e.id for e in events] == ["evt_1"]
    finally:
        await store.close()


async def test_every_key_is_in_the_slot_of_the_q_tag(redis_server: RedisServer):
    await flush(redis_server.url)
    await exercise(redis_server.url)
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        keys = [key async for key in client.scan_iter(count=1000)]
    finally:
        await client.aclose()
    assert len(keys) > 10
    assert {key_slot(key) for key in keys} == {key_slot(b"{q}")}


async def test_scripts_run_on_redis_cluster():
    server = RedisServer(extra_args=["--cluster-enabled", "yes"])
    server.start()
    try:
        client = aioredis.Redis.from_url(server.url)
        try:
            await client.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
            for _ in range(200):  # the node serves its slots once the cluster state is ok
                if b"cluster_state:ok" in await client.execute_command("CLUSTER", "INFO"):
                    break
                await asyncio.sleep(0.05)
        finally:
            await client.aclose()
        cluster_url = f"redis+cluster://{server.host}:{server.port}"
        await exercise(cluster_url)
    finally:
        server.close()
