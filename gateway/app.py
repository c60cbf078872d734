"""App factories: the ingress application and the admin application, with typed state.

The admin application is put together here from its rooms: health and metrics, the admin
API behind its guard, the live stream, and the dashboard.

Each resource has its own ``cleanup_ctx`` (store, retention, HTTP client session, delivery
workers), so a resource is cleaned up if and only if it was set up, in reverse order.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping

import aiohttp
from aiohttp import web

from gateway.admin import analytics as analytics_api
from gateway.admin import api, health
from gateway.admin import reconcile as reconcile_api
from gateway.admin.stream import MAX_STREAMS, add_stream
from gateway.appkeys import (
    CLOCK,
    CONFIG,
    DELIVERY_CLIENT,
    GATEWAY,
    LIMITER,
    METRICS,
    PRUNER,
    RECONCILER,
    RUNTIME,
    STORE,
    Runtime,
)
from gateway.config.model import Config
from gateway.dashboard import routes as dashboard
from gateway.delivery.client import DeliveryClient
from gateway.delivery.forward import deliver
from gateway.delivery.retry import RetryPolicy
from gateway.delivery.worker import DeliveryWorker
from gateway.ingress.handler import Ingress
from gateway.metrics import Metrics
from gateway.reconcile.runner import Reconciler
from gateway.reconcile.schedule import schedule
from gateway.status.routes import StatusTiming, add_status
from gateway.store import open_store
from gateway.store.protocols import Wakeups
from gateway.store.records import Attempt, Lease
from gateway.store.retention import Pruner

#: Seconds a delivery lease outlives the longest destination timeout.
LEASE_MARGIN = 30.0
#: A source path aiohttp takes literally as a route (no ``{}`` pattern, no escapes).
_PLAIN_PATH = re.compile(r"/[A-Za-z0-9._~/-]*")


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    store = await open_store(
        config.store.url,
        encryption_keys=[k.value for k in config.store.encryption_keys],
        partitions=config.store.partitions,
        wait_replicas=config.store.wait_replicas,
        wait_timeout=config.store.wait_timeout,
    )
    app[STORE] = store
    app[LIMITER] = store.rate_limiter()
    yield
    await store.close()


async def _retention_ctx(app: web.Application) -> AsyncIterator[None]:
    # Every process prunes (cheap and idempotent), whether or not it runs delivery workers.
    pruner = Pruner(app[STORE], app[CONFIG].store.retention, clock=app[CLOCK])
    app[PRUNER] = pruner
    task = asyncio.create_task(pruner.run(), name="retention")
    yield
    pruner.stop()
    await task


async def _client_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    client = DeliveryClient(limit=max(32, config.server.delivery_concurrency * 2))
    app[DELIVERY_CLIENT] = client
    yield
    await client.close()


async def _ingress_ctx(app: web.Application) -> AsyncIterator[None]:
    runtime = app[RUNTIME]
    runtime.ingress = build_ingress(app, runtime)
    yield


def build_ingress(app: web.Application, runtime: Runtime) -> Ingress:
    """An ``Ingress`` for ``runtime.config`` on the app's shared resources."""
    return Ingress(
        runtime.config,
        app[STORE],
        app[LIMITER],
        app[DELIVERY_CLIENT],
        app[METRICS],
        clock=app[CLOCK],
        on_accepted=runtime.wake.set,
    )


class _Policies(Mapping[str, RetryPolicy]):
    """Retry policies by destination, read from the runtime's current config (reloads apply)."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def __getitem__(self, name: str) -> RetryPolicy:
        return self._runtime.config.destinations[name].retry

    def __iter__(self) -> Iterator[str]:
        return iter(self._runtime.config.destinations)

    def __len__(self) -> int:
        return len(self._runtime.config.destinations)


def build_worker(app: web.Application, runtime: Runtime) -> DeliveryWorker:
    """Delivery workers: lease due deliveries, POST them, record; config read at each send."""
    client = app[DELIVERY_CLIENT]
    clock = app[CLOCK]
    metrics = app[METRICS]

    async def send(lease: Lease) -> Attempt:
        started = clock()
        destination = runtime.config.destinations.get(lease.destination)
        if destination is None:
            # Removed by a reload while deliveries were queued: keep them (retried, then dead
            # letters) rather than drop them; putting the destination back resumes delivery.
            return Attempt(lease.attempt, started, None, 0.0, "destination is not configured")
        result = await deliver(client, lease.event, destination, lease.attempt, clock=clock)
        metrics.observe_delivery(destination.name, result.latency)
        return Attempt(
            number=lease.attempt,
            started_at=started,
            status=result.status,
            latency=result.latency,
            error=result.error,
            response_excerpt=result.excerpt,
        )

    def observe(result: str, destination: str, duration: float, received_at: float) -> None:
        latency = max(0.0, clock() - received_at) if result == "delivered" else None
        metrics.count_delivery(destination, result, latency)

    server = runtime.config.server
    timeouts = [d.timeout for d in runtime.config.destinations.values()]
    # Longer than any destination's timeout, so a slow delivery is not sent twice.
    longest = max(timeouts, default=10.0)
    lease = server.delivery_lease or longest + LEASE_MARGIN
    return DeliveryWorker(
        app[STORE],
        send,
        _Policies(runtime),
        clock=clock,
        worker_id=f"{socket.gethostname()}:{os.getpid()}",
        concurrency=server.delivery_concurrency,
        poll_interval=server.delivery_poll_interval,
        lease=lease,
        # A delivery kept ready for a slot must still have its POST and record within the
        # lease: half of what the lease leaves beyond the longest timeout.
        ready_for=(lease - longest) / 2,
        wake=runtime.wake,
        observer=observe,
    )


async def _workers_ctx(app: web.Application) -> AsyncIterator[None]:
    runtime = app[RUNTIME]
    worker = build_worker(app, runtime)
    task = asyncio.create_task(worker.run(), name="delivery-worker")
    yield
    # SIGTERM: stop leasing, let in-flight deliveries finish (a lease left behind is taken
    # again by another worker once it expires, so nothing is lost either way).
    await worker.stop()
    await task


async def _reconcile_ctx(app: web.Application) -> AsyncIterator[None]:
    """The reconciler (design.md 5.8), with an HTTP session of its own for the providers'
    listings, and the schedule of the sources' ``every``."""
    runtime = app[RUNTIME]

    def ingress() -> Ingress:
        assert runtime.ingress is not None, "ingress is built at startup"
        return runtime.ingress

    session = aiohttp.ClientSession(
        cookie_jar=aiohttp.DummyCookieJar(), timeout=aiohttp.ClientTimeout(total=None)
    )
    reconciler = Reconciler(
        app[STORE],
        ingress,
        session,
        clock=app[CLOCK],
        on_run=app[METRICS].observe_reconcile,
        on_last=app[METRICS].show_last_run,
    )
    app[RECONCILER] = reconciler
    task = asyncio.create_task(
        schedule(reconciler, lambda: runtime.config.sources, app[CLOCK]), name="reconcile"
    )
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await session.close()


