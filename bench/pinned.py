"""The pinned measurements: wrk against the gateway and two baselines, one core for each side.

The server being measured (the gateway, the bare aiohttp baseline or the nginx proxy baseline)
runs alone on ``SUT_CPU``; everything else runs on ``REST_CPU``: wrk, the constant-rate load
generator, redis-server, the fast destination (nginx ``return 200``) and this orchestrator.
On a 2-core machine that is the only split that gives the measured process a core of its own:
redis-server and the destination are on the load generator's side because in production they
are other machines, and a gateway sharing its core with them would be charged for their work.
The other side of that choice: the gateway here has redis-server's CPU for free.

Measurements (each side's numbers in the same run, interleaved in rounds as in the rest of
the bench):

* throughput: ``wrk -t1 -c32 --latency`` cycling through 100,000 pre-signed requests, each a
  new event, for the gateway (full pipeline: allow-list, both rate limits on but never
  refusing, Standard Webhooks verification, extraction, dedupe, durable enqueue, delivery to
  the destination) on SQLite and on Redis (AOF off), the bare aiohttp baseline on uvloop,
  the floor (``bench.floor``: the accept path's work written leanly on uvloop, one Lua
  script per request through an auto-pipeline, on the same Redis) and the nginx
  ``proxy_pass`` baseline to the same destination; the gateway's RSS after warm-up
  and after the phase;
* sync latency: ``delivery: sync`` at a constant 500 requests/s, against the same requests
  sent straight to the destination at the same rate: the p99 the gateway adds; and, as its
  floor on Redis, the same rate from the measured core making only the sync path's round
  trips (three to Redis, then the POST to the destination, ``bench.loadgen`` ``hops``);
* keep-up: 80 % of the accept rate just measured, at a constant rate, while the queue depth
  is watched: does delivery keep up (``bench.keepup``);
* workers: ``server.workers: 2`` against 1 (Redis store), pinned as far as 2 cores allow;
* ``--long``: 500,000 accepted events through one gateway, its RSS sampled along the way.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.keepup import keep_up_ladder
from bench.nginx import requests_served, start_nginx
from bench.payloads import DESTINATION_PATH, SOURCE_PATH
from bench.procs import (
    REPO,
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
from bench.report import SYNC_FLOOR, compare
from bench.scenarios import HOST, Workspace, gateway_config
from bench.wrk import run_wrk, write_pool
from harness.redis_server import RedisServer, free_port

#: Seconds a draining gateway runs before its window opens (its workers reach full speed).
DRAIN_SETTLE = 1.5
_DELIVERED = re.compile(r'^webhook_gateway_deliveries_total\{[^}]*result="delivered"[^}]*\} (\S+)$')
#: The three ways ``server.workers`` is compared: (label, workers, the gateway's cores).
WORKER_LAYOUTS = (
    ("1 process on core 0", 1, SUT_CPU),
    ("2 processes on core 0", 2, SUT_CPU),
    ("2 processes on cores 0-1", 2, f"{SUT_CPU},{REST_CPU}"),
    ("1 process on cores 0-1", 1, f"{SUT_CPU},{REST_CPU}"),
)


@dataclass(frozen=True)
class PinnedSettings:
    """Sizes and limits of the pinned measurements; every phase is bounded in time."""

    rounds: int = 2
    connections: int = 32
    pool: int = 100_000
    warm_pool: int = 20_000
    warmup: float = 2.0
    duration: float = 10.0
    sync_rate: float = 500.0
    sync_warmup: float = 2.0
    sync_duration: float = 10.0
    #: Seconds of the keep-up phase (``bench.keepup``): 80 % of the accept rate, queue watched.
    keep_up_duration: float = 20.0
    #: Accepted events of the long RSS run; 0 leaves it out (``--long`` sets 500,000).
    long_events: int = 0
    #: The long run signs this many events at a time, just before sending them, so every
    #: signature is inside the 5-minute tolerance when it arrives.
    long_chunk: int = 100_000
    #: Throughput only: leave out the sync latency and ``server.workers`` measurements
    #: (``--throughput-only``, for before/after runs of an accept-path change).
    throughput_only: bool = False


PINNED_QUICK = PinnedSettings(
    rounds=1, pool=20_000, warm_pool=5_000, warmup=0.5, duration=2.0, sync_warmup=0.5,
    sync_duration=2.0, long_chunk=20_000, keep_up_duration=3.0,
)  # fmt: skip

THROUGHPUT_METRICS: dict[str, Callable[[Mapping[str, Any]], float]] = {
    "rps": lambda run: float(run["rps"]),
    "p50_ms": lambda run: float(run["p50_ms"]),
    "p99_ms": lambda run: float(run["p99_ms"]),
    "cpu_us": lambda run: float(run["cpu_us_per_request"]),
}
#: Redis round trips of one sync request: the per-IP limit, the claim (which decides the
#: per-source limit too) and the commit.
SYNC_REDIS_ROUND_TRIPS = 3

SYNC_METRICS: dict[str, Callable[[Mapping[str, Any]], float]] = {
    "p50_ms": lambda run: float(run["p50_ms"]),
    "p99_ms": lambda run: float(run["p99_ms"]),
}

_OUTCOME = re.compile(r'outcome="([^"]*)"')


@dataclass
class Target:
    """A running server under test: its process, ingress port and (gateway) admin port."""

    proc: Proc
    port: int
    admin: int | None = None
    #: A split gateway's delivering process (``Pinned.gateway(split=True)``).
    delivery: Proc | None = None

    def outcomes(self) -> Counter[str]:
        """The gateway's ``webhook_gateway_requests_total`` by outcome (empty for baselines)."""
        counts: Counter[str] = Counter()
        if self.admin is None:
            return counts
        text = get_text(f"http://{HOST}:{self.admin}/metrics", timeout=10.0)
        for line in text.splitlines():
            if line.startswith("webhook_gateway_requests_total{"):
                labels, value = line.rsplit(" ", 1)
                match = _OUTCOME.search(labels)
                if match:
                    counts[match.group(1)] += int(float(value))
        return counts


