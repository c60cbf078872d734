"""The request path's operations on Redis: accept (queued mode), claim, commit, release.

Each is one script on the partition of its (source, dedupe key): ``accept.lua`` for accept and
commit, ``claim.lua``, ``release.lua``. With a per-source limit the store decides itself
(``decides_limits``: a single Redis, the limiter's own client and clock), the same script
decides it first, with the rate limiter's lines and key.

The (source, id) check of ``accept`` (an id seen under another dedupe key) sees the events of
the partition the new event hashes to; with one partition that is every event.

Dedupe windows and claim leases are checked against the caller's clock (the ``exp`` field), as
the stores take time from the caller; each such key also gets a Redis TTL of the window plus
a minute, so expired keys disappear without a sweeper.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Literal

from gateway.analytics.rollup import bin_of, hour_of
from gateway.errors import StoreError
from gateway.jsontext import dumpb, dumps
from gateway.payments.states import MARKS, Mark
from gateway.ratelimit.limiter import Limiter
from gateway.ratelimit.redis_limiter import RedisLimiter, decision_of, redis_key
from gateway.store.crypto import seal_payload
from gateway.store.records import (
    ACCEPT_STATUSES,
    CLAIMS,
    AcceptLimit,
    AcceptResult,
    Attempt,
    Claim,
    Event,
    LimitReached,
    body_status_of,
    delivery_change,
    event_change,
    one_of,
)
from gateway.store.redis.codec import time_text
from gateway.store.redis.core import RedisCore
from gateway.store.redis.keys import CHANGES_CAP, CHANGES_KEY, new_delivery_id
from gateway.store.stats import latency_bucket, minute_of

log = logging.getLogger("gateway.store")

# Redis TTLs run on Redis's clock, the logical expiry on the caller's: keep keys a little
# longer than the window so clock skew between replicas never drops one early.
TTL_SLACK_MS = 60_000


def ttl_ms(seconds: float) -> int:
    """A Redis TTL covering ``seconds`` plus the slack."""
    return max(1, math.ceil(seconds * 1000)) + TTL_SLACK_MS


class RedisIngress(RedisCore):
    """Accept, claim, commit and release: what ``IngressStore`` asks of the Redis store."""

    async def accept(
        self,
        event: Event,
        destinations: Sequence[str],
        window: float,
        now: float,
        limit: AcceptLimit | None = None,
        *,
        first: AcceptLimit | None = None,
    ) -> AcceptResult:
        """Dedupe, persist and enqueue, in one script (which decides ``first``, then
        ``limit``, before anything else)."""
        status, event_id, mark, held = await self._store_event(
            "queued", event, destinations, window, now, limit=limit, first=first
        )
        return AcceptResult(one_of(status, ACCEPT_STATUSES, "accept status"), event_id, mark, held)

    async def claim(
        self,
        source: str,
        dedupe_key: str,
        lease: float,
        now: float,
        limit: AcceptLimit | None = None,
        *,
        shard_key: str | None = None,
    ) -> Claim:
        """Take the dedupe key for ``lease`` seconds, unless it is claimed or done; in the same
        script, ``limit`` first (as accept.lua does). ``shard_key``: the event's
        (``Event.shard_key``), so the claim lives where the commit will write."""
        keys = self._parts[self.partition_of(source, shard_key or dedupe_key)]
        script_keys = [keys.dd(source, dedupe_key)]
        args = [time_text(now), time_text(now + lease), ttl_ms(lease)]
        if limit is not None:
            script_keys.append(self._limit_key(limit))
            args += [str(limit.rule.interval_us), str(limit.rule.burst)]
        result = await self._call("claim", script_keys, args)
        if isinstance(result, list):
            if limit is not None and result[0] == b"rate_limited":
                raise LimitReached(decision_of(result[1:], limit.rule))
            raise StoreError(f"claim: unexpected answer {result!r}")
        return one_of(result.decode(), CLAIMS, "claim")

    def _limit_key(self, limit: AcceptLimit) -> str:
        """The Redis key of a limit that accept.lua or claim.lua decides; never on a cluster,
        where the limit's key lives in a slot of its own (``decides_limits``)."""
        if self._cluster:
            raise ValueError("on a Redis Cluster the limits are decided apart (decides_limits)")
        return redis_key(limit.key)

    def decides_limits(self, limiter: Limiter) -> bool:
        """Whether ``limiter`` keeps its limits in this Redis on the server's clock (then
        accept.lua decides one with the same lines); never on a cluster, where a limit's key
        lives in a slot of its own."""
        return (
            not self._cluster
            and isinstance(limiter, RedisLimiter)
            and limiter.client is self._r
            and limiter.clock == "server"
        )

    async def commit(
        self,
        event: Event,
        destinations: Sequence[str],
        window: float,
        now: float,
        attempt: Attempt,
    ) -> None:
        """Mark the key done for the window; record the event as delivered with the attempt."""
        await self._store_event("sync", event, destinations, window, now, attempt.bounded())

    async def release(self, source: str, dedupe_key: str, *, shard_key: str | None = None) -> None:
        """Give a claim up; a key already done stays done."""
        keys = self._parts[self.partition_of(source, shard_key or dedupe_key)]
        await self._call("release", [keys.dd(source, dedupe_key)], [])

    async def _store_event(
        self,
        mode: Literal["queued", "sync"],
        event: Event,
        destinations: Sequence[str],
        window: float,
        now: float,
        attempt: Attempt | None = None,
        *,
        limit: AcceptLimit | None = None,
        first: AcceptLimit | None = None,
    ) -> tuple[str, str, Mark | None, bool]:
        """Run accept.lua; the status and event id it answers, the event's mark (a payment's
        event, design.md 5.7) and whether it was held back.

        With one partition the change-log entries are appended by accept.lua itself (the log
        shares that partition's hash tag), saving a second script call per event; with more,
        by ``log.lua`` right after it answers (see "Change log" in the package). With a
        ``limit`` (a single Redis only: its key has a hash tag of its own), the script decides
        it before writing anything, on the server's clock as ``RedisLimiter`` does:
        ``LimitReached``; a ``first`` limit the same way, before ``limit``.
        """
        keys = self._parts[self.partition_of(event.source, event.shard_key)]
        uid = keys.new_uid()
        body, headers = seal_payload(self._ring, event.source, event.id, event.body, event.headers)
        received_at = time_text(event.received_at)
        fields = [
            "id", event.id,
            "source", event.source,
            "dedupe_key", event.dedupe_key,
            "request_id", event.request_id,
            "received_at", received_at,
            "mode", mode,
            "origin", event.origin,
        ]  # fmt: skip
        body_status = body_status_of(event.body_status)
        payment_key = None if event.payment is None else event.payment.key
        # The optional fields one test each (a loop over (name, value) pairs built them all
        # first, on every accept).
        if event.type is not None:
            fields += ["type", event.type]
        if event.subject is not None:
            fields += ["subject", event.subject]
        if event.time is not None:
            fields += ["time", event.time]
        if body_status is not None:
            fields += ["body_status", body_status]
        if payment_key is not None:
            fields += ["payment_key", payment_key]
        delivery_ids = [new_delivery_id(uid) for _ in destinations]
        packed: dict[str, object] = {
            "mode": mode,
            "now": time_text(now),
            "expires": time_text(now + window),
            "ttl": str(ttl_ms(window)),
            "uid": uid,
            "id": event.id,
            "received_at": received_at,
            "fields": fields,
            "dests": list(destinations),
            "dids": delivery_ids,
        }
        ended = now
        if attempt is not None:
            ended = attempt.started_at + attempt.latency
            packed["attempt"] = attempt.to_json()
            packed["started_at"] = time_text(attempt.started_at)
            packed["bucket"] = str(latency_bucket(attempt.latency))
            packed["dlbin"] = str(bin_of(ended - event.received_at))
        hour = hour_of(now)
        packed["hh"] = str(hour % 24)
        script_keys = [
            *keys.shared,
            keys.dd(event.source, event.dedupe_key),
            keys.sid(event.source, event.id),
            keys.ev(uid),
            keys.evd(uid),
            keys.src(event.source),
            keys.ids(event.id),
            keys.lex_id,
            keys.lex_subject,
            stats_now := keys.stats(minute_of(now)),
            stats_now if ended == now else keys.stats(minute_of(ended)),
            keys.status["held"],
        ]
        script_keys += [keys.dl(did) for did in delivery_ids]
        script_keys += [keys.at(did) for did in delivery_ids]
        # Keys the script takes only sometimes, each named by its position (KEYS is 1-based).
        at: dict[str, int] = {}
        if event.type is not None:
            script_keys.append(keys.type(event.type))
            at["type"] = len(script_keys)
        script_keys.append(keys.rollups(event.source, hour // 24))
        at["an"] = len(script_keys)
        if event.payment is not None:
            pay = event.payment
            member = f"{event.source}\n{pay.key}"
            at["pay"] = len(script_keys) + 1
            script_keys += keys.payment_keys(event.source, member)
            packed["pay"] = {
                "source": event.source,
                "key": pay.key,
                "member": member,
                "state": pay.state,
                "reference": pay.reference,
                "amount": None
                if pay.amount is None
                else {
                    "value": str(pay.amount.value),
                    "scale": str(pay.amount.scale),
                    "currency": pay.amount.currency,
                },
                "order": pay.order,
            }
        change = event_change(
            event.id, event.source, event.type, event.subject, body_status, payment_key
        )
        entries: list[tuple[str, dict[str, object]]] = [("accepted", change)]
        if attempt is not None:
            entries += [
                ("delivery", delivery_change(change, d, attempt.number, "delivered"))
                for d in destinations
            ]
        inline = self._log_inline
        if inline:
            # Each entry's JSON without its closing brace: the script adds the event's status.
            packed["cap"] = str(CHANGES_CAP)
            packed["log"] = [(kind, dumps(data)[:-1]) for kind, data in entries]
            script_keys.append(CHANGES_KEY)
            at["log"] = len(script_keys)
        for name, decided in (("first", first), ("limit", limit)):
            if decided is not None:
                packed[name] = [str(decided.rule.interval_us), str(decided.rule.burst)]
                script_keys.append(self._limit_key(decided))
                at[name] = len(script_keys)
        packed["at"] = at
        reply = await self._call(
            "accept", script_keys, [dumpb(packed), body, headers], durable=True
        )
        status = reply[0].decode()
        if status == "rate_limited" and limit is not None:
            raise LimitReached(decision_of(reply[1:], limit.rule))
        if status == "rate_limited_first" and first is not None:
            raise LimitReached(decision_of(reply[1:], first.rule))
        event_id = reply[1].decode()
        mark: Mark | None = None
        held = False
        if status == "queued":
            mark = one_of(reply[4].decode(), MARKS, "mark") if reply[4] else None
            held = bool(int(reply[5]))
            event_status = reply[2].decode()
            if not inline:
                await self._log_changes(
                    [(kind, {**data, "event_status": event_status}) for kind, data in entries]
                )
            elif not int(reply[3]):
                log.warning("change log: an entry of event %s was not written", event.id)
        return status, event_id, mark, held
