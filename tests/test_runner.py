"""The supervisor's metrics directories (server.workers): what a SIGKILLed one left is removed."""

from __future__ import annotations

import fcntl
import os

from gateway.runner import METRICS_LOCK, sweep_metrics_dirs


def test_only_directories_that_no_running_supervisor_holds_are_removed(tmp_path):
    abandoned = tmp_path / "webhook-gateway-metrics-abc123"
    held = tmp_path / "webhook-gateway-metrics-def456"
    unlocked = tmp_path / "webhook-gateway-metrics-x1y2z3"  # no lock file: being made, or older
    other = tmp_path / "something-else-abc"
    for path in (abandoned, held, unlocked, other):
        path.mkdir()
        (path / "counter_1.db").write_bytes(b"\0" * 16)
    for path in (abandoned, held, other):
        (path / METRICS_LOCK).touch()
    # A lock is per open file: this one conflicts with the sweep's even in the same process.
    fd = os.open(held / METRICS_LOCK, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert sweep_metrics_dirs(tmp_path) == [abandoned]
    finally:
        os.close(fd)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in (held, unlocked, other)
    )
    # Once its holder is gone, the held one goes too.
    assert sweep_metrics_dirs(tmp_path) == [held]
