"""A hand-worked GCRA table, checked against the pure function and every limiter.

Rule: 1 request per ``unit`` seconds, burst 3, so T = 1 unit and the window W = 3 units. Times
and durations below are in units; ``BASE`` shifts the clock to a realistic epoch. Each row is
one request: when it arrives, whether it is allowed, and remaining / retry_after / reset_after /
the TAT stored afterwards. Worked by hand from: allowed iff max(TAT, now) + T - now <= W.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.ratelimit import Decision, Rate, RateRule, to_micros

BASE = 1_700_000_000.0
BURST = 3


@dataclass(frozen=True)
class Row:
    """One request of the table, in units of T."""

    note: str
    at: float
    allowed: bool
    remaining: int
    retry_after: float
    reset_after: float
    tat: float


ROWS = (
    Row("fresh key: burst of 3 at once, 1st", 0, True, 2, 0, 1, 1),
    Row("burst 2nd", 0, True, 1, 0, 2, 2),
    Row("burst 3rd empties the bucket", 0, True, 0, 0, 3, 3),
    Row("4th at once is refused, state kept", 0, False, 0, 1, 3, 3),
    Row("half a slot later: still refused", 0.5, False, 0, 0.5, 2.5, 3),
    Row("exactly at the boundary: allowed", 1, True, 0, 0, 3, 4),
    Row("again at once: refused", 1, False, 0, 1, 3, 4),
    Row("steady rate, 1st", 2.5, True, 0, 0, 2.5, 5),
    Row("steady rate, 2nd", 3.5, True, 0, 0, 2.5, 6),
    Row("steady rate, 3rd", 4.5, True, 0, 0, 2.5, 7),
    Row("idle long: full burst again", 20, True, 2, 0, 1, 21),
    Row("recovered burst 2nd", 20, True, 1, 0, 2, 22),
    Row("recovered burst 3rd", 20, True, 0, 0, 3, 23),
    Row("recovered burst exhausted", 20, False, 0, 1, 3, 23),
    Row("partial recovery: one and a half slots", 22.5, True, 1, 0, 1.5, 24),
    Row("partial recovery 2nd", 22.5, True, 0, 0, 2.5, 25),
    Row("partial recovery exhausted", 22.5, False, 0, 0.5, 2.5, 25),
    Row("clock back half a unit: refused, TAT kept", 22, False, 0, 1, 3, 25),
    Row("clock back 12.5 units: empty bucket, no worse", 10, False, 0, 1, 3, 13),
    Row("one T after the jump: allowed again", 11, True, 0, 0, 3, 14),
    Row("clock back once more: refused, never negative", 10, False, 0, 1, 3, 13),
)


def rule(unit: int = 1) -> RateRule:
    """The table's rule with T = ``unit`` seconds."""
    return RateRule(Rate(1, unit), BURST)


def now(row: Row, unit: int = 1) -> float:
    """The clock reading, in seconds, at which ``row`` arrives."""
    return BASE + row.at * unit


def expected(row: Row, unit: int = 1) -> Decision:
    """The decision ``row`` states, scaled to T = ``unit`` seconds."""
    return Decision(
        allowed=row.allowed,
        new_tat_us=to_micros(BASE + row.tat * unit),
        limit=BURST,
        remaining=row.remaining,
        retry_after=row.retry_after * unit,
        reset_after=row.reset_after * unit,
    )
