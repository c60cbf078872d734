"""Turn raw measurements into ratios, a readable table and the JSON document.

Every ratio is ``gateway / baseline`` of the same quantity. Throughput ratios are better
higher (1.0 would be "as fast as doing nothing"); time, latency and memory ratios are better
lower (1.0 would be "no cost over the bare baseline").
"""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
import sys
from collections.abc import Mapping, Sequence
from importlib.metadata import version
from typing import Any

from tests.redis_server import REDIS_SERVER


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


def machine_facts() -> dict[str, Any]:
    """Cores, CPU, OS, Python and the library versions the numbers depend on."""
    return {
        "cpu_count": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "aiohttp": version("aiohttp"),
        "redis_py": version("redis"),
        "sqlite": sqlite3.sqlite_version,
        "redis_server": _redis_version(),
    }


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def _spread(values: Sequence[float]) -> float:
    """Relative difference between the highest and lowest reading (0.03 = 3 %)."""
    mean = _mean(values)
    return (max(values) - min(values)) / mean if mean else 0.0


def _ratio(value: float, base: float) -> float | None:
    return value / base if base else None


def summarize_ingress(
    baselines: Sequence[Mapping[str, Any]], gateways: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """Baseline mean and spread; per store the gateway's numbers and their ratios."""
    timed = [b["timed"] for b in baselines]
    base: dict[str, Any] = {
        "rps": _mean([t["rps"] for t in timed]),
        "p50_ms": _mean([t["p50_ms"] for t in timed]),
        "p99_ms": _mean([t["p99_ms"] for t in timed]),
        "peak_rss_kib": _mean([b["peak_rss_kib"] for b in baselines]),
        "rps_spread": _spread([t["rps"] for t in timed]),
        "runs": list(baselines),
    }
    summary: dict[str, Any] = {"baseline": base}
    for store, run in gateways.items():
        t = run["timed"]
        summary[store] = {
            "rps": t["rps"],
            "p50_ms": t["p50_ms"],
            "p99_ms": t["p99_ms"],
            "peak_rss_kib": run["peak_rss_kib"],
            "rps_ratio": _ratio(t["rps"], base["rps"]),
            "p50_ratio": _ratio(t["p50_ms"], base["p50_ms"]),
            "p99_ratio": _ratio(t["p99_ms"], base["p99_ms"]),
            "rss_ratio": _ratio(run["peak_rss_kib"], base["peak_rss_kib"]),
            "run": dict(run),
        }
    return summary


def summarize_delivery(
    baselines: Sequence[Mapping[str, Any]], gateways: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """Direct-send mean and spread; per store the drain time and its ratio."""
    times = [b["drain_s"] for b in baselines]
    base: dict[str, Any] = {
        "drain_s": _mean(times),
        "drain_spread": _spread(times),
        "runs": list(baselines),
    }
    summary: dict[str, Any] = {"baseline": base}
    for store, run in gateways.items():
        summary[store] = {
            **run,
            "time_ratio": _ratio(run["drain_s"], base["drain_s"]),
            "throughput_ratio": _ratio(base["drain_s"], run["drain_s"]),
        }
    return summary


def _row(cells: Sequence[str], widths: Sequence[int]) -> str:
    first, *rest = cells
    return "  ".join(
        [first.ljust(widths[0]), *(c.rjust(w) for c, w in zip(rest, widths[1:], strict=True))]
    )


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def render(result: Mapping[str, Any]) -> str:
    """The human-readable report: machine, one row per measure, then the noise figures."""
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
        f"{s['max_requests']} requests",
        "",
    ]
    widths = (36, 7, 11, 11, 8, 7)
    lines.append(_row(["measure", "store", "gateway", "baseline", "ratio", "better"], widths))
    lines.append("-" * (sum(widths) + 2 * (len(widths) - 1)))

    def measure(
        name: str,
        store: str,
        values: tuple[float, float, float | None],
        better: str,
        digits: int = 2,
    ) -> None:
        gateway, baseline, ratio = values
        cells = [name, store, _fmt(gateway, digits), _fmt(baseline, digits), _fmt(ratio), better]
        lines.append(_row(cells, widths))

    ingress = result["ingress"]
    base = ingress["baseline"]
    for store in result["stores"]:
        g = ingress[store]
        measure("ingress accepted/s", store, (g["rps"], base["rps"], g["rps_ratio"]), "higher", 0)
        for pct in ("p50", "p99"):
            values = (g[f"{pct}_ms"], base[f"{pct}_ms"], g[f"{pct}_ratio"])
            measure(f"ingress latency {pct} (ms)", store, values, "lower")
        rss = (g["peak_rss_kib"] / 1024, base["peak_rss_kib"] / 1024, g["rss_ratio"])
        measure("peak RSS after ingress (MiB)", store, rss, "lower", 1)
    v = result["verification"]
    verify = (v["verify_ns"] / 1000, v["hmac_ns"] / 1000, v["ratio"])
    measure(f"verify, {v['body_bytes']}-byte body (us/op)", "-", verify, "lower")
    delivery = result["delivery"]
    dbase = delivery["baseline"]
    for store in result["stores"]:
        d = delivery[store]
        drain = (d["drain_s"], dbase["drain_s"], d["time_ratio"])
        measure(f"drain {d['events']} queued events (s)", store, drain, "lower", 3)
    lines += [
        "",
        "baselines: ingress = bare aiohttp server answering 202 (no verify, no store), same load;"
        " verify = one HMAC-SHA256 + compare_digest of the same bytes;",
        f"           drain = the same POSTs sent straight to the destination by aiohttp at "
        f"concurrency {s['delivery_concurrency']} (the gateway's delivery_concurrency).",
        f"noise: the two ingress baseline runs (before/after the gateway) differed by "
        f"{base['rps_spread'] * 100:.1f} % in rps; the two direct-send runs by "
        f"{dbase['drain_spread'] * 100:.1f} % in time; verify per-op medians were "
        f"{v['verify_median_ns'] / v['verify_ns'] * 100 - 100:.1f} % / "
        f"{v['hmac_median_ns'] / v['hmac_ns'] * 100 - 100:.1f} % above the best.",
    ]
    for store in result["stores"]:
        g = ingress[store]
        errors = g["run"]["timed"]["sent"] - g["run"]["timed"]["ok"]
        if errors:
            lines.append(f"WARNING: {errors} ingress requests to the {store} gateway were not 202")
    return "\n".join(lines)
