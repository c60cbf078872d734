"""Rate limits on running gateways (design.md 2 stages 3 and 6, design.md 5.3).

* Three processes on one Redis share one per-source limit: together they accept what one
  limit allows, not three times as much.
* A forger cannot burn a sender's per-source quota: forged requests are refused at
  verification, before the per-source limit counts anything.
* A per-IP limit refuses a flooding address with 429 before its requests are verified, and
  leaves other addresses alone.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from gateway.app import METRICS, create_app
from tests.e2e.gateway_process import e2e_config, send_event
from tests.support import (
    OLD_PAYMENTS_SECRET,
    build_config,
    payment_body,
    payments_source,
    sign_payment,
)

SOURCE_RATE, SOURCE_BURST = 20, 10
WINDOW = 3.0
#: Added to the GCRA bound: one request for the bound's rounding (GCRA admits
#: ``burst + floor(rate * T)`` in an interval of T seconds, the first one at its very start) and
#: one more for the measured window edges (the window is taken in the test's process, a request's
#: arrival time in the gateway's, a few microseconds to milliseconds apart at either end).
TOLERANCE = 2

FORGER = "127.0.0.2"
LEGIT = "127.0.0.1"


def limited_source(**rate_limit: Any) -> dict[str, Any]:
    """The payments source, any loopback address allowed (the forger sits on 127.0.0.2)."""
    return payments_source(allow_ips=["127.0.0.0/8"], rate_limit=rate_limit)


async def test_three_processes_share_one_per_source_limit(redis_url, gateways, destinations):
    market = destinations()
    await market.start()
    # Fail closed: a limiter call that took too long must refuse, not let through uncounted,
    # or the upper bound below would not hold on a busy machine.
    source = limited_source(
        per_source={"rate": f"{SOURCE_RATE}/s", "burst": SOURCE_BURST}, on_store_error="deny"
    )
    config = e2e_config(
        store_url=redis_url,
        destinations={"marketplace": market.url},
        sources={"payments": source},
    )
    processes = [gateways(config, name=f"p{n}") for n in range(3)]
    await asyncio.gather(*(p.start() for p in processes))

    statuses: dict[int, collections.Counter[int]] = {n: collections.Counter() for n in range(3)}
    refusal: dict[str, str] = {}
    async with aiohttp.ClientSession() as session:
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + WINDOW

        async def sender(n: int) -> None:
            while loop.time() < deadline:
                status, answer, _, _ = await send_event(session, processes[n].url())
                statuses[n][status] += 1
                if status == 429 and not refusal:
                    refusal.update(answer)

        await asyncio.gather(*(sender(n) for n in range(3) for _ in range(3)))
        elapsed = loop.time() - started

    logs = "\n".join(p.log_tail(10) for p in processes)
    assert all(set(c) <= {202, 429} for c in statuses.values()), f"{statuses}\n{logs}"
    accepted = sum(c[202] for c in statuses.values())
    # What one limit lets through in the time the senders were at it.
    allowance = SOURCE_BURST + SOURCE_RATE * elapsed
    assert accepted <= allowance + TOLERANCE, (accepted, allowance, statuses)
    assert accepted >= SOURCE_BURST, (accepted, statuses, logs)
    # Each process alone was sent more than a whole allowance: had each applied a limit of its
    # own, together they would have accepted about three allowances.
    for n, counts in statuses.items():
        assert counts.total() > allowance + TOLERANCE, (n, counts.total(), allowance)
    assert refusal.get("error") == "rate_limited", refusal


@dataclass
class Target:
    """One gateway under test: its ingress URL and a reader for one of its counters."""

    url: str
    counter: Callable[[str, dict[str, str]], Awaitable[float]]


Launch = Callable[[dict[str, Any]], Awaitable[Target]]


@pytest.fixture(params=["redis-process", "sqlite-in-process"])
def launch(
    request: pytest.FixtureRequest, tmp_path, gateways, destinations, aiohttp_server
) -> Launch:
    """Start one gateway for a source config: a process on Redis, or an app on SQLite."""
    in_process = request.param == "sqlite-in-process"
    store_url = (
        f"sqlite:///{tmp_path / 'gateway.db'}"
        if in_process
        else request.getfixturevalue("redis_url")
    )

    async def start(source: dict[str, Any]) -> Target:
        market = destinations()
        await market.start()
        data = e2e_config(
            store_url=store_url,
            destinations={"marketplace": market.url},
            sources={"payments": source},
        )
        if not in_process:
            process = await gateways(data).start()

            async def read(name: str, labels: dict[str, str]) -> float:
                return float(await process.metric(name, **labels))

            return Target(process.url(), read)
        app = create_app(build_config(data))
        server = await aiohttp_server(app)

        async def read_in_process(name: str, labels: dict[str, str]) -> float:
            return float(app[METRICS].registry.get_sample_value(name, labels) or 0.0)

        return Target(str(server.make_url("/hooks/payments")), read_in_process)

    return start


def session_from(address: str) -> aiohttp.ClientSession:
    """A client whose connections come from ``address`` (any 127.x.y.z is loopback on Linux)."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(address, 0)))


