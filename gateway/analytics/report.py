"""The analytics report (design.md 5.9) built from hourly rollups: buckets of an hour, a day
or a week aligned in UTC (a week starts on Monday), each with its payments by state, its
completed amounts per currency, its success ratio, its time to completion and its
deliveries, and the same over the whole range (``totals``). Pure: no I/O.

Amounts stay exact: each (currency, scale) sum is a whole number of minor units, and the sums
of one currency at different scales are added as whole numbers at the largest scale among
them, and written with it. Percentiles come from the rollups' log-spaced bins
(``rollup.percentile``).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from gateway import times
from gateway.analytics.rollup import Rollup, percentile
from gateway.payments.amounts import Amount

Bucket = Literal["hour", "day", "week"]
BUCKETS: tuple[Bucket, ...] = ("hour", "day", "week")
_SECONDS = {"hour": 3600, "day": 86400, "week": 7 * 86400}
#: 1970-01-01 was a Thursday: the first Monday, 00:00 UTC, is day 4.
_MONDAY = 4 * 86400
TERMINAL_COUNTED = ("completed", "failed", "expired", "cancelled")
CSV_COLUMNS = (
    "start", "currency", "completed_amount", "first_seen", "completed", "failed", "expired",
    "cancelled", "success_ratio", "ttc_p50_s", "ttc_p90_s", "delivered", "dead_lettered",
)  # fmt: skip


def floor_to(t: float, bucket: Bucket) -> int:
    """The start (Unix seconds) of the bucket ``t`` falls in."""
    size = _SECONDS[bucket]
    offset = _MONDAY if bucket == "week" else 0
    return int((t - offset) // size) * size + offset


def bucket_starts(start: float, end: float, bucket: Bucket) -> list[int]:
    """The starts of the buckets covering ``start`` (inclusive) to ``end`` (exclusive)."""
    first, size = floor_to(start, bucket), _SECONDS[bucket]
    return list(range(first, max(int(end), first + 1), size)) if end > start else [first]


@dataclass
class _Sums:
    """One bucket (or the totals) summed from its hours."""

    counts: dict[str, int] = field(default_factory=dict)
    amounts: dict[tuple[str, int], int] = field(default_factory=dict)

    def add(self, rollup: Rollup, hour: int) -> None:
        for name, n in rollup.counts.get(hour, {}).items():
            self.counts[name] = self.counts.get(name, 0) + n
        for key, value in rollup.amounts.get(hour, {}).items():
            self.amounts[key] = self.amounts.get(key, 0) + value

    def count(self, name: str) -> int:
        return self.counts.get(name, 0)

    def bins(self, prefix: str) -> dict[int, int]:
        return {int(k[len(prefix) :]): n for k, n in self.counts.items() if k.startswith(prefix)}

    def currencies(self) -> dict[str, str]:
        """Completed amounts per currency, as decimal text (zero sums left out)."""
        by_currency: dict[str, list[tuple[int, int]]] = {}
        for (currency, scale), value in self.amounts.items():
            by_currency.setdefault(currency, []).append((scale, value))
        out: dict[str, str] = {}
        for currency in sorted(by_currency):
            parts = by_currency[currency]
            # Integers at the widest scale: exact whatever the size (a Decimal rounds past
            # its context's 28 digits).
            widest = max(scale for scale, _ in parts)
            total = sum(value * 10 ** (widest - scale) for scale, value in parts)
            if total:
                out[currency] = Amount(total, widest, currency).decimal
        return out

    def to_json(self) -> dict[str, Any]:
        payments = {"first_seen": self.count("fs")}
        payments |= {state: self.count(f"st:{state}") for state in TERMINAL_COUNTED}
        ended = sum(payments[state] for state in TERMINAL_COUNTED)
        ttc = self.bins("tt:")
        latency = self.bins("dl:")
        return {
            "payments": payments,
            "completed_amounts": self.currencies(),
            "success_ratio": None if ended <= 0 else round(payments["completed"] / ended, 4),
            "time_to_completion": None
            if not ttc
            else {"p50": percentile(ttc, 0.5), "p90": percentile(ttc, 0.9)},
            "deliveries": {
                "delivered": self.count("dv"),
                "dead_lettered": self.count("dd"),
                "latency": None
                if not latency
                else {"p50": percentile(latency, 0.5), "p99": percentile(latency, 0.99)},
            },
        }


def hours_of(start: float, end: float, bucket: Bucket) -> tuple[int, int]:
    """The first and last hour (``time // 3600``) the report of that range reads."""
    starts = bucket_starts(start, end, bucket)
    return starts[0] // 3600, (starts[-1] + _SECONDS[bucket]) // 3600 - 1


def report(rollup: Rollup, start: float, end: float, bucket: Bucket) -> dict[str, Any]:
    """The analytics document of the API: ``from``, ``to`` (the buckets' bounds), ``bucket``,
    ``buckets`` (oldest first, empty ones included) and ``totals``."""
    size = _SECONDS[bucket]
    starts = bucket_starts(start, end, bucket)
    totals = _Sums()
    buckets = []
    for first in starts:
        sums = _Sums()
        for hour in range(first // 3600, (first + size) // 3600):
            sums.add(rollup, hour)
            totals.add(rollup, hour)
        buckets.append({"start": times.rfc3339(first), **sums.to_json()})
    return {
        "from": times.rfc3339(starts[0]),
        "to": times.rfc3339(starts[-1] + size),
        "bucket": bucket,
        "buckets": buckets,
        "totals": totals.to_json(),
    }


def csv_rows(document: dict[str, Any]) -> Iterator[list[str]]:
    """The report as CSV rows (the header first): one per bucket and currency, one with an
    empty currency for a bucket without amounts."""
    yield list(CSV_COLUMNS)
    for b in document["buckets"]:
        payments, deliveries, ttc = b["payments"], b["deliveries"], b["time_to_completion"]
        common = [
            payments["first_seen"], payments["completed"], payments["failed"],
            payments["expired"], payments["cancelled"], _text(b["success_ratio"]),
            _text(ttc and ttc["p50"]), _text(ttc and ttc["p90"]),
            deliveries["delivered"], deliveries["dead_lettered"],
        ]  # fmt: skip
        amounts: Iterable[tuple[str, str]] = b["completed_amounts"].items() or [("", "")]
        for currency, amount in amounts:
            yield [b["start"], currency, amount, *(str(value) for value in common)]


def to_csv(document: dict[str, Any]) -> str:
    """The report as CSV text (RFC 4180, CRLF line ends)."""
    out = io.StringIO()
    csv.writer(out).writerows(csv_rows(document))
    return out.getvalue()


def _text(value: object) -> str:
    return "" if value is None else str(value)
