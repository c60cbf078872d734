"""Turn raw measurements into ratios, a readable table and the JSON document.

Every ratio is ``gateway / baseline`` of the same quantity. Throughput ratios are better
higher (1.0 would be "as fast as doing nothing"); time, latency and memory ratios are better
lower (1.0 would be "no cost over the bare baseline").

Runs are interleaved in rounds, ``B G G B G G B``: round i's baseline is the mean of the
baseline runs just before and just after it, each round gives its own ratio, and the headline
is the median of the rounds' ratios with their range beside it. A machine that gets busier
during the run moves both sides of a round together, and the range shows how far it moved.
"""

from __future__ import annotations

import os
import platform
import sqlite3
import statistics
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from bench.cluster import render_cluster
from bench.keepup import render_keep_up
from bench.nginx import nginx_version
from bench.status import render_status
from bench.wrk import wrk_version
from harness.redis_server import REDIS_SERVER


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _redis_version() -> str:
    try:
        done = subprocess.run(  # noqa: S603 - the configured redis-server binary, no shell
            [REDIS_SERVER, "--version"], capture_output=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unavailable"
    return done.stdout.decode(errors="replace").strip()


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def machine_facts() -> dict[str, Any]:
    """Cores, CPU, OS, Python and the library and program versions the numbers depend on."""
    return {
        "cpu_count": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "aiohttp": version("aiohttp"),
        "redis_py": version("redis"),
        "sqlite": sqlite3.sqlite_version,
        "redis_server": _redis_version(),
        "uvloop": _version("uvloop"),
        "nginx": nginx_version(),
        "wrk": wrk_version(),
    }


def _spread(values: Sequence[float]) -> float:
    """Relative difference between the highest and lowest reading (0.03 = 3 %)."""
    mean = sum(values) / len(values)
    return (max(values) - min(values)) / mean if mean else 0.0


#: What each measure reads from one run's record.
INGRESS_METRICS: dict[str, Callable[[Mapping[str, Any]], float]] = {
    "rps": lambda run: float(run["timed"]["rps"]),
    "p50_ms": lambda run: float(run["timed"]["p50_ms"]),
    "p99_ms": lambda run: float(run["timed"]["p99_ms"]),
    "peak_rss_kib": lambda run: float(run["peak_rss_kib"]),
}
DELIVERY_METRICS: dict[str, Callable[[Mapping[str, Any]], float]] = {
    "drain_s": lambda run: float(run["drain_s"]),
    "events_per_s": lambda run: float(run["events_per_s"]),
}


#: The name of the sync phase's floor among its stores (``Pinned.floor``).
SYNC_FLOOR = "redis round trips alone"


def compare(
    baselines: Sequence[Mapping[str, Any]],
    gateways: Mapping[str, Sequence[Mapping[str, Any]]],
    metrics: Mapping[str, Callable[[Mapping[str, Any]], float]],
) -> dict[str, Any]:
    """Per measure: baseline median and spread; per store the gateway median and the ratios.

    ``baselines`` has one run more than each store has rounds (``B G B G B``).
    """
    summary: dict[str, Any] = {"baseline": {}, "runs": {"baseline": list(baselines)}}
    for name, read in metrics.items():
        values = [read(run) for run in baselines]
        summary["baseline"][name] = {
            "median": statistics.median(values),
            "spread": _spread(values),
            "values": values,
        }
    for store, runs in gateways.items():
        if len(runs) != len(baselines) - 1:
            raise ValueError(f"{store}: {len(runs)} rounds need {len(runs) + 1} baseline runs")
        summary["runs"][store] = list(runs)
        entry: dict[str, Any] = {}
        for name, read in metrics.items():
            base = [read(run) for run in baselines]
            values = [read(run) for run in runs]
            # Round i sits between baseline runs i and i + 1.
            around = [(base[i] + base[i + 1]) / 2 for i in range(len(runs))]
            ratios = [v / b for v, b in zip(values, around, strict=True) if b]
            entry[name] = {
                "median": statistics.median(values),
                "values": values,
                "ratio": statistics.median(ratios) if ratios else None,
                "ratio_min": min(ratios, default=None),
                "ratio_max": max(ratios, default=None),
                "ratios": ratios,
            }
        summary[store] = entry
    return summary


def _row(cells: Sequence[str], widths: Sequence[int]) -> str:
    first, *rest = cells
    return "  ".join(
        [first.ljust(widths[0]), *(c.rjust(w) for c, w in zip(rest, widths[1:], strict=True))]
    )


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _range(low: float | None, high: float | None, digits: int = 2) -> str:
    return "n/a" if low is None or high is None else f"{low:.{digits}f}-{high:.{digits}f}"


def render(result: Mapping[str, Any]) -> str:
    """The whole report: the interleaved measurements, then the pinned ones (either may have
    been left out of the run)."""
    parts = []
    if "ingress" in result:
        parts.append(render_interleaved(result))
    else:
        m, load = result["machine"], result["load_average"]
        parts.append(
            "webhook-gateway benchmark\n"
            f"machine: {m['usable_cores']} usable of {m['cpu_count']} cores, {m['cpu_model']}; "
            f"Python {m['python']}; {m['platform']}\n"
            f"load average (1 min): {load['start'][0]:.2f} at start, {load['end'][0]:.2f} at "
            f"end; run took {result['duration_s']:.0f} s"
        )
    if "pinned" in result:
        parts.append(render_pinned(result["pinned"]))
        if "keep_up" in result["pinned"]:
            parts.append(render_keep_up(result["pinned"]["keep_up"]))
    if "cluster" in result:
        parts.append(render_cluster(result["cluster"]))
    if "analytics" in result:
        parts.append(render_analytics(result["analytics"]))
    if "status" in result:
        parts.append(render_status(result["status"]))
    return "\n\n".join(parts)


def render_analytics(result: Mapping[str, Any]) -> str:
    """The analytics part: the 30-day report's median time on each store, small and large."""
    from bench.analytics import render as render_part

    return render_part(result)


def render_interleaved(result: Mapping[str, Any]) -> str:
    """The interleaved table: machine, one row per measure, then the noise figures."""
    m = result["machine"]
    s = result["settings"]
    load = result["load_average"]
    lines = [
        "webhook-gateway benchmark: gateway / baseline, both measured in this run",
        f"machine: {m['usable_cores']} usable of {m['cpu_count']} cores, {m['cpu_model']}; "
        f"Python {m['python']}; {m['platform']}",
        f"load average (1 min): {load['start'][0]:.2f} at start, {load['end'][0]:.2f} at end; "
        f"run took {result['duration_s']:.0f} s",
        f"ingress load: {s['concurrency']} concurrent keep-alive connections, "
        f"{result['body_bytes']}-byte signed Standard Webhooks events, "
        f"{s['warmup_seconds']:g} s warm-up, then up to {s['duration']:g} s / "
        f"{s['max_requests']} requests; {s['rounds']} round(s), a baseline run before and "
        "after each",
        "",
    ]
    widths = (36, 7, 10, 10, 7, 12, 6)
    header = ["measure", "store", "gateway", "baseline", "ratio", "range", "better"]
    lines.append(_row(header, widths))
    lines.append("-" * (sum(widths) + 2 * (len(widths) - 1)))

    def measure(
        label: str, store: str, section: Mapping[str, Any], name: str, better: str, *,
        digits: int = 2, scale: float = 1.0,
    ) -> None:  # fmt: skip
        gateway = section[store][name]
        baseline = section["baseline"][name]
        ratio_digits = 3 if better == "higher" else 2
        cells = [
            label,
            store,
            _fmt(gateway["median"] * scale, digits),
            _fmt(baseline["median"] * scale, digits),
            _fmt(gateway["ratio"], ratio_digits),
            _range(gateway["ratio_min"], gateway["ratio_max"], ratio_digits),
            better,
        ]
        lines.append(_row(cells, widths))

    ingress = result["ingress"]
    for store in result["stores"]:
        measure("ingress accepted/s", store, ingress, "rps", "higher", digits=0)
        measure("ingress latency p50 (ms)", store, ingress, "p50_ms", "lower")
        measure("ingress latency p99 (ms)", store, ingress, "p99_ms", "lower")
        measure(
            "peak RSS after ingress (MiB)", store, ingress, "peak_rss_kib", "lower",
            digits=1, scale=1 / 1024,
        )  # fmt: skip
    v = result["verification"]
    cells = [
        f"verify, {v['body_bytes']}-byte body (us/op)",
        "-",
        _fmt(v["verify_ns"] / 1000),
        _fmt(v["hmac_ns"] / 1000),
        _fmt(v["ratio"]),
        _range(v["ratio_min"], v["ratio_max"]),
        "lower",
    ]
    lines.append(_row(cells, widths))
    delivery = result["delivery"]
    for store in result["stores"]:
        label = f"drain {s['delivery_events']} queued events (s)"
        measure(label, store, delivery, "drain_s", "lower", digits=3)
        measure("drain rate (events/s)", store, delivery, "events_per_s", "higher", digits=0)

    noise = [
        run["machine_noise"]["foreign_cores"]
        for section in (ingress, delivery)
        for runs in section["runs"].values()
        for run in runs
        if "machine_noise" in run
    ]
    ingress_noise = ingress["baseline"]["rps"]["spread"] * 100
    delivery_noise = delivery["baseline"]["drain_s"]["spread"] * 100
    lines += [
        "",
        "ratio = median over rounds of gateway / (mean of the baseline runs before and after);"
        " range = lowest-highest round.",
        "baselines: ingress = bare aiohttp server answering 202 (no verify, no store), same load"
        " generator and concurrency;",
        "           verify = one HMAC-SHA256 + compare_digest of the same bytes (per-op times are"
        " the best of several repeats);",
        f"           drain = the same POSTs sent straight to the destination by aiohttp at "
        f"concurrency {s['delivery_concurrency']} (the gateway's delivery_concurrency).",
        f"noise: baseline readings varied by {ingress_noise:.1f} % (ingress rps) and "
        f"{delivery_noise:.1f} % (direct-send time) across their {s['rounds'] + 1} runs.",
    ]
    if noise:
        lines.append(
            f"       processes outside the benchmark used {sum(noise) / len(noise):.2f} cores on"
            f" average during the runs, {max(noise):.2f} at most (of {m['usable_cores']});"
            " 0 means a quiet machine."
        )
    for store in result["stores"]:
        for run in ingress["runs"][store]:
            errors = run["timed"]["sent"] - run["timed"]["ok"]
            if errors:
                lines.append(f"WARNING: {errors} ingress requests to {store} were not answered 202")
        for run in (*ingress["runs"][store], *delivery["runs"][store]):
            log = run.get("gateway_log", {})
            noisy = {k: v for k, v in log.get("levels", {}).items() if k not in ("debug", "info")}
            if noisy:
                lines.append(f"WARNING: the {store} gateway logged {noisy} during a run, first:")
                lines.append(f"         {log['first_notable'][0]}")
    return "\n".join(lines)


def _mib(kib: float) -> str:
    return f"{kib / 1024:.1f}"


def _floor_lines(t: Mapping[str, Any]) -> list[str]:
    """The floor (bench.floor) against bare aiohttp, and each gateway against the floor."""
    floor = t["floor_vs_aiohttp"]["floor"]
    lines = [
        "the floor (bench.floor: the accept path's work written leanly, same run):"
        f" {floor['rps']['median']:,.0f} requests/s = {floor['rps']['ratio']:.3f} of bare"
        f" aiohttp ({_range(floor['rps']['ratio_min'], floor['rps']['ratio_max'], 3)}),"
        f" {floor['cpu_us']['median']:.0f} us CPU per request",
    ]
    for store, entry in t["vs_floor"].items():
        if store in ("baseline", "runs"):
            continue
        rps, cpu = entry["rps"], entry["cpu_us"]
        lines.append(
            f"  gateway on {store} / floor: requests/s {rps['ratio']:.3f}"
            f" ({_range(rps['ratio_min'], rps['ratio_max'], 3)}), CPU per request"
            f" {cpu['ratio']:.2f} ({_range(cpu['ratio_min'], cpu['ratio_max'], 2)})"
        )
    return lines


def _post_lines(t: Mapping[str, Any]) -> list[str]:
    """Delivery on each store against its own POST alone and against the accept, round by
    round (``Pinned.drain`` and ``Pinned.posts``: on the measured core, one after the other)."""
    posts = t["posts"]
    runs = t["vs_aiohttp"]["runs"]
    drains = [_drains(entry) for entry in posts]
    lines: list[str] = []
    for store in drains[0]:
        # The accept alone, measured as the drain is (one process, nothing else of the
        # gateway's running); results from before that row existed have the ingress-only one.
        layout = "accept alone" if f"{store}, accept alone" in runs else "ingress only"
        accepts = runs.get(f"{store}, {layout}", [])
        if lines:
            lines.append("")
        lines.append(
            f"delivery on {store}: a backlog drained by one gateway alone on the measured core,"
            " CPU per delivered event, against its POSTs alone (the gateway's delivery client,"
            " and a bare aiohttp client, on the same core at the worker's concurrency to the"
            f" same nginx) and against the accept ({layout}):"
        )
        for index, entry in enumerate(posts):
            drain, post = drains[index][store], entry["cpu_us_per_post"]
            own = entry.get("cpu_us_per_post_gateway")
            if own:
                line = (
                    f"  round {index + 1}: a delivery {drain:.0f} us, its POST alone {own:.0f} us"
                    f" (delivery / POST {drain / own:.2f}; aiohttp's {post:.0f} us)"
                )
            else:  # results from before the gateway had a client of its own
                line = (
                    f"  round {index + 1}: a delivery {drain:.0f} us, the POST alone {post:.0f}"
                    f" us (delivery / POST {drain / post:.2f})"
                )
            if index < len(accepts):
                accept = accepts[index]["cpu_us_per_request"]
                line += f"; an accept {accept:.0f} us (delivery / accept {drain / accept:.2f})"
            lines.append(line)
    return lines


def _drains(entry: Mapping[str, Any]) -> dict[str, float]:
    """A round's CPU per delivered event, by store; results from before SQLite's drain was
    measured have Redis's alone, as ``drain_cpu_us``."""
    drains: dict[str, float] = entry.get("drains_cpu_us") or {"redis": entry["drain_cpu_us"]}
    return drains


def render_pinned(pinned: Mapping[str, Any]) -> str:
    """The pinned (wrk) measurements: throughput and latency against both baselines, the RSS
    around each phase, sync-mode latency at a constant rate, workers, and the long run."""
    s = pinned["settings"]
    t = pinned["throughput"]
    stores = [k for k in t["vs_aiohttp"] if k not in ("baseline", "runs")]
    lines = [
        f"pinned (wrk): the measured server alone on core {pinned['sut_cpu']}; wrk -t1 "
        f"-c{s['connections']} --latency, redis-server (AOF off) and the nginx destination on the"
        " other core",
        f"wrk: {s['warmup']:g} s warm-up, then {s['duration']:g} s on {s['pool']:,} pre-signed "
        f"distinct events; {s['rounds']} round(s), baselines before and after each; ratio = "
        "median over rounds of gateway / baseline",
        "",
    ]
    widths = (16, 19, 9, 9, 7, 12, 9, 7, 12)
    header = ["measure", "store", "gateway", "aiohttp", "ratio", "range", "nginx", "ratio", "range"]
    lines.append(_row(header, widths))
    lines.append("-" * (sum(widths) + 2 * (len(widths) - 1)))
    labels = {
        "rps": "requests/s", "p50_ms": "p50 (ms)", "p99_ms": "p99 (ms)", "cpu_us": "CPU/req (us)",
    }  # fmt: skip
    for store in stores:
        for name, label in labels.items():
            if name not in t["vs_aiohttp"][store]:
                continue  # a results file from before the measure existed
            digits = 0 if name in ("rps", "cpu_us") else 2
            ratio_digits = 3 if name == "rps" else 1
            cells = [label, store, _fmt(t["vs_aiohttp"][store][name]["median"], digits)]
            for side in ("vs_aiohttp", "vs_nginx"):
                entry = t[side][store][name]
                cells += [
                    _fmt(t[side]["baseline"][name]["median"], digits),
                    _fmt(entry["ratio"], ratio_digits),
                    _range(entry["ratio_min"], entry["ratio_max"], ratio_digits),
                ]
            lines.append(_row(cells, widths))
    if "vs_floor" in t:
        lines += ["", *_floor_lines(t)]
    if t.get("posts"):
        lines += ["", *_post_lines(t)]
    lines.append("")
    for store in stores:
        for index, run in enumerate(t["vs_aiohttp"]["runs"][store]):
            before, after = run["rss_before_kib"], run["rss_after_kib"]
            accepted = run["outcomes"].get("accepted", 0)
            others = {k: v for k, v in run["outcomes"].items() if k != "accepted"}
            lines.append(
                f"{store} round {index + 1}: RSS {_mib(before)} -> {_mib(after)} MiB "
                f"({(after / before - 1) * 100:+.1f} %) over the phase; {accepted:,} accepted, "
                f"{run['delivered_during_run']:,} delivered meanwhile"
                + (
                    f" (by the delivering process, {cpu:,.0f} us of CPU per delivery)"
                    if (cpu := run.get("delivery_cpu_us_per_delivery"))
                    else ""
                )
                + (f"; other outcomes {others}" if others else "")
                + f"; other processes used {run['machine_noise']['foreign_cores']:.2f} cores"
            )
    # Left out by --throughput-only.
    if "sync" in pinned:
        sync = pinned["sync"]
        lines += [
            "",
            f"sync delivery at a constant {s['sync_rate']:g} requests/s ({s['sync_duration']:g} s"
            f" after {s['sync_warmup']:g} s warm-up, {s['connections']} connections, latency from "
            "when each request was due), against the same rate straight to the destination:",
        ]
        base = sync["baseline"]
        for store in (k for k in sync if k not in ("baseline", "runs")):
            entry = sync[store]
            statuses: dict[str, int] = {}
            for run in sync["runs"][store]:
                for code, count in run["statuses"].items():
                    statuses[code] = statuses.get(code, 0) + count
            lines.append(
                f"  {store}: p50 {entry['p50_ms']['median']:.2f} ms (direct "
                f"{base['p50_ms']['median']:.2f}), p99 {entry['p99_ms']['median']:.2f} ms "
                f"(direct {base['p99_ms']['median']:.2f}): added p99 "
                f"{entry['added_p99_ms']['median']:.2f} ms; answers {statuses}"
            )
        if SYNC_FLOOR in sync:
            lines.append(
                f"  ({SYNC_FLOOR}: from the gateway's core, no gateway, each request three Redis"
                " PINGs in turn and then the POST, the round trips a sync request on Redis makes:"
                " the machine's floor under the gateway's line)"
            )
        workers = pinned["workers"]
        first = workers[0]["rps"] if workers else 0.0
        lines += [
            "",
            f"server.workers ({workers[0]['store'] if workers else '-'} store), wrk on core 1;"
            " (ratio) = requests/s over the first layout's; CPU = the gateway processes' CPU"
            " per request:",
        ]
        for run in workers:
            lines.append(
                f"  {run['layout']:<26} {run['rps']:>8,.0f} requests/s "
                f"({_fmt(run['rps'] / first if first else None)})  p50 {run['p50_ms']:.2f} ms  "
                f"p99 {run['p99_ms']:.2f} ms  CPU {run['cpu_us_per_request']:.0f} us; other "
                f"processes used {run['machine_noise']['foreign_cores']:.2f} cores"
            )
    for long in pinned.get("long", []):
        lines.append("")
        lines.append(
            f"long run on {long['store']}: {long['accepted']:,} accepted; RSS "
            f"{_mib(long['rss_before_kib'])} MiB after warm-up, {_mib(long['rss_after_kib'])} MiB"
            f" at the end ({long['rss_change'] * 100:+.1f} %; target within +-10 %)"
        )
        for x in long["samples"]:
            chunk = (
                f"; the chunk: {x['rps']:,.0f} requests/s, p99 {x['p99_ms']:.0f} ms, other "
                f"processes {x['foreign_cores']:.2f} cores"
                if "rps" in x
                else " (after warm-up)"
            )
            lines.append(
                f"  {x['accepted']:>9,} accepted at {x['seconds']:6.0f} s: RSS "
                f"{_mib(x['rss_kib'])} MiB{chunk}"
            )
    for store in stores:
        for run in pinned["sync"]["runs"].get(store, []) if "sync" in pinned else []:
            log = run.get("gateway_log") or {}
            noisy = {k: v for k, v in log.get("levels", {}).items() if k not in ("debug", "info")}
            if noisy:
                lines.append(f"WARNING: the {store} sync gateway logged {noisy}, first:")
                lines.append(f"         {log['first_notable'][0][:300]}")
        for run in t["vs_aiohttp"]["runs"][store]:
            if run["wrapped"]:
                lines.append(f"WARNING: a {store} run used up its pool (duplicates were sent)")
            log = run.get("gateway_log") or {}
            noisy = {k: v for k, v in log.get("levels", {}).items() if k not in ("debug", "info")}
            if noisy:
                lines.append(f"WARNING: the {store} gateway logged {noisy} during a run, first:")
                lines.append(f"         {log['first_notable'][0][:300]}")
    return "\n".join(lines)
