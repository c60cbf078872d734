"""``python -m bench`` (``make bench``): run every measurement, print the table, write the JSON.

Order: verification (in this process), then ingress A-B-A (baseline, gateway on SQLite, gateway
on Redis, baseline again), then delivery A-B-A the same way. Progress goes to stderr, the
table to stdout, the full results to bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.payloads import BODY_SIZE
from bench.procs import BenchError
from bench.report import machine_facts, render, summarize_delivery, summarize_ingress
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
from tests.redis_server import RedisServer

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"


def _progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _redis_url(server: RedisServer, db: int) -> str:
    return f"redis://{server.host}:{server.port}/{db}"


def run(settings: Settings, stores: Sequence[str]) -> dict[str, Any]:
    """Every measurement with its baselines; the JSON-ready result."""
    started = time.time()
    load_start = os.getloadavg()
    result: dict[str, Any] = {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "machine": machine_facts(),
        "settings": asdict(settings),
        "stores": list(stores),
        "body_bytes": BODY_SIZE,
    }
    with (
        tempfile.TemporaryDirectory(prefix="wg-bench-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        ws = Workspace(Path(tmp), settings)
        _progress("verification: standard-webhooks verify vs bare HMAC")
        result["verification"] = verification(settings)

        redis: RedisServer | None = None
        if "redis" in stores:
            _progress("starting redis-server (appendonly yes, appendfsync everysec)")
            redis = stack.enter_context(RedisServer(appendonly=True, appendfsync="everysec"))

        def store_url(store: str, purpose: str, db: int) -> str:
            if store == "redis":
                assert redis is not None
                return _redis_url(redis, db)
            return ws.sqlite_url(purpose)

        _progress("ingress: baseline server (run 1 of 2)")
        ingress_base = [ingress_baseline(ws, "ingress-base-1")]
        ingress_runs: dict[str, Any] = {}
        for store in stores:
            _progress(f"ingress: gateway on {store}")
            ingress_runs[store] = ingress_gateway(
                ws, f"ingress-{store}", store_url(store, "ingress", 0)
            )
        _progress("ingress: baseline server (run 2 of 2)")
        ingress_base.append(ingress_baseline(ws, "ingress-base-2"))
        result["ingress"] = summarize_ingress(ingress_base, ingress_runs)

        _progress("delivery: direct aiohttp sends (run 1 of 2)")
        delivery_base = [delivery_direct(ws, "delivery-base-1")]
        delivery_runs: dict[str, Any] = {}
        for store in stores:
            _progress(f"delivery: gateway on {store} draining its queue")
            delivery_runs[store] = delivery_gateway(
                ws, f"delivery-{store}", store_url(store, "delivery", 1)
            )
        _progress("delivery: direct aiohttp sends (run 2 of 2)")
        delivery_base.append(delivery_direct(ws, "delivery-base-2"))
        result["delivery"] = summarize_delivery(delivery_base, delivery_runs)

    result["load_average"] = {"start": list(load_start), "end": list(os.getloadavg())}
    result["duration_s"] = time.time() - started
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Parse options, run, report; exit 1 if a process of the benchmark misbehaved."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="short phases: a smoke run, not a measurement"
    )
    parser.add_argument("--no-redis", action="store_true", help="measure the SQLite store only")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"JSON file ({RESULTS})")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else Settings()
    stores = ["sqlite"] if args.no_redis else ["sqlite", "redis"]
    try:
        result = run(settings, stores)
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
