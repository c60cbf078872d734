"""SQLite durability: what accept returned survives a kill -9 of the process right after."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from gateway.store import open_store

from .conftest import T0

CHILD = textwrap.dedent(
    """
    import asyncio, sys, time
    from gateway.store import Event, open_store

    async def main(url):
        store = await open_store(url)
        for i in range(20):
            event = Event(f"evt_{i}", "payments", "t", None, None, f"evt_{i}", b"body-%d" % i,
                          (("content-type", "application/json"),), f"req-{i}", 1.7e9 + i)
            result = await store.accept(event, ["market"], 3600.0, 1.7e9 + i)
            assert result.status == "queued"
        print("accepted", flush=True)   # the 202 would go out now
        time.sleep(60)                  # killed before any clean shutdown

    asyncio.run(main(sys.argv[1]))
    """
)


REPO = Path(__file__).resolve().parents[2]


def accept_then_kill_9(url: str) -> None:
    """Run CHILD, and SIGKILL it the moment it says its accepts returned."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, url],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == b"accepted\n"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
    assert child.returncode == -signal.SIGKILL


async def test_accepted_events_survive_kill_9(tmp_path: Path):
    url = f"sqlite:///{tmp_path}/gw.db"
    accept_then_kill_9(url)
    store = await open_store(url)
    try:
        assert await store.queue_depth() == {("market", "due"): 20}
        leases = await store.lease_due(T0 + 10**6, 30.0, 100, "w")
        assert sorted(lease.event.body for lease in leases) == sorted(
            b"body-%d" % i for i in range(20)
        )
        view = await store.get_event("evt_19")
        assert view is not None
        assert view.event.headers == (("content-type", "application/json"),)
    finally:
        await store.close()
