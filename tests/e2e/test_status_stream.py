"""The buyer's status stream hears every process (design.md 5.10): two gateway processes on
one store, a stream held by one, the payment's webhook accepted by the other and delivered by
whichever worker leased it. The processes are real (``python -m gateway run``), so their
listeners carry the header deadline too: a WebSocket outlives ``server.header_timeout``."""

from __future__ import annotations

import asyncio

import aiohttp

from tests.e2e.gateway_process import e2e_config, send_event
from tests.status_support import ORIGIN, Sse, status_block, status_path, ws_rest, ws_until
from tests.support import payment_body


def _final(message: dict) -> bool:
    return message["state"] == "completed" and message["confirmed"]


async def test_a_webhook_taken_in_by_one_process_reaches_a_stream_held_by_the_other(
    store_url, gateways, destinations
):
    market = destinations()
    await market.start()
    config = e2e_config(
        store_url=store_url,
        destinations={"marketplace": market.url},
        # A header deadline far shorter than the streams last: it must not cut them.
        server={"header_timeout": "1s"},
    )
    config["status"] = status_block()
    a, b = gateways(config, name="a"), gateways(config, name="b")
    await asyncio.gather(a.start(), b.start())

    def logs() -> str:
        return a.log_tail() + "\n" + b.log_tail()

    ws_url = a.url(status_path("payments", "pend-ws"))
    sse_url = a.url(status_path("payments", "pend-sse"))
    async with (
        aiohttp.ClientSession() as session,
        # The page pings too, so bytes arrive after the upgrade.
        session.ws_connect(ws_url, origin=ORIGIN, heartbeat=0.3) as ws,
        session.get(sse_url, headers={"Origin": ORIGIN}) as response,
    ):
        assert response.status == 200, logs()
        sse = Sse(response)
        [first] = await ws_until(ws, lambda m: True)
        assert first["state"] == "unknown"
        assert (await sse.next())["state"] == "unknown"
        await asyncio.sleep(2.5)  # past the header deadline, with the page's pings flowing
        for key in ("pend-ws", "pend-sse"):
            body = payment_body(pendingId=key)
            status, answer, _, _ = await send_event(session, b.url(), body=body)
            assert status == 202, f"{answer}\n{logs()}"
        seen = await ws_until(ws, _final)
        assert [m["key"] for m in seen] == ["pend-ws"] * len(seen), seen
        assert await ws_rest(ws) == []
        assert ws.close_code == 1000, logs()
        await sse.until(_final)
        assert all(m["key"] == "pend-sse" for m in await sse.end())
