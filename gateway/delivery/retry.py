"""Retry policy: when a failed delivery is tried again, and when it is given up. Pure."""

from __future__ import annotations

import random
from dataclasses import dataclass

#: Statuses that say "try again later" although they are 4xx (RFC 9110, RFC 8470, RFC 6585).
RETRYABLE_4XX = frozenset({408, 409, 425, 429})


@dataclass(frozen=True)
class RetryPolicy:
    """A destination's retry schedule.

    ``schedule`` lists the delay before each retry (attempt 2 waits ``schedule[0]``...). When it
    is empty, delays grow exponentially from ``initial`` by ``factor`` up to ``max_delay``.
    A delivery is dead-lettered after ``max_attempts`` attempts (default: one more than the
    schedule) or once it is older than ``max_age`` seconds, whichever comes first. Each delay is
    spread by up to ``jitter`` (a fraction) so retries of many events do not arrive together.
    """

    schedule: tuple[float, ...] = (5, 30, 120, 600, 1800, 3600, 10800, 21600, 43200, 86400)
    max_attempts: int | None = None
    max_age: float = 72 * 3600
    initial: float = 5.0
    factor: float = 2.0
    max_delay: float = 3600.0
    jitter: float = 0.1

    @property
    def attempts_allowed(self) -> int:
        """How many attempts in all a delivery gets before it is dead-lettered."""
        if self.max_attempts is not None:
            return self.max_attempts
        return len(self.schedule) + 1 if self.schedule else 10

    def base_delay(self, attempts_made: int) -> float:
        """Delay before the next attempt, without jitter, after ``attempts_made`` attempts."""
        if self.schedule:
            return self.schedule[min(attempts_made, len(self.schedule)) - 1]
        return float(min(self.max_delay, self.initial * self.factor ** (attempts_made - 1)))

    def next_attempt_at(
        self,
        attempts_made: int,
        first_attempt_at: float,
        now: float,
        rng: random.Random | None = None,
    ) -> float | None:
        """When to try again after ``attempts_made`` failed attempts; ``None`` means give up."""
        if attempts_made >= self.attempts_allowed:
            return None
        delay = self.base_delay(attempts_made)
        if self.jitter:
            spread = delay * self.jitter
            delay += (rng or random).uniform(-spread, spread)
        at = now + max(0.0, delay)
        if at - first_attempt_at > self.max_age:
            return None
        return at


def is_retryable(status: int | None) -> bool:
    """Whether a destination answer is worth retrying (``None``: no answer at all)."""
    if status is None or status >= 500:
        return True
    return status in RETRYABLE_4XX
