"""Fixtures for the end-to-end tests: a real redis-server, gateway processes that are always
cleaned up by PID, and destinations that are always stopped."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio

from harness.redis_server import RedisServer
from tests.e2e.gateway_process import Destination, GatewayProcess
from tests.support import Marketplace


@pytest.fixture(scope="package")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the package (append-only file on); each test flushes it first."""
    with RedisServer(appendonly=True, appendfsync="everysec") as server:
        yield server


@pytest.fixture
async def redis_url(redis_server: RedisServer) -> str:
    """The shared server's URL, on an emptied database."""
    client = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        await client.flushall()
    finally:
        await client.aclose()
    return redis_server.url


@pytest.fixture(params=["sqlite", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each store backend in turn: a SQLite file in the test's directory, or the shared Redis."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'gateway.db'}"
    url: str = request.getfixturevalue("redis_url")
    return url


GatewayFactory = Callable[..., GatewayProcess]


@pytest.fixture
def gateways(tmp_path: Path) -> Iterator[GatewayFactory]:
    """Make ``GatewayProcess``es in the test's directory; every one is killed (by PID) and
    reaped at teardown, whether the test passed or not."""
    made: list[GatewayProcess] = []

    def factory(config: dict[str, Any], *, name: str = "gateway") -> GatewayProcess:
        process = GatewayProcess(tmp_path, config, name=f"{name}-{len(made)}")
        made.append(process)
        return process

    yield factory
    for process in made:
        process.cleanup()


DestinationFactory = Callable[..., Destination]


@pytest.fixture
async def destinations() -> AsyncIterator[DestinationFactory]:
    """Make ``Destination``s on pre-chosen ports (not started); all are stopped at teardown."""
    made: list[Destination] = []

    def factory(market: Marketplace | None = None) -> Destination:
        destination = Destination(market)
        made.append(destination)
        return destination

    yield factory
    for destination in made:
        await destination.stop()
