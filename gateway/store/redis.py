"""The shared store: Redis or Redis Cluster, for replicas on many hosts (DESIGN 5.4, 7).

URLs: ``redis://host:port/db``, ``rediss://...`` (TLS); ``redis+cluster://host:port`` or
``rediss+cluster://...`` for Redis Cluster (any node as the seed); and
``redis+sentinel://[[user]:password@]host1:26379,host2:26379/<service>[/<db>][?options]`` or
``rediss+sentinel://...`` (TLS to the master) for a master that Redis Sentinel watches
(``gateway.store.sentinel`` documents the form and its options). Connecting is lazy: opening
the store does not need Redis up; ``ping`` (``/readyz``) says whether it is.

With Sentinel, every new connection first asks a Sentinel for the current master, so after a
failover the store (and the rate limiter sharing its client) reconnects to the promoted replica
by itself: calls fail with ``StoreError`` while no master is known, then work again.

Atomicity: every operation that changes more than one key is one Lua script (the ``*.lua``
files beside this module, each prefixed with ``prelude.lua``). Redis runs a script without
interleaving anything else, so e.g. ``accept`` checks the dedupe key, writes the event and
enqueues its deliveries, or does nothing at all.

Keys, all under the prefix ``wg:{q}:``::

    dd:<source>\\n<dedupe key>   hash  dedupe entry: st (p = sync claim, d = done), exp, eid
    sid:<source>\\n<event id>    hash  (source, id) seen within the window: exp, uid
    ev:<uid>                    hash  event fields, counters n / pending / dead, status
                                      (body and headers sealed by ``store.crypto`` when
                                      ``store.encryption_keys`` is set)
    evd:<uid>                   list  its delivery ids
    dl:<delivery id>            hash  ev, dest, state, made, created, next, first, token, ...
    at:<delivery id>            list  its attempts, JSON
    due / leased / dead         zset  delivery ids by next attempt / lease expiry / dead_at
    depth                       hash  "<destination>\\n<state>" -> count, for queue_depth
    events, events:src:<source>, events:st:<status>, id:<event id>
                                zset  event uids by received_at, for lists and look-ups

Cluster trade-off: the hash tag ``{q}`` puts every key in one slot, so every script runs on a
cluster (a script may only touch keys of one slot) and the due queue is one sorted set that
any replica can lease from. The price is that the store lives on one shard: Redis Cluster gives
it failover, not horizontal write scaling. One shard handles tens of thousands of script calls
per second, far above webhook volumes; sharding by a partition tag (``{q:0}`` ... ``{q:N}``,
each worker polling all) is the way out if that ever changes. Scripts build most key names
from ``ARGV[1]`` rather than declaring them in ``KEYS``; they all carry the same tag as the
declared key the script is routed by, so they live on the same node.

Retention: ``prune.lua`` deletes finished events a batch at a time, walking the
``events:st:delivered`` and ``events:st:unrouted`` indexes by received_at; ``dd:`` and ``sid:``
keys are left to their own TTLs.

Dedupe windows and claim leases are checked against the caller's clock (the ``exp`` field), as
the stores take time from the caller; each such key also gets a Redis TTL of the window plus
a minute, so expired keys disappear without a sweeper.

Durability is Redis's: run it with ``appendonly yes`` and ``appendfsync always`` to lose
nothing that was answered 202, or ``appendfsync everysec`` to risk up to one second of accepted
events on a crash of the Redis host (a crash of the gateway loses nothing either way). With
replication, ``WAIT`` is not used: a failover can lose the last writes the replica had not got.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any, Literal, TypeVar, cast

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from gateway.errors import EventNotFound, StoreError
from gateway.ratelimit.limiter import Limiter
from gateway.ratelimit.redis_limiter import RedisLimiter
from gateway.store.base import (
    ACCEPT_STATUSES,
    CLAIMS,
    DELIVERY_STATES,
    DEPTH_STATES,
    EVENT_STATUSES,
    MODES,
    POISON_BUDGET,
    AcceptResult,
    Attempt,
    DeadLetter,
    DeliveryView,
    Event,
    EventStatus,
    EventSummary,
    EventView,
    Lease,
    UnreadableEvent,
    decode_cursor,
    encode_cursor,
    excerpt,
    one_of,
)
from gateway.store.crypto import KeyRing, open_payload, seal_payload
from gateway.store.sentinel import SentinelURL, parse_sentinel_url
from gateway.store.urls import describe_schemes, store_kind

log = logging.getLogger("gateway.store")

T = TypeVar("T")

PREFIX = "wg:{q}:"
# Redis TTLs run on Redis's clock, the logical expiry on the caller's: keep keys a little
# longer than the window so clock skew between replicas never drops one early.
_TTL_SLACK_MS = 60_000
_REDRIVE_BATCH = 500
_SCAN_CHUNK = 200
#: Seconds a rate-limit check may take before ``on_store_error`` decides.
RATE_LIMIT_TIMEOUT = 0.25
_SCRIPTS = ("accept", "claim", "release", "lease", "finish", "replay", "redrive", "prune")


def _script(name: str) -> str:
    """The text of a store script with the shared prelude in front."""
    here = resources.files("gateway.store")
    return here.joinpath("prelude.lua").read_text() + here.joinpath(f"{name}.lua").read_text()


def _t(value: float) -> str:
    """A time as the scripts store it: the shortest exact text of the float."""
    return repr(float(value))


def _ttl_ms(seconds: float) -> int:
    """A Redis TTL covering ``seconds`` plus the slack."""
    return max(1, math.ceil(seconds * 1000)) + _TTL_SLACK_MS


def _s(value: bytes | None) -> str | None:
    return None if value is None else value.decode()


def _pairs(flat: Sequence[bytes]) -> dict[str, bytes]:
    """A flat HGETALL reply as a dict."""
    return {flat[i].decode(): flat[i + 1] for i in range(0, len(flat), 2)}


class RedisStore:
    """The Redis implementation of ``Store``; open it with ``RedisStore.open``."""

    def __init__(
        self,
        client: Redis | RedisCluster,
        prefix: str = PREFIX,
        ring: KeyRing | None = None,
        *,
        sentinel: Sentinel | None = None,
    ) -> None:
        self._r = client
        # The Sentinel clients that find the master; the store owns them and closes them.
        self._sentinel = sentinel
        self._p = prefix
        self._ring = ring
        self._scripts: dict[str, AsyncScript] = {
            name: client.register_script(_script(name)) for name in _SCRIPTS
        }

    @property
    def client(self) -> Redis | RedisCluster:
        """The Redis client, shared with what else keeps state in Redis (the rate limiter)."""
        return self._r

    @classmethod
    async def open(cls, url: str, ring: KeyRing | None = None) -> RedisStore:
        """A store on the Redis (Sentinel-watched master, or Redis Cluster) a URL names.

        With a ``ring``, event bodies and headers are written encrypted (``store.crypto``).
        """
        options: dict[str, Any] = {"socket_timeout": 5.0, "socket_connect_timeout": 5.0}
        kind = store_kind(url)
        if kind == "sentinel":
            try:
                target = parse_sentinel_url(url)
            except ValueError as exc:
                raise StoreError(f"store.url: bad Redis Sentinel URL: {exc}") from None
            sentinel, client = _sentinel_client(target, options)
            return cls(client, ring=ring, sentinel=sentinel)
        try:
            if kind == "cluster":
                plain = url.replace("+cluster", "", 1)
                return cls(RedisCluster.from_url(plain, **options), ring=ring)
            if kind == "redis":
                return cls(Redis.from_url(url, **options), ring=ring)
        except (RedisError, ValueError) as exc:
            raise StoreError(f"bad Redis store URL: {exc}") from exc
        raise StoreError(f"store.url: not a Redis URL (one of {describe_schemes()})")

    @asynccontextmanager
    async def _errors(self) -> AsyncIterator[None]:
        """Every Redis failure (refused, timed out, script error) as a StoreError."""
        try:
            yield
        except (TimeoutError, RedisError, OSError) as exc:
            raise StoreError(f"Redis store failed: {exc}") from exc

    async def _call(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run one store script (EVALSHA, loading it when the server lacks it)."""
        async with self._errors():
            return await self._scripts[name](keys=list(keys), args=[self._p, *args])

    def _dd(self, source: str, dedupe_key: str) -> str:
        return f"{self._p}dd:{source}\n{dedupe_key}"

    # -- queued and sync mode ----------------------------------------------------------------

    async def accept(
        self, event: Event, destinations: Sequence[str], window: float, now: float
    ) -> AcceptResult:
        """Dedupe, persist and enqueue, in one script."""
        status, event_id = await self._store_event("queued", event, destinations, window, now)
        return AcceptResult(one_of(status, ACCEPT_STATUSES, "accept status"), event_id)

    async def claim(
        self, source: str, dedupe_key: str, lease: float, now: float
    ) -> Literal["claimed", "in_progress", "done"]:
        """Take the dedupe key for ``lease`` seconds, unless it is claimed or done."""
        result = await self._call(
            "claim", [self._dd(source, dedupe_key)], [_t(now), _t(now + lease), _ttl_ms(lease)]
        )
        return one_of(result.decode(), CLAIMS, "claim")

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

    async def release(self, source: str, dedupe_key: str) -> None:
        """Give a claim up; a key already done stays done."""
        await self._call("release", [self._dd(source, dedupe_key)], [])

    async def _store_event(
        self,
        mode: Literal["queued", "sync"],
        event: Event,
        destinations: Sequence[str],
        window: float,
        now: float,
        attempt: Attempt | None = None,
    ) -> tuple[str, str]:
        """Run accept.lua; the status and event id it answers."""
        uid = uuid.uuid4().hex
        body, headers = seal_payload(self._ring, event.source, event.id, event.body, event.headers)
        fields: list[Any] = [
            "id", event.id,
            "source", event.source,
            "dedupe_key", event.dedupe_key,
            "body", body,
            "headers", headers,
            "request_id", event.request_id,
            "received_at", _t(event.received_at),
            "mode", mode,
            "n", 0, "pending", 0, "dead", 0,
        ]  # fmt: skip
        for name in ("type", "subject", "time"):
            value = getattr(event, name)
            if value is not None:
                fields += [name, value]
        delivery_ids = [uuid.uuid4().hex for _ in destinations]
        args: list[Any] = [
            mode,
            _t(now),
            _t(now + window),
            _ttl_ms(window),
            uid,
            event.source,
            event.id,
            _t(event.received_at),
            len(fields),
            *fields,
            len(destinations),
            *destinations,
            *delivery_ids,
        ]
        if attempt is not None:
            args += [attempt.to_json(), _t(attempt.started_at)]
        keys = [
            self._dd(event.source, event.dedupe_key),
            f"{self._p}sid:{event.source}\n{event.id}",
            f"{self._p}ev:{uid}",
        ]
        status, event_id = await self._call("accept", keys, args)
        return status.decode(), event_id.decode()

    # -- workers -----------------------------------------------------------------------------

    async def lease_due(self, now: float, lease: float, limit: int, worker: str) -> list[Lease]:
        """Lease due deliveries and expired leases (one script a round); dead-letter unreadable."""
        leases: list[Lease] = []
        dead = 0
        # The payload is opened here, not in Lua: an unreadable event is found after its
        # delivery was leased, dead-lettered under that lease, and leasing goes on past it.
        while len(leases) < limit and dead < POISON_BUDGET:
            rows = await self._call(
                "lease",
                [f"{self._p}due", f"{self._p}leased"],
                [_t(now), _t(now + lease), limit - len(leases), uuid.uuid4().hex, worker],
            )
            if not rows:
                break
            for did, dflat, eflat in rows:
                d = _pairs(dflat)
                try:
                    event = _event(_pairs(eflat), self._ring)
                except UnreadableEvent as exc:
                    dead += 1
                    await self._dead_letter_unreadable(did.decode(), d, now, str(exc))
                    continue
                first = d.get("first")
                leases.append(
                    Lease(
                        delivery_id=did.decode(),
                        event=event,
                        destination=d["dest"].decode(),
                        attempt=int(d["made"]) + 1,
                        token=d["token"].decode(),
                        expires_at=float(d["lexp"]),
                        first_attempt_at=None if first is None else float(first),
                        created_at=float(d["created"]),
                    )
                )
        return leases

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

    async def _finish(
        self, mode: str, lease: Lease, attempt: Attempt, at: float, reason: str = ""
    ) -> bool:
        return await self._finish_raw(mode, lease.delivery_id, lease.token, attempt, at, reason)

    async def _finish_raw(
        self, mode: str, delivery_id: str, token: str, attempt: Attempt, at: float, reason: str
    ) -> bool:
        """Run finish.lua: leave the leased state if ``token`` still holds the delivery."""
        result = await self._call(
            "finish",
            [f"{self._p}dl:{delivery_id}"],
            [
                mode,
                delivery_id,
                token,
                attempt.bounded().to_json(),
                _t(attempt.started_at),
                _t(at),
                excerpt(reason),
            ],
        )
        return bool(result)

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

    # -- operator ----------------------------------------------------------------------------

    async def _find_uid(self, event_id: str, source: str | None) -> str | None:
        """The newest stored event with this id (and source, when given)."""
        async with self._errors():
            uids = cast(list[bytes], await self._r.zrevrange(f"{self._p}id:{event_id}", 0, -1))
            if source is None:
                return uids[0].decode() if uids else None
            for uid in uids:
                if await self._r.hget(f"{self._p}ev:{uid.decode()}", "source") == source.encode():
                    return uid.decode()
        return None

    async def replay(
        self, event_id: str, destinations: Sequence[str], now: float, source: str | None = None
    ) -> list[str]:
        """New deliveries of a stored event, due now, whatever dedupe says."""
        uid = await self._find_uid(event_id, source)
        if uid is None:
            raise EventNotFound(event_id)
        delivery_ids = [uuid.uuid4().hex for _ in destinations]
        found = await self._call(
            "replay",
            [f"{self._p}ev:{uid}"],
            [_t(now), uid, len(destinations), *destinations, *delivery_ids],
        )
        if not found:
            raise EventNotFound(event_id)
        return delivery_ids

    async def redrive(self, delivery_ids: Sequence[str] | None, now: float) -> int:
        """Make dead deliveries due now with their attempt count reset."""
        dead = f"{self._p}dead"
        if delivery_ids is not None:
            return int(await self._call("redrive", [dead], [_t(now), *delivery_ids]))
        moved = 0
        while True:
            async with self._errors():
                batch = await self._r.zrange(dead, 0, _REDRIVE_BATCH - 1)
            if not batch:
                return moved
            n = int(await self._call("redrive", [dead], [_t(now), *batch]))
            if n == 0:
                return moved
            moved += n

    async def prune(self, before: float, limit: int) -> int:
        """Delete up to ``limit`` finished events received before ``before``, in one script."""
        if limit < 1:
            return 0
        return int(await self._call("prune", [f"{self._p}events"], [_t(before), limit]))

    async def get_event(self, event_id: str, source: str | None = None) -> EventView | None:
        """An event with its deliveries and all their attempts."""
        uid = await self._find_uid(event_id, source)
        if uid is None:
            return None
        async with self._errors():
            e = cast(dict[bytes, bytes], await self._r.hgetall(f"{self._p}ev:{uid}"))
            evd = cast(list[bytes], await self._r.lrange(f"{self._p}evd:{uid}", 0, -1))
            dids = [d.decode() for d in evd]
            pipe = self._r.pipeline(transaction=False)
            for did in dids:
                pipe.hgetall(f"{self._p}dl:{did}")
                pipe.lrange(f"{self._p}at:{did}", 0, -1)
            replies = await pipe.execute()
        if not e:
            return None
        fields = {k.decode(): v for k, v in e.items()}
        deliveries = []
        for i, did in enumerate(dids):
            d = {k.decode(): v for k, v in replies[2 * i].items()}
            state = d["state"].decode()
            dead_at = d.get("dead_at")
            deliveries.append(
                DeliveryView(
                    id=did,
                    destination=d["dest"].decode(),
                    state=one_of(state, DELIVERY_STATES, "delivery state"),
                    attempts_made=int(d["made"]),
                    created_at=float(d["created"]),
                    next_attempt_at=float(d["next"]) if state == "due" else None,
                    dead_reason=_s(d.get("reason")),
                    dead_at=None if dead_at is None else float(dead_at),
                    attempts=tuple(Attempt.from_json(a) for a in replies[2 * i + 1]),
                )
            )
        return EventView(
            event=_event(fields, self._ring),
            mode=one_of(fields["mode"].decode(), MODES, "mode"),
            status=one_of(fields["status"].decode(), EVENT_STATUSES, "event status"),
            deliveries=tuple(deliveries),
        )

    async def _page(
        self,
        zkey: str,
        cursor: str | None,
        limit: int,
        load: Callable[[list[str]], Awaitable[list[T | None]]],
    ) -> tuple[list[T], str | None]:
        """Walk a zset newest first after ``cursor``, keeping what ``load`` does not filter out.

        Stops after ``limit`` items, or after a bounded scan (then the page may be short while
        the cursor is not ``None``). Ties in score are ordered by member, descending, as Redis
        orders them and as the SQLite store does.
        """
        after: tuple[float, str] | None = decode_cursor(cursor) if cursor else None
        top = repr(after[0]) if after else "+inf"
        budget = max(20 * limit, 1000)
        found: list[tuple[T, float, str]] = []
        offset = scanned = 0
        last: tuple[float, str] | None = None
        while scanned < budget:
            async with self._errors():
                batch = cast(
                    list[tuple[bytes, float]],
                    await self._r.zrevrangebyscore(
                        zkey, top, "-inf", start=offset, num=_SCAN_CHUNK, withscores=True
                    ),
                )
            if not batch:
                return [item for item, _, _ in found], None
            offset += len(batch)
            members = []
            for raw, score in batch:
                member = raw.decode()
                if after and score == after[0] and member >= after[1]:
                    continue
                members.append((member, float(score)))
            items = await load([m for m, _ in members]) if members else []
            for (member, score), item in zip(members, items, strict=True):
                scanned += 1
                last = (score, member)
                if item is None:
                    continue
                found.append((item, score, member))
                if len(found) > limit:
                    _, score, member = found[limit - 1]
                    return [item for item, _, _ in found[:limit]], encode_cursor(score, member)
        page = [item for item, _, _ in found]
        return page, encode_cursor(*last) if last else None

    async def list_events(
        self,
        *,
        source: str | None = None,
        status: EventStatus | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[EventSummary], str | None]:
        """Events newest first, filtered by source and status."""
        if status is not None:
            zkey = f"{self._p}events:st:{status}"
        elif source is not None:
            zkey = f"{self._p}events:src:{source}"
        else:
            zkey = f"{self._p}events"

        async def load(uids: list[str]) -> list[EventSummary | None]:
            async with self._errors():
                pipe = self._r.pipeline(transaction=False)
                for uid in uids:
                    pipe.hmget(
                        f"{self._p}ev:{uid}",
                        ["id", "source", "type", "subject", "received_at", "status", "mode"],
                    )
                rows = await pipe.execute()
            out: list[EventSummary | None] = []
            for row in rows:
                if row[0] is None:
                    out.append(None)
                    continue
                summary = EventSummary(
                    id=row[0].decode(),
                    source=row[1].decode(),
                    type=_s(row[2]),
                    subject=_s(row[3]),
                    received_at=float(row[4]),
                    status=one_of(row[5].decode(), EVENT_STATUSES, "event status"),
                    mode=one_of(row[6].decode(), MODES, "mode"),
                )
                keep = (source is None or summary.source == source) and (
                    status is None or summary.status == status
                )
                out.append(summary if keep else None)
            return out

        return await self._page(zkey, cursor, limit, load)

    async def list_dead_letters(
        self, *, destination: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[DeadLetter], str | None]:
        """Dead deliveries, most recently dead first."""

        async def load(dids: list[str]) -> list[DeadLetter | None]:
            async with self._errors():
                pipe = self._r.pipeline(transaction=False)
                for did in dids:
                    pipe.hmget(
                        f"{self._p}dl:{did}", ["dest", "ev", "made", "dead_at", "reason", "state"]
                    )
                    pipe.lindex(f"{self._p}at:{did}", -1)
                rows = await pipe.execute()
                pipe = self._r.pipeline(transaction=False)
                for i in range(len(dids)):
                    uid = rows[2 * i][1] or b"-"
                    pipe.hmget(f"{self._p}ev:{uid.decode()}", ["id", "source"])
                events = await pipe.execute()
            out: list[DeadLetter | None] = []
            for i, did in enumerate(dids):
                d, last = rows[2 * i], rows[2 * i + 1]
                if d[5] != b"dead" or (destination is not None and d[0] != destination.encode()):
                    out.append(None)
                    continue
                out.append(
                    DeadLetter(
                        delivery_id=did,
                        event_id=events[i][0].decode(),
                        source=events[i][1].decode(),
                        destination=d[0].decode(),
                        attempts_made=int(d[2]),
                        dead_at=float(d[3]),
                        reason=(d[4] or b"").decode(),
                        last_attempt=None if last is None else Attempt.from_json(last),
                    )
                )
            return out

        return await self._page(f"{self._p}dead", cursor, limit, load)

    async def queue_depth(self) -> dict[tuple[str, str], int]:
        """Deliveries per (destination, state) for due, leased and dead."""
        async with self._errors():
            raw = cast(dict[bytes, bytes], await self._r.hgetall(f"{self._p}depth"))
        depth: dict[tuple[str, str], int] = {}
        for field, count in raw.items():
            destination, _, state = field.decode().rpartition("\n")
            if state in DEPTH_STATES and int(count) > 0:
                depth[(destination, state)] = int(count)
        return depth

    def rate_limiter(self) -> Limiter:
        """One limit shared by every process and replica, on this store's Redis client."""
        # A slow Redis must not stall ingress: after 250 ms the source's on_store_error decides.
        return RedisLimiter(self._r, timeout=RATE_LIMIT_TIMEOUT)

    async def ping(self) -> None:
        """Ask Redis for PONG."""
        async with self._errors():
            await self._r.ping()

    async def close(self) -> None:
        """Close the connection pool (and the connections to the Sentinels)."""
        async with self._errors():
            try:
                await self._r.aclose()
            finally:
                if self._sentinel is not None:
                    await self._sentinel.aclose()


