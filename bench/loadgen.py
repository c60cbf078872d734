"""The load generator, in its own process so it never shares an event loop with a server.

``python -m bench.loadgen '<json spec>'`` prints one JSON result on stdout. Four modes:

* ``ingress``: closed-loop load at a fixed concurrency. Every request is built and signed
  BEFORE the clock starts (a pool of distinct events, each a complete HTTP/1.1 request in
  bytes), so neither signing nor HTTP client machinery is measured; each of ``concurrency``
  keep-alive connections sends its next request as soon as the previous answer is in. A
  warm-up phase runs first on the same connections and is not counted. Both phases stop at
  a request count or a time limit, whichever comes first.
* ``direct``: the delivery baseline. The same kind of POSTs the gateway's delivery worker
  sends, sent straight to the destination with the worker's concurrency, after a warm-up,
  ``repeats`` times: by one aiohttp ``ClientSession``, or with ``"client": "gateway"`` by the
  gateway's own delivery client (``gateway.delivery.client``), a delivery's POST alone.
* ``rate``: open-loop load at a constant rate (wrk2 is not packaged in Debian, so this is the
  bench's own). Request i is due at ``start + i / rate`` and is sent then whatever happened
  to the earlier ones, on the first free one of ``connections`` keep-alive connections (as
  wrk2 does); its latency is counted from when it was due, not from when it went out: a
  server that stalls is charged for the requests that queued behind the stall (no
  coordinated omission).
* ``hops``: ``rate`` without a gateway: each request makes ``round_trips`` Redis ``PING``s in
  turn on one connection, then the POST to the destination. Run from the gateway's core, it is
  the floor of a sync request on Redis (the per-IP limit, the claim and the commit are one
  round trip each): what the machine's own cross-core round trips cost, in the same run.

The client is deliberately thin in ``ingress`` mode: a heavy client on a 2-core machine would
cap the baseline's number at the client's own speed and flatter every ratio.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench.payloads import (
    BODY_SIZE,
    SOURCE_PATH,
    event_body,
    payments_secret,
    standard_webhooks,
)
from gateway.delivery.client import DeliveryClient, HttpError

#: A safety net over every phase's own limits: the process never outlives this many seconds
#: beyond the time its spec asks for.
GRACE_SECONDS = 60.0


class ProtocolError(Exception):
    """The server answered something this thin client does not read (it never should)."""


def build_pool(host: str, port: int, path: str, count: int, prefix: str) -> list[bytes]:
    """``count`` distinct signed Standard Webhooks requests, each as raw HTTP/1.1 bytes."""
    provider = standard_webhooks()
    secret = payments_secret()
    now = time.time()
    pool: list[bytes] = []
    for index in range(count):
        body = event_body(index, prefix)
        headers = provider.sign(body, secret, now, msg_id=f"msg_{prefix}_{index:08d}")
        head = (
            f"POST {path} HTTP/1.1\r\n"
            f"Host: {host}:{port}\r\n"
            "User-Agent: webhook-gateway-bench\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            + "".join(f"{name}: {value}\r\n" for name, value in headers.items())
            + "\r\n"
        )
        pool.append(head.encode() + body)
    return pool


def _parse_head(head: bytes) -> tuple[int, int, bool]:
    """Status, Content-Length and whether the server will close, from a response head."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise ProtocolError(f"not an HTTP/1.x status line: {lines[0]!r}")
    status = int(parts[1])
    length = 0
    close = parts[0] == b"HTTP/1.0"
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"connection":
            close = value.strip().lower() == b"close"
        elif name == b"transfer-encoding":
            raise ProtocolError("chunked answers are not expected from a sized JSON response")
    return status, length, close