async def forge(
    session: aiohttp.ClientSession, url: str
) -> tuple[int, dict[str, str], dict[str, Any]]:
    """One request signed with a secret the source does not accept."""
    body = payment_body()
    headers = sign_payment(body, secret=OLD_PAYMENTS_SECRET)
    async with session.post(url, data=body, headers=headers) as response:
        return response.status, dict(response.headers), await response.json()


async def legit_sender(url: str, count: int, pause: float) -> list[int]:
    """``count`` authentic events, one at a time, ``pause`` seconds apart (under the rate)."""
    statuses = []
    async with session_from(LEGIT) as session:
        for _ in range(count):
            status, _, _, _ = await send_event(session, url)
            statuses.append(status)
            await asyncio.sleep(pause)
    return statuses


async def test_forged_flood_does_not_burn_the_source_quota(launch):
    rate, burst = 5, 5
    target = await launch(limited_source(per_source={"rate": f"{rate}/s", "burst": burst}))
    forged: collections.Counter[int] = collections.Counter()
    done = asyncio.Event()

    async with session_from(FORGER) as forger:
        # A head start: had forgeries counted, these alone would have emptied the bucket.
        for _ in range(3 * burst):
            status, _, answer = await forge(forger, target.url)
            forged[status] += 1
            assert answer["error"] == "invalid_signature"

        async def flood() -> None:
            while not done.is_set():
                status, _, _ = await forge(forger, target.url)
                forged[status] += 1

        flooding = [asyncio.create_task(flood()) for _ in range(4)]
        started = time.monotonic()
        try:
            # 4 per second against a limit of 5 per second: every one must be accepted.
            legit = await legit_sender(target.url, count=10, pause=1 / 4)
        finally:
            done.set()
            await asyncio.gather(*flooding)
        elapsed = time.monotonic() - started

    assert legit == [202] * 10, legit
    assert set(forged) == {401}, forged
    # The forger sent more than the source's whole quota for the time the sender was at it.
    assert forged[401] > 2 * (burst + rate * elapsed), (forged, elapsed)
    failures = await target.counter(
        "webhook_gateway_signature_failures_total", {"source": "payments"}
    )
    assert failures == forged[401]


async def test_per_ip_limit_refuses_the_flooder_before_verification(launch):
    ip_rate, ip_burst = 10, 10
    target = await launch(
        limited_source(
            per_ip={"rate": f"{ip_rate}/s", "burst": ip_burst},
            per_source={"rate": "50/s", "burst": 50},
        )
    )
    forged: collections.Counter[int] = collections.Counter()
    async with session_from(FORGER) as forger:
        # Sequential, far faster than 10/s: the burst is verified (401), then the IP is refused.
        refused: tuple[dict[str, str], dict[str, Any]] | None = None
        for _ in range(500):
            status, headers, answer = await forge(forger, target.url)
            forged[status] += 1
            if status == 429:
                refused = headers, answer
                break
        assert refused is not None, forged
        headers, answer = refused
        assert answer["error"] == "rate_limited"
        assert int(headers["Retry-After"]) >= 1
        assert headers["RateLimit-Limit"] == str(ip_burst)
        assert headers["RateLimit-Remaining"] == "0"
        assert int(headers["RateLimit-Reset"]) >= 1
        assert forged[401] >= ip_burst, forged

        done = asyncio.Event()

        async def flood() -> None:
            while not done.is_set():
                status, _, _ = await forge(forger, target.url)
                forged[status] += 1

        flooding = [asyncio.create_task(flood()) for _ in range(4)]
        try:
            legit = await legit_sender(target.url, count=6, pause=1 / 4)
        finally:
            done.set()
            await asyncio.gather(*flooding)

    assert legit == [202] * 6, legit
    assert set(forged) == {401, 429}, forged
    assert forged[429] > forged[401], forged
    # Only the requests that got past the per-IP limit were verified at all.
    failures = await target.counter(
        "webhook_gateway_signature_failures_total", {"source": "payments"}
    )
    assert failures == forged[401], (failures, forged)
