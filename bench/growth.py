"""``python -m bench.growth``: does the SQLite store slow down as its file fills?

The long pinned run (``--long``) answers that in 40 minutes through HTTP; this answers it in
a few, in one process, through the store API alone: the accept path (32 concurrent callers,
as wrk's 32 connections) with a delivery loop leasing and completing behind it, as the
gateway runs them, timed on an empty file and again on one pre-filled with ``--prefill``
events that went the same way (accepted, leased, delivered). The ratio of the two rates is
the reading; both runs are back to back, so outside load touches them alike.

The pre-fill runs the same statements with ``synchronous = OFF`` (no fsync per commit; the
file's content is the same), which makes 500,000 events a matter of minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.payloads import event_body
from bench.procs import foreign_cpu
from gateway.store.records import Attempt, Event
from gateway.store.sqlite import SqliteStore

#: Concurrent accept callers (wrk -c32 in the pinned bench) and the delivery worker's batch.
CALLERS = 32
DELIVERY_BATCH = 16
WINDOW = 72 * 3600.0


def _events(prefix: str) -> Iterator[Event]:
    """New payments events, as ingress builds them from the benchmark's requests."""
    for index in itertools.count():
        body = event_body(index, prefix)
        event_id = f"msg_{prefix}_{index:08d}"
        yield Event(
            id=event_id,
            source="payments",
            type="payment.completed",
            subject="offer-42",
            time="2026-11-26T10:00:00.000Z",
            dedupe_key=event_id,
            body=body,
            headers=(("content-type", "application/json"),),
            request_id=os.urandom(8).hex(),
            received_at=time.time(),
            body_status="completed",
        )


async def _drive(
    store: SqliteStore,
    count: int,
    prefix: str,
    callers: int,
    batch: int = DELIVERY_BATCH,
    *,
    deliver: bool = True,
) -> dict[str, Any]:
    """Accept ``count`` events through ``callers`` concurrent callers while a delivery loop
    leases and completes them; the accept rate and the latency of the slowest accepts."""
    events = _events(prefix)
    latencies: list[float] = []
    remaining = count
    accepting = True

    async def caller() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            result = await store.accept(next(events), ["marketplace"], WINDOW, time.time())
            latencies.append(time.perf_counter() - started)
            assert result.status == "queued", result

    async def delivery() -> int:
        done = 0
        while deliver and (accepting or done < count):
            leases = await store.lease_due(time.time(), 60.0, batch, "growth")
            if not leases:
                if not accepting:
                    break
                await asyncio.sleep(0.005)
                continue
            now = time.time()
            attempt = Attempt(1, now, 200, 0.002)
            results = await asyncio.gather(*(store.complete(lease, attempt) for lease in leases))
            done += sum(results)
        return done

    worker = asyncio.create_task(delivery())
    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    seconds = time.perf_counter() - started
    accepting = False
    delivered = await worker
    latencies.sort()
    return {
        "events": count,
        "seconds": seconds,
        "accepted_per_s": count / seconds,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "delivered": delivered,
    }


async def _prefill(store: SqliteStore, count: int, backlog: int, progress: bool) -> float:
    """``count`` accepted and delivered events, then ``backlog`` accepted and not delivered
    yet (a destination that fell behind), without an fsync per commit; seconds taken."""
    started = time.perf_counter()
    await store._db.run(lambda conn: conn.execute("PRAGMA synchronous = OFF"))
    step = 50_000
    for done in range(0, count, step):
        await _drive(store, min(step, count - done), f"prefill{done // step:04d}", 64, 128)
        if progress:
            print(f"  pre-filled {done + min(step, count - done):,}", file=sys.stderr)
    if backlog:
        await _drive(store, backlog, "backlog", 64, deliver=False)
    await store._db.run(lambda conn: conn.execute("PRAGMA synchronous = FULL"))
    return time.perf_counter() - started


async def _measure(path: Path, prefill: int, backlog: int, events: int) -> dict[str, Any]:
    store = await SqliteStore.open(f"sqlite:///{path}")
    try:
        filled = await _prefill(store, prefill, backlog, True) if prefill or backlog else 0.0
        # A short warm-up, so the reading is not of the first commits of an empty file.
        await _drive(store, min(2_000, events), "warm", CALLERS)
        noise: dict[str, Any] = {}
        with foreign_cpu(noise, [os.getpid()]):
            run = await _drive(store, events, "measured", CALLERS)
    finally:
        await store.close()
    return {
        **run,
        "prefill": prefill,
        "backlog": backlog,
        "prefill_seconds": filled,
        "foreign_cores": noise.get("foreign_cores"),
    }


def main(argv: list[str] | None = None) -> int:
    """Time the accept path on an empty file and on a pre-filled one; print both and the ratio."""
    parser = argparse.ArgumentParser(prog="python -m bench.growth", description=__doc__)
    parser.add_argument("--prefill", type=int, default=300_000, help="events in the big file")
    parser.add_argument(
        "--backlog", type=int, default=0, help="of which still to deliver (queued, not leased)"
    )
    parser.add_argument("--events", type=int, default=20_000, help="events timed in each run")
    parser.add_argument("--dir", type=Path, default=None, help="where the files go (a temp dir)")
    args = parser.parse_args(argv)
    try:
        import uvloop
    except ImportError:
        runner = asyncio.run
    else:
        runner = uvloop.run
    with tempfile.TemporaryDirectory(prefix="wg-growth-", dir=args.dir) as tmp:
        runs = []
        for label, prefill, backlog in (("empty", 0, 0), ("big", args.prefill, args.backlog)):
            path = Path(tmp) / f"{label}.db"
            run = runner(_measure(path, prefill, backlog, args.events))
            run["file_mib"] = path.stat().st_size / 2**20
            runs.append(run)
            print(
                f"{label:5} file: {run['prefill']:>9,} events before ({run['backlog']:,} queued),"
                f" {run['file_mib']:7.1f} MiB"
                f" after; {run['accepted_per_s']:8,.0f} accepted/s, p50 {run['p50_ms']:.1f} ms,"
                f" p99 {run['p99_ms']:.1f} ms, outside load {run['foreign_cores']:.2f} cores",
                flush=True,
            )
    print(f"big / empty: {runs[1]['accepted_per_s'] / runs[0]['accepted_per_s']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
