"""Fixtures for the rate limiter tests: one real redis-server for the package, a client per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio

from harness.redis_server import RedisServer


@pytest.fixture(scope="package")
def redis_server() -> Iterator[RedisServer]:
    """A redis-server shared by this package's tests; each test starts from an empty database."""
    with RedisServer() as server:
        yield server


@pytest.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[redis.asyncio.Redis]:
    """A client of the shared server, on a flushed database."""
    client = redis.asyncio.Redis.from_url(redis_server.url)
    await client.flushdb()
    yield client
    await client.aclose()
