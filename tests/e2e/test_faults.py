"""Faults under steady load (design.md 3): gateways killed with SIGKILL, a destination down, failing
at random or hanging, Redis restarted, a worker killed holding leases. Each scenario stops by
itself, on loopback only, and is checked by ``faults.tally``: every event answered 2xx was
delivered, nothing was delivered that was never sent, duplicates stay within crashes x
deliveries in flight. RELIABILITY.md has the figures of the long versions.

``make test`` runs the short versions (a few seconds of load each); ``make soak``
(``WEBHOOK_GATEWAY_SOAK=1``) runs the long ones: a minute of load, a destination down for a
minute, a SIGKILL every three seconds or so (1.5 s up, the rest restarting).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.redis_server import RedisServer
from tests.e2e.faults import (
    FaultyMarketplace,
    Sender,
    faulty_destination,
    tally,
    timed_out_attempts,
)
from tests.e2e.gateway_process import GatewayProcess, e2e_config, queue_depth, wait_drained
from tests.support import SOAK
from tests.waiting import eventually


@dataclass(frozen=True)
class Scale:
    """How long and how hard each scenario pushes."""

    rate: float  # events a second
    load: float  # seconds of load
    kill_every: float  # SIGKILL scenario
    down: float  # destination down
    redis_restarts: int
    redis_down: float
    lease_rounds: int
    drain: float  # bound on the wait for the last deliveries


SCALE = (
    Scale(rate=40, load=60, kill_every=1.5, down=60, redis_restarts=5, redis_down=3,
          lease_rounds=5, drain=120)
    if SOAK
    else Scale(rate=25, load=3, kill_every=1.5, down=3, redis_restarts=1, redis_down=0.5,
               lease_rounds=1, drain=40)
)  # fmt: skip
#: Deliveries one gateway process keeps in flight (``server.delivery_concurrency``).
IN_FLIGHT = 8

pytestmark = pytest.mark.timeout(1200 if SOAK else 120)


@pytest.fixture(params=["sqlite", "redis"])
def fault_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[str, RedisServer | None]]:
    """A store URL, and for Redis a server of this test's own (``appendfsync always``) that it
    may restart."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'gateway.db'}", None
        return
    with RedisServer(appendonly=True, appendfsync="always") as server:
        yield server.url, server


def config(store_url: str, destination_url: str, **destination: object) -> dict:
    """The e2e config with a fixed number of deliveries in flight, and retries that outlast
    any outage here (a minute down must not dead-letter anything)."""
    return e2e_config(
        store_url=store_url,
        destinations={"marketplace": destination_url},
        server={"delivery_concurrency": IN_FLIGHT},
        destination={
            "retry": {"schedule": ["200ms", "500ms", "1s"], "max_attempts": 100000,
                      "max_age": "1h", "jitter": 0},
            **destination,
        },
    )  # fmt: skip