def _sentinel_client(target: SentinelURL, options: dict[str, Any]) -> tuple[Sentinel, Redis]:
    """The Sentinel clients for ``target`` and a client of the master they name.

    Both sides get the store's socket timeouts, so an unreachable Sentinel is skipped after
    the connect timeout at most rather than hanging discovery.
    """
    tls: dict[str, Any] = {"ssl": True}
    if target.ssl_ca_certs is not None:
        tls["ssl_ca_certs"] = target.ssl_ca_certs
    sentinel_kwargs: dict[str, Any] = {
        **options,
        # No retries against one Sentinel: discovery moves on to the next one itself, and
        # redis-py's default (ten tries with backoff) made a dead first Sentinel cost seconds.
        "retry": Retry(NoBackoff(), 0),
        "username": target.sentinel_username,
        "password": target.sentinel_password,
        **(tls if target.sentinel_tls else {}),
    }
    hosts = list(target.sentinels)
    # redis-py leaves Sentinel.__init__ unannotated; the arguments are as documented there.
    sentinel = Sentinel(hosts, sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]
    # TLS keys only when TLS is on: the plain connection class refuses ssl_* arguments.
    master = sentinel.master_for(
        target.service_name,
        db=target.db,
        username=target.username,
        password=target.password,
        **options,
        **(tls if target.tls else {}),
    )
    return sentinel, cast(Redis, master)


def _event(fields: dict[str, bytes], ring: KeyRing | None) -> Event:
    """An ``Event`` from its hash (payload decrypted when sealed); ``UnreadableEvent`` if not."""
    try:
        source, event_id = fields["source"].decode(), fields["id"].decode()
        sealed_body, sealed_headers = bytes(fields["body"]), fields["headers"]
        type_, subject, time_ = (_s(fields.get(name)) for name in ("type", "subject", "time"))
        dedupe_key = fields["dedupe_key"].decode()
        request_id = fields["request_id"].decode()
        received_at = float(fields["received_at"])
    except (KeyError, ValueError) as exc:  # a field missing or mangled (UnicodeDecodeError too)
        raise UnreadableEvent(f"stored event is corrupt ({type(exc).__name__})") from None
    body, headers = open_payload(ring, source, event_id, sealed_body, sealed_headers)
    return Event(
        id=event_id,
        source=source,
        type=type_,
        subject=subject,
        time=time_,
        dedupe_key=dedupe_key,
        body=body,
        headers=headers,
        request_id=request_id,
        received_at=received_at,
    )
