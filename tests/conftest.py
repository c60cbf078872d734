"""Shared fixtures: the fake marketplace on a real socket, and a gateway built from config."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
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
