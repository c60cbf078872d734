"""Two gateway processes on a three-master Redis Cluster, the store in 16 partitions (design.md
5.4, 7): every event is delivered once, a resend to the other process is a duplicate, and the
writes land on every master."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterator

import aiohttp
import pytest
import redis.asyncio as aioredis

from harness.redis_server import RedisCluster
from tests.e2e.gateway_process import (
    e2e_config,
    event_views,
    read_stream,
    send_event,
    wait_drained,
)
from tests.support import ADMIN_TOKEN

EVENTS = 300


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster]:
    with RedisCluster(masters=3) as started:
        yield started


async def two_gateways_on(cluster, gateways, destinations):
    """A started destination and two gateway processes on ``cluster``, 16 partitions."""
    market = destinations()
    await market.start()
    config = e2e_config(store_url=cluster.url, destinations={"marketplace": market.url})
    config["store"]["partitions"] = 16
    a, b = gateways(config, name="a"), gateways(config, name="b")
    await asyncio.gather(a.start(), b.start())
    return market, a, b


async def test_two_processes_on_a_cluster_deliver_each_event_once(cluster, gateways, destinations):
    market, a, b = await two_gateways_on(cluster, gateways, destinations)
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
    # The resends enqueued nothing: no delivery is due or leased, and each event holds one
    # delivery, made in one attempt. Nothing more can be sent, so the marketplace's counts
    # are final.
    await wait_drained(cluster.url, logs=logs, partitions=16)
    views = await event_views(cluster.url, sent, partitions=16)
    once = (("delivered", 1),)
    made = {
        msg_id: tuple((d.state, len(d.attempts)) for d in view.deliveries) if view else None
        for msg_id, view in views.items()
    }
    odd = {msg_id: m for msg_id, m in made.items() if m != once}
    assert not odd, odd
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


async def test_one_live_stream_sees_both_processes_on_a_cluster(cluster, gateways, destinations):
    # The dashboard's figures and indexes are per partition, the change log one stream for the
    # store: a stream on one process carries what either process took in or delivered, on
    # whichever master, each once and in log order.
    _market, a, b = await two_gateways_on(cluster, gateways, destinations)
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with (
        aiohttp.ClientSession() as session,
        session.get(a.admin_url("/admin/stream"), headers=auth) as stream,
    ):
        assert stream.status == 200
        ids, keys = [], []
        for gateway in (a, b, a, b, b):
            status, answer, msg_id, body = await send_event(session, gateway.url())
            assert status == 202, answer
            ids.append(msg_id)
            keys.append(json.loads(body)["pendingId"])
        want = {(kind, i) for i in ids for kind in ("accepted", "delivery")}
        seen = await read_stream(stream, want, lambda: a.log_tail() + "\n" + b.log_tail())
        # Each event is a payment of its own (its pendingId), whichever master holds it, and
        # the other process finds it.
        found = []
        for key in keys:
            url = b.admin_url(f"/admin/payments?q={key}")
            async with session.get(url, headers=auth) as response:
                found += [(p["key"], p["state"]) for p in (await response.json())["payments"]]
    kinds = [(kind, data["event_id"]) for _, kind, data in seen]
    assert sorted(kinds) == sorted(want)  # each once
    order = [tuple(int(p) for p in i.split("-")) for i, _, _ in seen]
    assert order == sorted(order)
    assert sorted(found) == sorted((key, "completed") for key in keys)
