"""Last-hour figures kept by the store: counts per minute and a delivery latency histogram.

Both stores add to per-minute counters in the same transaction or script that accepts an event
or records an attempt (a partitioned Redis store keeps them per partition and sums them on
read), so every process and replica reads the same numbers. A minute is
``floor(t / 60)`` of the caller's clock. Latencies go into log-spaced buckets (each bound
``LATENCY_RATIO`` times the one before, from 1 ms), so p50 and p99 are read from counts
with at most that ratio of error, and a query costs the same whatever the traffic. Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

#: The counters kept per minute (an attempt counts once, under its result; an event no
#: route takes counts as accepted and as unrouted).
COUNTERS = ("accepted", "unrouted", "delivered", "retried", "dead_lettered")
#: Minutes of history the figures cover and the stores keep.
WINDOW_MINUTES = 60
#: Ratio between successive latency bucket bounds, and how many buckets there are.
LATENCY_RATIO = 1.25
LATENCY_BUCKETS = 80


def minute_of(t: float) -> int:
    """The minute (unix seconds // 60) a time falls in."""
    return int(t // 60)


def latency_bucket(seconds: float) -> int:
    """The histogram bucket of a latency: the first whose bound (ms) is not below it."""
    ms = max(seconds * 1000.0, 0.0)
    if ms <= 1.0:
        return 0
    return min(LATENCY_BUCKETS - 1, math.ceil(math.log(ms) / math.log(LATENCY_RATIO)))


def bucket_bound(bucket: int) -> float:
    """The upper bound of a bucket, in milliseconds."""
    return float(LATENCY_RATIO**bucket)


@dataclass(frozen=True)
class Stats:
    """What a store counted over the last hour: per-minute counters and latency buckets."""

    now: float
    #: ``minute -> counter -> count`` for the minutes that saw anything.
    minutes: Mapping[int, Mapping[str, int]]
    #: ``bucket -> attempts`` over the hour.
    latency: Mapping[int, int]

    def series(self, counter: str) -> list[int]:
        """The counter for each of the last ``WINDOW_MINUTES`` minutes, oldest first."""
        last = minute_of(self.now)
        return [
            self.minutes.get(m, {}).get(counter, 0)
            for m in range(last - WINDOW_MINUTES + 1, last + 1)
        ]

    def total(self, counter: str) -> int:
        """The counter summed over the hour."""
        return sum(self.series(counter))

    def success_ratio(self) -> float | None:
        """Share of the hour's finished deliveries that were delivered; ``None`` if none finished.

        A delivery finishes when it is delivered or dead-lettered; a retry is an attempt, not
        an outcome, so a flaky destination that delivers on the second try still counts as
        delivered, not as one success in two.
        """
        delivered = self.total("delivered")
        finished = delivered + self.total("dead_lettered")
        return None if finished == 0 else delivered / finished

    def latency_percentile(self, q: float) -> float | None:
        """The bound (ms) of the bucket holding the ``q`` quantile of attempt latencies."""
        count = sum(self.latency.values())
        if count == 0:
            return None
        rank = max(1, math.ceil(q * count))
        seen = 0
        for bucket in sorted(self.latency):
            seen += self.latency[bucket]
            if seen >= rank:
                return bucket_bound(bucket)
        return bucket_bound(max(self.latency))
