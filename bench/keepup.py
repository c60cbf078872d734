"""Does delivery keep up? A constant load at 80 % of the measured accept rate, queue watched.

Part of the pinned measurements (``bench.pinned``). For each store, a fresh gateway (queued
delivery, full pipeline) gets new events at a constant rate of ``KEEP_UP_SHARE`` times the
requests/s its store reached in the throughput rounds of the same run, from the bench's
constant-rate generator on the other core, for ``keep_up_duration`` seconds. Meanwhile the
gateway's own ``webhook_gateway_queue_depth`` (due + leased) is read twice a second. Delivery
keeps up when that depth does not grow over the phase: the report gives the depth's slope
(deliveries/s, from a least-squares line through the samples of the phase), its mean in the
first and the second half, its value at the end, and how long the queue took to empty once the
load stopped. A queue that grows steadily, whose slope is a real share of the rate, does not
keep up: the destination would fall further behind the longer the load lasted.

A layout that does not keep up at 80 % is tried again at lower shares (``LADDER``, shorter
phases), down to the first that does, so the report also says how far from the target it is:
the highest share of the accept rate that one layout accepts *and* delivers as it comes.
"""

from __future__ import annotations

import re
import statistics
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol

from bench.payloads import SOURCE_PATH
from bench.procs import get_text, run_loadgen
from bench.scenarios import HOST


class Running(Protocol):
    """A gateway started for a phase: its ingress and admin ports."""

    port: int
    admin: int | None


class Layouts(Protocol):
    """What a keep-up phase needs of the run it is part of (``bench.pinned.Pinned``)."""

    def label(self, store: str, split: bool) -> str:
        """How a layout is named in the results."""

    def gateway(self, store: str, *, split: bool = False) -> AbstractContextManager[Running]:
        """A fresh gateway on ``store`` (``split``: ingress only, delivery by another)."""


#: The share of the measured accept rate the keep-up phase sends (the issue's 80 %).
KEEP_UP_SHARE = 0.8
#: Lower shares tried, in turn, after a phase that did not keep up (until one does).
LADDER = (0.6, 0.4, 0.2)
#: Kept up: the queue's depth grew by less than this share of the rate per second (a queue
#: that keeps up wanders around a few dozen; one that does not grows by a sixth of the rate
#: and more, on this benchmark's machine).
KEPT_UP_SLOPE = 0.02
#: Seconds between two readings of the queue depth.
SAMPLE_EVERY = 0.5
_DEPTH = re.compile(r'^webhook_gateway_queue_depth\{[^}]*state="(due|leased)"[^}]*\} (\S+)$')


def queue_depth(admin: int) -> float:
    """Deliveries due or leased, from the gateway's ``/metrics``."""
    text = get_text(f"http://{HOST}:{admin}/metrics")
    return sum(float(m.group(2)) for line in text.splitlines() if (m := _DEPTH.match(line)))


class DepthSampler:
    """Reads the queue depth every ``SAMPLE_EVERY`` seconds on a thread until stopped."""

    def __init__(self, admin: int) -> None:
        self.admin = admin
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = time.monotonic()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                depth = queue_depth(self.admin)
            except OSError:
                depth = float("nan")
            self.samples.append((time.monotonic() - self._started, depth))
            self._stop.wait(SAMPLE_EVERY)

    def now(self) -> float:
        """Seconds since the sampler was made, on the clock of its samples."""
        return time.monotonic() - self._started

    def __enter__(self) -> DepthSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def slope(points: list[tuple[float, float]]) -> float:
    """The least-squares slope of ``points`` (per second); 0 for fewer than two."""
    points = [(t, d) for t, d in points if d == d]  # not NaN
    if len(points) < 2:
        return 0.0
    mean_t = statistics.fmean(t for t, _ in points)
    mean_d = statistics.fmean(d for _, d in points)
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    if not spread:
        return 0.0
    return sum((t - mean_t) * (d - mean_d) for t, d in points) / spread


def kept_up(run: dict[str, Any]) -> bool:
    """Whether a phase's queue stayed flat (see ``KEPT_UP_SLOPE``)."""
    return bool(run["depth_slope_per_s"] < KEPT_UP_SLOPE * run["rate"])