class Connection:
    """One keep-alive HTTP/1.1 connection that sends pre-built requests and reads answers."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def exchange(self, request: bytes) -> int:
        """Send one request and read its whole answer; return the status code."""
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        assert self._reader is not None
        self._writer.write(request)
        head = await self._reader.readuntil(b"\r\n\r\n")
        status, length, close = _parse_head(head[:-4])
        if length:
            await self._reader.readexactly(length)
        if close:
            self.close()
        return status

    def close(self) -> None:
        """Drop the connection; the next exchange opens a new one."""
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


class Hops:
    """A Redis connection and an HTTP one: ``round_trips`` PINGs in turn, then the request."""

    def __init__(self, http: Connection, redis_host: str, redis_port: int, round_trips: int):
        self.http = http
        self.redis = (redis_host, redis_port)
        self.round_trips = round_trips
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def exchange(self, request: bytes) -> int:
        """The round trips to Redis, then one request to the destination; its status."""
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(*self.redis)
        assert self._reader is not None
        for _ in range(self.round_trips):
            self._writer.write(b"PING\r\n")
            if await self._reader.readuntil(b"\r\n") != b"+PONG\r\n":
                raise ProtocolError("Redis did not answer PING with PONG")
        return await self.http.exchange(request)

    def close(self) -> None:
        """Drop both connections."""
        self.http.close()
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


@dataclass
class Phase:
    """What one phase saw: answers by status, per-request latencies and the wall time."""

    statuses: Counter[int] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    elapsed: float = 0.0
    #: CPU seconds this process spent in the phase (measured by ``direct`` only).
    cpu: float | None = None

    def summary(self, expect: int) -> dict[str, Any]:
        """JSON-ready numbers: rate of expected answers, latency percentiles in ms."""
        ok = self.statuses.get(expect, 0)
        ordered = sorted(self.latencies)
        return {
            "sent": len(self.latencies),
            "ok": ok,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "elapsed_s": self.elapsed,
            "rps": ok / self.elapsed if self.elapsed > 0 else 0.0,
            "p50_ms": percentile(ordered, 50) * 1000,
            "p99_ms": percentile(ordered, 99) * 1000,
            "mean_ms": (sum(ordered) / len(ordered) * 1000) if ordered else 0.0,
            "cpu_s": self.cpu,
        }


def percentile(ordered: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (0.0 when empty)."""
    if not ordered:
        return 0.0
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


async def run_phase(
    connections: Sequence[Connection], pool: Sequence[bytes], start: int, limit: int, seconds: float
) -> tuple[Phase, int]:
    """Send ``pool[start:start+limit]`` over ``connections`` for at most ``seconds``."""
    phase = Phase()
    end = min(len(pool), start + limit)
    cursor = start
    deadline = time.perf_counter() + seconds

    async def drive(connection: Connection) -> None:
        nonlocal cursor
        while cursor < end and time.perf_counter() < deadline:
            request = pool[cursor]
            cursor += 1
            sent = time.perf_counter()
            try:
                status = await connection.exchange(request)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ProtocolError):
                status = 0  # counted as a failure, never retried (that would hide it)
                connection.close()
            phase.latencies.append(time.perf_counter() - sent)
            phase.statuses[status] += 1

    started = time.perf_counter()
    await asyncio.gather(*(drive(c) for c in connections))
    phase.elapsed = time.perf_counter() - started
    return phase, cursor


async def ingress(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Pre-sign, warm up, then measure a fixed-concurrency load on one ingress endpoint."""
    host, port = str(spec["host"]), int(spec["port"])
    warmup_max, max_requests = int(spec["warmup_max"]), int(spec["max_requests"])
    built = time.perf_counter()
    pool = build_pool(
        host, port, str(spec.get("path", SOURCE_PATH)), warmup_max + max_requests, spec["prefix"]
    )
    signing_s = time.perf_counter() - built
    connections = [Connection(host, port) for _ in range(int(spec["concurrency"]))]
    try:
        warm, cursor = await run_phase(
            connections, pool, 0, warmup_max, float(spec["warmup_seconds"])
        )
        timed, _ = await run_phase(connections, pool, cursor, max_requests, float(spec["duration"]))
    finally:
        for connection in connections:
            connection.close()
    expect = int(spec.get("expect", 202))
    return {
        "pool": len(pool),
        "pool_build_s": signing_s,
        "warmup": warm.summary(expect),
        "timed": timed.summary(expect),
    }


async def direct(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Warm up, then POST ``count`` events straight to ``url`` at a fixed concurrency."""
    url = str(spec["url"])
    concurrency = int(spec["concurrency"])
    warmup, count = int(spec["warmup_count"]), int(spec["count"])
    bodies = [event_body(index, spec["prefix"]) for index in range(warmup + count)]
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30, connect=10)
    headers = {"Content-Type": "application/json"}
    own = DeliveryClient(limit=concurrency) if spec.get("client") == "gateway" else None
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def post(body: bytes) -> int:
            try:
                if own is not None:
                    return (await own.post(url, body, headers, give_up_after=30)).status
                async with session.post(
                    url, data=body, headers=headers, allow_redirects=False
                ) as response:
                    await response.read()
                    return response.status
            except (aiohttp.ClientError, HttpError, TimeoutError):
                return 0

        async def run(first: int, last: int) -> Phase:
            phase = Phase()
            cursor = first

            async def drive() -> None:
                nonlocal cursor
                while cursor < last:
                    body = bodies[cursor]
                    cursor += 1
                    sent = time.perf_counter()
                    status = await post(body)
                    phase.latencies.append(time.perf_counter() - sent)
                    phase.statuses[status] += 1

            started, cpu = time.perf_counter(), time.process_time()
            await asyncio.gather(*(drive() for _ in range(concurrency)))
            phase.elapsed = time.perf_counter() - started
            phase.cpu = time.process_time() - cpu
            return phase

        warm = await run(0, warmup)
        # The same events again for each repeat: the destination only counts them, and a few
        # short repeats give a steadier median than one long run on a busy machine.
        timed = [
            (await run(warmup, warmup + count)).summary(200)
            for _ in range(int(spec.get("repeats", 1)))
        ]
    if own is not None:
        await own.close()
    return {"warmup": warm.summary(200), "timed": timed, "body_bytes": BODY_SIZE}


