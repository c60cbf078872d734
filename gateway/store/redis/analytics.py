"""The Redis store's analytics reads (design.md 5.9): each source's day hashes of every
partition, summed (``rollup.lua`` writes them in the script of each change)."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.analytics.rollup import Rollup
from gateway.store.redis.core import RedisCore


class RedisAnalytics(RedisCore):
    """The rollups' one read: every field of every hour in a range."""

    async def rollups(self, first_hour: int, last_hour: int, sources: Sequence[str]) -> Rollup:
        """The rollups of hours ``first_hour`` to ``last_hour`` (both included) of
        ``sources``, summed: one ``HGETALL`` per (partition, source, day), one round trip."""
        wanted = [
            (day, source, keys)
            for day in range(first_hour // 24, last_hour // 24 + 1)
            for source in dict.fromkeys(sources)
            for keys in self._parts
        ]
        replies = await self._pipeline(
            lambda pipe: [pipe.hgetall(keys.rollups(source, day)) for day, source, keys in wanted]
        )
        rollup = Rollup()
        for (day, _, _), fields in zip(wanted, replies, strict=True):
            for raw_name, raw_value in fields.items():
                hh, _, name = raw_name.decode().partition("|")
                hour = day * 24 + int(hh)
                if not first_hour <= hour <= last_hour:
                    continue
                if name.startswith("am|"):
                    scale, _, currency = name[3:].partition("|")
                    rollup.add_amount(hour, currency, int(scale), int(raw_value))
                else:
                    rollup.add(hour, name, int(raw_value))
        return rollup
