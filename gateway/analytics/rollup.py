"""What the stores add up as payments change and deliveries finish (design.md 5.9), so an
analytics query reads a few rows per hour and never scans the events.

A rollup is kept per source and per UTC hour: the hour in which the change happened (the
accept, or the end of the delivery attempt). Its fields, each a whole number the store adds to
in the same transaction or script as the change it counts:

* ``fs``: payments first seen;
* ``st:<state>``: payments that entered the state, less those that left it (a payment that
  goes from pending to completed moves its count from ``st:pending`` to ``st:completed``), so
  a terminal state's count is the payments that reached it in the hour;
* ``tt:<bin>``: time to completion (first event to the completed event) in log-spaced bins;
* ``dv`` / ``dd``: deliveries delivered / dead-lettered; ``dl:<bin>``: for each delivered one,
  the time from its event's arrival to its delivery.

Completed amounts are kept apart, as integers of minor units per (currency, scale) that may
grow past 64 bits: ``amount_deltas``. A payment counts there while it is completed, with its
latest amount, so a later change of its amount moves the difference in the hour it happens.
The Redis store's ``payment.lua`` and ``finish.lua`` compute the same fields in Lua; the
contract suite holds both stores to the same sums. Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from gateway.payments.amounts import Amount
from gateway.payments.states import State

#: The smallest bin bound (seconds), the ratio between successive bounds, and how many bins
#: (the last holds everything longer: 0.01 s * 1.25**99 is over a year).
BIN_FLOOR = 0.01
BIN_RATIO = 1.25
BINS = 100
#: How long the stores keep rollups (days).
RETENTION_DAYS = 400


def hour_of(t: float) -> int:
    """The UTC hour (Unix seconds // 3600) a time falls in."""
    return int(t // 3600)


def bin_of(seconds: float) -> int:
    """The bin of a duration: the first whose bound is not below it."""
    if seconds <= BIN_FLOOR:
        return 0
    return min(BINS - 1, math.ceil(math.log(seconds / BIN_FLOOR) / math.log(BIN_RATIO)))


def bin_bound(index: int) -> float:
    """The upper bound of a bin, in seconds."""
    return BIN_FLOOR * BIN_RATIO**index


def percentile(bins: Mapping[int, int], q: float) -> float | None:
    """The bound (seconds) of the bin holding the ``q`` quantile; ``None`` without counts.
    Off by at most one bin: a quarter of the value."""
    total = sum(bins.values())
    if total <= 0:
        return None
    rank = q * total
    seen = 0
    for index in sorted(bins):
        seen += bins[index]
        if seen >= rank and bins[index] > 0:
            return round(bin_bound(index), 3)
    return round(bin_bound(max(bins)), 3)


@dataclass(frozen=True)
class PaymentChange:
    """What one accept did to a payment: its state and amount before (``None``: it is new)
    and after, when it was first seen, and when the change happened."""

    before: State | None
    after: State
    before_amount: Amount | None
    after_amount: Amount | None
    first_seen: float
    at: float


def payment_deltas(change: PaymentChange) -> dict[str, int]:
    """The counter fields one payment change adds to (see the module docstring)."""
    deltas: dict[str, int] = {}
    if change.before is None:
        deltas["fs"] = 1
        deltas[f"st:{change.after}"] = 1
    elif change.before != change.after:
        deltas[f"st:{change.before}"] = -1
        deltas[f"st:{change.after}"] = 1
    if change.after == "completed" and change.before != "completed":
        deltas[f"tt:{bin_of(change.at - change.first_seen)}"] = 1
    return deltas


def amount_deltas(change: PaymentChange) -> dict[tuple[str, int], int]:
    """What one payment change adds to the completed amounts, per (currency, scale)."""
    deltas: dict[tuple[str, int], int] = {}
    if change.before == "completed" and change.before_amount is not None:
        was = change.before_amount
        deltas[(was.currency, was.scale)] = -was.value
    if change.after == "completed" and change.after_amount is not None:
        now = change.after_amount
        deltas[(now.currency, now.scale)] = deltas.get((now.currency, now.scale), 0) + now.value
    return {k: v for k, v in deltas.items() if v}


def delivery_deltas(result: str, received_at: float, ended_at: float) -> dict[str, int]:
    """The counter fields a finished delivery attempt adds to (a retry adds none)."""
    if result == "delivered":
        return {"dv": 1, f"dl:{bin_of(ended_at - received_at)}": 1}
    if result == "dead_lettered":
        return {"dd": 1}
    return {}


@dataclass
class Rollup:
    """The rollups a store read for one source or all, hour by hour: counter fields, and
    completed amounts in minor units per (currency, scale)."""

    counts: dict[int, dict[str, int]] = field(default_factory=dict)
    amounts: dict[int, dict[tuple[str, int], int]] = field(default_factory=dict)

    def add(self, hour: int, name: str, value: int) -> None:
        """Add to one counter field of an hour."""
        fields = self.counts.setdefault(hour, {})
        fields[name] = fields.get(name, 0) + value

    def add_amount(self, hour: int, currency: str, scale: int, value: int) -> None:
        """Add to one hour's completed amount of ``currency`` at ``scale``."""
        amounts = self.amounts.setdefault(hour, {})
        amounts[(currency, scale)] = amounts.get((currency, scale), 0) + value

    def hours(self) -> Iterator[int]:
        """Every hour with anything, in order."""
        yield from sorted(set(self.counts) | set(self.amounts))
