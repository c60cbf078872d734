"""Ingress latency while the gateway holds idle buyers' status streams (design.md 5.10).

A status stream is a connection the gateway holds for minutes, mostly silent: a heartbeat
every 15 s, a message when its payment changes. What do a thousand of them cost the request
path? Each round starts a fresh gateway (SQLite store, the payments source keeping payments,
a ``status`` block) four times: with no stream, with ``streams`` idle WebSockets, with
``streams`` idle SSE streams, and with no stream again, the streams held by a separate
process (``python -m bench.status hold``) on payments that never change. The gateway's own
``webhook_gateway_status_streams`` must show them all open before anything is measured.

The gateway runs alone on core 0; the load generator, the destination and the holder share
core 1, the holder at the idle scheduling class, so that answering the gateway's pings and
collecting its own garbage never delays the load generator: what is measured is what the
streams cost the gateway. Then:

* the gateway's CPU while it only holds the streams (``idle_seconds``, before any load);
* ingress latency at a constant ``rate`` for ``duration`` seconds, longer than the 15 s
  heartbeat so that every stream beats inside it (the open-loop generator, ``bench.loadgen``
  mode ``rate``: a stall is charged to the requests queued behind it), p50 and p99;
* the gateway's RSS after the load.

Reported per transport: p99 with the streams ÷ p99 without them in the same round (the
geometric mean of the two runs without: one before, one after), the median over rounds and
the range. The benchmark's own noise is the two runs without streams against each other
(the larger over the smaller, per round): a ratio inside that band is a difference this
machine cannot tell from none. Measured, never asserted: the figures say what idle streams
cost on this machine, in this run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import aiohttp
import yaml

from bench.payloads import DESTINATION_PATH, SOURCE_PATH
from bench.procs import (
    REST_CPU,
    SUT_CPU,
    BenchError,
    Proc,
    foreign_cpu,
    get_text,
    process_tree,
    run_loadgen,
    spawn,
    tree_cpu_seconds,
    wait_ready,
)
from bench.scenarios import HOST, Workspace, gateway_config
from gateway.status.token import mint
from harness.redis_server import free_port

#: The benchmark's status secret (nothing real is ever signed with it).
STATUS_SECRET = "bench-status-token-secret-0123456789abcdef"  # noqa: S105 - benchmark only
#: Streams the holder opens at once while it connects.
_CONNECT_BATCH = 50


@dataclass(frozen=True)
class StatusSettings:
    """Sizes of the status-stream measurement."""

    rounds: int = 2
    streams: int = 1000
    rate: float = 300.0
    connections: int = 32
    warmup_seconds: float = 2.0
    #: Longer than the heartbeat (15 s): every stream beats inside the measured load.
    duration: float = 20.0
    idle_seconds: float = 3.0
    transports: tuple[str, ...] = ("websocket", "sse")


STATUS_QUICK = StatusSettings(
    rounds=1, streams=100, warmup_seconds=0.5, duration=2.0, idle_seconds=1.0
)


def _config(listen: int, admin: int, store_url: str, destination: int, streams: int) -> str:
    """The ingress benchmark's gateway config, its source keeping payments, status on."""
    data = yaml.safe_load(
        gateway_config(
            listen=listen,
            admin=admin,
            store_url=store_url,
            destination=f"http://{HOST}:{destination}{DESTINATION_PATH}",
            delivery_concurrency=16,
        )
    )
    data["sources"]["payments"]["payment"] = {
        "key": "/pendingId",
        "reference": "/offerId",
        "states": {"payment.completed": "completed"},
    }
    data["status"] = {
        "secret": STATUS_SECRET,
        "allow_origins": [f"http://{HOST}"],
        # Every stream comes from the holder's one address.
        "max_streams": streams * 2,
        "max_streams_per_ip": streams * 2,
    }
    return yaml.safe_dump(data, sort_keys=False)


@contextlib.contextmanager
def _gateway(ws: Workspace, destination: int, streams: int) -> Iterator[tuple[Proc, int, int]]:
    """A gateway with status on, on a fresh SQLite store; (process, ingress, admin port)."""
    listen, admin = free_port(HOST), free_port(HOST)
    name = f"status-gateway-{listen}"
    path = ws.root / f"{name}.yaml"
    path.write_text(_config(listen, admin, ws.sqlite_url("status"), destination, streams))
    proc = spawn(name, ["-m", "gateway", "run", "--config", str(path)], ws.logs, SUT_CPU)
    try:
        wait_ready(proc, f"http://{HOST}:{admin}/readyz")
        yield proc, listen, admin
    finally:
        proc.stop()


def _open_streams(admin: int, transport: str) -> int:
    """What the gateway's own gauge says is open over ``transport``."""
    text = get_text(f"http://{HOST}:{admin}/metrics")
    found = re.search(
        rf'^webhook_gateway_status_streams\{{transport="{transport}"\}} ([0-9.e+]+)$', text, re.M
    )
    return int(float(found[1])) if found else 0


