"""GCRA, the Generic Cell Rate Algorithm (ITU-T I.371): a token bucket with no refill timer. Pure.

The whole state of one limit is a single number, the theoretical arrival time (TAT): the moment
the bucket would be full again if nothing else arrived. A rule ``rate`` / ``burst`` gives

* the emission interval ``T = period / count``: the spacing of requests at the steady rate;
* the window ``W = burst * T``: how far ahead of ``now`` the TAT may run.

A request at ``now`` is allowed when ``max(TAT, now) + T - now <= W``, and then the TAT becomes
``max(TAT, now) + T``. With a fresh key ``burst`` requests fit at once, after that one every
``T``; an idle key earns back one request per ``T`` up to ``burst``. A refused request leaves
the TAT as it was, so hammering does not push the sender's recovery further away.

All arithmetic is in whole microseconds. The Redis limiter runs the same steps in Lua, whose
numbers are doubles: integers below 2**53 (about 285 years of microseconds) are exact there, so
both sides compute bit-for-bit the same answers and a test holds them to it. ``T`` is rounded
up to a whole microsecond, so a rule never lets through more than it says.

This module is the single definition of the arithmetic: no clock, no I/O.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

MICROS = 1_000_000

#: Seconds per period unit accepted in a rate (``100/s``, ``600/m``, ``10/h``, ``1000/d``).
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_RATE_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([smhd])\s*$")

#: Largest window (burst x interval) allowed, in microseconds: about 31 years. It keeps
#: ``now + window`` far below 2**53, where Lua's doubles stop being exact integers.
MAX_WINDOW_US = 10**15


@dataclass(frozen=True)
class Rate:
    """A steady rate, ``count`` requests per ``period`` seconds; ``Rate.parse("100/s")``."""

    count: int
    period: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            raise ValueError(f"rate count must be a whole number of at least 1, not {self.count!r}")
        if isinstance(self.period, bool) or not isinstance(self.period, int) or self.period < 1:
            raise ValueError(
                f"rate period must be a whole number of seconds >= 1, not {self.period!r}"
            )
        if self.count > self.period * MICROS:
            raise ValueError(
                f"rate {self} is faster than one request per microsecond, which cannot be limited"
            )

    @classmethod
    def parse(cls, text: str) -> Rate:
        """Parse ``<count>/<unit>`` or ``<count>/<n><unit>``, unit one of s, m, h, d."""
        if not isinstance(text, str):
            raise ValueError(f"rate must be a string such as '100/s', not {type(text).__name__}")
        match = _RATE_RE.match(text)
        if match is None:
            raise ValueError(
                f"rate {text!r} is not of the form <count>/<period>, e.g. '100/s', '600/m', "
                "'10/h' or '5/10s' (units: s, m, h, d)"
            )
        count_text, multiple_text, unit = match.groups()
        multiple = int(multiple_text) if multiple_text else 1
        if multiple < 1:
            raise ValueError(f"rate {text!r} has a period of zero")
        if int(count_text) < 1:
            raise ValueError(f"rate {text!r} allows no requests at all; the count must be >= 1")
        return cls(int(count_text), multiple * _UNITS[unit])

    @functools.cached_property
    def interval_us(self) -> int:
        """Emission interval in microseconds, rounded up so the rate is never exceeded."""
        return -(-self.period * MICROS // self.count)

    def __str__(self) -> str:
        for unit, seconds in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
            if self.period % seconds == 0:
                multiple = self.period // seconds
                return f"{self.count}/{'' if multiple == 1 else multiple}{unit}"
        raise AssertionError("unreachable: every whole period is a multiple of one second")


@dataclass(frozen=True)
class RateRule:
    """A limit: a steady ``rate`` plus ``burst``, how many requests may arrive at once."""

    rate: Rate
    burst: int

    def __post_init__(self) -> None:
        if isinstance(self.burst, bool) or not isinstance(self.burst, int) or self.burst < 1:
            raise ValueError(f"burst must be a whole number of at least 1, not {self.burst!r}")
        if self.window_us > MAX_WINDOW_US:
            raise ValueError(
                f"burst {self.burst} at rate {self.rate} spans more than {MAX_WINDOW_US // MICROS} "
                "seconds; use a smaller burst or a faster rate"
            )

    @classmethod
    def parse(cls, rate: str, burst: int) -> RateRule:
        """A rule from config values: ``RateRule.parse("100/s", 200)``."""
        return cls(Rate.parse(rate), burst)

    # Cached (the instance's own attribute after the first read): the accept script's
    # arguments read them on every request.
    @functools.cached_property
    def interval_us(self) -> int:
        """Emission interval ``T`` in microseconds."""
        return self.rate.interval_us

    @functools.cached_property
    def window_us(self) -> int:
        """How far the TAT may run ahead of now (``burst * T``), in microseconds."""
        return self.rate.interval_us * self.burst


@dataclass(frozen=True)
class Decision:
    """The verdict on one request, and the TAT to store after it.

    ``retry_after`` is 0 when allowed, else the seconds until this request would be allowed.
    ``reset_after`` is the seconds until the bucket is full again (``remaining == limit``).
    ``new_tat_us`` is what the limiter must store (microseconds on the limiter's clock); after a
    refusal it equals the stored TAT except in the clock-went-back case described in ``decide``.
    """

    allowed: bool
    new_tat_us: int
    limit: int
    remaining: int
    retry_after: float
    reset_after: float


def to_micros(seconds: float) -> int:
    """A clock reading in seconds as whole microseconds, the unit ``decide`` works in."""
    return round(seconds * MICROS)


def decide(tat_us: int | None, now_us: int, rule: RateRule) -> Decision:
    """Decide one request at ``now_us`` against the stored TAT (``None`` for a new key)."""
    interval = rule.interval_us
    window = rule.window_us
    base = now_us if tat_us is None else max(tat_us, now_us)
    if base - now_us > window:
        # Allowed requests keep TAT <= now + W, so a TAT further ahead means the clock went
        # back (an NTP step, a failover to a Redis primary whose clock is behind) or the rule
        # was tightened since it was stored. Treat it as an empty bucket, no emptier: nothing
        # extra is granted, and a clock that steps back an hour costs at most one window of
        # refusals instead of an hour. This is the one change a refusal makes to the state.
        base = now_us + window
    new_tat = base + interval
    if new_tat - now_us <= window:
        remaining = (window - (new_tat - now_us)) // interval
        return Decision(
            allowed=True,
            new_tat_us=new_tat,
            limit=rule.burst,
            remaining=remaining,
            retry_after=0.0,
            reset_after=(new_tat - now_us) / MICROS,
        )
    return Decision(
        allowed=False,
        new_tat_us=base,
        limit=rule.burst,
        remaining=0,
        retry_after=(new_tat - now_us - window) / MICROS,
        reset_after=(base - now_us) / MICROS,
    )
