"""An in-process limiter: one dict of TATs, bounded in size.

Each gateway process keeps its own limits (design.md 5.3, embedded store): with ``server.workers``
above 1 each worker counts separately. The caller's ``now`` is the clock; ``time.monotonic()``
suits best because it never steps back.
"""

from __future__ import annotations

from gateway.ratelimit.gcra import Decision, RateRule, decide, to_micros


class MemoryLimiter:
    """GCRA over an in-process dict, holding at most ``max_keys`` keys.

    A key whose TAT is in the past is in the same state as a key never seen (a full bucket),
    so it can be dropped for free. When the dict passes ``max_keys`` those keys are swept out;
    if a flood of distinct keys leaves it still too big, the least recently seen keys are
    forgotten down to three quarters of ``max_keys``. Forgetting hands those keys a fresh burst:
    memory stays bounded and the per-source limit still caps the total. A refused request
    counts as seen, so a sender that keeps knocking stays remembered (and limited) rather than
    being forgotten first. Sweeping only on overflow, down to a low-water mark, keeps the cost
    per request constant on average.
    """

    def __init__(self, max_keys: int = 100_000) -> None:
        if max_keys < 1:
            raise ValueError(f"max_keys must be at least 1, not {max_keys}")
        self.max_keys = max_keys
        self._low_water = max(1, max_keys * 3 // 4)
        # Insertion order is "least recently seen first": every hit moves its key to the end.
        self._tats: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._tats)

    async def hit(self, key: str, rule: RateRule, now: float) -> Decision:
        """Decide one request for ``key`` at ``now`` and count it if allowed."""
        return self.hit_now(key, rule, now)

    def hit_now(self, key: str, rule: RateRule, now: float) -> Decision:
        """``hit`` without the coroutine, for callers outside an event loop."""
        now_us = to_micros(now)
        tat = self._tats.pop(key, None)
        decision = decide(tat, now_us, rule)
        # A refusal gives back the same TAT (unless the clock went back, see ``decide``), so
        # storing it changes nothing but the key's place at the recent end.
        self._tats[key] = decision.new_tat_us
        if len(self._tats) > self.max_keys:
            self._shrink(now_us)
        return decision

    def _shrink(self, now_us: int) -> None:
        """Drop keys whose bucket is full again, then the least recently counted ones."""
        for key in [k for k, tat in self._tats.items() if tat <= now_us]:
            del self._tats[key]
        excess = len(self._tats) - self._low_water
        if excess > 0:
            for key in list(self._tats)[:excess]:
                del self._tats[key]
