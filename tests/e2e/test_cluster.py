"""Two gateway processes on a three-master Redis Cluster, the store in 16 partitions (DESIGN
5.4, 7): every event is delivered once, a resend to the other process is a duplicate, and the
writes land on every master."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator

import aiohttp
import pytest
import redis.asyncio as aioredis

from tests.e2e.gateway_process import e2e_config, send_event, wait_drained
from tests.redis_server import RedisCluster

EVENTS = 300


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster]:
    with RedisCluster(masters=3) as started:
        yield started


async def test_two_processes_on_a_cluster_deliver_each_event_once(cluster, gateways, destinations):
    market = destinations()
    await market.start()
    config = e2e_config(store_url=cluster.url, destinations={"marketplace": market.url})
    config["store"]["partitions"] = 16
    a, b = gateways(config, name="a"), gateways(config, name="b")
    await asyncio.gather(a.start(), b.start())
    logs = f"\n{a.log_tail()}\n{b.log_tail()}"
    sent: dict[str, bytes] = {}
    async with aiohttp.ClientSession() as session:
        semaphore = asyncio.Semaphore(16)

        async def one(gateway) -> None:
            async with semaphore:
                status, answer, msg_id, body = await send_event(session, gateway.url())
            assert (status, answer.get("status")) == (202, "queued"), f"{answer}{logs}"
            sent[msg_id] = body

        await asyncio.gather(*(one(g) for g, _ in zip(itertools.cycle((a, b)), range(EVENTS))))
        await market.wait_for_ids(sent, timeout=60, why=logs)
        await wait_drained(cluster.url, logs=logs, partitions=16)
        # Every event once, and a resend of each (to the process that did not take it in first,
        # half the time) is a duplicate, whichever partition and master hold it.
        for (msg_id, body), gateway in zip(list(sent.items())[:60], itertools.cycle((b, a))):
            status, answer, _, _ = await send_event(
                session, gateway.url(), msg_id=msg_id, body=body
            )
            assert (status, answer.get("status")) == (200, "duplicate"), answer
    await asyncio.sleep(0.5)
    counts = market.ids()
    assert set(counts) == set(sent)
    assert set(counts.values()) == {1}, {k: n for k, n in counts.items() if n != 1}
    sizes = []
    for node in cluster.nodes:
        client = aioredis.Redis.from_url(node.url)
        try:
            sizes.append(await client.dbsize())
        finally:
            await client.aclose()
    assert min(sizes) > sum(sizes) / 6, sizes  # each master holds a fair share
