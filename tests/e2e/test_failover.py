"""A Redis Cluster master dies and its replica takes over while events arrive (design.md 5.4, 7):
with ``store.wait_replicas: 1`` no event answered 2xx is lost.

Replication is asynchronous, so the danger is the writes a master acknowledged and its replica
never got. The test makes that window wide on purpose: the replica of one master is cut off
(its link dropped, and it cannot log in again) while events keep coming, then the master is
SIGKILLed, so the cluster promotes a replica that lacks everything written meanwhile. With
``wait_replicas: 1`` those writes were answered 503 (no replica confirmed them), the sender
retried, and after the failover (and the old master's return as the new one's replica) the
retries were accepted on the new master: every event that got a 2xx is delivered. The control without ``wait_replicas`` loses the events acknowledged
during the pause, which shows the scenario does what it claims.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import aiohttp
import pytest

from harness.redis_server import RedisCluster, RedisServer
from tests.e2e.gateway_process import e2e_config, event_views, send_event, wait_drained
from tests.waiting import eventually

PARTITIONS = 16
#: Events before the pause, during it, and after the failover.
BEFORE, DURING, AFTER = 40, 60, 40


@pytest.fixture
def cluster() -> Iterator[RedisCluster]:
    with RedisCluster(masters=3, replicas=1) as started:
        yield started


def replica_of(cluster: RedisCluster, master: RedisServer) -> RedisServer:
    """The node that replicates ``master``."""
    for node in cluster.nodes:
        info = cluster.cli(node, "info", "replication")
        if re.search(rf"^master_port:{master.port}\s*$", info, re.M):
            return node
    raise AssertionError(f"no replica of {master.port}")


async def wait_promoted(cluster: RedisCluster, node: RedisServer, timeout: float = 30) -> None:
    """Wait until ``node`` is a master and every live node says the cluster is ok."""

    def promoted() -> bool:
        live = [n for n in cluster.nodes if n.process is not None]
        states = [cluster.cli(n, "cluster", "info") for n in live]
        role = cluster.cli(node, "info", "replication")
        return "role:master" in role and all("cluster_state:ok" in s for s in states)

    await eventually(promoted, f"{node.port} promoted", timeout=timeout, interval=0.1)


async def wait_replicating(
    cluster: RedisCluster, node: RedisServer, master: RedisServer, timeout: float = 30
) -> None:
    """Wait until ``node`` is a replica of ``master`` with its link up."""
    await eventually(
        lambda: cluster.cli(node, "info", "replication"),
        f"{node.port} replicating {master.port}",
        until=lambda info: f"master_port:{master.port}" in info and "master_link_status:up" in info,
        timeout=timeout,
        interval=0.1,
    )


class Sender:
    """Sends events one after another on a few connections, each resent until it gets a 2xx
    (as a payments service does), and remembers which were answered 2xx and how often not."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session, self.url = session, url
        self.acked: set[str] = set()
        self.refused = 0

    async def one(self) -> None:
        msg_id, body = None, None
        for _ in range(200):
            try:
                status, _answer, msg_id, body = await send_event(
                    self.session, self.url, msg_id=msg_id, body=body
                )
            except aiohttp.ClientError:
                status = 0
            if 200 <= status < 300:
                assert msg_id is not None
                self.acked.add(msg_id)
                return
            self.refused += 1
            await asyncio.sleep(0.2)
        raise AssertionError(f"{msg_id} never got a 2xx")

    async def send(self, count: int, concurrency: int = 6) -> None:
        semaphore = asyncio.Semaphore(concurrency)

        async def paced() -> None:
            async with semaphore:
                await self.one()

        await asyncio.gather(*(paced() for _ in range(count)))


async def run_failover(cluster: RedisCluster, gateways, destinations, wait_replicas: int):
    """The scenario of the module docstring; (events answered 2xx, ids delivered, refusals)."""
    # The marketplace is down until the end, so every event waits in the store's queues
    # through the failover (delivered at once, an event would not show what the store kept).
    market = destinations()
    config = e2e_config(store_url=cluster.url, destinations={"marketplace": market.url})
    config["store"].update(partitions=PARTITIONS, wait_replicas=wait_replicas)
    config["store"]["wait_timeout"] = "500ms"
    gateway = gateways(config)
    await gateway.start()
    # The victim: a master other than the URL's seed node (the seed is only where the slot
    # table is first read; the gateway keeps every node it learnt of).
    victim = next(node for node in cluster.masters() if node is not cluster.nodes[0])
    replica = replica_of(cluster, victim)
    async with aiohttp.ClientSession() as session:
        sender = Sender(session, gateway.url())
        await sender.send(BEFORE)
        # Cut the replica off: it cannot log in to its master again (a wrong masterauth), and
        # its link is dropped, so the master's writes from now on exist on the master alone.
        cluster.cli(replica, "config", "set", "masterauth", "not-the-password")
        cluster.cli(victim, "client", "kill", "type", "replica")
        try:
            # Senders keep going while the replica hears nothing: without WAIT, what lands on
            # the victim is answered 202 and exists on the victim alone.
            during = asyncio.ensure_future(sender.send(DURING))
            await asyncio.sleep(2.0)
            victim.kill()
        finally:
            cluster.cli(replica, "config", "set", "masterauth", "")
        await wait_promoted(cluster, replica)
        # The promoted master has no replica of its own, so with wait_replicas: 1 it refuses
        # every accept (503) until one is attached: the old master, restarted, rejoins as the
        # new master's replica, as an operator's restart of it would.
        victim.start()
        await wait_replicating(cluster, victim, replica)
        await during
        await sender.send(AFTER)
    await market.start()
    logs = f"\n{gateway.log_tail()}"
    # Everything the store still holds goes out now; once nothing is due or leased, nothing
    # more can be sent, so what the marketplace has is all it will get.
    await wait_drained(cluster.url, partitions=PARTITIONS, timeout=60, logs=logs)
    delivered = set(market.ids())
    # And it has everything the store holds as delivered: no delivery recorded but not seen.
    views = await event_views(cluster.url, sender.acked, partitions=PARTITIONS)
    recorded = {
        msg_id
        for msg_id, view in views.items()
        if view is not None and all(d.state == "delivered" for d in view.deliveries)
    }
    assert recorded <= delivered, (
        f"recorded delivered, never seen: {sorted(recorded - delivered)[:5]}"
    )
    return sender, delivered, logs


async def test_no_event_answered_2xx_is_lost_when_a_master_fails_over(
    cluster, gateways, destinations
):
    sender, delivered, logs = await run_failover(cluster, gateways, destinations, 1)
    assert len(sender.acked) == BEFORE + DURING + AFTER
    lost = sender.acked - delivered
    assert not lost, f"{len(lost)} events answered 2xx were lost: {sorted(lost)[:5]}{logs}"
    # The failover really happened under load: some requests were refused (503) meanwhile.
    assert sender.refused > 0


async def test_without_wait_replicas_the_same_failover_loses_acknowledged_events(
    cluster, gateways, destinations
):
    # The control: asynchronous replication alone loses what the victim acknowledged while
    # its replica was behind. (This is why store.wait_replicas exists.)
    sender, delivered, logs = await run_failover(cluster, gateways, destinations, 0)
    assert len(sender.acked) == BEFORE + DURING + AFTER
    assert sender.acked - delivered, f"nothing was lost without wait_replicas{logs}"
