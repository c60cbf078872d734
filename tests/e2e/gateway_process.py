"""The gateway as an operator runs it, and a destination that can go down and come back.

``GatewayProcess`` writes a config YAML, runs ``python -m gateway run --config <file>`` as a
separate OS process with the test secrets in its environment and its stderr (JSON log lines) in a
file, waits for ``GET /readyz`` to answer 200, and stops it with SIGTERM or SIGKILL, always by its
PID. ``Destination`` serves a ``tests.support.Marketplace`` on a port chosen before the gateway
starts, so the gateway's config can name it while it is still down.

Every wait here is bounded and fails with the gateway's log tail, so a failure says what the
gateway said.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

from gateway.store import EventView, open_store
from harness.redis_server import free_port
from tests.support import ENV, Marketplace, payment_body, payments_source, sign_payment
from tests.waiting import eventually

#: Bound on a gateway's start: a cold interpreter imports aiohttp, redis and prometheus_client.
READY_TIMEOUT = 30.0
#: Bound on a SIGTERM stop: in-flight deliveries finish first, each within its timeout.
STOP_TIMEOUT = 30.0
MARKET_PATH = "/api/webhooks/payments"


def e2e_config(
    *,
    store_url: str,
    destinations: dict[str, str],
    sources: dict[str, Any] | None = None,
    server: dict[str, Any] | None = None,
    destination: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A config as plain data: fast retries, short leases and polls, one source routing to
    every destination in ``destinations`` (name -> URL). Listen addresses are filled in by
    ``GatewayProcess``."""
    dests = {}
    for name, url in destinations.items():
        dests[name] = {
            "url": url,
            "signing_secret": "${MARKETPLACE_WEBHOOK_SECRET}",
            "timeout": "1s",
            # Short, so a test sees several retries; max_attempts keeps a delivery alive
            # across a down destination and a gateway restart (the last delay repeats).
            "retry": {"schedule": ["1s", "1s", "1s", "2s"], "max_attempts": 30, "jitter": 0},
            **(destination or {}),
        }
    routes = [{"destination": name, "types": ["payment.*"]} for name in destinations]
    return {
        "server": {
            # The lease outlives the destination timeout (the loader insists), and is short so
            # a killed worker's deliveries come back within the test.
            "delivery_lease": "3s",
            "delivery_poll_interval": "200ms",
            "shutdown_timeout": "10s",
            **(server or {}),
        },
        "store": {"url": store_url},
        "admin": {"token": "${GATEWAY_ADMIN_TOKEN}"},
        "destinations": dests,
        "sources": sources or {"payments": payments_source(routes=routes)},
    }


