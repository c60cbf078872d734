"""Rate limits (design.md 2 stages 3 and 6, 5.3): GCRA over an in-process dict or one Redis script.

``gcra`` holds the arithmetic and nothing else; ``headers`` turns a decision into response
headers; ``MemoryLimiter`` and ``RedisLimiter`` store the state; ``StoreErrorPolicy`` decides
what a store failure means. The ingress calls, per request::

    decision = await limiter.hit(f"ip:{source}:{client_ip}", rule, now)
    if not decision.allowed:
        raise RateLimited(headers=rate_limit_headers(decision))
"""

from gateway.ratelimit.gcra import Decision, Rate, RateRule, decide, to_micros
from gateway.ratelimit.headers import rate_limit_headers, retry_after_seconds
from gateway.ratelimit.limiter import Limiter
from gateway.ratelimit.memory import MemoryLimiter
from gateway.ratelimit.policy import OnStoreError, StoreErrorPolicy
from gateway.ratelimit.redis_limiter import RedisLimiter, redis_key

__all__ = [
    "Decision",
    "Limiter",
    "MemoryLimiter",
    "OnStoreError",
    "Rate",
    "RateRule",
    "RedisLimiter",
    "StoreErrorPolicy",
    "decide",
    "rate_limit_headers",
    "redis_key",
    "retry_after_seconds",
    "to_micros",
]
