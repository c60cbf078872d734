"""The live stream sees every process (DESIGN 5.6): two gateway processes on one store, one
stream open on the first, events taken in by each, delivered by whichever worker leased them."""

from __future__ import annotations

import asyncio
import json

import aiohttp

from tests.e2e.gateway_process import e2e_config, send_event
from tests.support import ADMIN_TOKEN

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def _read(response: aiohttp.ClientResponse, want: set[tuple[str, str]], logs) -> list:
    """SSE messages until every (event, event id) in ``want`` was seen, bounded."""
    seen: list[tuple[str, str, dict]] = []
    fields: dict[str, str] = {}
    try:
        async with asyncio.timeout(20):
            while not want <= {(kind, data["event_id"]) for _, kind, data in seen}:
                line = (await response.content.readline()).decode().rstrip("\n")
                if line == "":
                    if "data" in fields:
                        seen.append((fields["id"], fields["event"], json.loads(fields["data"])))
                    fields = {}
                elif not line.startswith(":"):
                    name, _, value = line.partition(": ")
                    fields[name] = value
    except TimeoutError:
        raise AssertionError(f"saw {seen}\n{logs()}") from None
    return seen


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
        seen = await _read(stream, want, logs)
    deliveries = [data for _, kind, data in seen if kind == "delivery"]
    assert {d["result"] for d in deliveries} == {"delivered"}
    assert {d["destination"] for d in deliveries} == {"marketplace"}
    order = [tuple(int(p) for p in i.split("-")) for i, _, _ in seen]
    assert order == sorted(order) and len(set(order)) == len(order)
