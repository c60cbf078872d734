"""The live stream sees every process (design.md 5.6): two gateway processes on one store, one
stream open on the first, events taken in by each, delivered by whichever worker leased them."""

from __future__ import annotations

import asyncio

import aiohttp

from tests.e2e.gateway_process import e2e_config, read_stream, send_event
from tests.support import AUTH


async def test_one_stream_sees_both_processes(store_url, gateways, destinations):
    market = destinations()
    await market.start()
    config = e2e_config(store_url=store_url, destinations={"marketplace": market.url})
    a, b = gateways(config, name="a"), gateways(config, name="b")
    await asyncio.gather(a.start(), b.start())

    def logs() -> str:
        return a.log_tail() + "\n" + b.log_tail()

    async with (
        aiohttp.ClientSession() as session,
        session.get(a.admin_url("/admin/stream"), headers=AUTH) as stream,
    ):
        assert stream.status == 200
        ids = []
        for gateway in (a, b, b):
            status, answer, msg_id, _ = await send_event(session, gateway.url())
            assert status == 202, answer
            ids.append(msg_id)
        want = {(kind, i) for i in ids for kind in ("accepted", "delivery")}
        seen = await read_stream(stream, want, logs)
    deliveries = [data for _, kind, data in seen if kind == "delivery"]
    assert {d["result"] for d in deliveries} == {"delivered"}
    assert {d["destination"] for d in deliveries} == {"marketplace"}
    order = [tuple(int(p) for p in i.split("-")) for i, _, _ in seen]
    assert order == sorted(order) and len(set(order)) == len(order)
