"""wrk as the load generator of the pinned measurements: a pool of pre-signed requests, a run.

``write_pool`` signs ``count`` distinct payments events (each its own ``webhook-id``) as
complete HTTP/1.1 requests, with the timestamp of the moment it runs, into the file
``bench/pool.lua`` reads; call it just before each phase, so every signature stays inside the
source's 5-minute tolerance for the whole phase. ``run_wrk`` runs ``wrk -t1 -cN --latency``
on that pool, pinned with ``taskset``, and returns wrk's own summary and latency percentiles.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.loadgen import build_pool
from bench.procs import BenchError, pinned

WRK = os.environ.get("WRK", shutil.which("wrk") or "/usr/bin/wrk")
POOL_SCRIPT = Path(__file__).resolve().parent / "pool.lua"
_MARKER = "WRK_JSON "


def write_pool(path: Path, host: str, port: int, target: str, count: int, prefix: str) -> float:
    """Sign ``count`` requests to ``target`` now and write them for pool.lua; seconds taken."""
    started = time.perf_counter()
    with path.open("wb") as out:
        for request in build_pool(host, port, target, count, prefix):
            out.write(b"%d\n" % len(request))
            out.write(request)
    return time.perf_counter() - started


def wrk_version() -> str:
    """The first line of ``wrk -v`` (it exits 1 after printing its usage)."""
    try:
        done = subprocess.run(  # noqa: S603 - the configured wrk binary, no shell
            [WRK, "-v"], capture_output=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unavailable"
    return done.stdout.decode(errors="replace").splitlines()[0].strip()


def run_wrk(
    url: str,
    pool: Path,
    *,
    connections: int,
    duration: float,
    cpus: str | None,
    log: Path,
    stop_when: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """``wrk -t1 -c<connections> -d<duration>s --latency`` on the pool; its JSON summary.

    ``stop_when`` (polled twice a second) ends the run early with SIGINT, which wrk takes as
    "stop now and report": the long run stops when the gateway has accepted enough events.
    """
    command = [
        WRK, "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency",
        "--timeout", "30s", "-s", str(POOL_SCRIPT), url,
    ]  # fmt: skip
    command = pinned(command, cpus)
    env = {**os.environ, "WRK_POOL": str(pool)}
    deadline = time.monotonic() + duration + 60.0
    with log.open("wb") as out:
        popen = subprocess.Popen(  # noqa: S603 - wrk (or taskset exec-ing it), no shell
            command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env
        )
        try:
            while popen.poll() is None:
                if time.monotonic() > deadline:
                    raise BenchError(f"wrk did not finish within {duration + 60:g} s")
                if stop_when is not None and stop_when():
                    popen.send_signal(signal.SIGINT)
                    stop_when = None
                time.sleep(0.5)
        finally:
            if popen.poll() is None:
                popen.kill()
                popen.wait()
    text = log.read_text(errors="replace")
    if popen.returncode != 0:
        raise BenchError(f"wrk exited with {popen.returncode}:\n{text[-3000:]}")
    for line in text.splitlines():
        if line.startswith(_MARKER):
            result: dict[str, Any] = json.loads(line[len(_MARKER) :])
            break
    else:
        raise BenchError(f"no summary from wrk:\n{text[-3000:]}")
    seconds = result["duration_us"] / 1e6
    lat = result["latency_us"]
    errors = sum(result["errors"].values())
    result.update(
        rps=result["requests"] / seconds if seconds > 0 else 0.0,
        p50_ms=lat["p50"] / 1000,
        p99_ms=lat["p99"] / 1000,
        error_count=errors,
        wrapped=result["handed_out"] > result["pool"],
        command=" ".join(command),
    )
    return result
