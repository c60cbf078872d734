"""The benchmark's processes: start them, wait until they answer, read their peak RSS, stop them.

Every process is started here and stopped here by its own PID (SIGTERM, then SIGKILL if it
hangs); nothing is ever looked up or killed by name. Output goes to a log file per process in
the run's temporary directory, quoted when a process fails to start.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The repository top: child processes run here so ``bench``, ``gateway`` and ``tests`` import.
REPO = Path(__file__).resolve().parent.parent


class BenchError(RuntimeError):
    """A process of the benchmark did not start, answer or finish as it should."""


@dataclass
class Proc:
    """One child process owned by the benchmark."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        """The child's PID."""
        return self.popen.pid

    def alive(self) -> bool:
        """Whether the child is still running."""
        return self.popen.poll() is None

    def peak_rss_kib(self) -> int:
        """Peak resident set size so far (``VmHWM`` in /proc/<pid>/status), in KiB."""
        return self._status_kib("VmHWM")

    def rss_kib(self) -> int:
        """Resident set size now (``VmRSS`` in /proc/<pid>/status), in KiB."""
        return self._status_kib("VmRSS")

    def _status_kib(self, field: str) -> int:
        status = Path(f"/proc/{self.pid}/status").read_text()
        for line in status.splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
        raise BenchError(f"{self.name}: no {field} in /proc/{self.pid}/status")

    def pause(self) -> None:
        """SIGSTOP: the process keeps its listening socket (the kernel still completes
        connections into the backlog) but answers nothing until ``resume``."""
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after ``pause``."""
        os.kill(self.pid, signal.SIGCONT)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (after SIGCONT, in case it is paused), then SIGKILL if it does not exit."""
        if not self.alive():
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGCONT)
        self.popen.terminate()
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()

    def log_summary(self, keep: int = 3) -> dict[str, Any]:
        """Counts of the JSON log lines the child wrote at each level (the gateway logs JSON
        lines) and the first ``keep`` lines above ``info``: a run whose gateway logged
        warnings or errors is flagged in the report, with what it said."""
        levels: dict[str, int] = {}
        notable: list[str] = []
        with contextlib.suppress(OSError), self.log_path.open(errors="replace") as log:
            for line in log:
                try:
                    level = str(json.loads(line).get("level", "unknown"))
                except (ValueError, AttributeError):
                    level = "not-json"
                levels[level] = levels.get(level, 0) + 1
                if level not in ("debug", "info") and len(notable) < keep:
                    notable.append(line.strip()[:500])
        return {"levels": levels, "first_notable": notable}

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the child's output, for error messages."""
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-chars:]
        return "(no output)"


#: The measured server's core, and the core of everything else.
SUT_CPU, REST_CPU = "0", "1"


def pinned(command: list[str], cpus: str | None) -> list[str]:
    """``command`` run through ``taskset -c CPUS`` (which execs it: the PID stays the
    program's own), or unchanged when ``cpus`` is None."""
    return command if cpus is None else ["taskset", "-c", cpus, *command]


def spawn(
    name: str, args: list[str], log_dir: Path, cpus: str | None = None, repo: Path = REPO
) -> Proc:
    """Start ``python <args>`` in the repository, or in the checkout ``repo`` (its own
    ``gateway`` package is the one ``-m gateway`` runs), on ``cpus`` if given, output to
    ``log_dir/<name>.log``."""
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        popen = subprocess.Popen(  # noqa: S603 - our own interpreter and modules, no shell
            pinned([sys.executable, *args], cpus),
            cwd=repo,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return Proc(name, popen, log_path)


def get_json(url: str, timeout: float = 5.0) -> Any:
    """GET a loopback URL and decode its JSON answer."""
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - http loopback
        return json.loads(response.read())


def get_text(url: str, timeout: float = 5.0) -> str:
    """GET a loopback URL (a gateway's ``/metrics``, say) and decode its text answer."""
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - http loopback
        return str(response.read().decode())


def wait_ready(proc: Proc, url: str, timeout: float = 30.0) -> None:
    """Poll ``url`` until it answers 200; fail early, with the log, if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise BenchError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.log_tail()}")
        try:
            with urllib.request.urlopen(url, timeout=1.0) as response:  # noqa: S310 - loopback
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)
    raise BenchError(f"{proc.name} did not answer {url} within {timeout:g} s:\n{proc.log_tail()}")


def run_loadgen(spec: dict[str, Any], timeout: float, cpus: str | None = None) -> dict[str, Any]:
    """Run the load generator in its own process (on ``cpus`` if given); its JSON result."""
    try:
        done = subprocess.run(  # noqa: S603 - our own interpreter and module, no shell
            pinned([sys.executable, "-m", "bench.loadgen", json.dumps(spec)], cpus),
            cwd=REPO,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"the load generator did not finish within {timeout:g} s") from exc
    if done.returncode != 0:
        raise BenchError(f"the load generator failed:\n{done.stderr.decode(errors='replace')}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


_TICKS = os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    """``pid`` and its live descendants (from /proc/<pid>/task/*/children): nginx's worker,
    the gateway's processes with ``server.workers`` above one."""
    pids, pending = [], [pid]
    while pending:
        current = pending.pop()
        pids.append(current)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
    return pids


def _system_busy_seconds() -> float:
    """CPU seconds every core has spent busy since boot (``/proc/stat``; idle and iowait are
    not busy; steal is: another guest had our CPU)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / _TICKS


def _own_cpu_seconds(pids: Sequence[int]) -> float:
    """CPU seconds of this process, its reaped children, and the live processes ``pids``."""
    me, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    total = me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime
    for pid in pids:
        with contextlib.suppress(OSError):
            # Fields 14 and 15 of /proc/<pid>/stat, counted after the ")" of the command name.
            after = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(after[11]) + int(after[12])) / _TICKS
    return total


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds (user and system) used so far by ``pid`` and its live descendants."""
    total = 0.0
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            after = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(after[11]) + int(after[12])) / _TICKS
    return total


@contextlib.contextmanager
def foreign_cpu(record: dict[str, Any], live_pids: Sequence[int] = ()) -> Iterator[None]:
    """Put into ``record`` how many cores' worth of CPU processes NOT started by the benchmark
    used while the block ran (``foreign_cores``): the machine's busy time minus ours.

    Every process the block starts must be reaped inside it (``Proc.stop`` does that); long-
    lived ones (redis-server) are passed in ``live_pids``.
    """
    wall, busy, own = time.monotonic(), _system_busy_seconds(), _own_cpu_seconds(live_pids)
    yield
    wall = time.monotonic() - wall
    foreign = (_system_busy_seconds() - busy) - (_own_cpu_seconds(live_pids) - own)
    record["wall_s"] = wall
    record["foreign_cpu_s"] = max(0.0, foreign)
    record["foreign_cores"] = max(0.0, foreign) / wall if wall > 0 else 0.0