@contextlib.contextmanager
def _holder(ws: Workspace, port: int, admin: int, streams: int, transport: str) -> Iterator[Proc]:
    """The holder process, once the gateway counts every stream open."""
    spec = {"host": HOST, "port": port, "streams": streams, "transport": transport}
    proc = spawn(f"status-holder-{transport}", ["-m", "bench.status", "hold", json.dumps(spec)],
                 ws.logs, REST_CPU)  # fmt: skip
    try:
        deadline = time.monotonic() + 120.0
        while _open_streams(admin, transport) < streams:
            if not proc.alive():
                raise BenchError(f"the stream holder exited:\n{proc.log_tail()}")
            if time.monotonic() > deadline:
                raise BenchError(
                    f"only {_open_streams(admin, transport)} of {streams} streams opened:\n"
                    f"{proc.log_tail()}"
                )
            time.sleep(0.2)
        yield proc
    finally:
        proc.stop()


def _one(
    ws: Workspace, settings: StatusSettings, transport: str | None, label: str
) -> dict[str, Any]:
    """One gateway run: idle CPU and RSS with ``streams`` open over ``transport`` (none for
    ``None``), then ingress at a constant rate."""
    with contextlib.ExitStack() as stack:
        dest, dest_port = stack.enter_context(ws.helper("destination", REST_CPU))
        proc, port, admin = stack.enter_context(_gateway(ws, dest_port, settings.streams))
        ours = [dest.pid, *process_tree(proc.pid)]
        if transport is not None:
            holder = _holder(ws, port, admin, settings.streams, transport)
            ours.append(stack.enter_context(holder).pid)
        before = tree_cpu_seconds(proc.pid)
        time.sleep(settings.idle_seconds)
        idle_cpu = (tree_cpu_seconds(proc.pid) - before) / settings.idle_seconds
        rss_idle = proc.rss_kib()
        spec = {
            "mode": "rate", "host": HOST, "port": port, "path": SOURCE_PATH,
            "rate": settings.rate, "connections": settings.connections,
            "warmup_seconds": settings.warmup_seconds, "duration": settings.duration,
            "prefix": label, "expect": 202,
        }  # fmt: skip
        timeout = settings.warmup_seconds + settings.duration + 120.0
        noise: dict[str, Any] = {}
        with foreign_cpu(noise, ours):
            load = run_loadgen(spec, timeout, REST_CPU)
        held = _open_streams(admin, transport) if transport is not None else 0
        return {
            "transport": transport,
            "streams_held": held,
            "idle_cpu_cores": idle_cpu,
            "rss_idle_kib": rss_idle,
            "rss_after_kib": proc.rss_kib(),
            "timed": load["timed"],
            "machine_noise": noise,
            "gateway_log": proc.log_summary(),
        }


def run_status(
    ws: Workspace, settings: StatusSettings, progress: Callable[[str], None]
) -> dict[str, Any]:
    """Every round of the measurement and the ratios; JSON-ready."""
    rounds: list[dict[str, Any]] = []
    for index in range(settings.rounds):
        entry: dict[str, Any] = {}
        for condition in ("none", *settings.transports, "none_after"):
            transport = None if condition.startswith("none") else condition
            what = f"{settings.streams} idle {transport} streams" if transport else "no stream"
            progress(f"status: ingress at {settings.rate:g}/s with {what} "
                     f"(round {index + 1} of {settings.rounds})")  # fmt: skip
            entry[condition] = _one(ws, settings, transport, f"status-{index}")
        rounds.append(entry)
    return summarise(settings, rounds)


