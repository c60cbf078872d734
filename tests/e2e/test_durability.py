"""Durable store-and-forward across a down destination and a killed gateway (design.md 3).

The gateway runs as its own process; the destination is down while events arrive, the gateway
is killed with SIGKILL (no chance to flush or hand anything over) and started again, and only
then does the destination come back. On Redis, the redis-server is killed with SIGKILL as well
while the gateway is down and started again from its append-only file (``appendfsync always``:
the Redis store's durability is Redis's own, design.md 5.4). Every accepted event must still
arrive, signed by the gateway and byte for byte what the sender sent; a resend of an accepted
event is a duplicate.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from harness.redis_server import RedisServer
from tests.e2e.gateway_process import e2e_config, queue_depth, send_event, wait_drained
from tests.waiting import eventually

EVENTS = 200


@pytest.fixture(params=["sqlite", "redis"])
def durable_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[str, RedisServer | None]]:
    """A store URL, and for Redis a server of this test's own that it may kill and restart."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'gateway.db'}", None
        return
    with RedisServer(appendonly=True, appendfsync="always") as server:
        yield server.url, server


async def test_accepted_events_survive_a_down_destination_and_sigkill(
    durable_store, gateways, destinations
):
    store_url, redis_server = durable_store
    destination = destinations()  # chosen port, not listening yet: connections are refused
    gateway = gateways(
        e2e_config(store_url=store_url, destinations={"marketplace": destination.url})
    )
    await gateway.start()

    sent: dict[str, bytes] = {}
    limit = asyncio.Semaphore(20)
    async with aiohttp.ClientSession() as session:

        async def one() -> None:
            async with limit:
                status, answer, msg_id, body = await send_event(session, gateway.url())
            assert status == 202, f"{status} {answer}\n{gateway.log_tail()}"
            assert answer == {"id": msg_id, "status": "queued"}
            sent[msg_id] = body

        await asyncio.gather(*(one() for _ in range(EVENTS)))
        assert len(sent) == EVENTS

        # The worker has tried and failed at least once (the destination is down), so the kill
        # lands on deliveries that are due, rescheduled or leased, not on an idle queue.
        await eventually(
            lambda: gateway.metric(
                "webhook_gateway_deliveries_total", destination="marketplace", result="retried"
            ),
            "a delivery retried",
            until=lambda retried: retried >= 1,
            timeout=20,
            why=gateway.log_tail,
        )
        assert destination.market.received == []

        assert await gateway.kill() == -signal.SIGKILL
        if redis_server is not None:
            redis_server.kill()
            redis_server.start()  # same port and directory: it loads its append-only file
        await gateway.start()
        await destination.start()

        await destination.wait_for_ids(sent, timeout=40, why=f"\n{gateway.log_tail()}")
        for received in destination.market.received:
            webhook_id = received.headers["webhook-id"]
            assert received.verified, f"gateway signature did not verify for {webhook_id}"
            assert received.body == sent[webhook_id], "the body must be the sender's bytes"
        assert set(destination.ids()) == set(sent)
        await wait_drained(store_url, logs=gateway.log_tail())
        depth = await queue_depth(store_url)
        assert depth.get(("marketplace", "dead"), 0) == 0, depth

        # The sender resends an event the gateway already accepted (its own retry after a lost
        # answer): same id and body, a fresh signature. Nothing is enqueued for it.
        first = next(iter(sent))
        before = destination.ids()[first]
        status, answer, _, _ = await send_event(
            session, gateway.url(), msg_id=first, body=sent[first]
        )
        assert (status, answer) == (200, {"id": first, "status": "duplicate"}), gateway.log_tail()
        depth = await queue_depth(store_url)
        assert not any(n for (_, state), n in depth.items() if state in ("due", "leased")), depth
        # A later event goes through the same worker; by the time it arrives, a redelivery of
        # the duplicate would have had every chance to arrive too.
        status, _, later, _ = await send_event(session, gateway.url())
        assert status == 202
        await destination.wait_for_ids([later], why=f"\n{gateway.log_tail()}")
        assert destination.ids()[first] == before
