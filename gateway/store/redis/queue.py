"""The delivery queue on Redis: leasing what is due, finishing leases, releasing backlogs.

Workers read due deliveries from every partition in one batched round trip (``due.lua``),
starting from a different partition each time, then lease with one script per partition that
has some (``lease.lua``). ``finish.lua`` takes a lease back one way (complete, reschedule,
dead letter) if its token still holds the delivery.

A success after its destination's retries releases the backlog (see "Backoff marks" in the
package): ``retry_now.lua``, batch by batch over every partition, makes that destination's
deliveries waiting out a backoff due now; ``retry_now`` does the same by hand.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Literal, cast

from gateway.analytics.rollup import bin_of, hour_of
from gateway.errors import StoreError
from gateway.store.records import (
    BACKLOG_BATCH,
    POISON_BUDGET,
    Attempt,
    Lease,
    UnreadableEvent,
    delivery_change,
    event_change,
    excerpt,
    log_backlog_released,
    new_token,
)
from gateway.store.redis.codec import event_of, present, time_text
from gateway.store.redis.core import RedisCore
from gateway.store.redis.keys import BACKOFF_KEY, CHANGES_CAP, CHANGES_KEY, PartitionKeys, uid_of
from gateway.store.redis.scripts import LEASE_DELIVERY_FIELDS, LEASE_EVENT_FIELDS
from gateway.store.stats import latency_bucket, minute_of

log = logging.getLogger("gateway.store")

#: Candidates one retry_now.lua call re-checks and moves.
RETRY_BATCH = 500


class RedisQueue(RedisCore):
    """Lease, complete, reschedule, dead-letter and retry now: the Redis delivery queue."""

    async def lease_due(self, now: float, lease: float, limit: int, worker: str) -> list[Lease]:
        """Lease due deliveries and expired leases from every partition, fairly.

        One batched read of every partition's due and leased sets (``due.lua``), then one
        script per partition with candidates, starting from a different partition each call,
        until ``limit`` are leased. With one partition the lease script reads those sets
        again once it has leased, and the next call starts from that read instead of one of
        its own: with a backlog, one script call per lease instead of two. A call that finds
        fewer there than it asks for (a short read, or candidates another worker has taken
        since) reads afresh once more. A delivery whose event cannot be read is dead-lettered
        and leasing goes on past it (up to ``POISON_BUDGET`` of them in one call).
        """
        leases: list[Lease] = []
        unreadable = 0
        first = True
        while len(leases) < limit and unreadable < POISON_BUDGET:
            asked = limit - len(leases)
            got, dead, read_before = await self._lease_round(now, lease, asked, worker)
            leases += got
            unreadable += dead
            short = first and read_before and len(got) < asked
            first = False
            if not dead and not short:
                break
        return leases

    async def _lease_round(
        self, now: float, lease: float, limit: int, worker: str
    ) -> tuple[list[Lease], int, bool]:
        """One read of every partition and the scripts it calls for: leases, how many
        unreadable deliveries were dead-lettered on the way, and whether the candidates came
        from an earlier call's read (``lease_due``)."""
        count = len(self._parts)
        start = self._next_start
        self._next_start = (start + 1) % count
        order = [self._parts[(start + n) % count] for n in range(count)]
        stamp = time_text(now)

        args = [stamp, limit]
        ahead, self._ahead = self._ahead, None
        if count == 1 and ahead is not None:
            replies = [ahead]
        elif count == 1:
            replies = [await self._call("due", order[0].shared, args)]
        else:
            # Every partition's read in one batch (one round trip per master).
            replies = await asyncio.gather(*(self._call("due", k.shared, args) for k in order))
        # The oldest first over every partition: expired leases (their worker died), then due
        # deliveries; the rotating start breaks ties, so no partition always goes first.
        ranked: list[tuple[int, float, int, str]] = []
        for n in range(count):
            for kind in (0, 1):
                pairs = replies[n][kind]
                for i in range(0, len(pairs), 2):
                    ranked.append((kind, float(pairs[i + 1]), n, pairs[i].decode()))
        ranked.sort()
        chosen: dict[str, int] = {}
        for _, _, n, did in ranked:
            if len(chosen) >= limit:
                break
            chosen.setdefault(did, n)
        by_partition: dict[int, list[str]] = {}
        for did, n in chosen.items():
            by_partition.setdefault(n, []).append(did)
        rank = {did: i for i, did in enumerate(chosen)}
        leases: list[Lease] = []
        unreadable = 0
        for n, candidates in sorted(by_partition.items()):
            keys = order[n]
            script_keys = list(keys.shared)
            for did in candidates:
                script_keys += [keys.dl(did), keys.ev(uid_of(did))]
            # With one partition, lease.lua reads the next candidates too: twice as many as
            # this round's, so that a round asking for a few more still finds them there.
            read_ahead = 2 * limit if count == 1 else 0
            rows, after = await self._call(
                "lease",
                script_keys,
                # The token base: lease.lua appends each delivery's number in the batch.
                [stamp, time_text(now + lease), new_token(), worker, read_ahead, *candidates],
            )
            if after and (after[0] or after[1]):
                self._ahead = after
            for did, dvalues, evalues in rows:
                d = present(LEASE_DELIVERY_FIELDS, dvalues)
                delivery_id = did.decode()
                try:
                    event = event_of(present(LEASE_EVENT_FIELDS, evalues), self._ring)
                except UnreadableEvent as exc:
                    # Opened here, not in Lua: an unreadable event is found after its delivery
                    # was leased, dead-lettered under that lease, and leasing goes on past it.
                    await self._dead_letter_unreadable(delivery_id, d, now, str(exc))
                    unreadable += 1
                    continue
                first = d.get("first")
                leases.append(
                    Lease(
                        delivery_id=delivery_id,
                        event=event,
                        destination=d["dest"].decode(),
                        attempt=int(d["made"]) + 1,
                        token=d["token"].decode(),
                        expires_at=float(d["lexp"]),
                        first_attempt_at=None if first is None else float(first),
                        created_at=float(d["created"]),
                    )
                )
        leases.sort(key=lambda lease: rank[lease.delivery_id])
        return leases, unreadable, ahead is not None

    async def _dead_letter_unreadable(
        self, delivery_id: str, d: dict[str, bytes], now: float, reason: str
    ) -> None:
        """Dead-letter a just-leased delivery whose event cannot be read, recording why."""
        attempt = Attempt(int(d["made"]) + 1, now, None, 0.0, reason)
        token = d["token"].decode()
        try:
            await self._finish_raw("dead", delivery_id, token, attempt, now, reason)
        except StoreError as exc:
            # Left leased: it comes back when the lease expires and is tried again then.
            log.warning("dead-lettering unreadable delivery %s failed: %s", delivery_id, exc)
            return
        log.error("delivery %s dead-lettered: %s", delivery_id, reason)

    async def complete(self, lease: Lease, attempt: Attempt) -> bool:
        """Mark the leased delivery delivered and record the attempt."""
        return await self._finish("complete", lease, attempt, attempt.started_at)

    async def reschedule(self, lease: Lease, attempt: Attempt, next_at: float) -> bool:
        """Record the attempt and make the delivery due at ``next_at``."""
        return await self._finish("reschedule", lease, attempt, next_at)

    async def dead_letter(self, lease: Lease, attempt: Attempt, reason: str) -> bool:
        """Record the attempt and move the delivery to the dead letters."""
        dead_at = attempt.started_at + attempt.latency
        return await self._finish("dead", lease, attempt, dead_at, reason)

    async def _finish(
        self, mode: str, lease: Lease, attempt: Attempt, at: float, reason: str = ""
    ) -> bool:
        event = lease.event
        return await self._finish_raw(
            mode,
            lease.delivery_id,
            lease.token,
            attempt,
            at,
            reason,
            (event.source, event.received_at),
        )

    async def _finish_raw(
        self,
        mode: str,
        delivery_id: str,
        token: str,
        attempt: Attempt,
        at: float,
        reason: str,
        counted: tuple[str, float] | None = None,
    ) -> bool:
        """Run finish.lua: leave the leased state if ``token`` still holds the delivery.

        With one partition finish.lua appends the change-log entry itself (as accept.lua
        does), saving a second script call per attempt; with more, ``log.lua`` does after it.
        """
        uid = uid_of(delivery_id)
        keys = self._keys_of_uid(uid)
        ended = minute_of(attempt.started_at + attempt.latency)
        inline = self._log_inline
        script_keys = [
            *keys.shared,
            keys.dl(delivery_id),
            keys.at(delivery_id),
            keys.ev(uid),
            keys.stats(ended),
        ]
        if inline:
            script_keys += [BACKOFF_KEY, CHANGES_KEY]
        # The analytics (design.md 5.9) of the event's source, when the lease says which.
        ended_at = attempt.started_at + attempt.latency
        rollup: list[object] = ["", "", ""]
        if counted is not None:
            of_source, received_at = counted
            hour = hour_of(ended_at)
            script_keys.append(keys.rollups(of_source, hour // 24))
            rollup = [len(script_keys), hour % 24, bin_of(ended_at - received_at)]
        reply = await self._call(
            "finish",
            script_keys,
            [
                mode,
                delivery_id,
                token,
                attempt.bounded().to_json(),
                time_text(attempt.started_at),
                time_text(at),
                excerpt(reason),
                latency_bucket(attempt.latency),
                CHANGES_CAP if inline else "",
                attempt.number,
                *rollup,
            ],
        )
        if not reply:
            return False
        if inline:
            if not reply[8]:
                log.warning("change log: an entry of delivery %s was not written", delivery_id)
            if int(reply[9]):
                await self._release_backlog(reply[1].decode(), at)
            return True
        result, destination, event_id, source, type_, subject, body_status, status = (
            None if value is None else value.decode(errors="replace") for value in reply[:8]
        )
        payment_key = None if reply[10] is None else reply[10].decode(errors="replace")
        # finish.lua answers a result and a destination whenever it answers at all.
        assert result is not None
        assert destination is not None
        event = {
            **event_change(event_id, source, type_, subject, body_status, payment_key),
            "event_status": status,
        }
        change = delivery_change(event, destination, attempt.number, result)
        mark: Literal["", "mark", "take"] = (
            "take" if mode == "complete" else "mark" if mode == "reschedule" else ""
        )
        if await self._log_changes([("delivery", change)], mark, destination):
            await self._release_backlog(destination, at)
        return True

    async def _release_backlog(self, destination: str, now: float) -> None:
        """After a success that took a backoff mark: up to ``BACKLOG_BATCH`` of the
        destination's deliveries waiting out a backoff, over every partition, due now. A
        full batch puts the mark back, so the next success releases the next batch. A failure
        is logged, not raised: the delivery is recorded, the rest just keeps its backoff."""
        try:
            moved = 0
            for keys in self._parts:
                moved += await self._retry_partition(keys, destination, now, BACKLOG_BATCH - moved)
                if moved >= BACKLOG_BATCH:
                    async with self._errors():
                        await self._r.hset(BACKOFF_KEY, destination, 1)
                    break
        except StoreError as exc:
            log.warning("releasing the backlog of %s failed: %s", destination, exc)
            return
        if moved:
            log_backlog_released(destination, moved)

    async def _retry_partition(
        self, keys: PartitionKeys, destination: str, now: float, budget: int | None
    ) -> int:
        """Make up to ``budget`` (``None``: all) of the destination's deliveries in this
        partition that wait out a backoff due at ``now``; how many were moved."""
        moved = skipped = 0
        while budget is None or moved < budget:
            want = RETRY_BATCH if budget is None else min(RETRY_BATCH, budget - moved)
            async with self._errors():
                # Moved ones leave the range (their score becomes now); the ones skipped, of
                # other destinations, stay in it, so the next read starts past them.
                raw = await self._r.zrangebyscore(
                    keys.due, f"({time_text(now)}", "+inf", start=skipped, num=want
                )
            dids = [b.decode() for b in cast(list[bytes], raw)]
            if not dids:
                break
            reply = await self._call(
                "retry_now",
                [*keys.shared, *(keys.dl(did) for did in dids)],
                [time_text(now), destination, *dids],
            )
            moved += int(reply[0])
            skipped += int(reply[1])
            if len(dids) < want:
                break
        return moved

    async def retry_now(self, destination: str, now: float) -> int:
        """Make every delivery to ``destination`` waiting out a backoff due at ``now``."""
        async with self._errors():
            await self._r.hdel(BACKOFF_KEY, destination)
        moved = 0
        for keys in self._parts:
            moved += await self._retry_partition(keys, destination, now, None)
        return moved