class GatewayProcess:
    """One ``python -m gateway run`` process with its own config file, ports and log file."""

    def __init__(self, directory: Path, config: dict[str, Any], *, name: str = "gateway") -> None:
        self.name = name
        self.directory = directory
        self.port = free_port()
        self.admin_port = free_port()
        self.config_path = directory / f"{name}.yaml"
        self.log_path = directory / f"{name}.log"
        # Its temporary files (server.workers' metrics) stay in the test's directory.
        self.temp_dir = directory / "tmp"
        self.temp_dir.mkdir(exist_ok=True)
        self.process: subprocess.Popen[bytes] | None = None
        self.write_config(config)

    # -- config ---------------------------------------------------------------------------------

    def write_config(self, config: dict[str, Any]) -> None:
        """Write ``config`` (listen addresses set to this process's ports) to the config file."""
        data = dict(config)
        data["server"] = {
            **config.get("server", {}),
            "listen": f"127.0.0.1:{self.port}",
            "admin_listen": f"127.0.0.1:{self.admin_port}",
        }
        self.config_path.write_text(yaml.safe_dump(data, sort_keys=False))

    def url(self, path: str = "/hooks/payments") -> str:
        """The ingress URL of ``path``."""
        return f"http://127.0.0.1:{self.port}{path}"

    def admin_url(self, path: str) -> str:
        """The admin listener's URL of ``path``."""
        return f"http://127.0.0.1:{self.admin_port}{path}"

    # -- life cycle -----------------------------------------------------------------------------

    @property
    def pid(self) -> int:
        """The running process's PID."""
        assert self.process is not None, f"{self.name} is not running"
        return self.process.pid

    def running(self) -> bool:
        """Whether the process was started and has not exited."""
        return self.process is not None and self.process.poll() is None

    async def start(self, timeout: float = READY_TIMEOUT) -> GatewayProcess:
        """Start the process and wait until ``/readyz`` answers 200."""
        assert not self.running(), f"{self.name} is already running"
        argv = [sys.executable, "-m", "gateway", "run", "--config", str(self.config_path)]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                argv,
                cwd=self.directory,
                env={**os.environ, **ENV, "TMPDIR": str(self.temp_dir)},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                # Its own process group, so teardown can end it with every process it started.
                start_new_session=True,
            )
        await self.wait_ready(timeout)
        return self

    async def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Poll ``/readyz`` until it answers 200; fail with the log tail if it never does."""
        async with aiohttp.ClientSession() as session:

            async def ready() -> int:
                if not self.running():
                    raise AssertionError(
                        f"{self.name} exited with {self.returncode} before it was ready\n"
                        f"{self.log_tail()}"
                    )
                async with session.get(self.admin_url("/readyz")) as response:
                    return response.status

            await eventually(
                ready,
                f"{self.name} to be ready",
                until=lambda status: status == 200,
                timeout=timeout,
                ignoring=(aiohttp.ClientError,),
                why=self.log_tail,
            )

    @property
    def returncode(self) -> int | None:
        """The exit status once the process ended (negative: killed by that signal)."""
        return None if self.process is None else self.process.poll()

    def send_signal(self, signum: int) -> None:
        """Send ``signum`` to the running process."""
        assert self.running(), f"{self.name} is not running\n{self.log_tail()}"
        os.kill(self.pid, signum)

    async def wait_exit(self, timeout: float = STOP_TIMEOUT) -> int:
        """Wait (without blocking the loop) until the process exits; its exit status."""
        process = self.process
        assert process is not None
        code = await eventually(
            process.poll,
            f"{self.name} to exit",
            until=lambda code: code is not None,
            timeout=timeout,
            why=self.log_tail,
        )
        assert code is not None
        return code

    async def terminate(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM (graceful stop) and wait for the exit status."""
        self.send_signal(signal.SIGTERM)
        return await self.wait_exit(timeout)

    async def kill(self) -> int:
        """SIGKILL, as a crash or an OOM kill would end it; wait for it to be gone."""
        self.send_signal(signal.SIGKILL)
        return await self.wait_exit()

    def cleanup(self) -> None:
        """Fixture teardown: make sure the process and any it started (``server.workers``) are
        gone: SIGKILL to its process group, which it leads."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGCONT)  # a stopped process dies at once
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    # -- logs -----------------------------------------------------------------------------------

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the process's stderr, for assertion messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return f"--- {self.name}: no log ---"
        tail = "\n".join(text.splitlines()[-lines:])
        return f"--- {self.name} log tail ({self.log_path}) ---\n{tail}"

    def log_records(self) -> list[dict[str, Any]]:
        """Every JSON log line so far (lines that are not JSON are skipped)."""
        records = []
        with contextlib.suppress(OSError):
            for line in self.log_path.read_text(errors="replace").splitlines():
                with contextlib.suppress(ValueError):
                    record = json.loads(line)
                    if isinstance(record, dict):
                        records.append(record)
        return records

    async def wait_for_log(
        self, message: str, *, after: int = 0, timeout: float = 15.0
    ) -> dict[str, Any]:
        """Wait for a log record with ``msg == message`` among the records after index ``after``."""

        def logged() -> dict[str, Any] | None:
            return next((r for r in self.log_records()[after:] if r.get("msg") == message), None)

        record = await eventually(
            logged, f"{self.name} to log {message!r}", timeout=timeout, why=self.log_tail
        )
        assert record is not None
        return record

    async def series(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        """Every sample of the admin listener's Prometheus text: (name, labels) -> value."""
        async with (
            aiohttp.ClientSession() as session,
            session.get(self.admin_url("/metrics")) as response,
        ):
            text = await response.text()
        samples = {}
        for line in text.splitlines():
            if line.startswith("#") or " " not in line:
                continue
            series, value = line.rsplit(" ", 1)
            metric, _, rest = series.partition("{")
            labels = frozenset(
                (name, quoted.strip('"'))
                for name, _, quoted in (pair.partition("=") for pair in rest.rstrip("}").split(","))
                if name
            )
            samples[(metric, labels)] = float(value)
        return samples

    async def metric(self, name: str, **labels: str) -> float:
        """One sample of the admin listener's Prometheus text (0 when it is not there yet)."""
        return (await self.series()).get((name, frozenset(labels.items())), 0.0)


