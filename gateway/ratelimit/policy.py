"""What a rate limit does when its store fails: ``on_store_error: allow | deny`` (design.md 5.3).

``allow`` (fail open) lets the request through: an outage of the limiter's store should not
refuse authentic webhooks, and the later stages still answer 503 if the store they need is down.
``deny`` (fail closed) refuses it with an ordinary denying ``Decision``, so the ingress keeps a
single path for every refusal: 429 ``rate_limited`` with ``Retry-After`` of ``deny_retry_after``
seconds and the ``RateLimit-*`` headers. Either way ``hit`` never raises, every failure adds
one to ``store_errors`` and calls ``on_failure`` (for a metric), and a warning goes to the
``gateway.ratelimit`` logger, at most once per ``log_interval`` seconds with the count since,
so an outage under load does not flood the log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Literal

from gateway.errors import StoreError
from gateway.ratelimit.gcra import Decision, RateRule, to_micros
from gateway.ratelimit.limiter import Limiter

log = logging.getLogger("gateway.ratelimit")

OnStoreError = Literal["allow", "deny"]


class StoreErrorPolicy:
    """Wraps a ``Limiter`` so a ``StoreError`` becomes an allowing or denying ``Decision``."""

    def __init__(
        self,
        limiter: Limiter,
        on_store_error: OnStoreError = "allow",
        *,
        on_failure: Callable[[StoreError], None] | None = None,
        deny_retry_after: float = 1.0,
        log_interval: float = 10.0,
    ) -> None:
        if on_store_error not in ("allow", "deny"):
            raise ValueError(f"on_store_error must be 'allow' or 'deny', not {on_store_error!r}")
        if deny_retry_after <= 0:
            raise ValueError(f"deny_retry_after must be positive, not {deny_retry_after!r}")
        self.limiter = limiter
        self.on_store_error: OnStoreError = on_store_error
        self.on_failure = on_failure
        self.deny_retry_after = deny_retry_after
        self.log_interval = log_interval
        #: Store failures seen so far, for a metric or a health check to read.
        self.store_errors = 0
        self._unlogged = 0
        self._last_logged: float | None = None

    async def hit(self, key: str, rule: RateRule, now: float) -> Decision:
        """The wrapped limiter's decision, or the policy's when its store fails."""
        try:
            return await self.limiter.hit(key, rule, now)
        except StoreError as exc:
            return self.failed(exc, rule, now)

    def failed(self, exc: StoreError, rule: RateRule, now: float) -> Decision:
        """The policy's decision for a hit whose store failed with ``exc`` (made here, or by
        a store deciding the limit in its own call), counted and logged as such."""
        self.store_errors += 1
        self._log(exc, now)
        if self.on_failure is not None:
            self.on_failure(exc)
        return self._fallback(rule, now)

    def _fallback(self, rule: RateRule, now: float) -> Decision:
        """The decision taken without the store; ``new_tat_us`` is meaningless and not stored."""
        if self.on_store_error == "allow":
            # Remaining is unknown; 0 promises nothing the store might not honour later.
            return Decision(True, to_micros(now), rule.burst, 0, 0.0, 0.0)
        wait = self.deny_retry_after
        return Decision(False, to_micros(now), rule.burst, 0, wait, wait)

    def _log(self, exc: StoreError, now: float) -> None:
        """Warn on the first failure, then at most once per ``log_interval`` seconds."""
        self._unlogged += 1
        last = self._last_logged
        if last is not None and last <= now < last + self.log_interval:
            return
        verb = "allowing" if self.on_store_error == "allow" else "refusing"
        log.warning(
            "rate limit store failed, %s requests (on_store_error: %s); %d failure(s) since "
            "the last warning: %s",
            verb,
            self.on_store_error,
            self._unlogged,
            exc,
        )
        self._unlogged = 0
        self._last_logged = now