def keep_up_ladder(
    bench: Layouts,
    store: str,
    accept_rate: float,
    progress: Callable[[str], None],
    *,
    duration: float,
    connections: int,
    split: bool = False,
) -> list[dict[str, Any]]:
    """The phase at ``KEEP_UP_SHARE`` of ``accept_rate`` for ``duration`` seconds, then, while a
    phase did not keep up, one at each lower share of ``LADDER`` (half as long); every phase's
    result."""
    full = duration
    runs: list[dict[str, Any]] = []
    for share in (KEEP_UP_SHARE, *LADDER):
        if runs and kept_up(runs[-1]):
            break
        seconds = full if share == KEEP_UP_SHARE else full / 2
        run = keep_up(
            bench, store, share * accept_rate, progress, seconds, connections, split=split
        )
        run["share"] = share
        runs.append(run)
    return runs


def keep_up(
    bench: Layouts,
    store: str,
    rate: float,
    progress: Callable[[str], None],
    seconds: float,
    connections: int,
    *,
    split: bool = False,
) -> dict[str, Any]:
    """One keep-up phase on ``store`` at ``rate`` requests/s for ``seconds``; the JSON-ready
    result.

    ``split``: an ingress-only gateway on the measured core, delivery by a second process on
    the other core (``Pinned.gateway``)."""
    label = bench.label(store, split)
    progress(f"keep-up: gateway on {label} at {rate:,.0f}/s for {seconds:g} s")
    with bench.gateway(store, split=split) as target:
        assert target.admin is not None
        spec = {
            "mode": "rate", "host": HOST, "port": target.port, "path": SOURCE_PATH,
            "rate": rate, "warmup_seconds": 1.0, "duration": seconds,
            "prefix": f"keep-up-{store}", "connections": connections, "expect": 202,
        }  # fmt: skip
        with DepthSampler(target.admin) as sampler:
            started = sampler.now()
            result = run_loadgen(spec, seconds + 180.0, cpus="1")
            ended = sampler.now()
            # Then until the queue is empty (or a minute has passed): how long the drain took.
            deadline = time.monotonic() + 60.0
            while time.monotonic() < deadline:
                if (
                    sampler.samples
                    and sampler.samples[-1][0] > ended
                    and not sampler.samples[-1][1]
                ):
                    break
                time.sleep(SAMPLE_EVERY)
        drained = next((t - ended for t, d in sampler.samples if t > ended and d == 0), None)
    during = [(t, d) for t, d in sampler.samples if started <= t <= ended]
    half = len(during) // 2
    timed = result["timed"]
    return {
        "store": label,
        "rate": rate,
        "answered_202": timed.get("ok"),
        "statuses": timed.get("statuses"),
        "p99_ms": timed.get("p99_ms"),
        "depth_slope_per_s": slope(during),
        "depth_first_half": statistics.fmean(d for _, d in during[:half]) if half else None,
        "depth_second_half": statistics.fmean(d for _, d in during[half:]) if half else None,
        "depth_at_end": during[-1][1] if during else None,
        "drained_after_s": drained,
        "samples": sampler.samples,
    }


def render_keep_up(runs: list[dict[str, Any]]) -> str:
    """The keep-up phases as a Markdown table."""
    lines = [
        f"### Delivery at {KEEP_UP_SHARE:.0%} of the accept rate, then lower shares until it"
        " keeps up (queue due + leased)",
        "",
        "| store | share | rate (/s) | answered 202 | depth slope (/s) | mean depth,"
        " 1st → 2nd half | at end | emptied after load (s) | kept up |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for run in runs:
        first, second = run["depth_first_half"], run["depth_second_half"]
        halves = f"{first:,.0f} → {second:,.0f}" if first is not None else "—"
        drained = run["drained_after_s"]
        share = run.get("share", KEEP_UP_SHARE)
        lines.append(
            f"| {run['store']} | {share:.0%} | {run['rate']:,.0f} | {run['answered_202']:,} |"
            f" {run['depth_slope_per_s']:+.1f} | {halves} | {run['depth_at_end']:,.0f} |"
            f" {'not within 60' if drained is None else f'{drained:.1f}'} |"
            f" {'yes' if kept_up(run) else 'no'} |"
        )
    return "\n".join(lines)
