"""The Redis store's payments (design.md 5.7): the Payments view's reads.

A payment's state is written by ``accept.lua`` (with ``payment.lua``) in the step that accepts
its event; each payment and its events live in the partition of (source, payment key). The
list walks the index its filter names (``payments``, ``payments:src:``, ``payments:st:``,
``payments:conflict``) of every partition, merged newest first; a search unites the
``lex:paykey`` and ``lex:payref`` ranges; the payments with a dead letter are found from the
dead-lettered events. ``delivered`` and the ``dead_letter`` attention are read from the
payment's events' statuses, never kept twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

from gateway.payments.amounts import Amount
from gateway.payments.states import STATES, State
from gateway.store.records import (
    SEARCH_LIMIT,
    TIMELINE_LIMIT,
    Attention,
    EventView,
    PaymentView,
    decode_cursor,
    encode_cursor,
    one_of,
)
from gateway.store.redis.codec import text_or_none
from gateway.store.redis.keys import PartitionKeys
from gateway.store.redis.views import RedisViews

_FIELDS = ["source", "key", "reference", "state", "value", "scale", "currency", "events",
           "first", "updated", "conflict", "missing"]  # fmt: skip


class RedisPayments(RedisViews):
    """Payments by latest update, filtered, and one payment with its events."""

    def _payment_keys(self, member: str) -> PartitionKeys:
        source, _, key = member.partition("\n")
        return self._parts[self.partition_of(source, key)]

    async def _payment_views(self, members: Sequence[str]) -> list[PaymentView | None]:
        """The payments named by ``members`` (``<source>\\n<key>``), ``None`` for one gone."""
        heads = await self._pipeline(
            lambda pipe: [
                (
                    pipe.hmget(self._payment_keys(m).payment(m), _FIELDS),
                    pipe.zrange(self._payment_keys(m).payment_events(m), 0, -1),
                )
                for m in members
            ]
        )
        uids = [[raw.decode() for raw in heads[2 * n + 1]] for n in range(len(members))]
        statuses = await self._pipeline(
            lambda pipe: [
                pipe.hget(self._keys_of_uid(uid).ev(uid), "status")
                for group in uids
                for uid in group
            ]
        )
        out: list[PaymentView | None] = []
        seen = iter(statuses)
        for n in range(len(members)):
            row = heads[2 * n]
            mine = {next(seen) for _ in uids[n]}
            if row[0] is None or row[3] is None:
                out.append(None)
                continue
            out.append(_view(row, mine))
        return out

    async def list_payments(
        self,
        *,
        source: str | None = None,
        state: State | None = None,
        q: str | None = None,
        attention: Attention | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[PaymentView], str | None]:
        """Payments, latest update first, filtered (see the module's docstring)."""

        def keep(view: PaymentView) -> bool:
            return (
                (source is None or view.source == source)
                and (state is None or view.state == state)
                and (attention is None or view.attention == attention)
            )

        if q or attention == "dead_letter":
            found = await (self._search_payments(q) if q else self._dead_lettered())
            return await self._ranked(found, keep, limit, cursor)
        zkey: Callable[[PartitionKeys], str]
        if attention == "conflict":
            zkey = lambda keys: keys.payments_conflict  # noqa: E731
        elif state is not None:
            zkey = lambda keys: keys.payments_state(state)  # noqa: E731
        elif source is not None:
            zkey = lambda keys: keys.payments_source(source)  # noqa: E731
        else:
            zkey = lambda keys: keys.payments  # noqa: E731

        async def load(batch: list[tuple[float, str]]) -> list[PaymentView | None]:
            views = await self._payment_views([member for _, member in batch])
            return [v if v is not None and keep(v) else None for v in views]

        return await self._page(zkey, cursor, limit, load)

    async def _search_payments(self, q: str) -> set[str]:
        """Payments whose key or reference starts with ``q`` (``SEARCH_LIMIT`` per index)."""
        low, high = b"[" + q.encode(), b"(" + q.encode() + b"\xff"
        replies = await self._pipeline(
            lambda pipe: [
                pipe.zrangebylex(index, low, high, start=0, num=SEARCH_LIMIT)
                for keys in self._parts
                for index in (keys.lex_payment_key, keys.lex_payment_reference)
            ]
        )
        return {m.decode().partition("\n")[2] for reply in replies for m in reply}

    async def _dead_lettered(self) -> set[str]:
        """Payments with a dead-lettered event (dead letters are few: ``SEARCH_LIMIT`` per
        partition are read)."""
        replies = await self._pipeline(
            lambda pipe: [
                pipe.zrevrange(keys.status["dead_lettered"], 0, SEARCH_LIMIT - 1)
                for keys in self._parts
            ]
        )
        uids = [raw.decode() for reply in replies for raw in reply]
        rows = await self._pipeline(
            lambda pipe: [
                pipe.hmget(self._keys_of_uid(uid).ev(uid), ["source", "payment_key"])
                for uid in uids
            ]
        )
        return {f"{s.decode()}\n{k.decode()}" for s, k in rows if s is not None and k is not None}

    async def _ranked(
        self,
        members: set[str],
        keep: Callable[[PaymentView], bool],
        limit: int,
        cursor: str | None,
    ) -> tuple[list[PaymentView], str | None]:
        """Of ``members``, the page after ``cursor``, latest update first."""
        after = decode_cursor(cursor) if cursor else None
        ordered = sorted(members)
        found = [
            (v.updated_at, m, v)
            for m, v in zip(ordered, await self._payment_views(ordered), strict=True)
            if v is not None and keep(v)
        ]
        found.sort(key=lambda item: (item[0], item[1]), reverse=True)
        if after is not None:
            found = [item for item in found if (item[0], item[1]) < after]
        page = found[:limit]
        more = len(found) > limit
        return [v for _, _, v in page], encode_cursor(page[-1][0], page[-1][1]) if more else None

    async def find_payments(self, keys: Sequence[tuple[str, str]]) -> list[PaymentView | None]:
        """The payment of each ``(source, key)`` (``None`` where there is none): two pipelined
        round trips for all of them (the payments, then their events' statuses)."""
        if not keys:
            return []
        return await self._payment_views([f"{source}\n{key}" for source, key in keys])

    async def get_payment(
        self, source: str, key: str
    ) -> tuple[PaymentView, list[EventView]] | None:
        """The payment and its events in the order received (the last ``TIMELINE_LIMIT``)."""
        member = f"{source}\n{key}"
        [view] = await self._payment_views([member])
        if view is None:
            return None
        keys = self._payment_keys(member)
        async with self._errors():
            raw = cast(
                list[bytes],
                await self._r.zrevrange(keys.payment_events(member), 0, TIMELINE_LIMIT - 1),
            )
        events = [await self._view(uid.decode()) for uid in reversed(raw)]
        return view, [e for e in events if e is not None]


def _view(row: Sequence[Any], statuses: set[bytes | None]) -> PaymentView:
    """A ``PaymentView`` from an HMGET of ``_FIELDS`` and its events' statuses."""
    dead = b"dead_lettered" in statuses
    attention: Attention | None = None
    if row[10] == b"1":
        attention = "conflict"
    elif dead:
        attention = "dead_letter"
    elif row[11] == b"1":
        attention = "missing"
    amount = None
    if row[4] is not None and row[5] is not None and row[6] is not None:
        amount = Amount(int(row[4]), int(row[5]), row[6].decode())
    return PaymentView(
        source=row[0].decode(),
        key=row[1].decode(),
        reference=text_or_none(row[2]),
        state=one_of(row[3].decode(), STATES, "payment state"),
        amount=amount,
        events=int(row[7] or 0),
        delivered=b"delivered" in statuses and b"queued" not in statuses and not dead,
        attention=attention,
        first_seen=float(row[8]),
        updated_at=float(row[9]),
    )
