"""``python -m bench.analytics`` (and a part of ``make bench``): does a 30-day analytics view
cost more as the traffic behind it grows?

For each store, two stores are filled through the store API, as ingress and the delivery
workers fill them: ``small`` and ``large`` events (10,000 and 1,000,000 by default) spread over
the last 30 days, two per payment (pending, then completed or failed a few seconds to ten
minutes later, amounts in three currencies), each completed one delivered. Then the 30-day
report by day (the store's read of its rollups and the report built from it, as ``GET
/admin/analytics`` does) is timed ``QUERIES`` times on each; the median ``large`` over the
median ``small`` is the reading. SQLite fills without an fsync per commit (the same content).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from gateway.analytics.report import hours_of, report
from gateway.payments.amounts import Amount
from gateway.payments.rules import PaymentFacts
from gateway.store import Store, open_store
from gateway.store.records import Attempt, Event
from harness.redis_server import RedisServer

DAYS = 30
QUERIES = 30
#: Concurrent callers filling a store, and the batch a delivery worker leases.
CALLERS = 64
BATCH = 256
WINDOW = 3600.0
CURRENCIES = (("EUR", 2), ("USD", 2), ("XRP", 6))


def _event(index: int, state: str, at: float, amount: Amount | None) -> Event:
    event_id = f"evt-{index:08d}-{state}"
    facts = PaymentFacts(f"pay-{index:08d}", f"offer-{index % 5000}", state, amount, "enforce")  # type: ignore[arg-type]
    return replace(
        Event(
            id=event_id,
            source="payments",
            type=f"payment.{state}",
            subject=f"offer-{index % 5000}",
            time=None,
            dedupe_key=event_id,
            body=b'{"type":"payment"}',
            headers=(("content-type", "application/json"),),
            request_id=event_id,
            received_at=at,
        ),
        payment=facts,
    )


async def fill(store: Store, events: int, now: float, seed: int = 1) -> float:
    """``events`` events (two per payment) over the ``DAYS`` before ``now``; seconds taken."""
    rng = random.Random(seed)
    payments = events // 2
    plan = []
    for index in range(payments):
        first = now - 600 - rng.uniform(0, DAYS * 86400 - 1200)  # done before now
        done = first + rng.uniform(1, 600)
        currency, scale = rng.choice(CURRENCIES)
        amount = Amount(rng.randrange(1, 10**6), scale, currency)
        plan.append((index, first, done, amount, rng.random() < 0.9))
    started = time.perf_counter()
    cursor = iter(plan)

    async def caller() -> None:
        for index, first, done, amount, completed in cursor:
            await store.accept(_event(index, "pending", first, None), [], WINDOW, first)
            state = "completed" if completed else "failed"
            event = _event(index, state, done, amount if completed else None)
            await store.accept(event, ["marketplace"], WINDOW, done)

    async def deliver() -> None:
        while True:
            leases = await store.lease_due(now, 600.0, BATCH, "bench")
            if not leases:
                if filling.done():
                    return
                await asyncio.sleep(0.01)
                continue
            await asyncio.gather(
                *(
                    store.complete(lease, Attempt(1, lease.event.received_at + 0.2, 200, 0.05))
                    for lease in leases
                )
            )

    filling = asyncio.gather(*(caller() for _ in range(CALLERS)))
    await asyncio.gather(filling, deliver())
    return time.perf_counter() - started


async def query_times(store: Store, now: float) -> tuple[list[float], dict[str, Any]]:
    """The 30-day report by day, ``QUERIES`` times: seconds each, and the last answer."""
    start = now - DAYS * 86400
    first, last = hours_of(start, now, "day")
    seconds = []
    document: dict[str, Any] = {}
    for _ in range(QUERIES):
        began = time.perf_counter()
        rollup = await store.rollups(first, last, ["payments"])
        document = report(rollup, start, now, "day")
        seconds.append(time.perf_counter() - began)
    return seconds, document


async def _one(
    url: str, events: int, now: float, prepare: Callable[[Store], Any] | None
) -> dict[str, Any]:
    store = await open_store(url)
    try:
        if prepare is not None:
            await prepare(store)
        filled = await fill(store, events, now)
        seconds, document = await query_times(store, now)
    finally:
        await store.close()
    totals = document["totals"]
    return {
        "events": events,
        "fill_seconds": round(filled, 1),
        "query_ms_median": round(statistics.median(seconds) * 1000, 2),
        "query_ms_p90": round(sorted(seconds)[int(len(seconds) * 0.9)] * 1000, 2),
        "payments_first_seen": totals["payments"]["first_seen"],
        "delivered": totals["deliveries"]["delivered"],
    }


async def _no_fsync(store: Store) -> None:
    db = getattr(store, "_db", None)
    if db is not None:
        await db.run(lambda conn: conn.execute("PRAGMA synchronous = OFF"))


def measure(
    stores: list[str],
    small: int,
    large: int,
    directory: Path,
    progress: Callable[[str], None],
    redis_url: str | None = None,
) -> dict[str, Any]:
    """Each store filled small and large; the query times and their ratio, per store."""
    now = time.time()
    result: dict[str, Any] = {"days": DAYS, "queries": QUERIES, "stores": {}}
    for store in stores:
        runs = {}
        for label, events in (("small", small), ("large", large)):
            progress(f"analytics: {store}, filling {events:,} events over {DAYS} days")
            if store == "sqlite":
                url, prepare = f"sqlite:///{directory / f'analytics-{label}.db'}", _no_fsync
            else:
                assert redis_url is not None
                url, prepare = f"{redis_url.rstrip('/')}/{1 if label == 'small' else 2}", None
            runs[label] = asyncio.run(_one(url, events, now, prepare))
        ratio = runs["large"]["query_ms_median"] / runs["small"]["query_ms_median"]
        result["stores"][store] = {**runs, "large_over_small": round(ratio, 2)}
    return result


def render(result: Mapping[str, Any]) -> str:
    """The part's lines of the benchmark table."""
    lines = [f"analytics: the {result['days']}-day report by day, median of {result['queries']}"]
    for store, runs in result["stores"].items():
        small, large = runs["small"], runs["large"]
        lines.append(
            f"  {store:7} {small['events']:>9,} events {small['query_ms_median']:8.2f} ms"
            f" | {large['events']:>9,} events {large['query_ms_median']:8.2f} ms"
            f" | large / small {runs['large_over_small']:.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Fill, time, print the table and the JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.analytics", description=__doc__)
    parser.add_argument("--small", type=int, default=10_000, help="events in the small store")
    parser.add_argument("--large", type=int, default=1_000_000, help="events in the large one")
    parser.add_argument("--store", choices=("sqlite", "redis"), action="append")
    args = parser.parse_args(argv)
    stores = args.store or ["sqlite", "redis"]

    def progress(message: str) -> None:
        print(f"[bench.analytics {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr)

    with tempfile.TemporaryDirectory(prefix="wg-analytics-") as tmp:
        if "redis" in stores:
            with RedisServer(extra_args=("--databases", "4")) as server:
                result = measure(stores, args.small, args.large, Path(tmp), progress, server.url)
        else:
            result = measure(stores, args.small, args.large, Path(tmp), progress)
    print(render(result))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