class Pinned:
    """The pinned run's shared pieces: workspace, redis-server, destination, baseline pools."""

    def __init__(
        self, ws: Workspace, settings: PinnedSettings, redis: RedisServer, destination: int
    ) -> None:
        self.ws = ws
        self.settings = settings
        self.redis = redis
        self.destination = destination
        #: Processes that outlive a phase (redis-server, the nginx destination): their CPU is
        #: the benchmark's own, not other people's, in the noise figure.
        self.resident: list[int] = []
        self._databases = iter(range(64))
        self._baseline_pools: tuple[Path, Path] | None = None

    # -- servers -------------------------------------------------------------------------

    def store_url(self, store: str, label: str) -> str:
        """A fresh, empty store for each gateway run (a new Redis database, a new file)."""
        if store == "redis":
            return f"redis://{self.redis.host}:{self.redis.port}/{next(self._databases)}"
        return self.ws.sqlite_url(label)

    @staticmethod
    def label(store: str, split: bool, alone: bool = False) -> str:
        """How a gateway layout is named in the results: the store, or the layout's name."""
        if alone:
            return f"{store}, accept alone"
        return f"{store}, ingress only" if split else store

    @contextlib.contextmanager
    def gateway(
        self,
        store: str,
        *,
        delivery: str = "queued",
        workers: int = 1,
        cpus: str = SUT_CPU,
        split: bool = False,
        alone: bool = False,
        repo: Path = REPO,
    ) -> Iterator[Target]:
        """``python -m gateway run`` on ``cpus``: the full pipeline, rate limits on.

        ``split``: the process on ``cpus`` is ingress only (``delivery_concurrency: 0``) and a
        second one, on the other core with the load generator, delivers from the same store
        (``Target.delivery``). ``alone``: the accept path alone, as the floor runs: ingress
        only, and nothing delivers (the events wait in the store). ``repo``: the checkout
        whose gateway runs (``bench.paired``)."""
        name = f"pinned-gateway-{store}-{delivery}-{workers}{_layout(split, alone)}"
        store_url = self.store_url(store, name)
        concurrency = 0 if alone else self.ws.settings.delivery_concurrency
        with contextlib.ExitStack() as stack:
            delivering = None
            if split:
                delivering = stack.enter_context(
                    self.gateway_process(
                        f"{name}-delivery", store_url, delivery, 1, REST_CPU, concurrency, repo
                    )
                )
            target = stack.enter_context(
                self.gateway_process(
                    name, store_url, delivery, workers, cpus, 0 if split else concurrency, repo
                )
            )
            target.delivery = delivering.proc if delivering else None
            yield target

    @contextlib.contextmanager
    def gateway_process(
        self,
        name: str,
        store_url: str,
        delivery: str,
        workers: int,
        cpus: str,
        concurrency: int,
        repo: Path = REPO,
    ) -> Iterator[Target]:
        """One gateway process (of ``repo``'s checkout) on ``cpus``, ready once it answers."""
        listen, admin = free_port(HOST), free_port(HOST)
        path = self.ws.root / f"{name}-{listen}.yaml"
        path.write_text(
            gateway_config(
                listen=listen,
                admin=admin,
                store_url=store_url,
                destination=f"http://{HOST}:{self.destination}{DESTINATION_PATH}",
                delivery_concurrency=concurrency,
                rate_limits=True,
                delivery=delivery,
                workers=workers,
            )
        )
        args = ["-m", "gateway", "run", "--config", str(path)]
        proc = spawn(name, args, self.ws.logs, cpus, repo)
        try:
            wait_ready(proc, f"http://{HOST}:{admin}/readyz")
            yield Target(proc, listen, admin)
        finally:
            proc.stop()

    @contextlib.contextmanager
    def baseline(self, kind: str) -> Iterator[Target]:
        """``aiohttp`` (bench.servers baseline on uvloop), ``floor`` (bench.floor: the accept
        path's work written leanly, on its own Redis database) or ``nginx`` (proxy_pass to
        the destination), on the measured core."""
        port = free_port(HOST)
        if kind == "aiohttp":
            args = ["-m", "bench.servers", "baseline", "--port", str(port), "--uvloop"]
            proc = spawn(f"pinned-aiohttp-{port}", args, self.ws.logs, SUT_CPU)
            ready = f"http://{HOST}:{port}/_stats"
        elif kind == "floor":
            url = self.store_url("redis", f"floor-{port}")
            args = ["-m", "bench.floor", "--port", str(port), "--redis", url]
            proc = spawn(f"pinned-floor-{port}", args, self.ws.logs, SUT_CPU)
            ready = f"http://{HOST}:{port}/_stats"
        else:
            proc = start_nginx(
                self.ws.root, f"nginx-proxy-{port}", "proxy", port,
                upstream=self.destination, cpus=SUT_CPU,
            )  # fmt: skip
            ready = f"http://{HOST}:{self.destination}/_stats"
        try:
            wait_ready(proc, ready)
            if kind == "nginx":
                _wait_listening(proc, port)
            yield Target(proc, port)
        finally:
            proc.stop()

    # -- phases --------------------------------------------------------------------------

    def _pools(self, target: Target, label: str, fresh: bool) -> tuple[Path, Path]:
        """Warm-up and measured request pools; signed now for a gateway (``fresh``), signed
        once and reused for the baselines, which neither verify nor dedupe."""
        s = self.settings
        if not fresh and self._baseline_pools is not None:
            return self._baseline_pools
        warm, main = self.ws.root / f"{label}-warm.pool", self.ws.root / f"{label}.pool"
        write_pool(warm, HOST, target.port, SOURCE_PATH, s.warm_pool, f"{label}-warm")
        write_pool(main, HOST, target.port, SOURCE_PATH, s.pool, label)
        if not fresh:
            self._baseline_pools = (warm, main)
        return warm, main

    def _wrk(self, target: Target, pool: Path, seconds: float, log: str) -> dict[str, Any]:
        return run_wrk(
            f"http://{HOST}:{target.port}{SOURCE_PATH}", pool,
            connections=self.settings.connections, duration=seconds, cpus=REST_CPU,
            log=self.ws.logs / f"{log}.wrk.log",
        )  # fmt: skip

    def throughput(
        self, target: Target, label: str, *, gateway: bool, fresh: bool | None = None
    ) -> dict[str, Any]:
        """Warm up, then one measured wrk phase; RSS and outcomes around the measured part.
        ``fresh``: requests signed now (a server that verifies them), by default a gateway's."""
        s = self.settings
        warm_pool, pool = self._pools(target, label, fresh=gateway if fresh is None else fresh)
        warm = self._wrk(target, warm_pool, s.warmup, f"{label}-warm")
        before, delivered_before = target.outcomes(), requests_served(self.destination)
        rss_before = target.proc.rss_kib()
        noise: dict[str, Any] = {}
        live = [pid for base in (*self.resident, target.proc.pid) for pid in process_tree(base)]
        if target.delivery is not None:
            live += process_tree(target.delivery.pid)
        cpu = tree_cpu_seconds(target.proc.pid)
        delivery_cpu = tree_cpu_seconds(target.delivery.pid) if target.delivery else 0.0
        with foreign_cpu(noise, live):
            run = self._wrk(target, pool, s.duration, label)
        cpu = tree_cpu_seconds(target.proc.pid) - cpu
        if target.delivery is not None:
            delivery_cpu = tree_cpu_seconds(target.delivery.pid) - delivery_cpu
        rss_after = target.proc.rss_kib()
        outcomes = target.outcomes() - before
        delivered = requests_served(self.destination) - delivered_before - 1
        return {
            **run,
            "warmup": {k: warm[k] for k in ("requests", "rps", "p50_ms", "p99_ms")},
            "rss_before_kib": rss_before,
            "rss_after_kib": rss_after,
            "peak_rss_kib": target.proc.peak_rss_kib(),
            "outcomes": dict(outcomes),
            "delivered_during_run": delivered if gateway else None,
            "gateway_log": target.proc.log_summary() if gateway else None,
            "machine_noise": noise,
            # The measured server's own CPU per answered request: unlike requests/s, hardly
            # moved by other processes taking the core (cache and frequency effects aside).
            "cpu_us_per_request": 1e6 * cpu / run["requests"] if run["requests"] else 0.0,
            # A split gateway's delivering process, on the other core: its CPU per delivery.
            "delivery_cpu_us_per_delivery": (
                1e6 * delivery_cpu / delivered if target.delivery and delivered > 0 else None
            ),
        }

    def constant_rate(self, port: int, path: str, label: str) -> dict[str, Any]:
        """The constant-rate generator (on the other core) against ``port``; expects 200s."""
        s = self.settings
        spec = {
            "mode": "rate", "host": HOST, "port": port, "path": path, "rate": s.sync_rate,
            "warmup_seconds": s.sync_warmup, "duration": s.sync_duration, "prefix": label,
            "connections": s.connections, "expect": 200,
        }  # fmt: skip
        result = run_loadgen(spec, s.sync_warmup + s.sync_duration + 120.0, cpus=REST_CPU)
        timed = result["timed"]
        return {**timed, "waited_for_a_connection": result["waited_for_a_connection"]}

    def drain(
        self, store: str, trees: Sequence[tuple[str, Path]], label: str, window: float
    ) -> dict[str, float]:
        """Fill a backlog per checkout (an ingress-only gateway under wrk), then drain them all
        at once on the measured core to the destination: each delivering process's CPU per
        delivered event over ``window`` seconds in which all are busy."""
        urls = {name: self.store_url(store, f"{label}{name}") for name, _ in trees}
        for name, tree in trees:
            with self.gateway_process(
                f"{label}{name}-fill", urls[name], "queued", 1, SUT_CPU, 0, tree
            ) as filling:
                self.throughput(filling, f"{label}{name}-fill", gateway=True)
        concurrency = self.ws.settings.delivery_concurrency
        with contextlib.ExitStack() as stack:
            targets = {
                name: stack.enter_context(
                    self.gateway_process(
                        f"{label}{name}-drain", urls[name], "queued", 1, SUT_CPU, concurrency, tree
                    )
                )
                for name, tree in trees
            }
            time.sleep(DRAIN_SETTLE)
            cpu = {name: tree_cpu_seconds(t.proc.pid) for name, t in targets.items()}
            done = {name: _delivered(t) for name, t in targets.items()}
            time.sleep(window)
            cpu = {name: tree_cpu_seconds(t.proc.pid) - cpu[name] for name, t in targets.items()}
            done = {name: _delivered(t) - done[name] for name, t in targets.items()}
        if min(done.values()) <= 0:
            raise BenchError("a backlog ran out or nothing was delivered in the window")
        return {name: 1e6 * cpu[name] / done[name] for name in done}

    def posts(self, label: str) -> dict[str, Any]:
        """Delivery's POST alone (``bench.loadgen`` mode ``direct``) on the measured core, at
        the delivering worker's concurrency, to the same nginx destination: by a bare aiohttp
        client and by the gateway's own delivery client; the CPU per POST of each, counted
        over the timed phase only."""
        count = max(self.ws.settings.delivery_events, round(self.settings.duration * 2000))
        measured: dict[str, Any] = {"posts": count}
        for client, suffix in (("aiohttp", ""), ("gateway", "_gateway")):
            spec = {
                "mode": "direct", "url": f"http://{HOST}:{self.destination}{DESTINATION_PATH}",
                "concurrency": self.ws.settings.delivery_concurrency,
                "warmup_count": max(self.ws.settings.delivery_warmup, count // 10),
                "count": count, "prefix": f"{label}-{client}", "repeats": 1, "client": client,
            }  # fmt: skip
            timed = run_loadgen(spec, 300.0, cpus=SUT_CPU)["timed"][0]
            if timed["ok"] != count:
                raise BenchError(f"direct POSTs ({client}): {timed['ok']} of {count} answered 200")
            measured[f"cpu_us_per_post{suffix}"] = 1e6 * timed["cpu_s"] / count
            measured[f"posts_per_s{suffix}"] = timed["rps"]
        return measured

    def floor(self, label: str) -> dict[str, Any]:
        """The sync path's round trips alone at the sync rate, from the measured core: what a
        sync request on Redis costs before the gateway does anything."""
        s = self.settings
        spec = {
            "mode": "hops", "host": HOST, "port": self.destination, "path": DESTINATION_PATH,
            "redis_host": self.redis.host, "redis_port": self.redis.port,
            "round_trips": SYNC_REDIS_ROUND_TRIPS, "rate": s.sync_rate,
            "warmup_seconds": s.sync_warmup, "duration": s.sync_duration, "prefix": label,
            "connections": s.connections, "expect": 200,
        }  # fmt: skip
        result = run_loadgen(spec, s.sync_warmup + s.sync_duration + 120.0, cpus=SUT_CPU)
        return {**result["timed"], "waited_for_a_connection": result["waited_for_a_connection"]}

    def long_run(self, store: str, progress: Callable[[str], None]) -> dict[str, Any]:
        """Send ``long_events`` new events through one gateway, a freshly signed chunk at a
        time; sample its RSS after warm-up and after each chunk, with each chunk's wrk
        requests/s and p99 (a store that slows down as it fills shows there)."""
        s = self.settings
        samples: list[dict[str, Any]] = []
        started = time.monotonic()
        with self.gateway(store) as target:
            warm = self.ws.root / f"long-{store}-warm.pool"
            write_pool(warm, HOST, target.port, SOURCE_PATH, s.warm_pool, f"long-{store}-warm")
            self._wrk(target, warm, s.warmup, f"long-{store}-warm")
            base = target.outcomes()["accepted"]

            def sample(**chunk: Any) -> None:
                accepted = target.outcomes()["accepted"] - base
                samples.append(
                    {"accepted": accepted, "rss_kib": target.proc.rss_kib(),
                     "seconds": time.monotonic() - started, **chunk}
                )  # fmt: skip

            sample()
            chunk = 0
            # Bounded: a gateway that accepts nothing ends the run after a few chunks.
            while samples[-1]["accepted"] < s.long_events and chunk < 3 * (
                s.long_events // s.long_chunk + 1
            ):
                chunk += 1
                goal = min(s.long_events, samples[-1]["accepted"] + s.long_chunk)

                def reached(goal: int = goal) -> bool:
                    return target.outcomes()["accepted"] - base >= goal

                pool = self.ws.root / f"long-{store}-{chunk}.pool"
                # A little more than the chunk: wrk is stopped a moment after the goal.
                size = s.long_chunk + s.long_chunk // 20 + 1000
                write_pool(pool, HOST, target.port, SOURCE_PATH, size, f"long-{store}-{chunk}")
                noise: dict[str, Any] = {}
                live = [p for b in (*self.resident, target.proc.pid) for p in process_tree(b)]
                with foreign_cpu(noise, live):
                    run = run_wrk(
                        f"http://{HOST}:{target.port}{SOURCE_PATH}", pool,
                        connections=s.connections, duration=240.0, cpus=REST_CPU,
                        log=self.ws.logs / f"long-{store}-{chunk}.wrk.log",
                        stop_when=reached,
                    )  # fmt: skip
                sample(rps=run["rps"], p99_ms=run["p99_ms"], foreign_cores=noise["foreign_cores"])
                progress(
                    f"long run on {store}: {samples[-1]['accepted']:,} accepted, "
                    f"RSS {samples[-1]['rss_kib'] / 1024:.1f} MiB, "
                    f"{run['rps']:,.0f} requests/s in this chunk"
                )
            outcomes = dict(target.outcomes())
            log = target.proc.log_summary()
        first, last = samples[0]["rss_kib"], samples[-1]["rss_kib"]
        return {
            "store": store,
            "accepted": samples[-1]["accepted"],
            "samples": samples,
            "rss_before_kib": first,
            "rss_after_kib": last,
            "rss_change": last / first - 1 if first else None,
            "outcomes": outcomes,
            "gateway_log": log,
        }


def _wait_listening(proc: Proc, port: int, timeout: float = 10.0) -> None:
    """Until something accepts connections on ``port`` (nginx has no readiness URL of its own
    that does not also reach the destination)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise BenchError(f"{proc.name} exited:\n{proc.log_tail()}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1.0):
            return
        time.sleep(0.05)
    raise BenchError(f"{proc.name} did not listen on {port} within {timeout:g} s")


def run_pinned(
    ws: Workspace, settings: PinnedSettings, stores: list[str], progress: Callable[[str], None]
) -> dict[str, Any]:
    """Every pinned measurement; the JSON-ready result."""
    cores = os.sched_getaffinity(0)
    if not {int(SUT_CPU), int(REST_CPU)} <= cores:
        raise BenchError(f"the pinned measurements need cores {SUT_CPU} and {REST_CPU}")
    # Pinned first, so every child (redis-server, nginx, the generators) inherits the other
    # core unless it is started on the measured one.
    os.sched_setaffinity(0, {int(REST_CPU)})
    result: dict[str, Any] = {"settings": settings.__dict__, "sut_cpu": SUT_CPU}
    try:
        with (
            RedisServer(appendonly=False, extra_args=("--databases", "64")) as redis,
            _destination(ws) as (destination, destination_pid),
        ):
            bench = Pinned(ws, settings, redis, destination)
            bench.resident = [destination_pid, *([redis.pid] if redis.pid else [])]
            result["throughput"] = _throughput_rounds(bench, stores, progress)
            if not settings.throughput_only:
                result["sync"] = _sync_rounds(bench, stores, progress)
                result["keep_up"] = []
                for split in (False, True):
                    for store in stores:
                        rate = _accept_rate(result, bench.label(store, split))
                        result["keep_up"] += keep_up_ladder(
                            bench,
                            store,
                            rate,
                            progress,
                            duration=settings.keep_up_duration,
                            connections=settings.connections,
                            split=split,
                        )
                store = "redis" if "redis" in stores else stores[0]
                result["workers"] = _workers(bench, store, progress)
            if settings.long_events:
                result["long"] = [bench.long_run(store, progress) for store in stores]
    finally:
        os.sched_setaffinity(0, cores)
    return result


def _layout(split: bool, alone: bool) -> str:
    """A gateway layout's part in the names of its processes and phases."""
    return "-alone" if alone else "-split" if split else ""


def _accept_rate(result: Mapping[str, Any], store: str) -> float:
    """The median requests/s the gateway on ``store`` reached in this run's throughput rounds."""
    return float(result["throughput"]["vs_aiohttp"][store]["rps"]["median"])


def _delivered(target: Target) -> float:
    """Events the gateway has delivered, from its own metrics."""
    text = get_text(f"http://{HOST}:{target.admin}/metrics", timeout=10.0)
    return sum(float(m.group(1)) for line in text.splitlines() if (m := _DELIVERED.match(line)))


@contextlib.contextmanager
def _destination(ws: Workspace) -> Iterator[tuple[int, int]]:
    """The nginx destination: its port and its master's PID."""
    port = free_port(HOST)
    proc = start_nginx(ws.root, "nginx-destination", "destination", port, cpus=REST_CPU)
    try:
        wait_ready(proc, f"http://{HOST}:{port}/_stats")
        yield port, proc.pid
    finally:
        proc.stop()


def _throughput_rounds(
    bench: Pinned, stores: list[str], progress: Callable[[str], None]
) -> dict[str, Any]:
    rounds = bench.settings.rounds
    bases: dict[str, list[dict[str, Any]]] = {"aiohttp": [], "nginx": []}
    if "redis" in stores:
        bases["floor"] = []  # its script runs on the Redis server, as the gateway's does
    # Each store three times: one process doing everything; an ingress-only process on the
    # measured core with delivery in a second one on the other core (beside wrk, Redis and
    # the destination, whose share of that core it takes); and the accept path alone, with
    # nothing delivering, as the floor runs.
    layouts = ((False, False), (True, False), (False, True))
    variants = [(store, split, alone) for split, alone in layouts for store in stores]
    runs: dict[str, list[dict[str, Any]]] = {bench.label(*v): [] for v in variants}
    posts: list[dict[str, Any]] = []
    for index in range(rounds + 1):
        for kind in bases:
            progress(f"wrk: {kind} baseline ({index + 1} of {rounds + 1})")
            with bench.baseline(kind) as target:
                run = bench.throughput(
                    target, f"{kind}-{index}", gateway=False, fresh=kind == "floor"
                )
                bases[kind].append(run)
        if index == rounds:
            break
        for store, split, alone in variants:
            label = bench.label(store, split, alone)
            progress(f"wrk: gateway on {label} (round {index + 1} of {rounds})")
            with bench.gateway(store, split=split, alone=alone) as target:
                name = f"gw-{store}{_layout(split, alone)}-{index}"
                runs[label].append(bench.throughput(target, name, gateway=True))
        # A delivery's CPU on each store, drained alone as the accept alone runs, then the
        # POSTs alone (the store plays no part in them) from both clients.
        drains: dict[str, float] = {}
        for store in stores:
            progress(f"delivery on {store}: a backlog drained alone ({index + 1} of {rounds})")
            drained = bench.drain(store, [("gateway", REPO)], f"drain-{store}-{index}-", 5.0)
            drains[store] = drained["gateway"]
        progress(f"delivery: the POSTs alone, from both clients ({index + 1} of {rounds})")
        posts.append({**bench.posts(f"posts-{index}"), "drains_cpu_us": drains})
    result = {
        "vs_aiohttp": compare(bases["aiohttp"], runs, THROUGHPUT_METRICS),
        "vs_nginx": compare(bases["nginx"], runs, THROUGHPUT_METRICS),
        "posts": posts,
    }
    if "floor" in bases:
        result["vs_floor"] = compare(bases["floor"], runs, THROUGHPUT_METRICS)
        # The floor against the bare baseline too (its runs between theirs, as a gateway's):
        # how far aiohttp lets the work go.
        result["floor_vs_aiohttp"] = compare(
            bases["aiohttp"], {"floor": bases["floor"][:-1]}, THROUGHPUT_METRICS
        )
    return result


def _sync_rounds(
    bench: Pinned, stores: list[str], progress: Callable[[str], None]
) -> dict[str, Any]:
    rounds = bench.settings.rounds
    direct: list[dict[str, Any]] = []
    runs: dict[str, list[dict[str, Any]]] = {store: [] for store in stores}
    rate = bench.settings.sync_rate
    for index in range(rounds + 1):
        progress(f"sync: direct to the destination at {rate:g}/s ({index + 1} of {rounds + 1})")
        direct.append(bench.constant_rate(bench.destination, DESTINATION_PATH, f"direct-{index}"))
        if index == rounds:
            break
        for store in stores:
            progress(f"sync: gateway on {store} at {rate:g}/s (round {index + 1} of {rounds})")
            with bench.gateway(store, delivery="sync") as target:
                run = bench.constant_rate(target.port, SOURCE_PATH, f"sync-{index}")
            runs[store].append({**run, "gateway_log": target.proc.log_summary()})
        if "redis" in stores:
            progress(f"sync: the Redis round trips alone at {rate:g}/s (round {index + 1})")
            runs.setdefault(SYNC_FLOOR, []).append(bench.floor(f"floor-{index}"))
    summary = compare(direct, runs, SYNC_METRICS)
    for store in runs:
        base = [run["p99_ms"] for run in direct]
        added = [run["p99_ms"] - (base[i] + base[i + 1]) / 2 for i, run in enumerate(runs[store])]
        summary[store]["added_p99_ms"] = {
            "median": statistics.median(added), "values": added,
        }  # fmt: skip
    return summary


def _workers(bench: Pinned, store: str, progress: Callable[[str], None]) -> list[dict[str, Any]]:
    """Each layout of ``WORKER_LAYOUTS`` once, on ``store`` (Redis: the store design.md 7 has
    processes share)."""
    results = []
    for index, (label, workers, cpus) in enumerate(WORKER_LAYOUTS):
        progress(f"workers: {label} ({store} store)")
        with bench.gateway(store, workers=workers, cpus=cpus) as target:
            run = bench.throughput(target, f"workers-{index}", gateway=True)
        results.append({"layout": label, "workers": workers, "cpus": cpus, "store": store, **run})
    return results
