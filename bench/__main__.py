"""``python -m bench`` (``make bench``): run every measurement, print the table, write the JSON.

Order: verification (in this process), then ingress in rounds (baseline, gateway on SQLite,
gateway on Redis, ..., baseline), then delivery in rounds the same way, then the pinned wrk
measurements (``bench.pinned``), rounds again, the Redis Cluster part, the buyer's status
streams (``bench.status``: ingress latency with 1,000 idle streams held) and the analytics
part (``bench.analytics``: a 30-day report over 1,000,000 events against over 10,000).
Progress goes to stderr, the table to stdout, the full results to bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from bench.analytics import measure as measure_analytics
from bench.cluster import CLUSTER_QUICK, ClusterSettings, run_cluster
from bench.payloads import BODY_SIZE
from bench.pinned import PINNED_QUICK, PinnedSettings, run_pinned
from bench.procs import BenchError, foreign_cpu
from bench.report import DELIVERY_METRICS, INGRESS_METRICS, compare, machine_facts, render
from bench.scenarios import (
    QUICK,
    Settings,
    Workspace,
    delivery_direct,
    delivery_gateway,
    ingress_baseline,
    ingress_gateway,
    verification,
)
from bench.status import STATUS_QUICK, StatusSettings, run_status
from harness.redis_server import RedisServer

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"


def _progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run(
    settings: Settings,
    stores: Sequence[str],
    pinned: PinnedSettings | None,
    *,
    interleaved: bool = True,
    cluster: ClusterSettings | None = None,
    analytics: tuple[int, int] | None = None,
    status: StatusSettings | None = None,
) -> dict[str, Any]:
    """Every measurement with its baselines, interleaved in rounds; the JSON-ready result.

    ``pinned`` None leaves the wrk measurements out; ``interleaved`` False leaves out the
    others (verification, the bench's own load generator, the paused-destination drain);
    ``cluster`` adds the Redis Cluster part (``bench.cluster``): 1 master against 3;
    ``status`` the ingress latency with and without idle status streams (``bench.status``).
    """
    started = time.time()
    load_start = os.getloadavg()
    result: dict[str, Any] = {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "machine": machine_facts(),
        "settings": asdict(settings),
        "stores": list(stores),
        "body_bytes": BODY_SIZE,
    }
    with tempfile.TemporaryDirectory(prefix="wg-bench-") as tmp:
        ws = Workspace(Path(tmp), settings)
        if interleaved:
            _interleaved(ws, settings, stores, result)
        if pinned is not None:
            result["pinned"] = run_pinned(ws, pinned, list(stores), _progress)
        if cluster is not None:
            with ws.helper("destination") as (_, destination):
                result["cluster"] = run_cluster(ws, cluster, destination, _progress)
        if status is not None:
            result["status"] = run_status(ws, status, _progress)
        if analytics is not None:
            result["analytics"] = _analytics(stores, analytics, Path(tmp))

    result["load_average"] = {"start": list(load_start), "end": list(os.getloadavg())}
    result["duration_s"] = time.time() - started
    return result


def _analytics(stores: Sequence[str], sizes: tuple[int, int], directory: Path) -> dict[str, Any]:
    """The analytics part (``bench.analytics``): the 30-day report's time on a small and a
    large store of each kind, on a Redis server of its own."""
    small, large = sizes
    if "redis" not in stores:
        return measure_analytics(list(stores), small, large, directory, _progress)
    with RedisServer(extra_args=("--databases", "4")) as server:
        return measure_analytics(list(stores), small, large, directory, _progress, server.url)


def _interleaved(
    ws: Workspace, settings: Settings, stores: Sequence[str], result: dict[str, Any]
) -> None:
    """Verification, then ingress and delivery in interleaved rounds, into ``result``; the
    Redis server of this part (AOF on) is stopped at its end."""
    rounds = settings.rounds
    with contextlib.ExitStack() as stack:
        _progress("verification: standard-webhooks verify vs bare HMAC")
        result["verification"] = verification(settings)

        redis: RedisServer | None = None
        databases = itertools.count()
        if "redis" in stores:
            _progress("starting redis-server (appendonly yes, appendfsync everysec)")
            server = RedisServer(
                appendonly=True, appendfsync="everysec", extra_args=("--databases", "64")
            )
            redis = stack.enter_context(server)

        def measured(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
            """Run one side of a round, noting the CPU other people's processes used meanwhile."""
            noise: dict[str, Any] = {}
            with foreign_cpu(noise, [redis.pid] if redis and redis.pid else []):
                run = fn(*args)
            return {**run, "machine_noise": noise}

        def store_url(store: str, purpose: str) -> str:
            """A fresh, empty store for each gateway run."""
            if store == "redis":
                assert redis is not None
                return f"redis://{redis.host}:{redis.port}/{next(databases)}"
            return ws.sqlite_url(purpose)

        ingress_base: list[dict[str, Any]] = []
        ingress_runs: dict[str, list[dict[str, Any]]] = {store: [] for store in stores}
        for index in range(rounds + 1):
            _progress(f"ingress: baseline server ({index + 1} of {rounds + 1})")
            ingress_base.append(measured(ingress_baseline, ws, f"ingress-base-{index}"))
            if index == rounds:
                break
            for store in stores:
                _progress(f"ingress: gateway on {store} (round {index + 1} of {rounds})")
                url = store_url(store, "ingress")
                run = measured(ingress_gateway, ws, f"ingress-{store}-{index}", url)
                ingress_runs[store].append(run)
        result["ingress"] = compare(ingress_base, ingress_runs, INGRESS_METRICS)

        delivery_base: list[dict[str, Any]] = []
        delivery_runs: dict[str, list[dict[str, Any]]] = {store: [] for store in stores}
        for index in range(rounds + 1):
            _progress(f"delivery: direct aiohttp sends ({index + 1} of {rounds + 1})")
            delivery_base.append(measured(delivery_direct, ws, f"delivery-base-{index}"))
            if index == rounds:
                break
            for store in stores:
                _progress(f"delivery: gateway on {store} draining (round {index + 1} of {rounds})")
                url = store_url(store, "delivery")
                run = measured(delivery_gateway, ws, f"delivery-{store}-{index}", url)
                delivery_runs[store].append(run)
        result["delivery"] = compare(delivery_base, delivery_runs, DELIVERY_METRICS)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse options, run, report; exit 1 if a process of the benchmark misbehaved."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="short phases: a smoke run, not a measurement"
    )
    parser.add_argument("--rounds", type=int, choices=range(1, 11), help="gateway runs per store")
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--no-redis", action="store_true", help="measure the SQLite store only")
    only.add_argument("--redis-only", action="store_true", help="measure the Redis store only")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"JSON file ({RESULTS})")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--no-wrk", action="store_true", help="leave out the pinned wrk part")
    which.add_argument("--wrk-only", action="store_true", help="only the pinned wrk part")
    which.add_argument(
        "--cluster-only", action="store_true", help="only the Redis Cluster part (1 vs 3 masters)"
    )
    which.add_argument(
        "--status-only",
        action="store_true",
        help="only ingress latency with and without idle status streams",
    )
    parser.add_argument(
        "--no-cluster", action="store_true", help="leave out the Redis Cluster part"
    )
    parser.add_argument(
        "--no-status", action="store_true", help="leave out the idle status streams part"
    )
    parser.add_argument(
        "--long",
        type=int,
        nargs="?",
        const=500_000,
        default=0,
        metavar="EVENTS",
        help="also send EVENTS (500,000) accepted events through one gateway per store and "
        "compare its RSS before and after",
    )
    parser.add_argument(
        "--analytics",
        type=int,
        nargs=2,
        default=None,
        metavar=("SMALL", "LARGE"),
        help="the analytics part's store sizes in events (default 10,000 and 1,000,000;"
        " --quick: 2,000 and 20,000)",
    )
    parser.add_argument("--no-analytics", action="store_true", help="leave out the analytics part")
    parser.add_argument(
        "--throughput-only",
        action="store_true",
        help="pinned part: the wrk throughput rounds only (no sync latency, no server.workers)",
    )
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else Settings()
    pinned = PINNED_QUICK if args.quick else PinnedSettings()
    if args.rounds is not None:
        settings = replace(settings, rounds=args.rounds)
        pinned = replace(pinned, rounds=args.rounds)
    pinned = replace(pinned, long_events=args.long, throughput_only=args.throughput_only)
    cluster = CLUSTER_QUICK if args.quick else ClusterSettings()
    if args.rounds is not None:
        cluster = replace(cluster, rounds=args.rounds)
    stores = ["sqlite"] if args.no_redis else ["redis"] if args.redis_only else ["sqlite", "redis"]
    only = args.wrk_only or args.cluster_only or args.status_only
    status = STATUS_QUICK if args.quick else StatusSettings()
    if args.rounds is not None:
        status = replace(status, rounds=args.rounds)
    no_cluster = args.no_redis or args.no_cluster or args.wrk_only or args.status_only
    sizes = tuple(args.analytics or ((2_000, 20_000) if args.quick else (10_000, 1_000_000)))
    assert len(sizes) == 2
    try:
        result = run(
            settings,
            stores,
            None if args.no_wrk or args.cluster_only or args.status_only else pinned,
            interleaved=not only,
            cluster=None if no_cluster else cluster,
            status=None if args.no_status or args.wrk_only or args.cluster_only else status,
            analytics=None if args.no_analytics or only else sizes,
        )
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(render(result))
    print(f"\nfull results: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