async def constant_rate(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Pre-sign, then send at ``rate`` per second over ``connections`` keep-alive
    connections (as wrk2 does): a warm-up, then the timed phase."""
    host, port = str(spec["host"]), int(spec["port"])
    rate = float(spec["rate"])
    warmup, duration = float(spec["warmup_seconds"]), float(spec["duration"])
    count = int(rate * (warmup + duration))
    built = time.perf_counter()
    pool = build_pool(host, port, str(spec["path"]), count, spec["prefix"])
    signing_s = time.perf_counter() - built
    idle: asyncio.Queue[Connection | Hops] = asyncio.Queue()
    for _ in range(int(spec["connections"])):
        connection = Connection(host, port)
        idle.put_nowait(
            connection
            if spec["mode"] == "rate"
            else Hops(connection, spec["redis_host"], int(spec["redis_port"]), spec["round_trips"])
        )
    warm, timed = Phase(), Phase()
    tasks: set[asyncio.Task[None]] = set()
    waited = 0

    async def send(request: bytes, due: float, phase: Phase) -> None:
        nonlocal waited
        if idle.empty():
            waited += 1  # every connection busy: it waits, and the wait counts as latency
        connection = await idle.get()
        try:
            status = await connection.exchange(request)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ProtocolError):
            status = 0
            connection.close()
        phase.latencies.append(time.perf_counter() - due)
        phase.statuses[status] += 1
        idle.put_nowait(connection)

    start = time.perf_counter() + 0.05
    for index, request in enumerate(pool):
        due = start + index / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        phase = warm if index < rate * warmup else timed
        task = asyncio.create_task(send(request, due, phase))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)
    warm.elapsed, timed.elapsed = warmup, duration
    while not idle.empty():
        idle.get_nowait().close()
    expect = int(spec.get("expect", 200))
    return {
        "pool": len(pool),
        "pool_build_s": signing_s,
        "rate": rate,
        "connections": int(spec["connections"]),
        "waited_for_a_connection": waited,
        "warmup": warm.summary(expect),
        "timed": timed.summary(expect),
    }


async def main_async(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Run the mode ``spec`` asks for, bounded by its own time limits plus a grace period."""
    budget = float(spec.get("warmup_seconds", 0)) + float(spec.get("duration", 0))
    async with asyncio.timeout(budget + GRACE_SECONDS):
        if spec["mode"] == "ingress":
            return await ingress(spec)
        if spec["mode"] == "direct":
            return await direct(spec)
        if spec["mode"] in ("rate", "hops"):
            return await constant_rate(spec)
    raise ValueError(f"unknown mode {spec['mode']!r}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: the spec is the single JSON argument; the result goes to stdout."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m bench.loadgen '<json spec>'", file=sys.stderr)
        return 2
    result = asyncio.run(main_async(json.loads(args[0])))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
