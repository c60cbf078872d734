"""Shared fixtures: the fake marketplace on a real socket, and a gateway built from config;
and the markers each test gets from what it starts (``pytest_collection_modifyitems``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app
from gateway.config import Config
from tests.support import Marketplace, build_config, config_dict, sqlite_url


@pytest.fixture
async def marketplace(aiohttp_server: Any) -> tuple[Marketplace, TestServer]:
    """A marketplace backend listening on a free port."""
    market = Marketplace()
    server = await aiohttp_server(market.app())
    return market, server


GatewayFactory = Callable[..., Awaitable[tuple[TestClient, Config]]]

E2E = Path(__file__).resolve().parent / "e2e"
#: Fixtures that start a Redis Cluster or Redis Sentinels (tests/store/conftest.py,
#: tests/store/test_sentinel.py, the e2e cluster modules).
CLUSTER_FIXTURES = frozenset({"redis_cluster", "cluster", "sentinels"})
#: Parameters that make a test take a cluster through ``request.getfixturevalue``.
CLUSTER_PARAMS = frozenset({"cluster16"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test by what it starts, so a subset can be chosen with ``-m`` (markers in
    pyproject.toml): ``e2e``, gateway processes (tests/e2e); ``browser``, Chromium;
    ``cluster``, a Redis Cluster or Sentinels. Plain ``pytest`` still runs every test."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if E2E in item.path.parents and "gateways" in fixtures:
            item.add_marker(pytest.mark.e2e)
        if "browser" in fixtures:
            item.add_marker(pytest.mark.browser)
        callspec = getattr(item, "callspec", None)
        params = {v for v in callspec.params.values() if isinstance(v, str)} if callspec else set()
        if fixtures & CLUSTER_FIXTURES or params & CLUSTER_PARAMS:
            item.add_marker(pytest.mark.cluster)


@pytest.fixture
def make_gateway(aiohttp_client: Any, marketplace: Any, tmp_path: Any) -> GatewayFactory:
    """Build a gateway (real sockets) from ``config_dict`` overrides, pointed at the marketplace."""
    _, server = marketplace

    async def factory(
        *,
        store_url: str | None = None,
        clock: Callable[[], float] | None = None,
        env: dict[str, str] | None = None,
        **overrides: Any,
    ) -> tuple[TestClient, Config]:
        data = config_dict(
            str(server.make_url("/api/webhooks/payments")),
            store_url=store_url or sqlite_url(tmp_path),
            **overrides,
        )
        config = build_config(data, env)
        kwargs: dict[str, Any] = {}
        if clock is not None:
            kwargs["clock"] = clock
        client = await aiohttp_client(create_app(config, **kwargs))
        return client, config

    return factory