class Destination:
    """A ``Marketplace`` on a pre-chosen local port; ``start`` and ``stop`` can repeat."""

    def __init__(self, market: Marketplace | None = None, port: int | None = None) -> None:
        self.market = market or Marketplace()
        self.port = port or free_port()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """The URL the gateway's destination config names."""
        return f"http://127.0.0.1:{self.port}{MARKET_PATH}"

    async def start(self) -> None:
        """Listen on the chosen port (again, after ``stop``)."""
        # A short shutdown timeout: a request held open by a test ends with the test.
        runner = web.AppRunner(self.market.app(), shutdown_timeout=2.0, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        self._runner = runner

    async def stop(self) -> None:
        """Stop listening: connections are refused until ``start``."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    def ids(self) -> collections.Counter[str]:
        """How many times each ``webhook-id`` arrived."""
        return collections.Counter(r.headers.get("webhook-id", "") for r in self.market.received)

    async def wait_for_ids(
        self, ids: Iterable[str], *, start: int = 0, timeout: float = 30.0, why: str = ""
    ) -> None:
        """Wait until every id in ``ids`` arrived at least once among requests ``start:``."""
        wanted = set(ids)
        await eventually(
            lambda: sorted(
                wanted - {r.headers.get("webhook-id") for r in self.market.received[start:]}
            ),
            f"{len(wanted)} events to arrive (seen: the ids still missing)",
            until=lambda missing: not missing,
            timeout=timeout,
            why=why,
        )


class HoldingMarketplace(Marketplace):
    """A marketplace that holds the first request for each id in ``hold_ids`` open until the
    test sets ``release`` (at most ``hold`` seconds), then answers 200: a slow backend, so a
    delivery is genuinely in flight. It notes each held request's client port and whether it
    was answered."""

    def __init__(self, hold: float, hold_ids: Iterable[str] = ()) -> None:
        super().__init__()
        self.hold = hold
        self.hold_ids = set(hold_ids)
        self.release = asyncio.Event()
        self.held_from: dict[str, int] = {}  # webhook-id -> the sender's local port
        self.answered: set[str] = set()

    async def handle(self, request: web.Request) -> web.Response:
        """Record and verify the request like the marketplace, then maybe hold it."""
        webhook_id = request.headers.get("webhook-id", "")
        held = webhook_id in self.hold_ids
        self.hold_ids.discard(webhook_id)
        if held:
            peer = request.transport.get_extra_info("peername") if request.transport else None
            self.held_from[webhook_id] = int(peer[1]) if peer else 0
        response = await super().handle(request)
        if held:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.hold):
                    await self.release.wait()
            self.answered.add(webhook_id)
        return response


def tcp_owner(local_port: int, remote_port: int, pids: Iterable[int]) -> int | None:
    """Which of ``pids`` owns the loopback TCP connection ``local_port -> remote_port``.

    Linux only: the socket's inode from ``/proc/net/tcp``, then the process whose file
    descriptors include that socket. Used to learn which gateway process holds a delivery."""
    wanted = (f"0100007F:{local_port:04X}", f"0100007F:{remote_port:04X}")
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if (fields[1], fields[2]) == wanted:
            inode = fields[9]
            break
    if inode is None:
        return None
    for pid in pids:
        fd_dir = Path(f"/proc/{pid}/fd")
        with contextlib.suppress(OSError):
            for fd in fd_dir.iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) == f"socket:[{inode}]":
                        return pid
    return None


async def send_event(
    session: aiohttp.ClientSession,
    url: str,
    *,
    msg_id: str | None = None,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any], str, bytes]:
    """POST one payments event signed with standardwebhooks; (status, JSON answer, id, body)."""
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    body = body if body is not None else payment_body()
    signed = {**sign_payment(body, msg_id=msg_id), **(headers or {})}
    async with session.post(url, data=body, headers=signed) as response:
        raw = await response.read()
        try:
            answer = json.loads(raw) if raw else {}
        except ValueError:
            answer = {"raw": raw.decode(errors="replace")}
        return response.status, answer, msg_id, body


async def queue_depth(store_url: str, partitions: int = 1) -> dict[tuple[str, str], int]:
    """The store's deliveries per (destination, state), read directly from the store."""
    store = await open_store(store_url, partitions=partitions)
    try:
        return await store.queue_depth()
    finally:
        await store.close()


async def event_views(
    store_url: str, ids: Iterable[str], *, partitions: int = 1
) -> dict[str, EventView | None]:
    """Each event of ``ids`` with its deliveries and attempts, read directly from the store
    (``None``: the store does not hold it)."""
    store = await open_store(store_url, partitions=partitions)
    try:
        return {event_id: await store.get_event(event_id) for event_id in ids}
    finally:
        await store.close()


async def wait_drained(
    store_url: str, *, timeout: float = 30.0, logs: str = "", partitions: int = 1
) -> None:
    """Wait until no delivery is due or leased (everything was delivered or dead-lettered)."""
    await eventually(
        lambda: queue_depth(store_url, partitions),
        "no delivery due or leased",
        until=lambda depth: (
            not any(n for (_, state), n in depth.items() if state in ("due", "leased"))
        ),
        timeout=timeout,
        interval=0.1,
        why=logs,
    )


async def read_stream(
    response: aiohttp.ClientResponse, want: set[tuple[str, str]], logs: Callable[[], str]
) -> list[tuple[str, str, dict[str, Any]]]:
    """SSE messages until every (event, event id) in ``want`` was seen, bounded."""
    seen: list[tuple[str, str, dict[str, Any]]] = []
    fields: dict[str, str] = {}
    try:
        async with asyncio.timeout(20):
            while not want <= {(kind, data["event_id"]) for _, kind, data in seen}:
                line = (await response.content.readline()).decode().rstrip("\n")
                if line == "":
                    if "data" in fields:
                        seen.append((fields["id"], fields["event"], json.loads(fields["data"])))
                    fields = {}
                elif not line.startswith(":"):
                    name, _, value = line.partition(": ")
                    fields[name] = value
    except TimeoutError:
        raise AssertionError(f"saw {seen}\n{logs()}") from None
    return seen
