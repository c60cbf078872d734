"""The interface every rate limiter offers the ingress."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from gateway.ratelimit.gcra import Decision, RateRule


@runtime_checkable
class Limiter(Protocol):
    """Decides requests against GCRA rules, one TAT per key.

    ``hit`` counts the request when it is allowed and leaves the key's state alone when it is
    refused, so a sender that keeps knocking does not delay its own recovery. ``now`` is the
    caller's clock in seconds; a limiter that keeps its own clock (Redis ``TIME``) ignores it.
    Implementations raise ``gateway.errors.StoreError`` when their store fails, and nothing else.
    """

    async def hit(self, key: str, rule: RateRule, now: float) -> Decision:
        """Decide one request for ``key`` under ``rule`` and count it if allowed."""
        ...
