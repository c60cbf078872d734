"""Retention: finished events older than ``store.retention`` go, now and then (design.md 5.4).

Every gateway process runs a ``Pruner``: pruning is cheap and idempotent (two processes pruning
at once each delete a share, or nothing), so no process needs to be elected for it. It runs
once shortly after start and then about every ``interval`` seconds, both jittered so processes
started together do not prune in step. Each run deletes in batches of ``batch`` events (one
short transaction or script each, see ``Upkeep.prune``) until a batch comes back short.

Only finished events go (delivered or unrouted); queued ones and dead letters stay until they
finish or an operator redrives them. Dedupe entries expire with their own window.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable

from gateway.errors import StoreError
from gateway.store.protocols import Upkeep

log = logging.getLogger("gateway.store")

#: Events deleted per ``Upkeep.prune`` call: small enough to keep each call short.
PRUNE_BATCH = 500
#: Seconds between runs (jittered by +-50 %).
PRUNE_INTERVAL = 600.0
#: Seconds from start to the first run (jittered by +-50 %): soon, but after the startup rush.
FIRST_PRUNE_DELAY = 60.0


class Pruner:
    """Deletes finished events received more than ``retention`` seconds ago, now and then."""

    def __init__(
        self,
        store: Upkeep,
        retention: float,
        *,
        clock: Callable[[], float],
        interval: float = PRUNE_INTERVAL,
        first_delay: float = FIRST_PRUNE_DELAY,
        batch: int = PRUNE_BATCH,
        rng: random.Random | None = None,
    ) -> None:
        if retention <= 0 or batch < 1:
            raise ValueError("retention must be positive and batch at least 1")
        self._store = store
        self._retention = retention
        self._clock = clock
        self._interval = interval
        self._first_delay = first_delay
        self._batch = batch
        self._rng = rng or random.Random()  # jitter, not a secret
        self._stopping = asyncio.Event()

    async def prune_once(self, now: float | None = None) -> int:
        """Prune everything due at ``now`` (default: the clock), batch by batch; how many."""
        at = self._clock() if now is None else now
        before = at - self._retention
        total = 0
        while not self._stopping.is_set():  # a long backlog must not hold up a shutdown
            pruned = await self._store.prune(before, self._batch)
            total += pruned
            if pruned < self._batch:
                break
            await asyncio.sleep(0)  # let ingress and deliveries in between batches
        cutoff = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(before))
        log.log(
            logging.INFO if total else logging.DEBUG,
            "pruned %d finished events received before %s (store.retention %gs)",
            total,
            cutoff,
            self._retention,
            extra={"pruned": total},
        )
        return total

    async def run(self) -> None:
        """Prune shortly after start, then every interval, until ``stop``."""
        delay = self._first_delay
        while not await self._sleep(delay * self._rng.uniform(0.5, 1.5)):
            try:
                await self.prune_once()
            except StoreError as exc:
                # Nothing is half-done (each batch is atomic); the next run picks up from here.
                log.warning("pruning old events failed: %s", exc)
            delay = self._interval

    async def _sleep(self, seconds: float) -> bool:
        """Wait ``seconds`` or until ``stop``; whether stop was asked for."""
        if self._stopping.is_set():  # wait_for gives a zero timeout no chance to see it
            return True
        try:
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
        except TimeoutError:
            return False
        return True

    def stop(self) -> None:
        """Ask ``run`` to return (after the batch in progress, if any)."""
        self._stopping.set()
