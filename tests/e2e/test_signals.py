"""Signals an operator sends a running gateway (design.md 5.5).

``SIGTERM`` stops accepting, lets in-flight deliveries finish and be recorded, and exits 0.
``SIGHUP`` reloads the config: a broken file is refused and logged while the old config keeps
serving; a good one takes effect without a restart.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import aiohttp

from gateway.store import open_store
from tests.e2e.gateway_process import HoldingMarketplace, e2e_config, queue_depth, send_event
from tests.support import payments_source
from tests.waiting import eventually


async def test_sigterm_lets_in_flight_deliveries_finish(store_url, gateways, destinations):
    ids = [f"msg_slow_{n}" for n in range(5)]
    # Each first attempt is held 1.5 s: well inside the gateway's 3 s timeout, so the gateway
    # has to wait for it rather than give up on it.
    holding = HoldingMarketplace(hold=1.5, hold_ids=ids)
    destination = destinations(holding)
    await destination.start()
    gateway = gateways(
        e2e_config(
            store_url=store_url,
            destinations={"marketplace": destination.url},
            destination={"timeout": "3s"},
            server={"delivery_lease": "4s"},
        )
    )
    await gateway.start()
    async with aiohttp.ClientSession() as session:
        for msg_id in ids:
            status, _, _, _ = await send_event(session, gateway.url(), msg_id=msg_id)
            assert status == 202, gateway.log_tail()
    await destination.wait_for_ids(ids, why=f"\n{gateway.log_tail()}")
    assert not holding.answered, "the deliveries must still be in flight when SIGTERM arrives"

    assert await gateway.terminate() == 0, gateway.log_tail()

    assert holding.answered == set(ids)
    await gateway.wait_for_log("gateway stopped")
    # Every delivery was completed and recorded before the process exited: nothing is left
    # leased for another worker to send a second time.
    depth = await queue_depth(store_url)
    assert not any(depth.values()), depth
    store = await open_store(store_url)
    try:
        for msg_id in ids:
            view = await store.get_event(msg_id)
            assert view is not None and view.status == "delivered", view
    finally:
        await store.close()
    assert destination.ids() == dict.fromkeys(ids, 1)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def test_processes_of_a_killed_supervisor_stop_too(tmp_path, gateways, destinations):
    # server.workers: 2 runs a supervisor and two gateway processes. A supervisor that is
    # SIGKILLed passes nothing on; its processes must not live on as orphans that serve the
    # port and lease deliveries for a gateway its operator has stopped.
    destination = destinations()
    config = e2e_config(
        store_url=f"sqlite:///{tmp_path / 'gateway.db'}",
        destinations={"marketplace": destination.url},
        server={"workers": 2},
    )
    gateway = gateways(config)
    await gateway.start()
    supervisor = gateway.pid
    children = await eventually(
        lambda: {r["pid"] for r in gateway.log_records()} - {supervisor},
        "two worker processes to log",
        until=lambda pids: len(pids) >= 2,
        why=gateway.log_tail,
    )
    assert all(_alive(pid) for pid in children)
    os.kill(supervisor, signal.SIGKILL)
    await eventually(
        lambda: {pid for pid in children if _alive(pid)},
        "the orphaned workers to stop (seen: those still running)",
        until=lambda running: not running,
        interval=0.1,
    )
    stopped = [r for r in gateway.log_records() if r.get("msg") == "gateway stopped"]
    assert {r["pid"] for r in stopped} == children, "each stopped gracefully, on its own"

    # The killed supervisor could not remove its processes' metrics directory; the next
    # supervisor to start does, and keeps its own.
    assert await gateway.wait_exit() == -signal.SIGKILL
    left = list(gateway.temp_dir.glob("webhook-gateway-metrics-*"))
    assert len(left) == 1, list(gateway.temp_dir.iterdir())
    again = gateways(config)
    await again.start()
    assert not left[0].exists()
    assert len(list(again.temp_dir.glob("webhook-gateway-metrics-*"))) == 1
    assert await again.terminate() == 0
    assert not list(again.temp_dir.iterdir()), "a supervisor that stops removes its own"


async def test_sighup_keeps_the_old_config_on_error_and_applies_a_good_one(
    tmp_path, gateways, destinations
):
    destination = destinations()
    await destination.start()
    config = e2e_config(
        store_url=f"sqlite:///{tmp_path / 'gateway.db'}",
        destinations={"marketplace": destination.url},
    )
    gateway = gateways(config)
    await gateway.start()
    other = "/hooks/other"

    async with aiohttp.ClientSession() as session:
        status, _, _, _ = await send_event(session, gateway.url(other))
        assert status == 404

        # A broken file (not even YAML): refused, logged, and the old config keeps serving.
        mark = len(gateway.log_records())
        gateway.config_path.write_text("sources: [this is not closed\n")
        gateway.send_signal(signal.SIGHUP)
        record = await gateway.wait_for_log(
            "config reload refused, keeping the old config", after=mark
        )
        assert record["level"] == "error"
        assert gateway.running()
        status, answer, first, _ = await send_event(session, gateway.url())
        assert (status, answer) == (202, {"id": first, "status": "queued"}), gateway.log_tail()
        reloads = await gateway.metric("webhook_gateway_config_reloads_total", result="failure")
        assert reloads == 1

        # A good file with a new source: its path answers without a restart.
        new = dict(config)
        new["sources"] = {
            **config["sources"],
            "other": payments_source(path=other, routes=[{"destination": "marketplace"}]),
        }
        mark = len(gateway.log_records())
        gateway.write_config(new)
        gateway.send_signal(signal.SIGHUP)
        record = await gateway.wait_for_log("config reloaded", after=mark)
        assert record["sources"] == ["other", "payments"]
        status, answer, second, _ = await send_event(session, gateway.url(other))
        assert (status, answer) == (202, {"id": second, "status": "queued"}), gateway.log_tail()
        status, _, third, _ = await send_event(session, gateway.url())
        assert status == 202
        reloads = await gateway.metric("webhook_gateway_config_reloads_total", result="success")
        assert reloads == 1

    await destination.wait_for_ids([first, second, third], why=f"\n{gateway.log_tail()}")
    assert all(r.verified for r in destination.market.received)
    assert await gateway.terminate() == 0, gateway.log_tail()
