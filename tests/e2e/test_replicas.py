"""Two gateway processes on one store (design.md 3 and 7): they share dedupe, queue and leases.

Each process has its own config file and ports and the same store. The source fans out to two
destinations. In the normal case each event reaches each destination exactly once, whichever
process took it in and whichever worker leased it. When a process is killed while its
deliveries are in flight, the other one delivers them once their lease has expired.
"""

from __future__ import annotations

import asyncio
import itertools
import signal

import aiohttp

from tests.e2e.gateway_process import (
    HoldingMarketplace,
    e2e_config,
    queue_depth,
    send_event,
    tcp_owner,
    wait_drained,
)

EVENTS = 40


def logs(*processes) -> str:
    return "\n".join(p.log_tail() for p in processes)


async def test_two_processes_deliver_each_event_once_per_route(store_url, gateways, destinations):
    market, ledger = destinations(), destinations()
    await market.start()
    await ledger.start()
    config = e2e_config(
        store_url=store_url, destinations={"marketplace": market.url, "ledger": ledger.url}
    )
    a, b = gateways(config, name="a"), gateways(config, name="b")
    await asyncio.gather(a.start(), b.start())

    sent: dict[str, bytes] = {}
    took_in: dict[str, object] = {}
    async with aiohttp.ClientSession() as session:

        async def one(gateway) -> None:
            status, answer, msg_id, body = await send_event(session, gateway.url())
            assert (status, answer.get("status")) == (202, "queued"), f"{answer}\n{logs(a, b)}"
            sent[msg_id] = body
            took_in[msg_id] = gateway

        # Alternately to each process, all at once.
        await asyncio.gather(*(one(g) for g, _ in zip(itertools.cycle((a, b)), range(EVENTS))))

        for destination in (market, ledger):
            await destination.wait_for_ids(sent, why=f"\n{logs(a, b)}")
        # Nothing due or leased any more: every delivery was completed, so nothing else can
        # arrive after this point and the counts below are final.
        await wait_drained(store_url, logs=logs(a, b))
        for destination in (market, ledger):
            counts = destination.ids()
            assert counts == dict.fromkeys(sent, 1), {k: n for k, n in counts.items() if n != 1}
            for received in destination.market.received:
                assert received.verified
                assert received.body == sent[received.headers["webhook-id"]]
        depth = await queue_depth(store_url)
        assert not any(n for (_, state), n in depth.items() if state == "dead"), depth

        # Dedupe is shared too: an event resent to the *other* process is a duplicate.
        for msg_id in list(sent)[:5]:
            other = b if took_in[msg_id] is a else a
            status, answer, _, _ = await send_event(
                session, other.url(), msg_id=msg_id, body=sent[msg_id]
            )
            assert (status, answer) == (200, {"id": msg_id, "status": "duplicate"})


async def test_killed_worker_loses_no_leased_event(store_url, gateways, destinations):
    held_ids = [f"msg_held_{n}" for n in range(8)]
    # The destination holds the first request for each held id open (until released, at most
    # 2.8 s); the gateway's timeout (3 s) is longer, so the attempt is still in flight, neither
    # failed nor timed out, when its process is killed. The lease (3.5 s) outlives the timeout.
    holding = HoldingMarketplace(hold=2.8, hold_ids=held_ids)
    market, ledger = destinations(holding), destinations()
    await market.start()
    await ledger.start()
    config = e2e_config(
        store_url=store_url,
        destinations={"marketplace": market.url, "ledger": ledger.url},
        destination={"timeout": "3s"},
        server={"delivery_lease": "3500ms"},
    )
    a, b = gateways(config, name="a"), gateways(config, name="b")
    await asyncio.gather(a.start(), b.start())

    sent: dict[str, bytes] = {}
    try:
        async with aiohttp.ClientSession() as session:
            for msg_id, gateway in zip(held_ids, itertools.cycle((a, b))):
                status, _, _, body = await send_event(session, gateway.url(), msg_id=msg_id)
                assert status == 202, logs(a, b)
                sent[msg_id] = body
        await market.wait_for_ids(held_ids, why=f" (first attempts)\n{logs(a, b)}")

        # Which process holds each in-flight delivery: the owner of the connection it came on.
        pids = {a.pid: a, b.pid: b}
        owner = {
            msg_id: tcp_owner(port, market.port, pids) for msg_id, port in holding.held_from.items()
        }
        assert None not in owner.values(), f"{owner}\n{logs(a, b)}"
        by_pid = {pid: [m for m, o in owner.items() if o == pid] for pid in pids}
        victim_pid = max(by_pid, key=lambda pid: len(by_pid[pid]))
        victim, survivor = pids[victim_pid], pids[b.pid if victim_pid == a.pid else a.pid]
        lost_with_victim = by_pid[victim_pid]

        arrived_before = len(market.market.received)
        assert await victim.kill() == -signal.SIGKILL
        # The held requests were still open when the process died: not one had been answered.
        assert not holding.answered & set(lost_with_victim), holding.answered
    finally:
        holding.release.set()

    # Only the survivor is alive, so a second arrival of those ids is its delivery, taken over
    # once the victim's lease ran out.
    await market.wait_for_ids(
        lost_with_victim, start=arrived_before, why=f" after the kill\n{survivor.log_tail()}"
    )
    await ledger.wait_for_ids(held_ids, why=f"\n{survivor.log_tail()}")
    await wait_drained(store_url, logs=survivor.log_tail())
    for received in market.market.received[arrived_before:]:
        assert received.verified
        assert received.body == sent[received.headers["webhook-id"]]
    assert set(market.ids()) == set(held_ids)
    depth = await queue_depth(store_url)
    assert not any(n for (_, state), n in depth.items() if state == "dead"), depth
