"""``python -m bench.pieces``: the embedded store's transactions alone, in a loop, with no
HTTP, no event loop turn and no thread hop between them.

What the SQLite targets come down to: on SQLite an accept's store work (and a delivery's lease
and finish) runs on the store's thread in the same process, so it is part of the CPU every
accept (and delivery) is measured at. This measures that part by itself: ``accept`` runs the
store's own accept transactions, ``delivery`` its lease and finish transactions, in group
commits of ``--batch`` operations as the store's thread runs them (``engine._run_batch``),
on a file that grows as it goes, with the durability the gateway runs with (``synchronous``
FULL for accepts; leases and finishes skip their own fsync, as in the gateway). CPU time of
this one thread, per accept or per delivered event; the best and the median of ``--repeat``
fresh files.

The operations are the store's (captured from ``SqliteStore.accept``, ``lease_due`` and
``complete`` as they hand them to the engine), so a change to their statements shows here.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from bench.payloads import event_body
from gateway.store.records import Attempt, Event
from gateway.store.sqlite import SqliteStore
from gateway.store.sqlite.engine import _run_batch

WINDOW = 72 * 3600.0
DESTINATION = "marketplace"
_Op = Callable[[Any], Any]


class _Captured:
    """Stands in for the store's engine ``write``: keeps each operation, runs it later."""

    def __init__(self) -> None:
        self.pending: list[tuple[_Op, asyncio.Future[Any], bool]] = []
        self.expected = 0
        self.arrived = asyncio.Event()

    async def write(self, fn: _Op, *, durable: bool = True) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending.append((fn, future, durable))
        if len(self.pending) >= self.expected:
            self.arrived.set()
        return await future

    def run(self, store: SqliteStore) -> float:
        """Run what is pending as one group commit on this thread; its CPU seconds."""
        batch, self.pending = self.pending, []
        conn = store._db._conn
        durable = any(d for _, _, d in batch)
        started = time.thread_time()
        outcomes = _run_batch(conn, [fn for fn, _, _ in batch], durable, 5.0)
        taken = time.thread_time() - started
        for (_, future, _), (ok, value) in zip(batch, outcomes, strict=True):
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
        return taken


def _event(n: int, now: float) -> Event:
    msg_id = f"msg_{uuid.uuid4().hex}"
    return Event(
        id=msg_id,
        source="payments",
        type="payment.completed",
        subject=f"offer-{n % 97}",
        time="2026-11-26T00:00:00Z",
        dedupe_key=msg_id,
        body=event_body(n, "pieces"),
        headers=(("Content-Type", "application/json"),),
        request_id=uuid.uuid4().hex[:16],
        received_at=now,
        body_status="completed",
    )


async def _batched(
    captured: _Captured, store: SqliteStore, calls: list[Coroutine[Any, Any, Any]]
) -> tuple[list[Any], float]:
    """Start ``calls`` together, run what they hand the engine as one batch; their answers and
    the batch's CPU seconds."""
    captured.expected = len(calls)
    captured.arrived.clear()
    tasks = [asyncio.ensure_future(call) for call in calls]
    await captured.arrived.wait()
    taken = captured.run(store)
    return list(await asyncio.gather(*tasks)), taken


async def _one_file(events: int, batch: int) -> tuple[float, float]:
    """CPU seconds per accept and per delivered event on one new file."""
    with tempfile.TemporaryDirectory() as root:
        store = await SqliteStore.open(f"sqlite:///{Path(root) / 'pieces.db'}")
        captured = _Captured()
        real_write = store._db.write
        store._db.write = captured.write  # type: ignore[method-assign]
        try:
            now = time.time()
            accept_cpu = 0.0
            for first in range(0, events, batch):
                calls = [
                    store.accept(_event(n, now), [DESTINATION], WINDOW, now)
                    for n in range(first, min(events, first + batch))
                ]
                answers, taken = await _batched(captured, store, calls)
                if any(answer.status != "queued" for answer in answers):
                    raise RuntimeError(f"an accept was not queued: {answers}")
                accept_cpu += taken
            delivered = 0
            delivery_cpu = 0.0
            while True:
                (leases,), taken = await _batched(
                    captured, store, [store.lease_due(now + 1, 60.0, batch, "pieces")]
                )
                delivery_cpu += taken
                if not leases:
                    break
                attempt = Attempt(1, now + 1, 200, 0.002, None, "ok")
                done, taken = await _batched(
                    captured, store, [store.complete(lease, attempt) for lease in leases]
                )
                if not all(done):
                    raise RuntimeError("a finish found its lease gone")
                delivery_cpu += taken
                delivered += len(leases)
            if delivered != events:
                raise RuntimeError(f"{delivered} of {events} events were delivered")
        finally:
            store._db.write = real_write  # type: ignore[method-assign]
            await store.close()
    return accept_cpu / events, delivery_cpu / events


def measure(events: int, batch: int, repeat: int) -> dict[str, Any]:
    """The pieces' CPU per operation over ``repeat`` files."""
    accepts: list[float] = []
    deliveries: list[float] = []
    for _ in range(repeat):
        accept, delivery = asyncio.run(_one_file(events, batch))
        accepts.append(accept * 1e6)
        deliveries.append(delivery * 1e6)
    return {
        "events": events,
        "batch": batch,
        "repeat": repeat,
        "sqlite_accept_us": {"best": min(accepts), "median": statistics.median(accepts)},
        "sqlite_delivery_us": {"best": min(deliveries), "median": statistics.median(deliveries)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.pieces", description=__doc__)
    parser.add_argument("--events", type=int, default=20_000, help="accepts per file")
    parser.add_argument("--batch", type=int, default=16, help="operations per group commit")
    parser.add_argument("--repeat", type=int, default=3, help="fresh files")
    args = parser.parse_args()
    result = measure(args.events, args.batch, args.repeat)
    for name in ("sqlite_accept_us", "sqlite_delivery_us"):
        figures = result[name]
        print(f"{name}: best {figures['best']:.1f}, median {figures['median']:.1f} us of CPU")


if __name__ == "__main__":
    main()