def summarise(settings: StatusSettings, rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The ratios of the rounds' p99s: per transport against the runs without streams, and
    those two runs against each other (the noise)."""

    def p99(run: Mapping[str, Any]) -> float:
        return float(run["timed"]["p99_ms"])

    summary: dict[str, Any] = {"settings": asdict(settings), "rounds": rounds}
    usable = [r for r in rounds if p99(r["none"]) > 0 and p99(r["none_after"]) > 0]
    noise = [max(p99(r["none"]), p99(r["none_after"])) /
             min(p99(r["none"]), p99(r["none_after"])) for r in usable]  # fmt: skip
    summary["noise"] = {
        "p99_spread": statistics.median(noise) if noise else None,
        "p99_spread_max": max(noise, default=None),
    }
    for transport in settings.transports:
        ratios = [p99(r[transport]) / math.sqrt(p99(r["none"]) * p99(r["none_after"]))
                  for r in usable]  # fmt: skip
        summary[transport] = {
            "p99_ratio": statistics.median(ratios) if ratios else None,
            "p99_ratio_min": min(ratios, default=None),
            "p99_ratio_max": max(ratios, default=None),
        }
    return summary


def render_status(status: Mapping[str, Any]) -> str:
    """The table: per condition the medians over rounds, then p99 with ÷ without."""
    s = status["settings"]
    rounds = status["rounds"]
    lines = [
        f"status streams (design.md 5.10): ingress at a constant {s['rate']:g} req/s "
        f"({s['duration']:g} s after {s['warmup_seconds']:g} s), SQLite store, with and "
        f"without {s['streams']} idle streams held by another process; {s['rounds']} round(s)",
        "",
        f"{'condition':<26}{'p50 ms':>9}{'p99 ms':>9}{'ok':>8}{'idle CPU':>10}{'RSS MiB':>9}",
    ]
    labels = {"none": "no stream", "none_after": "no stream, again"}
    for condition in ("none", *s["transports"], "none_after"):
        runs = [r[condition] for r in rounds]

        def median(read: Callable[[Mapping[str, Any]], float], runs: list[Any] = runs) -> float:
            return statistics.median(read(run) for run in runs)

        label = labels.get(condition, f"{s['streams']} idle {condition}")
        lines.append(
            f"{label:<26}{median(lambda r: r['timed']['p50_ms']):>9.2f}"
            f"{median(lambda r: r['timed']['p99_ms']):>9.2f}"
            f"{median(lambda r: r['timed']['ok']):>8.0f}"
            f"{median(lambda r: r['idle_cpu_cores']):>10.3f}"
            f"{median(lambda r: r['rss_after_kib']) / 1024:>9.1f}"
        )
    noise = [run["machine_noise"]["foreign_cores"] for r in rounds for run in r.values()]
    lines.append(
        f"processes outside the benchmark used {statistics.mean(noise):.2f} cores on average"
        f" during the loads, {max(noise):.2f} at most; 0 means a quiet machine."
    )
    lines.append("")
    spread = status["noise"]
    if spread["p99_spread"] is not None:
        most = spread["p99_spread_max"]
        lines.append(f"noise: p99 of the two runs without streams, larger / smaller: "
                     f"{spread['p99_spread']:.2f} (at most {most:.2f})")  # fmt: skip
    for transport in s["transports"]:
        t = status[transport]
        ratio = "n/a" if t["p99_ratio"] is None else f"{t['p99_ratio']:.2f}"
        band = (
            "" if t["p99_ratio_min"] is None
            else f" (range {t['p99_ratio_min']:.2f}-{t['p99_ratio_max']:.2f})"
        )  # fmt: skip
        lines.append(f"ingress p99 with {s['streams']} idle {transport} streams / without: "
                     f"{ratio}{band}")  # fmt: skip
    for entry in rounds:
        for condition, run in entry.items():
            timed = run["timed"]
            if timed["sent"] != timed["ok"]:
                lines.append(f"WARNING: {timed['sent'] - timed['ok']} requests ({condition})"
                             " were not answered 202")  # fmt: skip
            if run["transport"] is not None and run["streams_held"] < s["streams"]:
                lines.append(f"WARNING: only {run['streams_held']} {condition} streams were"
                             " still open after the load")  # fmt: skip
    return "\n".join(lines)


# -- the holder ------------------------------------------------------------------------------


async def _hold_one(
    session: aiohttp.ClientSession, base: str, key: str, transport: str, ready: asyncio.Event
) -> None:
    """Open one stream on payment ``key``, take its first message, then keep reading (the
    pings and heartbeats) until cancelled."""
    token = mint(STATUS_SECRET.encode(), "payments", key, int(time.time()) + 3600)
    url = f"{base}/status/payments/{key}?token={token}"
    try:
        if transport == "websocket":
            async with session.ws_connect(url.replace("http://", "ws://", 1)) as socket:
                await socket.receive()
                ready.set()
                async for _ in socket:
                    pass
        else:
            async with session.get(url) as response:
                if response.status != 200:
                    raise BenchError(f"status stream refused: {response.status}")
                await response.content.readline()
                ready.set()
                async for _ in response.content:
                    pass
    finally:
        ready.set()  # a stream that failed does not hold the others up: gather() reports it


async def hold(spec: Mapping[str, Any]) -> None:
    """Open ``streams`` streams, ``_CONNECT_BATCH`` at a time, and hold them until killed.
    At the idle scheduling class: the holder runs only when its core has nothing else to do,
    so it never delays the load generator beside it."""
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    base = f"http://{spec['host']}:{spec['port']}"
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        tasks = []
        for first in range(0, int(spec["streams"]), _CONNECT_BATCH):
            batch = []
            for index in range(first, min(first + _CONNECT_BATCH, int(spec["streams"]))):
                ready = asyncio.Event()
                key = f"idle-{index:05d}"
                held = _hold_one(session, base, key, spec["transport"], ready)
                tasks.append(asyncio.create_task(held))
                batch.append(ready)
            await asyncio.gather(*(event.wait() for event in batch))
        print(f"holding {len(tasks)} {spec['transport']} streams", flush=True)
        await asyncio.gather(*tasks)


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.status hold '<json spec>'``: the stream holder."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "hold":
        print("usage: python -m bench.status hold '<json spec>'", file=sys.stderr)
        return 2
    asyncio.run(hold(json.loads(args[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
