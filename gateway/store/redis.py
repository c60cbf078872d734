"""The shared store: Redis or Redis Cluster, for replicas on many hosts (DESIGN 5.4, 7).

URLs: ``redis://host:port/db``, ``rediss://...`` (TLS); ``redis+cluster://host:port`` or
``rediss+cluster://...`` for Redis Cluster (any node as the seed); and
``redis+sentinel://[[user]:password@]host1:26379,host2:26379/<service>[/<db>][?options]`` or
``rediss+sentinel://...`` (TLS to the master) for a master that Redis Sentinel watches
(``gateway.redisio.sentinel`` documents the form and its options). Connecting is lazy: opening
the store does not need Redis up; ``ping`` (``/readyz``) says whether it is.

With Sentinel, every new connection first asks a Sentinel for the current master, so after a
failover the store (and the rate limiter sharing its client) reconnects to the promoted replica
by itself: calls fail with ``StoreError`` while no master is known, then work again.

Atomicity: every operation that changes more than one key is one Lua script (the ``*.lua``
files beside this module, each prefixed with ``prelude.lua``). Redis runs a script without
interleaving anything else, so e.g. ``accept`` checks the dedupe key, writes the event and
enqueues its deliveries, or does nothing at all.

Partitions (``store.partitions``, DESIGN 5.4): the store is N independent parts, each under
the hash tag of its own prefix, ``wg:{q}:`` for one partition and ``wg:{q0}:`` ...
``wg:{q<N-1>}:`` for more. An event lives with its deliveries, attempts, dedupe entry and
indexes in the partition of a stable hash of (source, dedupe key), so a duplicate always meets
its original, and each script touches one partition: on a Redis Cluster the partitions spread
over the masters and writes grow with them. Every key a script touches is passed in ``KEYS``
(the cluster contract): event ids (``uid``) start with their partition's number and delivery ids
with their event's uid, so the keys of a delivery are known before a script runs. Workers read
due deliveries from every partition in one batched round trip, starting from a different
partition each time, then lease with one script per partition that has some. Lists and
look-ups by id merge the partitions newest first. The partition count is recorded in
``wg:meta`` on first use, and a store opened with another count is refused (the other count
would look for duplicates in the wrong partition).

Keys of one partition, under its prefix::

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
    events, events:src:<source>, events:st:<status>, events:type:<type>, id:<event id>,
    subj:ev:<subject>           zset  event uids by received_at, for lists and look-ups
    lex:id, lex:subj            zset  "<id or subject>\\n<uid>" at score 0: prefix search
    subjects                    zset  "s:<subject>" (or "e:<uid>" for an event without one) by
                                      its latest event in the partition, for the payments view
    subj:<member>               hash  latest (uid), n (events), subject: within the partition
    stats:<minute>              hash  per-minute counters and latency buckets (2 h TTL)

A subject's events may lie in several partitions (the partition follows the dedupe key, not
the subject), so the dashboard's reads merge: the payments view walks every partition's
``subjects`` newest first and shows a subject once, at its newest partition's entry, with the
events of all partitions summed; a timeline merges the ``subj:ev:`` sets; a search unites the
``lex:`` ranges; the last hour's figures sum the ``stats:`` hashes of every partition. Every
such key is written by the script that accepts the event or records the attempt, on the
partition's own node.

Change log (the live stream, DESIGN 5.6): one capped stream, ``wg:{q}:changes``, for the
whole store. Its ids are the order a client resumes from with ``Last-Event-ID``, across
processes and replicas; streams per partition would live on different masters, whose ids
come from different clocks and interleave, so no single id could say where a client stands.
With more than one partition, the entry is appended (``log.lua``) right after the script that
made the change answers, not inside it (that script may only touch its partition's slot): a
crash between the two loses that live message, never the event or its outcome, which the views
read from the partitions. With one partition the log shares the partition's hash tag, so
``accept.lua`` appends the entries of a new event itself, after all its other writes.

Backoff marks: ``wg:{q}:backoff`` (beside the change log, one hash for the whole store) holds
the destinations that had a retry scheduled since their last success. A success takes its
destination's mark and releases the backlog (``retry_now.lua``, batch by batch over every
partition: deliveries of that destination due later than now become due now). With one
partition ``finish.lua`` keeps the marks itself, in the partition's slot; with more, the
``log.lua`` call that follows it does.

The (source, id) check of ``accept`` (an id seen under another dedupe key) sees the events of
the partition the new event hashes to; with one partition that is every event.

Retention: ``prune.lua`` deletes finished events a batch at a time, per partition, walking the
``events:st:delivered`` and ``events:st:unrouted`` indexes by received_at; ``dd:`` and ``sid:``
keys are left to their own TTLs.

Dedupe windows and claim leases are checked against the caller's clock (the ``exp`` field), as
the stores take time from the caller; each such key also gets a Redis TTL of the window plus
a minute, so expired keys disappear without a sweeper.

Durability is Redis's: run it with ``appendonly yes`` and ``appendfsync always`` to lose
nothing that was answered 202, or ``appendfsync everysec`` to risk up to one second of accepted
events on a crash of the Redis host (a crash of the gateway loses nothing either way). With
replication (a Sentinel-watched master, or a cluster whose masters have replicas), a failover
can lose the last writes the replica had not yet received, unless ``store.wait_replicas`` is
set: then an accept is answered only once that many replicas confirm it (``WAIT`` on the
connection that wrote it, ``gateway.redisio.pipeline``), and a 503 tells the sender to retry
when they do not within ``store.wait_timeout``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any, Literal, TypeVar, cast

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import Sentinel
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from gateway.errors import EventNotFound, StoreError
from gateway.jsontext import dumpb, dumps
from gateway.ratelimit.limiter import Limiter
from gateway.ratelimit.redis_limiter import GCRA_FUNCTION, RedisLimiter, decision_of, redis_key
from gateway.redisio.connect import connect
from gateway.redisio.packing import use_hiredis_packing
from gateway.redisio.pipeline import AutoPipeline
from gateway.store.crypto import KeyRing, open_payload, seal_payload
from gateway.store.records import (
    ACCEPT_STATUSES,
    BACKLOG_BATCH,
    CLAIMS,
    DELIVERY_STATES,
    DEPTH_STATES,
    EVENT_STATUSES,
    MODES,
    POISON_BUDGET,
    SEARCH_LIMIT,
    TIMELINE_LIMIT,
    AcceptLimit,
    AcceptResult,
    Attempt,
    Change,
    Claim,
    DeadLetter,
    DeliveryView,
    Event,
    EventStatus,
    EventSummary,
    EventView,
    Lease,
    LimitReached,
    PaymentSummary,
    UnreadableEvent,
    body_status_of,
    change_order,
    decode_cursor,
    encode_cursor,
    excerpt,
    log_backlog_released,
    one_of,
)
from gateway.store.stats import WINDOW_MINUTES, Stats, latency_bucket, minute_of
from gateway.store.urls import describe_schemes, store_kind
from gateway.store.wakeups import RedisWakeups

log = logging.getLogger("gateway.store")

T = TypeVar("T")

#: Where the partition count is recorded (no hash tag: read once, from any node).
META_KEY = "wg:meta"
# Redis TTLs run on Redis's clock, the logical expiry on the caller's: keep keys a little
# longer than the window so clock skew between replicas never drops one early.
_TTL_SLACK_MS = 60_000
_REDRIVE_BATCH = 500
#: Candidates one retry_now.lua call re-checks and moves.
_RETRY_BATCH = 500
_PRUNE_READ = 100
_SCAN_CHUNK = 200
#: Seconds a rate-limit check may take before ``on_store_error`` decides.
RATE_LIMIT_TIMEOUT = 0.25
#: The change log of the whole store (see "Change log" above) and its approximate cap.
CHANGES_KEY = "wg:{q}:changes"
CHANGES_CAP = 10_000
#: Destinations with a retry scheduled since their last success (``log.lua``, ``finish.lua``):
#: one hash for the whole store, beside the change log.
BACKOFF_KEY = "wg:{q}:backoff"
_SUMMARY_FIELDS = [
    "id", "source", "type", "subject", "received_at", "status", "mode", "body_status", "attempts",
]  # fmt: skip
_SCRIPTS = (
    "accept", "claim", "release", "due", "lease", "finish", "replay", "redrive", "retry_now",
    "prune", "log", "wake",
)  # fmt: skip
_STATUSES = ("queued", "delivered", "dead_lettered", "unrouted")


#: What a Redis call can fail with (refused, timed out, a script error): a ``StoreError``.
_STORE_FAILURES = (TimeoutError, RedisError, OSError)


#: The fields of a delivery's hash and of its event's hash that a lease reads (``lease.lua``
#: answers them in this order; the hashes hold more, for the dashboard and the admin API).
_LEASE_DELIVERY_FIELDS = ("dest", "made", "token", "lexp", "first", "created")
_LEASE_EVENT_FIELDS = (
    "source", "id", "body", "headers", "type", "subject", "time", "dedupe_key", "request_id",
    "received_at", "body_status",
)  # fmt: skip


def _script(name: str) -> str:
    """The text of a store script with the shared prelude in front (and for accept and claim,
    the rate limiter's ``gcra``, for the per-source limit they may decide first; for lease,
    the fields it reads)."""
    here = resources.files("gateway.store")
    prelude = here.joinpath("prelude.lua").read_text()
    if name in ("accept", "claim"):
        prelude += GCRA_FUNCTION
    if name == "lease":
        prelude += f"local DFIELDS = {_lua_list(_LEASE_DELIVERY_FIELDS)}\n"
        prelude += f"local EFIELDS = {_lua_list(_LEASE_EVENT_FIELDS)}\n"
    return prelude + here.joinpath(f"{name}.lua").read_text()


def _lua_list(names: Sequence[str]) -> str:
    return "{" + ", ".join(f"'{name}'" for name in names) + "}"


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


def _present(names: Sequence[str], values: Sequence[bytes | None]) -> dict[str, bytes]:
    """An HMGET reply of ``names`` as a dict of the fields the hash has."""
    return {name: value for name, value in zip(names, values, strict=True) if value is not None}


def _subject_member(subject: str | None, uid: str) -> str:
    """An event's entry in the subjects index: its subject's, or its own without one."""
    return f"e:{uid}" if subject is None else f"s:{subject}"


def partition_of(source: str, dedupe_key: str, partitions: int) -> int:
    """The partition of an event: a stable hash of (source, dedupe key), so a duplicate
    always lands where its original is (the same in every process and every release)."""
    if partitions == 1:
        return 0
    digest = hashlib.blake2b(f"{source}\n{dedupe_key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % partitions


def uid_of(delivery_id: str) -> str:
    """The uid of the event a delivery belongs to (a delivery id is ``<uid>:<suffix>``)."""
    return delivery_id.rpartition(":")[0]


class _Keys:
    """The key names of one partition: every key a script is given is made here."""

    def __init__(self, index: int, partitions: int) -> None:
        self.index = index
        self.prefix = "wg:{q}:" if partitions == 1 else f"wg:{{q{index}}}:"
        p = self.prefix
        self.due, self.leased, self.dead, self.depth = (
            p + "due",
            p + "leased",
            p + "dead",
            p + "depth",
        )
        self.events = p + "events"
        self.status = {st: f"{p}events:st:{st}" for st in _STATUSES}
        #: What every state-changing script takes first, in prelude.lua's order.
        self.shared = [
            self.due, self.leased, self.dead, self.depth, self.events,
            *(self.status[st] for st in _STATUSES),
        ]  # fmt: skip

    def dd(self, source: str, dedupe_key: str) -> str:
        return f"{self.prefix}dd:{source}\n{dedupe_key}"

    def sid(self, source: str, event_id: str) -> str:
        return f"{self.prefix}sid:{source}\n{event_id}"

    def ev(self, uid: str) -> str:
        return f"{self.prefix}ev:{uid}"

    def evd(self, uid: str) -> str:
        return f"{self.prefix}evd:{uid}"

    def dl(self, delivery_id: str) -> str:
        return f"{self.prefix}dl:{delivery_id}"

    def at(self, delivery_id: str) -> str:
        return f"{self.prefix}at:{delivery_id}"

    def src(self, source: str) -> str:
        return f"{self.prefix}events:src:{source}"

    def ids(self, event_id: str) -> str:
        return f"{self.prefix}id:{event_id}"

    def type(self, type_: str) -> str:
        return f"{self.prefix}events:type:{type_}"

    def subject_events(self, subject: str) -> str:
        return f"{self.prefix}subj:ev:{subject}"

    @property
    def lex_id(self) -> str:
        return f"{self.prefix}lex:id"

    @property
    def lex_subject(self) -> str:
        return f"{self.prefix}lex:subj"

    @property
    def subjects(self) -> str:
        return f"{self.prefix}subjects"

    def subject(self, member: str) -> str:
        return f"{self.prefix}subj:{member}"

    def stats(self, minute: int) -> str:
        return f"{self.prefix}stats:{minute}"

    def new_uid(self) -> str:
        # 32 random hex digits, as uuid4().hex gave, at a sixth of its cost (the UUID object
        # and its version bits are not needed here).
        return f"{self.index}.{os.urandom(16).hex()}"


class RedisStore:
    """The Redis implementation of ``Store``; open it with ``RedisStore.open``."""

    def __init__(
        self,
        client: Redis | RedisCluster,
        ring: KeyRing | None = None,
        *,
        partitions: int = 1,
        sentinel: Sentinel | None = None,
        wait_replicas: int = 0,
        wait_timeout: float = 1.0,
    ) -> None:
        if partitions < 1:
            raise ValueError("partitions must be at least 1")
        self._r = client
        # Decided once: an isinstance check against redis-py's client classes goes through a
        # Protocol metaclass (about 1 us), too slow to repeat on the request path.
        self._cluster = isinstance(client, RedisCluster)
        use_hiredis_packing(client)
        # The Sentinel clients that find the master; the store owns them and closes them.
        self._sentinel = sentinel
        self._ring = ring
        self._parts = [_Keys(index, partitions) for index in range(partitions)]
        self._checked = False
        self._next_start = 0
        self._scripts: dict[str, AsyncScript] = {
            name: client.register_script(_script(name)) for name in _SCRIPTS
        }
        # Concurrent requests' script calls share one round trip (the rate limiter's too).
        # An accept is answered only once ``wait_replicas`` replicas have it (Redis WAIT).
        self._batch = AutoPipeline(client, replicas=wait_replicas, replica_timeout=wait_timeout)
        # A slow Redis must not stall ingress: after 250 ms the source's on_store_error decides.
        self._limiter = RedisLimiter(client, timeout=RATE_LIMIT_TIMEOUT, pipeline=self._batch)
        # Ingress-only processes wake the delivering ones through this Redis; on a single
        # Redis the announcement goes in the script batches, as a cluster's cannot (it names
        # no key, so no slot says which master would take it).
        self._wakeups = RedisWakeups(client, publish=None if self._cluster else self._announce)

    async def _announce(self, channel: str) -> None:
        await self._batch.call(self._scripts["wake"], [], [channel])

    @property
    def client(self) -> Redis | RedisCluster:
        """The Redis client, shared with what else keeps state in Redis (the rate limiter)."""
        return self._r

    @property
    def _log_inline(self) -> bool:
        """Whether accept.lua and finish.lua append the change-log entries themselves: with
        one partition the log shares its hash tag (see "Change log")."""
        return len(self._parts) == 1

    @property
    def partitions(self) -> int:
        """How many partitions the store is made of."""
        return len(self._parts)

    def partition_of(self, source: str, dedupe_key: str) -> int:
        """The partition an event with this (source, dedupe key) lives in."""
        return partition_of(source, dedupe_key, len(self._parts))

    def _keys_of_uid(self, uid: str) -> _Keys:
        head, dot, _ = uid.partition(".")
        index = int(head) if dot and head.isdigit() else 0
        if index >= len(self._parts):
            raise StoreError(f"event {uid} names a partition this store does not have")
        return self._parts[index]

    @classmethod
    async def open(
        cls,
        url: str,
        ring: KeyRing | None = None,
        *,
        partitions: int = 1,
        wait_replicas: int = 0,
        wait_timeout: float = 1.0,
    ) -> RedisStore:
        """A store on the Redis (Sentinel-watched master, or Redis Cluster) a URL names.

        With a ``ring``, event bodies and headers are written encrypted (``store.crypto``).
        The partition count is checked against the one the store recorded now if Redis
        answers, else before the first operation.
        """
        kind = store_kind(url)
        if kind is None or kind == "sqlite":
            raise StoreError(f"store.url: not a Redis URL (one of {describe_schemes()})")
        clients = connect(url, kind)
        store = cls(
            clients.client,
            ring,
            partitions=partitions,
            sentinel=clients.sentinel,
            wait_replicas=wait_replicas,
            wait_timeout=wait_timeout,
        )
        try:
            await store._check_partitions()
            async with store._errors():
                await store._batch.load([*store._scripts.values(), store._limiter.script])
        except PartitionMismatch:
            await store.close()
            raise
        except StoreError:
            pass  # Redis is not up yet: checked before the first operation instead
        return store

    async def _check_partitions(self) -> None:
        """Record the partition count on first use; refuse a store made with another one."""
        if self._checked:
            return
        async with self._errors():
            await self._r.hsetnx(META_KEY, "partitions", len(self._parts))
            recorded = await self._r.hget(META_KEY, "partitions")
        if recorded is None or int(recorded) != len(self._parts):
            raise PartitionMismatch(
                f"store.partitions is {len(self._parts)}, but this store was created with"
                f" {recorded!r} partitions; changing the count would split dedupe, so the"
                " gateway refuses to start (set it back, or drain and empty the store first)"
            )
        self._checked = True

    @asynccontextmanager
    async def _errors(self) -> AsyncIterator[None]:
        """Every Redis failure (refused, timed out, script error) as a StoreError."""
        try:
            yield
        except _STORE_FAILURES as exc:
            raise StoreError(f"Redis store failed: {exc}") from exc

    async def _call(
        self, name: str, keys: Sequence[str], args: Sequence[Any], *, durable: bool = False
    ) -> Any:
        """Run one store script (EVALSHA, loading it when the server lacks it).

        ``durable``: answer only once the replicas ``store.wait_replicas`` asks for have it.
        """
        if not self._checked:
            await self._check_partitions()
        # What ``_errors`` does, inline: on the path of every request, a context manager made
        # of a generator costs more than the script call's own Python.
        try:
            return await self._batch.call(self._scripts[name], keys, args, durable=durable)
        except _STORE_FAILURES as exc:
            raise StoreError(f"Redis store failed: {exc}") from exc

    async def _pipeline(self, fill: Callable[[Any], object]) -> list[Any]:
        """One round trip (per node) of the plain commands ``fill`` queues on a pipeline."""
        if not self._checked:
            await self._check_partitions()
        async with self._errors():
            pipe = self._r.pipeline(transaction=False)
            fill(pipe)
            replies: list[Any] = await pipe.execute()
            return replies

    # -- queued and sync mode ----------------------------------------------------------------

    async def accept(
        self,
        event: Event,
        destinations: Sequence[str],
        window: float,
        now: float,
        limit: AcceptLimit | None = None,
    ) -> AcceptResult:
        """Dedupe, persist and enqueue, in one script (which decides ``limit`` first)."""
        status, event_id = await self._store_event(
            "queued", event, destinations, window, now, limit=limit
        )
        return AcceptResult(one_of(status, ACCEPT_STATUSES, "accept status"), event_id)

    async def claim(
        self,
        source: str,
        dedupe_key: str,
        lease: float,
        now: float,
        limit: AcceptLimit | None = None,
    ) -> Claim:
        """Take the dedupe key for ``lease`` seconds, unless it is claimed or done; in the same
        script, ``limit`` first (as accept.lua does)."""
        keys = self._parts[self.partition_of(source, dedupe_key)]
        script_keys = [keys.dd(source, dedupe_key)]
        args = [_t(now), _t(now + lease), _ttl_ms(lease)]
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
        keys = self._parts[self.partition_of(source, dedupe_key)]
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
    ) -> tuple[str, str]:
        """Run accept.lua; the status and event id it answers.

        With one partition the change-log entries are appended by accept.lua itself (the log
        shares that partition's hash tag), saving a second script call per event; with more,
        by ``log.lua`` right after it answers (see "Change log"). With a ``limit`` (a single
        Redis only: its key has a hash tag of its own), the script decides it before writing
        anything, on the server's clock as ``RedisLimiter`` does: ``LimitReached``.
        """
        keys = self._parts[self.partition_of(event.source, event.dedupe_key)]
        uid = keys.new_uid()
        body, headers = seal_payload(self._ring, event.source, event.id, event.body, event.headers)
        received_at = _t(event.received_at)
        fields = [
            "id", event.id,
            "source", event.source,
            "dedupe_key", event.dedupe_key,
            "request_id", event.request_id,
            "received_at", received_at,
            "mode", mode,
        ]  # fmt: skip
        for name, value in (
            ("type", event.type),
            ("subject", event.subject),
            ("time", event.time),
            ("body_status", body_status_of(event.body_status)),
        ):
            if value is not None:
                fields += [name, value]
        delivery_ids = [f"{uid}:{os.urandom(6).hex()}" for _ in destinations]
        member = _subject_member(event.subject, uid)
        packed: dict[str, object] = {
            "mode": mode,
            "now": _t(now),
            "expires": _t(now + window),
            "ttl": str(_ttl_ms(window)),
            "uid": uid,
            "id": event.id,
            "received_at": received_at,
            "fields": fields,
            "dests": list(destinations),
            "dids": delivery_ids,
            "member": member,
        }
        ended = now
        if attempt is not None:
            ended = attempt.started_at + attempt.latency
            packed["attempt"] = attempt.to_json()
            packed["started_at"] = _t(attempt.started_at)
            packed["bucket"] = str(latency_bucket(attempt.latency))
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
            keys.subjects,
            keys.subject(member),
            keys.stats(minute_of(now)),
            keys.stats(minute_of(ended)),
            *(keys.dl(did) for did in delivery_ids),
            *(keys.at(did) for did in delivery_ids),
        ]
        if event.type is not None:
            script_keys.append(keys.type(event.type))
        if event.subject is not None:
            script_keys.append(keys.subject_events(event.subject))
        change: dict[str, object] = {
            "event_id": event.id,
            "source": event.source,
            "type": event.type,
            "subject": event.subject,
            "status": body_status_of(event.body_status),
        }
        entries: list[tuple[str, dict[str, object]]] = [("accepted", change)]
        if attempt is not None:
            entries += [
                ("delivery", {**change, "destination": d, "attempt": attempt.number,
                              "result": "delivered"})
                for d in destinations
            ]  # fmt: skip
        inline = self._log_inline
        if inline:
            # Each entry's JSON without its closing brace: the script adds the event's status.
            packed["cap"] = str(CHANGES_CAP)
            packed["log"] = [(kind, dumps(data)[:-1]) for kind, data in entries]
            script_keys.append(CHANGES_KEY)
        if limit is not None:
            packed["limit"] = [str(limit.rule.interval_us), str(limit.rule.burst)]
            script_keys.append(self._limit_key(limit))
        reply = await self._call(
            "accept", script_keys, [dumpb(packed), body, headers], durable=True
        )
        status = reply[0].decode()
        if status == "rate_limited" and limit is not None:
            raise LimitReached(decision_of(reply[1:], limit.rule))
        event_id = reply[1].decode()
        if status == "queued":
            event_status = reply[2].decode()
            if not inline:
                await self._log_changes(
                    [(kind, {**data, "event_status": event_status}) for kind, data in entries]
                )
            elif not int(reply[3]):
                log.warning("change log: an entry of event %s was not written", event.id)
        return status, event_id

    async def _log_changes(
        self,
        entries: Sequence[tuple[str, dict[str, object]]],
        mark: Literal["", "mark", "take"] = "",
        destination: str = "",
    ) -> bool:
        """Append to the change log after the change itself was stored (see "Change log"),
        and keep ``destination``'s backoff mark: ``mark`` after a retry, ``take`` after a
        success (``True`` when that took one: the caller releases the backlog).

        A failure here is logged, not raised: the change is stored, only its live message (or
        an early release of a backlog, which then waits out its backoff) is lost, and failing
        the call would make a sender resend what was accepted.
        """
        args: list[Any] = [CHANGES_CAP, mark, destination]
        for kind, data in entries:
            args += [kind, dumpb(data)]
        try:
            return bool(await self._call("log", [CHANGES_KEY, BACKOFF_KEY], args))
        except StoreError as exc:
            log.warning("change log: an entry was not written: %s", exc)
            return False

    # -- workers -----------------------------------------------------------------------------

    async def lease_due(self, now: float, lease: float, limit: int, worker: str) -> list[Lease]:
        """Lease due deliveries and expired leases from every partition, fairly.

        One batched read of every partition's due and leased sets (``due.lua``), then one
        script per partition with candidates, starting from a different partition each call,
        until ``limit`` are leased. A delivery whose event cannot be read is dead-lettered and
        leasing goes on past it (up to ``POISON_BUDGET`` of them in one call).
        """
        leases: list[Lease] = []
        unreadable = 0
        while len(leases) < limit and unreadable < POISON_BUDGET:
            got, dead = await self._lease_round(now, lease, limit - len(leases), worker)
            leases += got
            unreadable += dead
            if not dead:
                break
        return leases

    async def _lease_round(
        self, now: float, lease: float, limit: int, worker: str
    ) -> tuple[list[Lease], int]:
        """One read of every partition and the scripts it calls for: leases and how many
        unreadable deliveries were dead-lettered on the way."""
        count = len(self._parts)
        start = self._next_start
        self._next_start = (start + 1) % count
        order = [self._parts[(start + n) % count] for n in range(count)]
        stamp = _t(now)

        args = [stamp, limit]
        if count == 1:
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
            rows = await self._call(
                "lease",
                script_keys,
                [stamp, _t(now + lease), os.urandom(16).hex(), worker, *candidates],
            )
            for did, dvalues, evalues in rows:
                d = _present(_LEASE_DELIVERY_FIELDS, dvalues)
                delivery_id = did.decode()
                try:
                    event = _event(_present(_LEASE_EVENT_FIELDS, evalues), self._ring)
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
        return leases, unreadable

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
        reply = await self._call(
            "finish",
            script_keys,
            [
                mode,
                delivery_id,
                token,
                attempt.bounded().to_json(),
                _t(attempt.started_at),
                _t(at),
                excerpt(reason),
                latency_bucket(attempt.latency),
                CHANGES_CAP if inline else "",
                attempt.number,
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
        change: dict[str, object] = {
            "event_id": event_id,
            "source": source,
            "type": type_,
            "subject": subject,
            "status": body_status,
            "event_status": status,
            "destination": destination,
            "attempt": attempt.number,
            "result": result,
        }
        mark: Literal["", "mark", "take"] = (
            "take" if mode == "complete" else "mark" if mode == "reschedule" else ""
        )
        assert destination is not None
        if await self._log_changes([("delivery", change)], mark, destination):
            await self._release_backlog(destination, at)
        return True

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
        self, keys: _Keys, destination: str, now: float, budget: int | None
    ) -> int:
        """Make up to ``budget`` (``None``: all) of the destination's deliveries in this
        partition that wait out a backoff due at ``now``; how many were moved."""
        moved = skipped = 0
        while budget is None or moved < budget:
            want = _RETRY_BATCH if budget is None else min(_RETRY_BATCH, budget - moved)
            async with self._errors():
                # Moved ones leave the range (their score becomes now); the ones skipped, of
                # other destinations, stay in it, so the next read starts past them.
                raw = await self._r.zrangebyscore(
                    keys.due, f"({_t(now)}", "+inf", start=skipped, num=want
                )
            dids = [b.decode() for b in cast(list[bytes], raw)]
            if not dids:
                break
            reply = await self._call(
                "retry_now",
                [*keys.shared, *(keys.dl(did) for did in dids)],
                [_t(now), destination, *dids],
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

    # -- operator ----------------------------------------------------------------------------

    async def _find_uid(self, event_id: str, source: str | None) -> str | None:
        """The newest stored event with this id (and source, when given), in any partition."""
        replies = await self._pipeline(
            lambda pipe: [
                pipe.zrevrange(keys.ids(event_id), 0, -1, withscores=True) for keys in self._parts
            ]
        )
        found = sorted(
            ((score, raw.decode()) for reply in replies for raw, score in reply), reverse=True
        )
        if source is None:
            return found[0][1] if found else None
        for _, uid in found:
            async with self._errors():
                owner = await self._r.hget(self._keys_of_uid(uid).ev(uid), "source")
            if owner == source.encode():
                return str(uid)
        return None

    async def replay(
        self, event_id: str, destinations: Sequence[str], now: float, source: str | None = None
    ) -> list[str]:
        """New deliveries of a stored event, due now, whatever dedupe says."""
        uid = await self._find_uid(event_id, source)
        if uid is None:
            raise EventNotFound(event_id)
        keys = self._keys_of_uid(uid)
        delivery_ids = [f"{uid}:{os.urandom(6).hex()}" for _ in destinations]
        found = await self._call(
            "replay",
            [*keys.shared, keys.ev(uid), keys.evd(uid), *(keys.dl(d) for d in delivery_ids)],
            [_t(now), uid, len(destinations), *destinations, *delivery_ids],
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
                for n in range(0, len(dids), _REDRIVE_BATCH):
                    moved += await self._redrive_batch(
                        self._parts[index], dids[n : n + _REDRIVE_BATCH], now
                    )
            return moved
        moved = 0
        for keys in self._parts:
            while True:
                async with self._errors():
                    dead = cast(list[bytes], await self._r.zrange(keys.dead, 0, _REDRIVE_BATCH - 1))
                if not dead:
                    break
                n = await self._redrive_batch(keys, [b.decode() for b in dead], now)
                if n == 0:
                    break
                moved += n
        return moved

    async def _redrive_batch(self, keys: _Keys, dids: Sequence[str], now: float) -> int:
        script_keys = list(keys.shared)
        for did in dids:
            script_keys += [keys.dl(did), keys.ev(uid_of(did))]
        return int(await self._call("redrive", script_keys, [_t(now), *dids]))

    async def prune(self, before: float, limit: int) -> int:
        """Delete up to ``limit`` finished events received before ``before``, oldest first
        over every partition: one read of the candidates, then per partition one script that
        re-checks and deletes them."""
        pruned = 0
        while pruned < limit:
            done = await self._prune_round(before, min(limit - pruned, _PRUNE_READ))
            if not done:
                break
            pruned += done
        return pruned

    async def _prune_round(self, before: float, want: int) -> int:
        cut = f"({_t(before)}"
        replies = await self._pipeline(
            lambda pipe: [
                pipe.zrangebyscore(keys.status[st], "-inf", cut, start=0, num=want, withscores=True)
                for keys in self._parts
                for st in ("delivered", "unrouted")
            ]
        )
        ranked = sorted(
            (float(score), n // 2, raw.decode())
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

    async def _prune_partition(self, keys: _Keys, before: float, uids: list[str]) -> int:
        details = await self._pipeline(
            lambda pipe: [
                (
                    pipe.hmget(keys.ev(uid), ["source", "id", "type", "subject"]),
                    pipe.lrange(keys.evd(uid), 0, -1),
                )
                for uid in uids
            ]
        )
        script_keys = [*keys.shared, keys.lex_id, keys.lex_subject, keys.subjects]
        args: list[Any] = [_t(before)]
        for n, uid in enumerate(uids):
            (source, event_id, type_, subject), dids = details[2 * n], details[2 * n + 1]
            if source is None or event_id is None:
                continue
            member = _subject_member(_s(subject), uid)
            script_keys += [
                keys.ev(uid),
                keys.evd(uid),
                keys.src(source.decode()),
                keys.ids(event_id.decode()),
                keys.subject(member),
            ]
            if type_ is not None:
                script_keys.append(keys.type(type_.decode()))
            if subject is not None:
                script_keys.append(keys.subject_events(subject.decode()))
            for raw in dids:
                script_keys += [keys.dl(raw.decode()), keys.at(raw.decode())]
            args += [uid, len(dids), int(type_ is not None), int(subject is not None), member]
        if len(args) == 1:
            return 0
        return int(await self._call("prune", script_keys, args))

    async def get_event(self, event_id: str, source: str | None = None) -> EventView | None:
        """An event with its deliveries and all their attempts."""
        uid = await self._find_uid(event_id, source)
        return None if uid is None else await self._view(uid)

    async def _view(self, uid: str) -> EventView | None:
        """The event stored under ``uid`` with its deliveries, or ``None`` if it is gone."""
        keys = self._keys_of_uid(uid)
        async with self._errors():
            e = cast(dict[bytes, bytes], await self._r.hgetall(keys.ev(uid)))
            evd = cast(list[bytes], await self._r.lrange(keys.evd(uid), 0, -1))
        dids = [d.decode() for d in evd]
        replies = await self._pipeline(
            lambda pipe: [
                (pipe.hgetall(keys.dl(did)), pipe.lrange(keys.at(did), 0, -1)) for did in dids
            ]
        )
        if not e:
            return None
        fields = {k.decode(): v for k, v in e.items()}
        deliveries = []
        for i, did in enumerate(dids):
            d = {k.decode(): v for k, v in replies[2 * i].items()}
            state = one_of(d["state"].decode(), DELIVERY_STATES, "delivery state")
            dead_at = d.get("dead_at")
            deliveries.append(
                DeliveryView(
                    id=did,
                    destination=d["dest"].decode(),
                    state=state,
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
        zkey: Callable[[_Keys], str],
        cursor: str | None,
        limit: int,
        load: Callable[[list[tuple[float, str]]], Awaitable[list[T | None]]],
    ) -> tuple[list[T], str | None]:
        """Walk one sorted set of every partition newest first, merged, after ``cursor``,
        keeping what ``load`` (given each (score, member)) does not filter out.

        Stops after ``limit`` items, or after a bounded scan (then the page may be short while
        the cursor is not ``None``). Ties in score are ordered by member, descending, as the
        SQLite store orders them, so a cursor means the same in both.
        """
        after: tuple[float, str] | None = decode_cursor(cursor) if cursor else None
        top = repr(after[0]) if after else "+inf"
        merged = _Merge(self, [zkey(keys) for keys in self._parts], top, after)
        budget = max(20 * limit, 1000)
        found: list[tuple[T, float, str]] = []
        scanned = 0
        last: tuple[float, str] | None = None
        while scanned < budget:
            batch = await merged.take(min(limit + 1 - len(found), budget - scanned) or 1)
            if not batch:
                return [item for item, _, _ in found], None
            items = await load(batch)
            for (score, member), item in zip(batch, items, strict=True):
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

    async def subject_timeline(self, subject: str) -> list[EventView]:
        """The subject's events in the order received (every partition's subj:ev index,
        merged), with their deliveries."""
        replies = await self._pipeline(
            lambda pipe: [
                pipe.zrevrange(keys.subject_events(subject), 0, TIMELINE_LIMIT - 1, withscores=True)
                for keys in self._parts
            ]
        )
        newest = sorted(
            ((float(score), raw.decode()) for reply in replies for raw, score in reply),
            reverse=True,
        )[:TIMELINE_LIMIT]
        views = [await self._view(uid) for _, uid in reversed(newest)]
        return [v for v in views if v is not None]

    async def _summaries(self, uids: Sequence[str]) -> list[EventSummary | None]:
        """The list lines of events by uid (``None`` for one gone meanwhile)."""
        rows = await self._pipeline(
            lambda pipe: [
                pipe.hmget(self._keys_of_uid(uid).ev(uid), _SUMMARY_FIELDS) for uid in uids
            ]
        )
        out: list[EventSummary | None] = []
        for row in rows:
            if row[0] is None:
                out.append(None)
                continue
            out.append(
                EventSummary(
                    id=row[0].decode(),
                    source=row[1].decode(),
                    type=_s(row[2]),
                    subject=_s(row[3]),
                    received_at=float(row[4]),
                    status=one_of(row[5].decode(), EVENT_STATUSES, "event status"),
                    mode=one_of(row[6].decode(), MODES, "mode"),
                    body_status=_s(row[7]),
                    attempts=int(row[8] or 0),
                )
            )
        return out

    async def list_events(
        self,
        *,
        source: str | None = None,
        status: EventStatus | None = None,
        limit: int = 50,
        cursor: str | None = None,
        type: str | None = None,
        q: str | None = None,
    ) -> tuple[list[EventSummary], str | None]:
        """Events newest first, filtered by source, status, type and an id or subject prefix."""

        def keep(summary: EventSummary) -> bool:
            return (
                (source is None or summary.source == source)
                and (status is None or summary.status == status)
                and (type is None or summary.type == type)
            )

        if q:
            return await self._search(q, keep, limit, cursor)
        zkey: Callable[[_Keys], str]
        if status is not None:
            zkey = lambda keys: keys.status[status]  # noqa: E731
        elif type is not None:
            zkey = lambda keys: keys.type(type)  # noqa: E731
        elif source is not None:
            zkey = lambda keys: keys.src(source)  # noqa: E731
        else:
            zkey = lambda keys: keys.events  # noqa: E731

        async def load(batch: list[tuple[float, str]]) -> list[EventSummary | None]:
            summaries = await self._summaries([uid for _, uid in batch])
            return [s if s is not None and keep(s) else None for s in summaries]

        return await self._page(zkey, cursor, limit, load)

    async def _search(
        self,
        q: str,
        keep: Callable[[EventSummary], bool],
        limit: int,
        cursor: str | None,
    ) -> tuple[list[EventSummary], str | None]:
        """Events whose id or subject starts with ``q`` (every partition's lex:id and lex:subj
        ranges), newest first: at most ``SEARCH_LIMIT`` matches per index are considered."""
        after = decode_cursor(cursor) if cursor else None
        low, high = b"[" + q.encode(), b"(" + q.encode() + b"\xff"
        replies = await self._pipeline(
            lambda pipe: [
                pipe.zrangebylex(index, low, high, start=0, num=SEARCH_LIMIT)
                for keys in self._parts
                for index in (keys.lex_id, keys.lex_subject)
            ]
        )
        ordered = sorted({m.rpartition(b"\n")[2].decode() for reply in replies for m in reply})
        found = [
            (s.received_at, uid, s)
            for uid, s in zip(ordered, await self._summaries(ordered), strict=True)
            if s is not None and keep(s)
        ]
        found.sort(key=lambda item: (item[0], item[1]), reverse=True)
        if after is not None:
            found = [item for item in found if (item[0], item[1]) < after]
        page = found[:limit]
        more = len(found) > limit
        return [s for _, _, s in page], encode_cursor(page[-1][0], page[-1][1]) if more else None

    async def list_payments(
        self, *, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[PaymentSummary], str | None]:
        """Subjects by latest event, newest first: every partition's subjects index, merged.

        A subject with events in several partitions has an entry in each; it is shown once,
        at the newest of them (the others are skipped when the walk meets them), with the
        events of every partition counted.
        """
        shown: set[str] = set()

        async def load(batch: list[tuple[float, str]]) -> list[PaymentSummary | None]:
            members = [member for _, member in batch]
            count = len(self._parts)
            heads = await self._pipeline(
                lambda pipe: [
                    (
                        pipe.zscore(keys.subjects, member),
                        pipe.hmget(keys.subject(member), ["latest", "n", "subject"]),
                    )
                    for member in members
                    for keys in self._parts
                ]
            )
            latest: list[tuple[str, float, int, str | None] | None] = []
            for m, (score, member) in enumerate(batch):
                best: tuple[float, str] | None = None
                events, subject = 0, None
                for n in range(count):
                    found = heads[2 * (m * count + n)]
                    uid, number, name = heads[2 * (m * count + n) + 1]
                    events += int(number or 0)
                    subject = subject or _s(name)
                    if found is not None and uid is not None and (best is None or found > best[0]):
                        best = (float(found), uid.decode())
                # Shown at its newest entry only: an older partition's entry is met later.
                if best is None or best[0] > score or member in shown:
                    latest.append(None)
                else:
                    latest.append((best[1], best[0], events, subject))
            rows = await self._pipeline(
                lambda pipe: [
                    pipe.hmget(
                        self._keys_of_uid(head[0]).ev(head[0]),
                        ["id", "source", "type", "body_status", "status", "received_at"],
                    )
                    for head in latest
                    if head is not None
                ]
            )
            out: list[PaymentSummary | None] = []
            replies = iter(rows)
            for member, head in zip(members, latest, strict=True):
                if head is None:
                    out.append(None)
                    continue
                e = next(replies)
                if e[0] is None:
                    out.append(None)
                    continue
                shown.add(member)
                out.append(
                    PaymentSummary(
                        subject=head[3],
                        event_id=e[0].decode(),
                        source=e[1].decode(),
                        type=_s(e[2]),
                        body_status=_s(e[3]),
                        status=one_of(e[4].decode(), EVENT_STATUSES, "event status"),
                        events=head[2],
                        latest_at=float(e[5]),
                    )
                )
            return out

        return await self._page(lambda keys: keys.subjects, cursor, limit, load)

    async def stats(self, now: float) -> Stats:
        """The per-minute counter hashes of the last hour, of every partition, summed."""
        last = minute_of(now)
        minutes_wanted = range(last - WINDOW_MINUTES + 1, last + 1)
        replies = await self._pipeline(
            lambda pipe: [
                pipe.hgetall(keys.stats(minute))
                for minute in minutes_wanted
                for keys in self._parts
            ]
        )
        minutes: dict[int, dict[str, int]] = {}
        latency: dict[int, int] = {}
        count = len(self._parts)
        for n, raw in enumerate(replies):
            minute = minutes_wanted[n // count]
            for field, value in cast(dict[bytes, bytes], raw).items():
                name = field.decode()
                if name.startswith("lat"):
                    bucket = int(name[3:])
                    latency[bucket] = latency.get(bucket, 0) + int(value)
                else:
                    counters = minutes.setdefault(minute, {})
                    counters[name] = counters.get(name, 0) + int(value)
        return Stats(now, minutes, latency)

    async def changes(self, after: str | None, limit: int) -> list[Change]:
        """Change-log entries after ``after`` (stream ids), or the latest one."""
        if not self._checked:
            await self._check_partitions()
        async with self._errors():
            if after is None or change_order(after) < (0, 0):
                reply = await self._r.xrevrange(CHANGES_KEY, count=1)
            else:
                reply = await self._r.xrange(CHANGES_KEY, min="(" + after, count=limit)
        rows = cast(list[tuple[bytes, dict[bytes, bytes]]], reply or [])
        out = []
        for entry_id, fields in rows:
            kind = fields.get(b"kind", b"")
            out.append(
                Change(
                    entry_id.decode(),
                    "delivery" if kind == b"delivery" else "accepted",
                    json.loads(fields.get(b"data", b"{}")),
                )
            )
        return out

    async def list_dead_letters(
        self, *, destination: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[DeadLetter], str | None]:
        """Dead deliveries, most recently dead first."""

        async def load(batch: list[tuple[float, str]]) -> list[DeadLetter | None]:
            dids = [did for _, did in batch]
            keyed = [(did, self._keys_of_uid(uid_of(did))) for did in dids]
            rows = await self._pipeline(
                lambda pipe: [
                    (
                        pipe.hmget(k.dl(did), ["dest", "ev", "made", "dead_at", "reason", "state"]),
                        pipe.lindex(k.at(did), -1),
                        pipe.hmget(k.ev(uid_of(did)), ["id", "source"]),
                    )
                    for did, k in keyed
                ]
            )
            out: list[DeadLetter | None] = []
            for i, did in enumerate(dids):
                d, last, event = rows[3 * i], rows[3 * i + 1], rows[3 * i + 2]
                if d[5] != b"dead" or (destination is not None and d[0] != destination.encode()):
                    out.append(None)
                    continue
                out.append(
                    DeadLetter(
                        delivery_id=did,
                        event_id=event[0].decode(),
                        source=event[1].decode(),
                        destination=d[0].decode(),
                        attempts_made=int(d[2]),
                        dead_at=float(d[3]),
                        reason=(d[4] or b"").decode(),
                        last_attempt=None if last is None else Attempt.from_json(last),
                    )
                )
            return out

        return await self._page(lambda keys: keys.dead, cursor, limit, load)

    async def queue_depth(self) -> dict[tuple[str, str], int]:
        """Deliveries per (destination, state) for due, leased and dead, over every partition."""
        replies = await self._pipeline(
            lambda pipe: [pipe.hgetall(keys.depth) for keys in self._parts]
        )
        depth: dict[tuple[str, str], int] = {}
        for raw in replies:
            for field, count in cast(dict[bytes, bytes], raw).items():
                destination, _, state = field.decode().rpartition("\n")
                if state in DEPTH_STATES and int(count) > 0:
                    depth[(destination, state)] = depth.get((destination, state), 0) + int(count)
        return depth

    def rate_limiter(self) -> Limiter:
        """One limit shared by every process and replica, on this store's Redis client (its
        script loaded at open with the store's)."""
        return self._limiter

    def wakeups(self) -> RedisWakeups:
        """Pub/Sub wake-ups on this store's database (a cluster's too)."""
        return self._wakeups

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

    async def ping(self) -> None:
        """Ask Redis for PONG (and check the partition count once it answers)."""
        async with self._errors():
            await self._r.ping()
        await self._check_partitions()

    async def close(self) -> None:
        """Close the connection pool (and the connections to the Sentinels)."""
        await self._wakeups.close()
        self._batch.close()
        async with self._errors():
            try:
                await self._r.aclose()
            finally:
                if self._sentinel is not None:
                    await self._sentinel.aclose()