def _wakeups_ctx(delivers: bool) -> Callable[[web.Application], AsyncIterator[None]]:
    """Wake-ups between processes sharing the store, where it carries them: a process that
    delivers nothing passes its own on (an accept, a replay), a delivering one listens and
    wakes its worker."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        wakeups = app[STORE].wakeups()
        if wakeups is None:
            yield
            return
        wake = app[RUNTIME].wake
        work = wakeups.listen(wake.set) if delivers else _pass_on(wake, wakeups)
        task = asyncio.create_task(work, name="wake-listener" if delivers else "wake-announcer")
        yield
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    return ctx


async def _pass_on(wake: asyncio.Event, wakeups: Wakeups) -> None:
    while True:
        await wake.wait()
        wake.clear()
        wakeups.announce()


async def _handle(request: web.Request) -> web.StreamResponse:
    ingress = request.app[RUNTIME].ingress
    assert ingress is not None, "ingress is built at startup"
    return await ingress.handle(request)


def create_app(
    config: Config,
    *,
    metrics: Metrics | None = None,
    clock: Callable[[], float] = time.time,
    workers: bool = True,
    status_timing: StatusTiming | None = None,
) -> web.Application:
    """The ingress application for ``config``; ``workers=False`` leaves delivery to others.

    Beside the sources' paths it serves the buyers' status streams (design.md 5.10) while
    ``status`` is configured; ``status_timing`` sets their intervals (tests shorten them).
    """
    # The body is read by the ingress itself within max_body_bytes; aiohttp's own limit
    # must not refuse it first with a different answer.
    app = web.Application(client_max_size=config.server.max_body_bytes + 1)
    app[CONFIG] = config
    app[RUNTIME] = Runtime(config)
    app[METRICS] = metrics or Metrics()
    declare_metrics(app[METRICS], config)
    app[CLOCK] = clock
    app.cleanup_ctx.append(_store_ctx)
    app.cleanup_ctx.append(_wakeups_ctx(delivers=workers))
    app.cleanup_ctx.append(_retention_ctx)
    app.cleanup_ctx.append(_client_ctx)
    app.cleanup_ctx.append(_ingress_ctx)
    app.cleanup_ctx.append(_reconcile_ctx)
    if workers:
        app.cleanup_ctx.append(_workers_ctx)
    add_status(app, _handle, status_timing or StatusTiming())
    # Each source's path as a route of its own: aiohttp finds one with a dict lookup, where
    # the catch-all costs a walk up the path's parts and a regex match. POST only, so any
    # other method falls through to the catch-all as before (the ingress answers 405). The
    # catch-all still takes every other path, including those a reload adds.
    for path in sorted({source.path for source in config.sources.values()}):
        if _PLAIN_PATH.fullmatch(path):
            app.router.add_route("POST", path, _handle)
    app.router.add_route("*", "/{tail:.*}", _handle)
    return app


def declare_metrics(metrics: Metrics, config: Config) -> None:
    """Every series of the configured sources and destinations, at 0 from start (design.md 5.5)."""
    metrics.declare(
        {name: source.delivery for name, source in config.sources.items()},
        config.destinations,
        [name for name, source in config.sources.items() if source.payment is not None],
        [name for name, source in config.sources.items() if source.reconcile is not None],
        status=config.status is not None,
    )


def create_admin_app(
    gateway: web.Application, *, max_streams: int = MAX_STREAMS
) -> web.Application:
    """The admin application (health, metrics, admin API, live stream, dashboard) reading the
    state of the ingress application ``gateway``."""
    app = web.Application()
    app[GATEWAY] = gateway
    health.add_routes(app)
    api.add_routes(app)
    reconcile_api.add_routes(app)
    analytics_api.add_routes(app)
    add_stream(app, max_streams)
    dashboard.add_routes(app)
    return app
