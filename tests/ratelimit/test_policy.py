"""``on_store_error``: a failing store allows or denies, counts, logs, and never raises."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from gateway.errors import StoreError
from gateway.ratelimit import (
    Limiter,
    MemoryLimiter,
    RateRule,
    RedisLimiter,
    StoreErrorPolicy,
    rate_limit_headers,
)
from harness.redis_server import RedisServer

RULE = RateRule.parse("100/s", 200)


@pytest.fixture
async def down_limiter() -> AsyncIterator[RedisLimiter]:
    """A Redis limiter whose server has gone: every hit raises StoreError."""
    with RedisServer() as server:
        url = server.url
    client = redis.asyncio.Redis.from_url(url, retry=Retry(NoBackoff(), 0))
    yield RedisLimiter(client)
    await client.aclose()


async def test_allow_lets_the_request_through(down_limiter: RedisLimiter) -> None:
    failures: list[StoreError] = []
    policy = StoreErrorPolicy(down_limiter, "allow", on_failure=failures.append)
    assert isinstance(policy, Limiter)
    decision = await policy.hit("ip:192.0.2.1", RULE, 100.0)
    assert decision.allowed
    assert decision.limit == 200
    assert policy.store_errors == 1
    assert len(failures) == 1
    assert isinstance(failures[0], StoreError)


async def test_deny_refuses_with_retry_after(down_limiter: RedisLimiter) -> None:
    policy = StoreErrorPolicy(down_limiter, "deny", deny_retry_after=2.5)
    decision = await policy.hit("ip:192.0.2.1", RULE, 100.0)
    assert not decision.allowed
    assert decision.remaining == 0
    assert rate_limit_headers(decision) == {
        "RateLimit-Limit": "200",
        "RateLimit-Remaining": "0",
        "RateLimit-Reset": "3",
        "Retry-After": "3",
    }
    assert policy.store_errors == 1


async def test_healthy_store_decides_as_usual(redis_client: redis.asyncio.Redis) -> None:
    policy = StoreErrorPolicy(RedisLimiter(redis_client), "deny")
    rule = RateRule.parse("1/h", 1)
    assert (await policy.hit("k", rule, 0.0)).allowed
    refused = await policy.hit("k", rule, 0.0)
    assert not refused.allowed
    assert refused.retry_after > 3000
    assert policy.store_errors == 0


async def test_wraps_the_memory_limiter_too() -> None:
    policy = StoreErrorPolicy(MemoryLimiter(), "allow")
    rule = RateRule.parse("1/h", 1)
    assert (await policy.hit("k", rule, 0.0)).allowed
    assert not (await policy.hit("k", rule, 0.0)).allowed


async def test_warnings_are_throttled_and_counted(
    down_limiter: RedisLimiter, caplog: pytest.LogCaptureFixture
) -> None:
    policy = StoreErrorPolicy(down_limiter, "allow", log_interval=10.0)
    with caplog.at_level(logging.WARNING, logger="gateway.ratelimit"):
        for now in (0.0, 1.0, 2.0, 9.9, 10.0, 11.0, 25.0):
            assert (await policy.hit("k", RULE, now)).allowed
    messages = [r.getMessage() for r in caplog.records if r.name == "gateway.ratelimit"]
    assert len(messages) == 3, messages
    assert "allowing requests" in messages[0]
    assert "1 failure(s)" in messages[0]
    assert "4 failure(s)" in messages[1]  # 1.0, 2.0, 9.9 and 10.0 itself
    assert "2 failure(s)" in messages[2]
    assert "ConnectionError" in messages[0]
    assert policy.store_errors == 7


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="on_store_error must be"):
        StoreErrorPolicy(MemoryLimiter(), "ignore")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="deny_retry_after must be positive"):
        StoreErrorPolicy(MemoryLimiter(), "deny", deny_retry_after=0)