class PartitionMismatch(StoreError):
    """``store.partitions`` differs from the count the store was created with."""


class _Merge:
    """The members of several sorted sets (one per partition), newest first, merged: each set
    read in chunks, the first chunks of all in one round trip."""

    def __init__(
        self, store: RedisStore, zkeys: list[str], top: str, after: tuple[float, str] | None
    ) -> None:
        self._store = store
        self._zkeys = zkeys
        self._top = top
        self._after = after
        self._buffers: list[list[tuple[float, str]]] = [[] for _ in zkeys]
        self._offsets = [0] * len(zkeys)
        self._done = [False] * len(zkeys)
        self._started = False

    def _fill(self, index: int, reply: list[tuple[bytes, float]]) -> None:
        self._offsets[index] += len(reply)
        if len(reply) < _SCAN_CHUNK:
            self._done[index] = True
        for raw, score in reply:
            member = raw.decode()
            if self._after and score == self._after[0] and member >= self._after[1]:
                continue
            self._buffers[index].append((float(score), member))

    async def _read(self, indexes: list[int]) -> None:
        replies = await self._store._pipeline(
            lambda pipe: [
                pipe.zrevrangebyscore(
                    self._zkeys[i],
                    self._top,
                    "-inf",
                    start=self._offsets[i],
                    num=_SCAN_CHUNK,
                    withscores=True,
                )
                for i in indexes
            ]
        )
        for i, reply in zip(indexes, replies, strict=True):
            self._fill(i, reply)

    async def take(self, count: int) -> list[tuple[float, str]]:
        """The next ``count`` members (fewer at the end), greatest (score, member) first."""
        if not self._started:
            self._started = True
            await self._read(list(range(len(self._zkeys))))
        out: list[tuple[float, str]] = []
        while len(out) < count:
            empty = [i for i, b in enumerate(self._buffers) if not b and not self._done[i]]
            if empty:
                await self._read(empty)
                continue
            heads = [(b[0], i) for i, b in enumerate(self._buffers) if b]
            if not heads:
                break
            _, index = max(heads)
            out.append(self._buffers[index].pop(0))
        return out


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
        body_status=_s(fields.get("body_status")),
    )
