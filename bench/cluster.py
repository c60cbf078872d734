"""Write scaling on a Redis Cluster: accepts with 1 master against 3 (design.md 5.4, 7).

``python -m bench --cluster`` (also part of a full ``make bench``). Each layout is a fresh
cluster of ``redis-server --cluster-enabled yes`` processes on free ports, 16 partitions, AOF
off; 1-master and 3-master runs alternate (1, 3, 1, 3, ...) so slow drift of the machine hits
both alike. Two measures:

* **Store side.** ``redis-benchmark --cluster`` (C, two threads) sends the gateway's own
  ``accept`` script (EVALSHA) with the keys and arguments the store builds for a real accept of
  a 400-byte payment event, its ids and dedupe key new on every call (``__rand_int__``), its
  keys under redis-benchmark's ``{tag}`` so every master gets its share. This is the write
  capacity of the store itself, with a load generator cheap enough not to be the limit. Also
  read from each master: its share of the accepts (``INFO commandstats``) and the CPU its
  process spent per accept, which tell whether the work really spreads and whether a master
  pays more per accept when it has peers.
* **Gateway side.** wrk against the gateway (``server.workers: 2``, the full pipeline of the
  pinned part, rate limits on) on the same two layouts.

On a machine with fewer cores than masters plus load generator, three masters share cores and
the measured ratio is bounded by the cores, not by the design; the per-master share and CPU
per accept are what carry over to a machine with a core per master. The table says how many
cores there were.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.payloads import DESTINATION_PATH, SOURCE_PATH, event_body
from bench.procs import (
    BenchError,
    foreign_cpu,
    process_tree,
    spawn,
    tree_cpu_seconds,
    wait_ready,
)
from bench.scenarios import HOST, Workspace, gateway_config
from bench.wrk import run_wrk, write_pool
from gateway.store.records import Event
from harness.redis_server import RedisCluster, free_port

#: The partition count the cluster runs use (design.md 5.4 recommends 16 or more on a cluster).
PARTITIONS = 16
#: The layouts compared: masters per cluster.
LAYOUTS = (1, 3)


@dataclass(frozen=True)
class ClusterSettings:
    """Sizes of the cluster runs; every phase is bounded in time."""

    rounds: int = 2
    #: Accepts redis-benchmark sends per run, over this many connections.
    requests: int = 200_000
    clients: int = 64
    #: Commands redis-benchmark pipelines per connection, as the gateway's batches do.
    pipeline: int = 16
    #: wrk against the gateway: warm-up and measured seconds, and the pool of signed events.
    warmup: float = 2.0
    duration: float = 10.0
    pool: int = 60_000
    connections: int = 32
    gateway_workers: int = 2


CLUSTER_QUICK = ClusterSettings(rounds=1, requests=20_000, warmup=0.5, duration=2.0, pool=8_000)


def accept_command() -> tuple[str, list[str]]:
    """The script and the EVALSHA arguments (numkeys, keys, args) of one real accept, as the
    Redis store of ``PARTITIONS`` partitions builds them, rewritten for redis-benchmark: the
    partition's hash tag becomes ``{tag}`` and the event's ids ``__rand_int__``. (The store's
    second call per accept, the change-log append to one stream for the whole store, is not
    part of it.)"""
    from redis.asyncio import Redis

    from gateway.store.redis import RedisStore

    captured: list[tuple[str, list[Any], list[Any]]] = []

    async def capture(name: str, keys: Any, args: Any, *, durable: bool = False) -> Any:
        captured.append((name, list(keys), list(args)))
        return [b"queued", b"e", b"queued"]

    async def build() -> str:
        client = Redis(host=HOST, port=1)  # never connected: every call is captured
        store = RedisStore(client, partitions=PARTITIONS)
        store._call = capture  # type: ignore[method-assign]
        store._checked = True
        now = time.time()
        event = Event(
            id="evt-RANDOM", source="payments", type="payment.completed", subject="offer-42",
            time="2026-11-26T10:00:00.000Z", dedupe_key="evt-RANDOM",
            body=event_body(0, "cluster"), headers=(("content-type", "application/json"),),
            request_id="req-RANDOM", received_at=now, body_status="completed",
        )  # fmt: skip
        await store.accept(event, ["marketplace"], 72 * 3600.0, now)
        await client.aclose()
        text = store._scripts["accept"].script
        assert isinstance(text, str), "the store registers its scripts as text"
        return text

    script = asyncio.run(build())
    _, keys, args = next(c for c in captured if c[0] == "accept")
    uid = next(k for k in keys if ":ev:" in k).rsplit(":ev:", 1)[1]

    def rewrite(value: Any) -> str:
        text = value.decode() if isinstance(value, bytes) else str(value)
        text = re.sub(r"\{q\d+\}", "{tag}", text).replace(uid, "0.__rand_int__")
        return text.replace("RANDOM", "__rand_int__")

    return script, [str(len(keys)), *map(rewrite, keys), *map(rewrite, args)]


@contextlib.contextmanager
def _cluster(masters: int) -> Iterator[RedisCluster]:
    with RedisCluster(masters=masters) as cluster:
        yield cluster


def _calls_by_master(cluster: RedisCluster) -> list[int]:
    """EVALSHA calls each master ran so far (``INFO commandstats``)."""
    out = []
    for node in cluster.nodes:
        info = cluster.cli(node, "info", "commandstats")
        match = re.search(r"cmdstat_evalsha:calls=(\d+)", info)
        out.append(int(match.group(1)) if match else 0)
    return out


def _cpu_by_master(cluster: RedisCluster) -> list[float]:
    """CPU seconds each master's process has used so far: real CPU, not the wall time
    ``commandstats`` counts, which grows when a master waits for a core."""
    return [tree_cpu_seconds(node.pid) if node.pid else 0.0 for node in cluster.nodes]


def store_side(masters: int, settings: ClusterSettings) -> dict[str, Any]:
    """redis-benchmark sending the accept script to a fresh cluster of ``masters``."""
    script, command = accept_command()
    with _cluster(masters) as cluster:
        for node in cluster.nodes:
            sha = cluster.cli(node, "script", "load", script).strip()
        # redis-benchmark's cluster mode wants several nodes; one node owns every slot, so
        # there the literal "{tag}" is as good a hash tag as any.
        mode = ["--cluster"] if masters > 1 else []
        argv = [
            "redis-benchmark", *mode, "-h", HOST, "-p", str(cluster.nodes[0].port),
            "-c", str(settings.clients), "-n", str(settings.requests), "-r", "2000000000",
            "-P", str(settings.pipeline), "--threads", "2", "--csv", "EVALSHA", sha, *command,
        ]  # fmt: skip
        noise: dict[str, Any] = {}
        pids = [node.pid for node in cluster.nodes if node.pid is not None]
        cpu_before = _cpu_by_master(cluster)
        started = time.monotonic()
        with foreign_cpu(noise, pids):
            done = subprocess.run(  # noqa: S603 - redis-benchmark, no shell
                argv, capture_output=True, text=True, timeout=600, check=False
            )
        seconds = time.monotonic() - started
        # CSV: the command (with its arguments, which hold commas and newlines), then
        # requests/s, avg, min, p50, p95, p99, max: the numbers are the last line's tail.
        lines = done.stdout.strip().splitlines()
        fields = lines[-1].rsplit(",", 7) if lines else []
        if done.returncode != 0 or len(fields) != 8:
            raise BenchError(f"redis-benchmark failed: {done.stdout[-800:]}{done.stderr[-800:]}")
        rps, p50, p99 = (float(fields[i].strip('"')) for i in (1, 4, 6))
        calls = _calls_by_master(cluster)
        cpu_after = _cpu_by_master(cluster)
        cpu = [after - before for before, after in zip(cpu_before, cpu_after, strict=True)]
        # Keys per master: a run of new events leaves several per accept (a run that found
        # only duplicates, as with a broken id substitution, would leave a handful).
        sizes = [int(cluster.cli(node, "dbsize").strip() or 0) for node in cluster.nodes]
    total = sum(calls)
    if sum(sizes) < 3 * total:
        raise BenchError(f"{total} accepts left only {sum(sizes)} keys: they were not new events")
    return {
        "masters": masters,
        "rps": rps,
        "p50_ms": p50,
        "p99_ms": p99,
        "seconds": seconds,
        "calls": total,
        "share": [c / total if total else 0.0 for c in calls],
        "usec_per_accept": [1e6 * t / c if c else None for c, t in zip(calls, cpu, strict=True)],
        "keys": sizes,
        "machine_noise": noise,
    }


def gateway_side(
    masters: int, settings: ClusterSettings, ws: Workspace, destination: int, label: str
) -> dict[str, Any]:
    """wrk against a gateway (``gateway_workers`` processes) on a fresh cluster."""
    with _cluster(masters) as cluster:
        listen, admin = free_port(HOST), free_port(HOST)
        path = ws.root / f"{label}.yaml"
        path.write_text(
            gateway_config(
                listen=listen, admin=admin, store_url=cluster.url,
                destination=f"http://{HOST}:{destination}{DESTINATION_PATH}",
                delivery_concurrency=ws.settings.delivery_concurrency, rate_limits=True,
                workers=settings.gateway_workers, partitions=PARTITIONS,
            )
        )  # fmt: skip
        proc = spawn(label, ["-m", "gateway", "run", "--config", str(path)], ws.logs)
        try:
            wait_ready(proc, f"http://{HOST}:{admin}/readyz")
            warm, pool = ws.root / f"{label}-warm.pool", ws.root / f"{label}.pool"
            write_pool(warm, HOST, listen, SOURCE_PATH, settings.pool // 5, f"{label}-warm")
            write_pool(pool, HOST, listen, SOURCE_PATH, settings.pool, label)
            url = f"http://{HOST}:{listen}{SOURCE_PATH}"
            run_wrk(
                url, warm, connections=settings.connections, duration=settings.warmup,
                cpus=None, log=ws.logs / f"{label}-warm.wrk.log",
            )  # fmt: skip
            noise: dict[str, Any] = {}
            live = [*process_tree(proc.pid), *(n.pid for n in cluster.nodes if n.pid)]
            with foreign_cpu(noise, live):
                run = run_wrk(
                    url, pool, connections=settings.connections, duration=settings.duration,
                    cpus=None, log=ws.logs / f"{label}.wrk.log",
                )  # fmt: skip
        finally:
            proc.stop()
    return {"masters": masters, **run, "machine_noise": noise}


def run_cluster(
    ws: Workspace, settings: ClusterSettings, destination: int, progress: Callable[[str], None]
) -> dict[str, Any]:
    """Both measures, 1 and 3 masters alternating for ``rounds`` rounds; ratios 3 / 1."""
    store: dict[int, list[dict[str, Any]]] = {m: [] for m in LAYOUTS}
    gateway: dict[int, list[dict[str, Any]]] = {m: [] for m in LAYOUTS}
    for round_ in range(settings.rounds):
        for masters in LAYOUTS:
            progress(f"cluster round {round_ + 1}: accept script, {masters} master(s)")
            store[masters].append(store_side(masters, settings))
        for masters in LAYOUTS:
            progress(f"cluster round {round_ + 1}: gateway, {masters} master(s)")
            label = f"cluster-gateway-{masters}m-{round_}"
            gateway[masters].append(gateway_side(masters, settings, ws, destination, label))

    def ratio(runs: dict[int, list[dict[str, Any]]]) -> dict[str, Any]:
        pairs = [b["rps"] / a["rps"] for a, b in zip(runs[1], runs[3], strict=True)]
        return {
            "one": statistics.median(r["rps"] for r in runs[1]),
            "three": statistics.median(r["rps"] for r in runs[3]),
            "ratio": statistics.median(pairs),
            "low": min(pairs),
            "high": max(pairs),
        }

    return {
        "cores": os.cpu_count(),
        "partitions": PARTITIONS,
        "settings": settings.__dict__,
        "store_side": {"runs": store, **ratio(store)},
        "gateway_side": {"runs": gateway, **ratio(gateway)},
    }


def render_cluster(result: dict[str, Any]) -> str:
    """The cluster part as a Markdown table, with the per-master shares."""
    lines = [
        f"### Redis Cluster: 1 master against 3 ({result['partitions']} partitions,"
        f" {result['cores']} cores)",
        "",
        "| measure | 1 master | 3 masters | ratio (range) |",
        "|---|---:|---:|---:|",
    ]
    for key, name in (("store_side", "accept script, redis-benchmark (accepts/s)"),
                      ("gateway_side", "gateway, wrk (requests/s)")):  # fmt: skip
        part = result[key]
        lines.append(
            f"| {name} | {part['one']:,.0f} | {part['three']:,.0f} |"
            f" {part['ratio']:.2f} ({part['low']:.2f} to {part['high']:.2f}) |"
        )
    runs = result["store_side"]["runs"]
    for masters in LAYOUTS:
        for run in runs[masters]:
            shares = ", ".join(f"{share:.0%}" for share in run["share"])
            cost = ", ".join(f"{u:.1f}" for u in run["usec_per_accept"] if u is not None)
            noise = run["machine_noise"].get("foreign_cores", 0.0)
            lines.append(
                f"\n{masters} master(s): share of the accepts {shares}; µs of Redis CPU per"
                f" accept {cost}; other processes {noise:.2f} cores"
            )
    return "\n".join(lines)


def main() -> None:
    """Run the cluster part alone (``python -m bench.cluster [--quick]``) and print it."""
    import argparse
    import json
    import tempfile

    from bench.scenarios import Settings

    parser = argparse.ArgumentParser(prog="python -m bench.cluster")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    settings = CLUSTER_QUICK if args.quick else ClusterSettings()
    with tempfile.TemporaryDirectory(prefix="wg-bench-cluster-") as root:
        ws = Workspace(Path(root), Settings())
        with ws.helper("destination") as (_, destination):
            result = run_cluster(ws, settings, destination, lambda m: print(m, flush=True))
    if args.output:
        args.output.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(render_cluster(result))


if __name__ == "__main__":
    main()
