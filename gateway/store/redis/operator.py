"""What an operator does to stored events on Redis: replay, redrive, and retention's prune.

An event is found by its id in every partition's ``id:`` index (``_find_uid``, the newest
first), then changed by one script on its own partition: ``replay.lua`` adds deliveries,
``redrive.lua`` makes dead ones due again, batch by batch.

Retention: ``prune.lua`` deletes finished events a batch at a time, per partition, walking the
``events:st:delivered`` and ``events:st:unrouted`` indexes by received_at; ``dd:`` and ``sid:``
keys are left to their own TTLs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from gateway.errors import EventNotFound, StoreError
from gateway.store.redis.codec import time_text
from gateway.store.redis.core import RedisCore
from gateway.store.redis.keys import PartitionKeys, new_delivery_id, uid_of

#: Dead deliveries one redrive.lua call moves.
REDRIVE_BATCH = 500
#: Most events one prune round deletes (and reads from each index of every partition).
PRUNE_READ = 100
#: The statuses of events that are finished (nothing due, leased or dead): what retention takes.
FINISHED = ("delivered", "unrouted", "held")


class RedisOperator(RedisCore):
    """Replay, redrive and prune: the Redis store's operations on events already stored."""

    async def replay(
        self, event_id: str, destinations: Sequence[str], now: float, source: str | None = None
    ) -> list[str]:
        """New deliveries of a stored event, due now, whatever dedupe says."""
        uid = await self._find_uid(event_id, source)
        if uid is None:
            raise EventNotFound(event_id)
        keys = self._keys_of_uid(uid)
        delivery_ids = [new_delivery_id(uid) for _ in destinations]
        found = await self._call(
            "replay",
            [
                *keys.shared,
                keys.ev(uid),
                keys.evd(uid),
                *(keys.dl(d) for d in delivery_ids),
                keys.status["held"],
            ],
            [time_text(now), uid, len(destinations), *destinations, *delivery_ids],
        )
        if not found:
            raise EventNotFound(event_id)
        return delivery_ids

    async def redrive(self, delivery_ids: Sequence[str] | None, now: float) -> int:
        """Make dead deliveries due now with their attempt count reset."""
        if delivery_ids is not None:
            groups: dict[int, list[str]] = {}
            for did in dict.fromkeys(delivery_ids):
                try:
                    keys = self._keys_of_uid(uid_of(did))
                except (StoreError, ValueError):
                    continue  # not an id this store hands out: nothing to move
                groups.setdefault(keys.index, []).append(did)
            moved = 0
            for index, dids in groups.items():
                for n in range(0, len(dids), REDRIVE_BATCH):
                    moved += await self._redrive_batch(
                        self._parts[index], dids[n : n + REDRIVE_BATCH], now
                    )
            return moved
        moved = 0
        for keys in self._parts:
            while True:
                async with self._errors():
                    dead = cast(list[bytes], await self._r.zrange(keys.dead, 0, REDRIVE_BATCH - 1))
                if not dead:
                    break
                n = await self._redrive_batch(keys, [b.decode() for b in dead], now)
                if n == 0:
                    break
                moved += n
        return moved

    async def _redrive_batch(self, keys: PartitionKeys, dids: Sequence[str], now: float) -> int:
        script_keys = list(keys.shared)
        for did in dids:
            script_keys += [keys.dl(did), keys.ev(uid_of(did))]
        return int(await self._call("redrive", script_keys, [time_text(now), *dids]))

    async def prune(self, before: float, limit: int) -> int:
        """Delete up to ``limit`` finished events received before ``before``, oldest first
        over every partition: one read of the candidates, then per partition one script that
        re-checks and deletes them."""
        pruned = 0
        while pruned < limit:
            done = await self._prune_round(before, min(limit - pruned, PRUNE_READ))
            if not done:
                break
            pruned += done
        return pruned

    async def _prune_round(self, before: float, want: int) -> int:
        cut = f"({time_text(before)}"
        replies = await self._pipeline(
            lambda pipe: [
                pipe.zrangebyscore(keys.status[st], "-inf", cut, start=0, num=want, withscores=True)
                for keys in self._parts
                for st in FINISHED
            ]
        )
        ranked = sorted(
            (float(score), n // len(FINISHED), raw.decode())
            for n, reply in enumerate(replies)
            for raw, score in reply
        )[:want]
        by_partition: dict[int, list[str]] = {}
        for _, index, uid in ranked:
            by_partition.setdefault(index, []).append(uid)
        pruned = 0
        for index, uids in sorted(by_partition.items()):
            pruned += await self._prune_partition(self._parts[index], before, uids)
        return pruned

    async def _prune_partition(self, keys: PartitionKeys, before: float, uids: list[str]) -> int:
        details = await self._pipeline(
            lambda pipe: [
                (
                    pipe.hmget(keys.ev(uid), ["source", "id", "type", "payment_key"]),
                    pipe.lrange(keys.evd(uid), 0, -1),
                )
                for uid in uids
            ]
        )
        script_keys = [*keys.shared, keys.lex_id, keys.lex_subject, keys.status["held"]]
        args: list[Any] = [time_text(before)]
        for n, uid in enumerate(uids):
            (source, event_id, type_, payment_key), dids = details[2 * n], details[2 * n + 1]
            if source is None or event_id is None:
                continue
            script_keys += [
                keys.ev(uid),
                keys.evd(uid),
                keys.src(source.decode()),
                keys.ids(event_id.decode()),
            ]
            if type_ is not None:
                script_keys.append(keys.type(type_.decode()))
            member = ""
            if payment_key is not None:
                member = f"{source.decode()}\n{payment_key.decode()}"
                script_keys += keys.payment_keys(source.decode(), member)
            for raw in dids:
                script_keys += [keys.dl(raw.decode()), keys.at(raw.decode())]
            args += [uid, len(dids), int(type_ is not None), int(bool(member)), member]
        if len(args) == 1:
            return 0
        return int(await self._call("prune", script_keys, args))
