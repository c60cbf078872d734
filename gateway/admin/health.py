"""Health and metrics on the admin listener: ``/healthz``, ``/readyz``, ``/metrics``."""

from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from gateway.appkeys import GATEWAY, METRICS, RUNTIME, STORE
from gateway.errors import StoreError
from gateway.http.answers import json_answer

READY_TIMEOUT = 2.0


async def healthz(request: web.Request) -> web.Response:
    """The process is alive and its event loop answers."""
    return json_answer(200, {"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready when the config is loaded and the store answers; 503 otherwise."""
    gateway = request.app[GATEWAY]
    store = gateway.get(STORE)
    if store is None:
        return json_answer(503, {"status": "starting"})
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            await store.ping()
    except (StoreError, TimeoutError) as exc:
        return json_answer(503, {"status": "unavailable", "store": str(exc) or "timed out"})
    return json_answer(200, {"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition; queue depth is read from the store at scrape time."""
    gateway = request.app[GATEWAY]
    collected = gateway[METRICS]
    store = gateway.get(STORE)
    if store is not None:
        try:
            async with asyncio.timeout(READY_TIMEOUT):
                depth = await store.queue_depth()
        except (StoreError, TimeoutError):
            depth = None  # the gauges keep their last values; readyz reports the outage
        if depth is not None:
            collected.set_queue_depth(depth, gateway[RUNTIME].config.destinations)
    response = web.Response(body=collected.exposition())
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


def add_routes(app: web.Application) -> None:
    """Register the probes and the metrics on the admin application."""
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
