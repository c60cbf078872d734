"""Run the gateway: ingress and admin listeners, signals, reload and graceful stop."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import signal
import socket
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from gateway.app import build_ingress, create_admin_app, create_app, declare_metrics
from gateway.appkeys import RUNTIME
from gateway.config import load_config
from gateway.config.model import Config, HostPort
from gateway.errors import ConfigError, ConfigProblem
from gateway.ingress.deadline import HeaderDeadline, HeaderDeadlines
from gateway.metrics import Metrics
from gateway.store.urls import store_kind

log = logging.getLogger("gateway.server")


class ListenSite(web.BaseSite):
    """A TCP site on ``host:port`` with ``SO_REUSEPORT`` (several processes share the port)
    and an optional deadline for request headers."""

    def __init__(
        self,
        runner: web.BaseRunner,
        address: HostPort,
        *,
        reuse_port: bool = False,
        header_timeout: float | None = None,
    ) -> None:
        super().__init__(runner)
        self._address = address
        self._reuse_port = reuse_port
        self._header_timeout = header_timeout
        self.port: int | None = None

    @property
    def name(self) -> str:
        """The site's URL."""
        return f"http://{self._address}"

    async def start(self) -> None:
        """Bind and start serving."""
        await super().start()
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None
        timeout = self._header_timeout
        factory: Callable[[], asyncio.BaseProtocol] = server
        if timeout:
            deadlines = HeaderDeadlines(timeout)
            factory = lambda: HeaderDeadline(server(), deadlines)  # noqa: E731
        self._server = await loop.create_server(
            factory,
            self._address.host,
            self._address.port,
            reuse_address=True,
            reuse_port=self._reuse_port or None,
            family=socket.AF_INET6 if ":" in self._address.host else socket.AF_UNSPEC,
        )
        self.port = self._server.sockets[0].getsockname()[1]


class Gateway:
    """One gateway process: ingress app, admin app, their listeners, reload and stop."""

    def __init__(self, config: Config, *, config_path: Path | None = None) -> None:
        self.config = config
        self.config_path = config_path
        self.metrics = Metrics()
        # delivery_concurrency 0: an ingress-only process; others sharing the store deliver.
        self.app = create_app(
            config, metrics=self.metrics, workers=config.server.delivery_concurrency > 0
        )
        self.admin = create_admin_app(self.app)
        self._runners: list[web.AppRunner] = []
        self.ingress_site: ListenSite | None = None
        self.admin_site: ListenSite | None = None

    async def start(self, *, reuse_port: bool = False, admin: bool = True) -> None:
        """Start the ingress (and admin) listeners; resources come up before the first request."""
        server = self.config.server
        runner = web.AppRunner(
            self.app,
            access_log=None,
            shutdown_timeout=server.shutdown_timeout,
            keepalive_timeout=75.0,
            handle_signals=False,
        )
        await runner.setup()
        self._runners.append(runner)
        self.ingress_site = ListenSite(
            runner,
            server.listen,
            reuse_port=reuse_port,
            header_timeout=server.header_timeout,
        )
        await self.ingress_site.start()
        if admin:
            admin_runner = web.AppRunner(self.admin, access_log=None, handle_signals=False)
            await admin_runner.setup()
            self._runners.insert(0, admin_runner)
            self.admin_site = ListenSite(admin_runner, server.admin_listen, reuse_port=reuse_port)
            await self.admin_site.start()
        log.info(
            "gateway started",
            extra={
                "listen": str(server.listen),
                "admin_listen": str(server.admin_listen) if admin else None,
                "store": store_kind(self.config.store.url),
                "sources": sorted(self.config.sources),
                "delivery_concurrency": server.delivery_concurrency,
            },
        )
        if server.delivery_concurrency == 0:
            log.info(
                "ingress only (server.delivery_concurrency is 0): the events accepted here are"
                " delivered by other processes on the same store"
            )

    async def stop(self) -> None:
        """Stop accepting, finish in-flight requests and deliveries, release resources."""
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()
        log.info("gateway stopped")

    def reload(self) -> bool:
        """Re-read the config file; a bad config is refused and the old one keeps serving."""
        if self.config_path is None:
            return False
        try:
            new = load_config(self.config_path)
            fixed = restart_only_changes(self.config, new)
            if fixed:
                raise ConfigError(
                    [ConfigProblem(key, "changes only on restart; not reloaded") for key in fixed]
                )
        except ConfigError as exc:
            self.metrics.config_reloads.labels("failure").inc()
            log.error("config reload refused, keeping the old config", extra={"errors": str(exc)})
            return False
        runtime = self.app[RUNTIME]
        runtime.config = new
        # The worker reads destinations and policies from the runtime at each send.
        runtime.ingress = build_ingress(self.app, runtime)
        declare_metrics(self.metrics, new)
        self.config = new
        self.metrics.config_reloads.labels("success").inc()
        log.info("config reloaded", extra={"sources": sorted(new.sources)})
        return True


def restart_only_changes(old: Config, new: Config) -> list[str]:
    """The keys of ``server`` and ``store`` whose value differs: the listeners, processes
    and store are made once, at start, so a reload cannot apply them (values are left out:
    a store URL or key may hold a secret)."""
    changed = []
    for section in ("server", "store"):
        before, after = getattr(old, section), getattr(new, section)
        for field in dataclasses.fields(before):
            if getattr(before, field.name) != getattr(after, field.name):
                changed.append(f"{section}.{field.name}")
    return changed


async def serve(
    config: Config,
    *,
    config_path: Path | None = None,
    reuse_port: bool = False,
    admin: bool = True,
) -> None:
    """Run one gateway process until SIGTERM or SIGINT; SIGHUP reloads the config."""
    gateway = Gateway(config, config_path=config_path)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, gateway.reload)
    await gateway.start(reuse_port=reuse_port, admin=admin)
    # What starting made (modules, config, the app, store clients, sessions) lives as long as
    # the process: moved out of the collector's reach, a full collection no longer walks it
    # all, which under load had shown as pauses of tens of milliseconds
    # (BENCHMARKS.md#what-each-optimisation-gave, "gc.freeze()").
    gc.freeze()
    try:
        await stop.wait()
        log.info("stopping: no new connections, finishing in-flight work")
    finally:
        await gateway.stop()
