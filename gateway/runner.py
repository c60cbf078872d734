"""Process management for ``webhook-gateway run``: one process, or N sharing the port.

With ``server.workers: N`` the parent starts N gateway processes that share the ingress port
through ``SO_REUSEPORT`` and the store; the first also serves the admin listener. The parent
passes SIGTERM and SIGHUP on, and starts again a process that died unexpectedly.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import multiprocessing
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Coroutine
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType
from typing import Any

from prometheus_client.multiprocess import mark_process_dead

from gateway.config import load_config
from gateway.config.model import Config
from gateway.logs import setup_logging
from gateway.server import serve

log = logging.getLogger("gateway.runner")
RESTART_BACKOFF = 1.0


def _warn_unsigned(config: Config) -> None:
    for source in config.sources.values():
        if not source.verifier.authenticates:
            log.warning(
                "source accepts unsigned requests, protected only by its IP allow-list",
                extra={"source": source.name, "allow_ips": [str(n) for n in source.allow_ips]},
            )


def run_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` on uvloop where it is installed (libuv's loop: the same asyncio API, a
    faster I/O path for many small requests), else on asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)


def _exit_with(parent: int) -> None:
    """SIGTERM this process once ``parent`` is gone (checked every second, on a thread).

    A supervisor killed with SIGKILL cannot pass anything on: without this its processes would
    live on as orphans, serving the shared port and leasing deliveries from a gateway that,
    for its operator, has stopped.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _child(config_path: str, index: int, parent: int) -> None:
    _exit_with(parent)
    config = load_config(config_path)
    setup_logging(config.server.log_level)
    run_loop(serve(config, config_path=Path(config_path), reuse_port=True, admin=index == 0))


def run(config: Config, config_path: Path) -> int:
    """Run the gateway in the foreground until SIGTERM/SIGINT; return the exit status."""
    _warn_unsigned(config)
    workers = config.server.workers
    if workers == 1:
        run_loop(serve(config, config_path=config_path))
        return 0
    return _supervise(config_path, workers)


METRICS_PREFIX = "webhook-gateway-metrics-"
#: Held (flock) by the supervisor that made the directory, for as long as it runs.
METRICS_LOCK = "supervisor.lock"


def _hold_metrics_dir(directory: Path) -> int:
    """Lock ``directory`` as in use; the kernel drops the lock when this process ends,
    however it ends. The lock file gets its name only once locked, so a sweep never finds
    it unlocked."""
    unnamed = directory / f".{METRICS_LOCK}"
    fd = os.open(unnamed, os.O_CREAT | os.O_RDWR, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    unnamed.rename(directory / METRICS_LOCK)
    return fd


def sweep_metrics_dirs(parent: Path) -> list[Path]:
    """Remove the metrics directories in ``parent`` that no running supervisor holds.

    A supervisor removes its own directory when it stops; one that was SIGKILLed (an OOM kill,
    ``kill -9``) cannot, and each such end would leave one behind. A directory counts as
    abandoned only if its lock file exists and nobody holds the lock: pids would not do, as
    they are reused and differ between containers sharing a ``/tmp``. Returns what it removed.
    """
    removed = []
    for path in parent.glob(f"{METRICS_PREFIX}*"):
        try:
            fd = os.open(path / METRICS_LOCK, os.O_RDWR)
        except OSError:
            continue  # being made right now, or not one of ours
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # its supervisor runs
        else:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
        finally:
            os.close(fd)
    return removed


def _supervise(config_path: Path, workers: int) -> int:
    # Every process writes its metrics here; the admin listener merges them (gateway.metrics).
    for path in sweep_metrics_dirs(Path(tempfile.gettempdir())):
        log.info("removed the metrics of a gateway that is gone", extra={"path": str(path)})
    metrics_dir = tempfile.mkdtemp(prefix=METRICS_PREFIX)
    lock = _hold_metrics_dir(Path(metrics_dir))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        return _supervise_processes(config_path, workers)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
        os.close(lock)


def _supervise_processes(config_path: Path, workers: int) -> int:
    context = multiprocessing.get_context("spawn")
    processes: dict[int, BaseProcess] = {}
    stopping = False

    def start(index: int) -> None:
        process = context.Process(
            target=_child, args=(str(config_path), index, os.getpid()), name=f"gateway-{index}"
        )
        process.start()
        processes[index] = process

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        if signum in (signal.SIGTERM, signal.SIGINT):
            stopping = True
        for process in processes.values():
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    for index in range(workers):
        start(index)
    log.info("started gateway processes", extra={"workers": workers})
    while True:
        for index, process in list(processes.items()):
            process.join(timeout=0.2)
            if process.is_alive():
                continue
            if process.pid is not None:
                # Its live gauges (queue depth, build info) must not outlive it in the merge.
                mark_process_dead(process.pid)  # type: ignore[no-untyped-call]
            if stopping:
                processes.pop(index)
                continue
            log.error(
                "gateway process exited, starting it again",
                extra={"index": index, "exitcode": process.exitcode},
            )
            time.sleep(RESTART_BACKOFF)
            start(index)
        if stopping and not processes:
            return 0
