"""The Redis store's part in reconciliation (design.md 5.8): the run lease, the gateway's side
of the comparison, the missing flag, sightings and the runs kept.

The lease, the runs and the sightings live beside the change log, under ``wg:{q}:recon:``;
each payment is read and flagged in its own partition (that of (source, key)).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, cast

from gateway.analytics.rollup import hour_of
from gateway.jsontext import dumps
from gateway.payments.states import STATES, TERMINAL, State
from gateway.store.records import RUNS_KEPT, Event, ReconcileRun, one_of
from gateway.store.redis.codec import time_text
from gateway.store.redis.core import RedisCore
from gateway.store.redis.keys import RECONCILE_PREFIX


class RedisReconcile(RedisCore):
    """What ``ReconcileStore`` asks of the Redis store."""

    async def acquire_reconcile(self, source: str, holder: str, now: float, lease: float) -> bool:
        """Take the lease (on Redis's clock) unless another holder has it."""
        key = f"{RECONCILE_PREFIX}lease:{source}"
        ms = max(1, math.ceil(lease * 1000))
        return bool(await self._call("recon_lease", [key], ["take", holder, ms]))

    async def release_reconcile(self, source: str, holder: str) -> None:
        """Give the lease up if ``holder`` still has it."""
        await self._call("recon_lease", [f"{RECONCILE_PREFIX}lease:{source}"], ["give", holder, 1])

    async def reconcile_holder(self, source: str, now: float) -> str | None:
        """Who holds the source's lease (Redis expires it on its own clock)."""
        [held] = await self._pipeline(lambda pipe: [pipe.get(f"{RECONCILE_PREFIX}lease:{source}")])
        return None if held is None else bytes(held).decode(errors="replace")

    def _member_keys(self, source: str, key: str) -> tuple[str, list[str]]:
        member = f"{source}\n{key}"
        keys = self._parts[self.partition_of(source, key)]
        return member, keys.payment_keys(source, member)

    async def payment_states(self, source: str, keys: Sequence[str]) -> dict[str, State]:
        """The state of each of these payments the gateway has (each read in its partition)."""
        wanted = list(dict.fromkeys(keys))
        replies = await self._pipeline(
            lambda pipe: [
                pipe.hget(self._member_keys(source, key)[1][0], "state") for key in wanted
            ]
        )
        return {
            key: one_of(state.decode(), STATES, "payment state")
            for key, state in zip(wanted, replies, strict=True)
            if state is not None
        }

    async def terminal_payments(
        self, source: str, since: float, until: float, limit: int
    ) -> list[tuple[str, State]]:
        """Terminal payments first seen since ``since``, last updated before ``until``: every
        partition's terminal state indexes, then each candidate's first sighting."""
        states = sorted(TERMINAL)
        replies = await self._pipeline(
            lambda pipe: [
                pipe.zrangebyscore(keys.payments_state(state), "-inf", f"({time_text(until)}")
                for keys in self._parts
                for state in states
            ]
        )
        prefix = f"{source}\n".encode()
        candidates = [
            (raw.decode().partition("\n")[2], states[n % len(states)])
            for n, reply in enumerate(replies)
            for raw in reply
            if raw.startswith(prefix)
        ]
        firsts = await self._pipeline(
            lambda pipe: [
                pipe.hget(self._member_keys(source, key)[1][0], "first") for key, _ in candidates
            ]
        )
        found = sorted(
            (float(first), key, cast(State, state))
            for (key, state), first in zip(candidates, firsts, strict=True)
            if first is not None and float(first) >= since
        )
        return [(key, state) for _, key, state in found[:limit]]

    async def seen(self, events: Sequence[Event], now: float) -> list[bool]:
        """Whether each event's dedupe key is live, read in the event's partition."""
        replies = await self._pipeline(
            lambda pipe: [
                pipe.hget(
                    self._parts[self.partition_of(e.source, e.shard_key)].dd(
                        e.source, e.dedupe_key
                    ),
                    "exp",
                )
                for e in events
            ]
        )
        return [exp is not None and float(exp) > now for exp in replies]

    async def mark_missing(
        self, source: str, key: str, reference: str | None, missing: bool, now: float
    ) -> None:
        """Flag (or clear) a payment a run could not recover (``missing.lua``)."""
        member, keys = self._member_keys(source, key)
        hour = hour_of(now)
        keys.append(self._parts[self.partition_of(source, key)].rollups(source, hour // 24))
        args = ["1" if missing else "0", time_text(now), source, key, member, reference or ""]
        await self._call("missing", keys, [*args, str(hour % 24)])

    async def sightings(
        self, source: str, observed: Mapping[str, str], now: float
    ) -> dict[str, float]:
        """Since when each listed key has been listed in its state."""
        hkey = f"{RECONCILE_PREFIX}seen:{source}"
        async with self._errors():
            raw = cast(dict[bytes, bytes], await self._r.hgetall(hkey))
        known = {k.decode(): v.decode().partition("\t") for k, v in raw.items()}
        out: dict[str, float] = {}
        changed: dict[str, str] = {}
        for key, state in observed.items():
            old = known.get(key)
            since = float(old[2]) if old is not None and old[0] == state else now
            out[key] = since
            if old is None or old[0] != state:
                changed[key] = f"{state}\t{time_text(since)}"
        gone = [key for key in known if key not in observed]
        async with self._errors():
            if changed:
                await self._r.hset(hkey, mapping=cast(Any, changed))
            if gone:
                await self._r.hdel(hkey, *gone)
        return out

    async def save_run(self, run: ReconcileRun) -> None:
        """Keep the run and the source's last ``RUNS_KEPT``."""
        index = f"{RECONCILE_PREFIX}runs:{run.source}"
        async with self._errors():
            await self._r.set(f"{RECONCILE_PREFIX}run:{run.id}", dumps(run.to_json()))
            await self._r.zadd(index, {run.id: run.started_at})
            old = cast(list[bytes], await self._r.zrange(index, 0, -RUNS_KEPT - 1))
            if old:
                await self._r.delete(*(f"{RECONCILE_PREFIX}run:{i.decode()}" for i in old))
                await self._r.zrem(index, *old)

    async def recent_runs(self, source: str, limit: int) -> list[ReconcileRun]:
        """The source's last runs, newest first."""
        async with self._errors():
            ids = cast(
                list[bytes],
                await self._r.zrevrange(f"{RECONCILE_PREFIX}runs:{source}", 0, limit - 1),
            )
        runs = [await self.get_run(raw.decode()) for raw in ids]
        return [run for run in runs if run is not None]

    async def get_run(self, run_id: str) -> ReconcileRun | None:
        """One run with its items."""
        async with self._errors():
            text = await self._r.get(f"{RECONCILE_PREFIX}run:{run_id}")
        return None if text is None else ReconcileRun.from_json(json.loads(text))
