"""The Redis store's reads for the admin API and the dashboard: every partition, merged.

Lists and look-ups by id merge the partitions newest first (``PartitionMerge``: one sorted set
of each partition, read in chunks); a search unites the ``lex:`` ranges; the last hour's figures
sum the ``stats:`` hashes of every partition. Every such key is written by the script that
accepts the event or records the attempt, on the partition's own node. The payments' reads are
in ``payments.py``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar, cast

from gateway.payments.states import MARKS
from gateway.store.records import (
    DELIVERY_STATES,
    DEPTH_STATES,
    EVENT_STATUSES,
    MODES,
    SEARCH_LIMIT,
    Attempt,
    Change,
    DeadLetter,
    DeliveryView,
    EventStatus,
    EventSummary,
    EventView,
    change_order,
    decode_cursor,
    encode_cursor,
    one_of,
)
from gateway.store.redis.codec import event_of, text_or_none
from gateway.store.redis.core import RedisCore
from gateway.store.redis.keys import CHANGES_KEY, PartitionKeys, uid_of
from gateway.store.stats import WINDOW_MINUTES, Stats, minute_of

T = TypeVar("T")

#: Members of one partition's sorted set a merge reads at a time.
SCAN_CHUNK = 200
_SUMMARY_FIELDS = [
    "id", "source", "type", "subject", "received_at", "status", "mode", "body_status", "attempts",
]  # fmt: skip


class RedisViews(RedisCore):
    """Events, lists, payments, timelines, figures, the change log and the queue's depth."""

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
                    dead_reason=text_or_none(d.get("reason")),
                    dead_at=None if dead_at is None else float(dead_at),
                    attempts=tuple(Attempt.from_json(a) for a in replies[2 * i + 1]),
                )
            )
        mark = fields.get("mark")
        return EventView(
            event=event_of(fields, self._ring),
            mode=one_of(fields["mode"].decode(), MODES, "mode"),
            status=one_of(fields["status"].decode(), EVENT_STATUSES, "event status"),
            deliveries=tuple(deliveries),
            payment_key=text_or_none(fields.get("payment_key")),
            mark=None if mark is None else one_of(mark.decode(), MARKS, "mark"),
        )

    async def _page(
        self,
        zkey: Callable[[PartitionKeys], str],
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
        merged = PartitionMerge(self, [zkey(keys) for keys in self._parts], top, after)
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
                    type=text_or_none(row[2]),
                    subject=text_or_none(row[3]),
                    received_at=float(row[4]),
                    status=one_of(row[5].decode(), EVENT_STATUSES, "event status"),
                    mode=one_of(row[6].decode(), MODES, "mode"),
                    body_status=text_or_none(row[7]),
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
        zkey: Callable[[PartitionKeys], str]
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


class PartitionMerge:
    """The members of several sorted sets (one per partition), newest first, merged: each set
    read in chunks, the first chunks of all in one round trip."""

    def __init__(
        self, store: RedisCore, zkeys: list[str], top: str, after: tuple[float, str] | None
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
        if len(reply) < SCAN_CHUNK:
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
                    num=SCAN_CHUNK,
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