@contextlib.asynccontextmanager
async def under_load(sender: Sender) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``sender`` in the background; wait for it at the end, cancel it on a failure."""
    task = asyncio.create_task(sender.run())
    try:
        yield task
    except BaseException:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        raise
    await task


def logs(*gateways: GatewayProcess) -> str:
    return "\n".join(g.log_tail() for g in gateways)


async def finish(store_url, market, sender, gateways, *, scenario, crashes, in_flight, started):
    """Wait for every accepted event to arrive and the queue to drain, then tally."""
    await market.wait_delivered(sender.accepted(), SCALE.drain, lambda: logs(*gateways))
    await wait_drained(store_url, timeout=SCALE.drain, logs=logs(*gateways))
    depth = await queue_depth(store_url)
    assert not depth.get(("marketplace", "dead")), depth
    return tally(
        scenario,
        store_url.split(":", 1)[0],
        sender,
        market,
        crashes=crashes,
        in_flight=in_flight,
        timed_out=timed_out_attempts(gateways),
        started=started,
    )


async def test_sigkill_every_few_seconds_under_load(fault_store, gateways, destinations):
    store_url, _ = fault_store
    started = time.monotonic()
    market = FaultyMarketplace(delay=0.05)  # each delivery briefly in flight
    destination = faulty_destination(market)
    await destination.start()
    gateway = gateways(config(store_url, destination.url))
    await gateway.start()
    sender = Sender(lambda: [gateway], rate=SCALE.rate, duration=SCALE.load)
    kills = 0
    async with under_load(sender) as load:
        while not load.done():
            await asyncio.sleep(SCALE.kill_every)
            if load.done():
                break
            assert await gateway.kill() == -signal.SIGKILL
            kills += 1
            await gateway.start()
    assert kills >= 1
    await finish(
        store_url, market, sender, [gateway], scenario="sigkill", crashes=kills,
        in_flight=IN_FLIGHT, started=started,
    )  # fmt: skip
    await destination.stop()


async def test_destination_down_then_back(fault_store, gateways, destinations):
    store_url, _ = fault_store
    started = time.monotonic()
    market = FaultyMarketplace()
    destination = faulty_destination(market)  # not listening: connections are refused
    gateway = gateways(config(store_url, destination.url))
    await gateway.start()
    sender = Sender(lambda: [gateway], rate=SCALE.rate, duration=SCALE.load)
    async with under_load(sender):
        await asyncio.sleep(SCALE.down)
        await destination.start()
    await finish(
        store_url, market, sender, [gateway], scenario="destination-down", crashes=0,
        in_flight=IN_FLIGHT, started=started,
    )  # fmt: skip
    await destination.stop()


async def test_destination_answers_500_at_random(fault_store, gateways, destinations):
    store_url, _ = fault_store
    started = time.monotonic()
    market = FaultyMarketplace(fail_rate=0.3)
    destination = faulty_destination(market)
    await destination.start()
    gateway = gateways(config(store_url, destination.url))
    await gateway.start()
    sender = Sender(lambda: [gateway], rate=SCALE.rate, duration=SCALE.load)
    await sender.run()
    figures = await finish(
        store_url, market, sender, [gateway], scenario="destination-500", crashes=0,
        in_flight=IN_FLIGHT, started=started,
    )  # fmt: skip
    assert figures.attempts_failed > 0, "the destination never failed: the scenario did nothing"
    await destination.stop()


async def test_destination_hangs_past_its_timeout(fault_store, gateways, destinations):
    store_url, _ = fault_store
    started = time.monotonic()
    # Held 1.5 s against a 500 ms timeout: the gateway gives up, then tries again.
    market = FaultyMarketplace(hang_rate=0.2, hang=1.5)
    destination = faulty_destination(market)
    await destination.start()
    gateway = gateways(config(store_url, destination.url, timeout="500ms"))
    await gateway.start()
    sender = Sender(lambda: [gateway], rate=SCALE.rate, duration=SCALE.load)
    await sender.run()
    figures = await finish(
        store_url, market, sender, [gateway], scenario="destination-hangs", crashes=0,
        in_flight=IN_FLIGHT, started=started,
    )  # fmt: skip
    assert figures.attempts_failed > 0, "no request was held: the scenario did nothing"
    await destination.stop()


async def test_redis_restarted_during_load(gateways, destinations, tmp_path):
    started = time.monotonic()
    with RedisServer(appendonly=True, appendfsync="always") as redis_server:
        market = FaultyMarketplace(delay=0.05)
        destination = faulty_destination(market)
        await destination.start()
        gateway = gateways(config(redis_server.url, destination.url))
        await gateway.start()
        sender = Sender(lambda: [gateway], rate=SCALE.rate, duration=SCALE.load)
        pause = SCALE.load / (SCALE.redis_restarts + 1)
        async with under_load(sender):
            for _ in range(SCALE.redis_restarts):
                await asyncio.sleep(pause)
                # A crash, not a clean stop: only what the append-only file has survives.
                redis_server.kill()
                await asyncio.sleep(SCALE.redis_down)
                redis_server.start()  # same port and directory
        assert gateway.running(), f"the gateway died with Redis\n{gateway.log_tail()}"
        await finish(
            redis_server.url, market, sender, [gateway], scenario="redis-restart",
            crashes=SCALE.redis_restarts, in_flight=IN_FLIGHT, started=started,
        )  # fmt: skip
        await destination.stop()


async def test_worker_killed_holding_leases(fault_store, gateways, destinations):
    store_url, _ = fault_store
    started = time.monotonic()
    # Answers after 150 ms, so at 40 events a second a process holds leased deliveries in
    # flight whenever it is killed (and keeps up: 8 in flight x 1/0.15 s is 53 a second).
    market = FaultyMarketplace(delay=0.15)
    destination = faulty_destination(market)
    await destination.start()
    settings = config(store_url, destination.url)
    pair = [gateways(settings, name="a"), gateways(settings, name="b")]
    await pair[0].start()
    sender = Sender(lambda: pair, rate=SCALE.rate, duration=SCALE.load)
    kills = 0
    async with under_load(sender):
        for round_ in range(SCALE.lease_rounds):
            holder, other = pair[round_ % 2], pair[(round_ + 1) % 2]
            # Wait until the holder has deliveries in flight (the destination sees them).
            seen = len(market.receipts)

            async def in_flight(seen: int = seen) -> bool:
                return len(market.receipts) > seen and bool(await leased(store_url))

            await eventually(in_flight, "deliveries in flight", timeout=30)
            assert await holder.kill() == -signal.SIGKILL
            kills += 1
            # Nobody else runs: every lease still held is the dead process's.
            assert await leased(store_url), "the killed process held no lease"
            await other.start()
            await asyncio.sleep(SCALE.load / SCALE.lease_rounds / 2)
    await finish(
        store_url, market, sender, pair, scenario="worker-killed-holding-leases",
        crashes=kills, in_flight=IN_FLIGHT, started=started,
    )  # fmt: skip
    await destination.stop()


async def leased(store_url: str) -> int:
    """Deliveries leased right now."""
    depth = await queue_depth(store_url)
    return sum(n for (_, state), n in depth.items() if state == "leased")
