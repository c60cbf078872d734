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
}


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
