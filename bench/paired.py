"""Paired A/B runs: two checkouts' gateways measured side by side, on one core, at one time.

``python -m bench.paired OLD NEW`` (each a checkout, such as ``git worktree add /tmp/old
<commit>``) answers "does NEW spend less CPU than OLD?" to a per cent or two. Runs alternated
one after the other cannot: on the benchmark machine the same code read 211 to 373 us of CPU
per accepted request from one minute to the next, far more than most changes move. Here both
versions run at the same time on core 0 and suffer the same slowdowns, so the ratio of their
CPU per unit of work holds still (two copies of one checkout read 0.991 and 1.019).

Two measures, each in ``--rounds`` rounds with the start order alternated:

* ``accept`` (default): each version as an ingress-only gateway (``server.delivery_concurrency:
  0``) on core 0, its delivering process on core 1, the pinned phase's full pipeline (both rate
  limits on) under its own wrk from core 1, both phases at once. Measured: each ingress
  process's CPU per accepted request.
* ``--drain``: each version's store is filled by an ingress-only gateway first, then both
  versions' delivering gateways drain their backlogs on core 0 at once to the one destination
  (on core 1). Measured: each delivering process's CPU per delivered event over a window in
  which both are busy.

``python -m bench.paired floor NEW`` measures NEW against the floor (``bench.floor``, the
accept path's work written leanly) the same way: the floor and NEW's accept path alone
(ingress only, nothing delivering, as the floor runs) on core 0 at once, each under its own
wrk; NEW ÷ floor is what the gateway's accept costs over the floor's. The floor's own CPU per
request moves by up to 1.5 times between the rounds of ``make bench``, which interleaves it with
the gateway one phase at a time; side by side, both meet the same machine.

Printed: each round's figures and NEW ÷ OLD, then the median and range; written to
bench/results/paired.json. Below 1 means NEW spends less.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from bench.pinned import Pinned, PinnedSettings, _destination
from bench.procs import REST_CPU
from bench.scenarios import Settings, Workspace
from harness.redis_server import RedisServer

RESULTS = Path(__file__).resolve().parent / "results" / "paired.json"
#: Seconds the delivering gateways run before the measured window (start-up, first leases).


def _progress(message: str) -> None:
    print(f"[paired {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def accept_round(
    bench: Pinned, store: str, trees: Sequence[tuple[str, Path | None]], label: str
) -> dict[str, float]:
    """Both versions' ingress-only gateways under load at once; CPU per accepted request.
    A side without a tree is the floor, and the gateway beside it runs its accept path alone
    (nothing delivering), as the floor does."""
    results: dict[str, dict[str, Any]] = {}
    floor = any(tree is None for _, tree in trees)
    gateways = {name: tree for name, tree in trees if tree is not None}
    with contextlib.ExitStack() as stack:
        targets = {
            name: stack.enter_context(
                bench.baseline("floor")
                if tree is None
                else bench.gateway(store, split=not floor, alone=floor, repo=tree)
            )
            for name, tree in trees
        }

        def measure(name: str) -> None:
            results[name] = bench.throughput(
                targets[name], f"{label}{name}", gateway=name in gateways, fresh=True
            )

        threads = [threading.Thread(target=measure, args=(name,)) for name, _ in trees]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    if len(results) != len(trees):
        raise RuntimeError("a measured phase failed; see the log above")
    return {name: float(result["cpu_us_per_request"]) for name, result in results.items()}


@contextlib.contextmanager
def _bench(root: Path, duration: float) -> Iterator[Pinned]:
    ws = Workspace(root, Settings())
    # Pools sized for a phase at the rates two versions sharing one core reach.
    settings = PinnedSettings(rounds=1, duration=duration, pool=40_000, warm_pool=10_000)
    with (
        RedisServer(appendonly=False, extra_args=("--databases", "64")) as redis,
        _destination(ws) as (destination, destination_pid),
    ):
        bench = Pinned(ws, settings, redis, destination)
        bench.resident = [destination_pid, *([redis.pid] if redis.pid else [])]
        yield bench


def run(
    old: Path | None, new: Path, *, store: str, rounds: int, duration: float, drain: bool
) -> dict[str, Any]:
    """``rounds`` paired rounds of one measure; each round's figures and NEW ÷ OLD (OLD
    ``None``: the floor)."""
    os.sched_setaffinity(0, {int(REST_CPU)})
    unit = "us of CPU per delivered event" if drain else "us of CPU per accepted request"
    rows = []
    with (
        tempfile.TemporaryDirectory(prefix="wg-paired-") as tmp,
        _bench(Path(tmp), duration) as bench,
    ):
        for number in range(rounds):
            trees: list[tuple[str, Path | None]] = [("old", old), ("new", new)]
            if number % 2:
                trees.reverse()  # neither version always starts first
            label = f"round{number}-"
            if drain:
                assert old is not None, "the floor does not deliver"
                checkouts = [("old", old), ("new", new)]
                if number % 2:
                    checkouts.reverse()  # as trees: neither version always starts first
                figures = bench.drain(store, checkouts, label, duration)
            else:
                figures = accept_round(bench, store, trees, label)
            ratio = figures["new"] / figures["old"]
            rows.append({**figures, "ratio": ratio})
            _progress(
                f"round {number + 1}: old {figures['old']:.0f}, new {figures['new']:.0f} {unit}, "
                f"new/old {ratio:.3f}"
            )
    ratios = [row["ratio"] for row in rows]
    return {
        "old": "floor" if old is None else str(old),
        "new": str(new),
        "store": store,
        "measure": "drain" if drain else "accept",
        "unit": unit,
        "duration": duration,
        "rounds": rows,
        "median_ratio": statistics.median(ratios),
        "min_ratio": min(ratios),
        "max_ratio": max(ratios),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.paired", description=__doc__)
    parser.add_argument(
        "old", help="checkout of the version to compare against, or floor (bench.floor)"
    )
    parser.add_argument("new", type=Path, help="checkout of the version measured")
    parser.add_argument("--store", choices=("redis", "sqlite"), default="redis")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument(
        "--duration", type=float, default=8.0, help="seconds of each measured phase or window"
    )
    parser.add_argument("--drain", action="store_true", help="measure delivery, not accepts")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    old = None if args.old == "floor" else Path(args.old)
    if old is None and (args.drain or args.store != "redis"):
        parser.error("the floor accepts on Redis only: no --drain, no --store sqlite")
    for tree in (old, args.new):
        if tree is not None and not (tree / "gateway" / "__main__.py").is_file():
            parser.error(f"{tree} is not a checkout of the gateway")
    result = run(
        None if old is None else old.resolve(),
        args.new.resolve(),
        store=args.store,
        rounds=args.rounds,
        duration=args.duration,
        drain=args.drain,
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"{result['measure']} on {args.store}, {result['unit']}: new/old median "
        f"{result['median_ratio']:.3f} ({result['min_ratio']:.3f}-{result['max_ratio']:.3f}) "
        f"over {len(result['rounds'])} rounds"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
