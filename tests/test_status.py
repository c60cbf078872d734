"""The buyer's live payment status (design.md 5.10) on the ingress listener: both transports,
every refusal before any upgrade, the caps, what a message may say, how a stream ends, and
a reload. A real gateway on real sockets (SQLite store) with a marketplace that answers."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import aiohttp
import pytest
from aiohttp import WSServerHandshakeError

from gateway.app import create_app
from gateway.appkeys import METRICS, RUNTIME, STORE
from gateway.config.model import StatusConfig
from gateway.errors import StoreError
from gateway.secret import Secret
from gateway.server import Gateway
from gateway.status.hub import StatusHub
from gateway.status.routes import HUB, StatusTiming
from harness.redis_server import RedisServer
from tests.status_support import (
    FIELDS,
    ORIGIN,
    STATUS_SECRET,
    Sse,
    mint,
    status_block,
    status_path,
    ws_next,
    ws_rest,
    ws_until,
)
from tests.support import build_config, config_dict, payment_body, sign_payment, sqlite_url
from tests.waiting import eventually

#: Short intervals so a test sees heartbeats and changes at once.
TIMING = StatusTiming(heartbeat=0.2, write_timeout=5.0, poll_interval=0.05, first_reading=5.0)
EUR = {"value": "1999", "assetCode": "EUR", "assetScale": 2}


@pytest.fixture
def stack(aiohttp_client, marketplace, tmp_path):
    """``make(**status)``: a gateway with a ``status`` block (overrides merged in) whose
    payments source reads an amount; answers (client, market)."""
    market, server = marketplace

    async def make(
        status: dict[str, Any] | None = None, *, server_conf=None, timing=TIMING, store_url=None
    ):
        data = config_dict(
            str(server.make_url("/api/webhooks/payments")),
            store_url=store_url or sqlite_url(tmp_path),
            server=server_conf,
        )
        payments = data["sources"]["payments"]
        payments["payment"]["amount"] = {
            "value": "/amount/value",
            "currency": "/amount/assetCode",
            "scale": "/amount/assetScale",
        }
        payments["payment"]["states"]["payment.pending"] = "pending"
        if status is not False:
            data["status"] = status_block(**(status or {}))
        client = await aiohttp_client(create_app(build_config(data), status_timing=timing))
        return client, market

    return make


async def send(client, key: str, type_: str = "payment.completed", **fields) -> None:
    body = payment_body(type=type_, pendingId=key, amount=EUR, **fields)
    response = await client.post("/hooks/payments", data=body, headers=sign_payment(body))
    assert response.status == 202, await response.text()


def final(message: dict) -> bool:
    return message["state"] == "completed" and message["confirmed"]


# -- both transports ---------------------------------------------------------------------------


async def test_sse_tells_the_state_at_once_each_change_and_ends_once_confirmed(stack):
    client, market = await stack()
    market.delay = 0.5  # the marketplace takes a moment: "completed" shows before confirmed
    path = status_path("payments", "pend-1")
    async with client.get(path, headers={"Origin": ORIGIN}) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/event-stream"
        assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
        assert response.headers["Cache-Control"] == "no-store"
        sse = Sse(response)
        first = await sse.next()
        assert first == {
            "source": "payments",
            "key": "pend-1",
            "state": "unknown",
            "amount": None,
            "confirmed": False,
            "updated_at": None,
        }
        await send(client, "pend-1")
        completed = await sse.until(lambda m: m["state"] == "completed")
        assert completed["confirmed"] is False
        assert completed["amount"] == {
            "value": "1999",
            "scale": 2,
            "currency": "EUR",
            "decimal": "19.99",
        }
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", completed["updated_at"])
        confirmed = await sse.until(final)
        assert {**confirmed, "confirmed": False} == completed
        assert await sse.end() == [first, completed, confirmed]


async def test_websocket_tells_the_same_and_closes_1000_once_confirmed(stack):
    client, market = await stack()
    market.delay = 0.5
    async with client.ws_connect(status_path("payments", "pend-2"), origin=ORIGIN) as ws:
        [first] = await ws_until(ws, lambda m: True)
        assert (first["state"], first["confirmed"]) == ("unknown", False)
        await send(client, "pend-2")
        seen = await ws_until(ws, final)
        assert [m["state"] for m in seen] == ["completed", "completed"]
        assert [m["confirmed"] for m in seen] == [False, True]
        assert await ws_rest(ws) == []
        assert ws.close_code == 1000


async def test_a_payment_already_final_is_told_once_and_the_stream_ends(stack):
    client, market = await stack()
    await send(client, "done-1")
    await market.wait_for(1)
    store = client.server.app[STORE]

    async def confirmed():
        [view] = await store.find_payments([("payments", "done-1")])
        return view is not None and view.delivered

    await eventually(confirmed, "the payment to be confirmed")
    async with client.get(status_path("payments", "done-1")) as response:
        [only] = await Sse(response).end()
    assert (only["state"], only["confirmed"]) == ("completed", True)
    async with client.ws_connect(status_path("payments", "done-1")) as ws:
        assert await ws_rest(ws) == [only]
        assert ws.close_code == 1000


async def test_every_stream_on_a_payment_hears_it_and_no_other(stack):
    client, _ = await stack()
    async with (
        client.get(status_path("payments", "mine")) as one,
        client.ws_connect(status_path("payments", "mine")) as two,
        client.get(status_path("payments", "theirs")) as other,
    ):
        sse, sse_other = Sse(one), Sse(other)
        assert (await sse.next())["state"] == "unknown"
        assert (await sse_other.next())["key"] == "theirs"
        await ws_until(two, lambda m: True)
        await send(client, "mine", type_="payment.pending", status="pending")
        assert (await sse.until(lambda m: m["state"] == "pending"))["key"] == "mine"
        await ws_until(two, lambda m: m["state"] == "pending")
        await send(client, "theirs", type_="payment.pending", status="pending")
        assert (await sse_other.until(lambda m: m["state"] == "pending"))["key"] == "theirs"
        # "mine" heard nothing of "theirs": its next message is its own completion.
        await send(client, "mine")
        after = await sse.until(lambda m: m["state"] == "completed")
        assert all(m["key"] == "mine" for m in sse.messages), sse.messages
        assert after["key"] == "mine"


async def test_nothing_but_the_six_fields_is_ever_told(stack):
    client, _ = await stack()
    marker = "SECRET-REFERENCE-9731"
    async with client.ws_connect(status_path("payments", "leak-1"), origin=ORIGIN) as ws:
        await ws_until(ws, lambda m: True)
        await send(client, "leak-1", offerId=marker, outgoingPaymentId=f"https://{marker}/op")
        await send(client, "leak-2", offerId=marker)  # another payment
        frames = await ws_until(ws, final)
        for message in frames:
            assert set(message) == FIELDS
            assert message["key"] == "leak-1"
            assert marker not in json.dumps(message)
            assert "leak-2" not in json.dumps(message)


# -- refused before anything starts ------------------------------------------------------------


async def _refusal(client, path: str, headers: dict | None = None) -> tuple[int, dict, Any]:
    """The answer to a plain GET and to a WebSocket upgrade of ``path`` (the same refusal:
    the upgrade never happens)."""
    async with client.get(path, headers=headers) as response:
        status, body, head = response.status, await response.json(), response.headers
        assert head.get("Upgrade") is None
    with pytest.raises(WSServerHandshakeError) as refused:
        async with client.ws_connect(path, headers=headers):
            pass
    assert refused.value.status == status
    return status, body, head


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (None, "a status token is required"),
        ("", "a status token is required"),
        ("v1.abc.def", "malformed"),
        ("v2.99999999999.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "malformed"),
        ("é", "malformed"),
        (mint("payments", "k", ttl=-5), "expired"),
        (mint("payments", "other-payment"), "not valid for this payment"),
        (mint("other", "k"), "not valid for this payment"),
        (mint("payments", "k", secret="another-secret-of-at-least-32-bytes!!"), "not valid"),
        (mint("payments", "k", ttl=600)[:-2] + "AA", "not valid for this payment"),
    ],
)
async def test_a_bad_token_is_refused_401_before_any_upgrade(stack, token, message):
    client, _ = await stack()
    path = "/status/payments/k" if token is None else f"/status/payments/k?token={token}"
    status, body, _ = await _refusal(client, path, {"Origin": ORIGIN})
    assert status == 401
    assert body["error"] == "invalid_token"
    assert message in body["message"]


async def test_a_tampered_expiry_is_not_valid_rather_than_later(stack):
    # The signature is checked first: a token whose expiry was pushed forward is a forgery.
    client, _ = await stack()
    token = mint("payments", "k", ttl=-5)
    _, expiry, sig = token.split(".")
    forged = f"v1.{int(expiry) + 3600}.{sig}"
    status, body, _ = await _refusal(client, f"/status/payments/k?token={forged}")
    assert (status, body["error"]) == (401, "invalid_token")
    assert "not valid" in body["message"]


async def test_two_tokens_are_refused(stack):
    client, _ = await stack()
    token = mint("payments", "k")
    status, body, _ = await _refusal(client, f"/status/payments/k?token={token}&token={token}")
    assert (status, body["error"]) == (401, "invalid_token")


async def test_a_foreign_origin_is_refused_403_and_told_nothing_by_cors(stack):
    client, _ = await stack()
    path = status_path("payments", "k")
    status, body, head = await _refusal(client, path, {"Origin": "https://evil.example"})
    assert (status, body["error"]) == (403, "origin_not_allowed")
    assert "Access-Control-Allow-Origin" not in head
    # "null" (a sandboxed frame, a file) is no listed origin either.
    status, _, _ = await _refusal(client, path, {"Origin": "null"})
    assert status == 403


async def test_cors_answers_only_the_allowed_origins(stack):
    client, _ = await stack({"allow_origins": [ORIGIN, "http://localhost:8000"]})
    path = status_path("payments", "k")
    # A refusal to an allowed origin still names it, so its page can read why.
    async with client.get("/status/payments/k", headers={"Origin": ORIGIN}) as response:
        assert response.status == 401
        assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
        assert response.headers["Vary"] == "Origin"
    preflight = {"Origin": "http://localhost:8000", "Access-Control-Request-Method": "GET"}
    async with client.options(path, headers=preflight) as response:
        assert response.status == 204
        assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:8000"
        assert response.headers["Access-Control-Allow-Methods"] == "GET"
    async with client.options(path, headers={"Origin": "https://evil.example"}) as response:
        assert response.status == 403
        assert "Access-Control-Allow-Origin" not in response.headers


async def test_a_source_without_payments_is_404(stack):
    client, _ = await stack()
    status, body, _ = await _refusal(client, status_path("orders", "k"))
    assert (status, body["error"]) == (404, "unknown_source")


async def test_a_malformed_upgrade_is_400(stack):
    client, _ = await stack()
    headers = {"Upgrade": "websocket", "Connection": "Upgrade"}  # no Sec-WebSocket-Key
    async with client.get(status_path("payments", "k"), headers=headers) as response:
        assert response.status == 400
        assert (await response.json())["error"] == "invalid_request"


async def test_streams_beyond_max_streams_are_503(stack):
    client, _ = await stack({"max_streams": 2, "max_streams_per_ip": 10})
    async with (
        client.get(status_path("payments", "a")) as one,
        client.ws_connect(status_path("payments", "b")) as two,
    ):
        assert one.status == 200
        await ws_next(two)
        status, body, head = await _refusal(client, status_path("payments", "c"))
        assert (status, body["error"]) == (503, "too_many_streams")
        assert head["Retry-After"] == "5"
    # Both slots come back once their streams end.
    hub = client.server.app[HUB]
    await eventually(lambda: hub.open_streams == 0, "both streams to be forgotten")
    async with client.get(status_path("payments", "c")) as again:
        assert again.status == 200


async def test_streams_beyond_the_per_ip_cap_are_503_for_that_address_only(stack):
    client, _ = await stack(
        {"max_streams": 10, "max_streams_per_ip": 2},
        server_conf={"trusted_proxies": ["127.0.0.1/32"]},
    )
    buyer = {"X-Forwarded-For": "203.0.113.7"}
    async with (
        client.get(status_path("payments", "a"), headers=buyer) as one,
        client.get(status_path("payments", "b"), headers=buyer) as two,
    ):
        assert (one.status, two.status) == (200, 200)
        status, body, _ = await _refusal(client, status_path("payments", "c"), buyer)
        assert (status, body["error"]) == (503, "too_many_streams")
        assert "this address" in body["message"]
        other = {"X-Forwarded-For": "203.0.113.8"}
        async with client.get(status_path("payments", "c"), headers=other) as three:
            assert three.status == 200


async def test_status_off_answers_as_any_other_path(stack):
    client, _ = await stack(False)
    async with client.get(status_path("payments", "k")) as response:
        assert response.status == 404
        assert (await response.json())["error"] == "unknown_source"


# -- how a stream ends -------------------------------------------------------------------------


async def test_a_stream_ends_when_its_token_expires(stack):
    client, _ = await stack()
    async with client.ws_connect(status_path("payments", "slow", ttl=1.5)) as ws:
        assert [m["state"] for m in await ws_rest(ws)] == ["unknown"]
        assert ws.close_code == 4401
    async with client.get(status_path("payments", "slow", ttl=1.5)) as response:
        assert [m["state"] for m in await Sse(response).end()] == ["unknown"]
    metrics = client.server.app[METRICS].exposition().decode()
    assert 'webhook_gateway_status_stream_ends_total{reason="expired"} 2.0' in metrics


async def test_heartbeats_keep_both_transports_alive(stack):
    client, _ = await stack()
    async with client.get(status_path("payments", "beat")) as response:
        sse = Sse(response)
        await sse.next()

        async def comments() -> list[str]:
            try:
                async with asyncio.timeout(0.05):
                    await sse.next()
            except TimeoutError:
                pass
            return sse.comments

        seen = await eventually(comments, "two heartbeats", until=lambda c: len(c) >= 2)
        assert set(seen) == {": heartbeat"}
    async with client.ws_connect(status_path("payments", "beat"), autoping=False) as ws:
        await ws_until(ws, lambda m: True)
        for _ in range(2):
            frame = await ws_next(ws)
            assert frame.type == aiohttp.WSMsgType.PING
            await ws.pong(frame.data)
        # A page that stops answering the pings is dropped.
        while (frame := await ws_next(ws)).type == aiohttp.WSMsgType.PING:
            pass
        assert frame.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), frame


async def test_a_page_that_pings_is_answered(stack):
    client, _ = await stack()
    async with client.ws_connect(status_path("payments", "asks"), autoping=False) as ws:
        await ws_until(ws, lambda m: True)
        await ws.ping(b"are you there")
        while (frame := await ws_next(ws)).type == aiohttp.WSMsgType.PING:
            await ws.pong(frame.data)  # the gateway's own heartbeat may come first
        assert (frame.type, frame.data) == (aiohttp.WSMsgType.PONG, b"are you there")


async def test_streams_opened_together_beat_a_few_per_loop_turn_and_keep_beating():
    hub = StatusHub(lambda: None, lambda: None, poll_interval=0.05, heartbeat=0.1)
    settings = StatusConfig(secret=Secret("x" * 32), allow_origins=frozenset(), max_streams=100,
                            max_streams_per_ip=100)  # fmt: skip
    watches = [hub.open(("payments", f"p{i}"), "192.0.2.1", settings, lambda _: None)
               for i in range(40)]  # fmt: skip
    turn = 0
    per_turn: dict[int, int] = {}
    per_stream = [0] * len(watches)

    async def count_turns() -> None:
        nonlocal turn
        while True:
            turn += 1
            for index, watch in enumerate(watches):
                if watch.beat_due:
                    watch.beat_due = False
                    per_turn[turn] = per_turn.get(turn, 0) + 1
                    per_stream[index] += 1
            await asyncio.sleep(0)

    counter = asyncio.create_task(count_turns())
    try:
        await eventually(lambda: min(per_stream), "two heartbeats of every stream",
                         until=lambda n: n >= 2)  # fmt: skip
    finally:
        counter.cancel()
        await hub.stop()
    assert max(per_turn.values()) <= 4, per_turn


async def test_a_reload_that_rotates_the_secret_ends_the_streams_it_no_longer_allows(stack):
    client, _ = await stack()
    app = client.server.app
    runtime = app[RUNTIME]
    async with (
        client.ws_connect(status_path("payments", "r1")) as ws,
        client.get(status_path("payments", "r2")) as response,
    ):
        sse = Sse(response)
        await ws_until(ws, lambda m: True)
        await sse.next()
        data = _reloaded(runtime.config, secret="a-rotated-secret-of-at-least-32-bytes!")
        runtime.config = data
        assert await ws_rest(ws) == []
        assert ws.close_code == 4401
        await sse.end()
    # New tokens under the new secret open streams; old ones are refused.
    fresh = mint("payments", "r1", secret="a-rotated-secret-of-at-least-32-bytes!")
    async with client.get(status_path("payments", "r1", fresh)) as response:
        assert response.status == 200
    async with client.get(status_path("payments", "r1")) as response:
        assert response.status == 401


async def test_a_reload_that_turns_status_off_ends_every_stream(stack):
    client, _ = await stack()
    runtime = client.server.app[RUNTIME]
    async with client.ws_connect(status_path("payments", "off")) as ws:
        await ws_until(ws, lambda m: True)
        runtime.config = _reloaded(runtime.config, off=True)
        await ws_rest(ws)
        assert ws.close_code == 4401
    async with client.get(status_path("payments", "off")) as response:
        assert response.status == 404


def _reloaded(config, *, secret: str = STATUS_SECRET, off: bool = False):
    """What a reload with another status block makes: a new Config (new objects)."""
    import dataclasses

    from gateway.config.model import StatusConfig
    from gateway.secret import Secret

    if off:
        return dataclasses.replace(config, status=None)
    assert config.status is not None
    status = StatusConfig(
        Secret(secret),
        config.status.allow_origins,
        config.status.max_streams,
        config.status.max_streams_per_ip,
    )
    return dataclasses.replace(config, status=status)


async def test_the_metrics_count_streams_and_refusals(stack):
    client, _ = await stack()
    metrics = client.server.app[METRICS]

    def text() -> str:
        return metrics.exposition().decode()

    assert 'webhook_gateway_status_streams{transport="websocket"} 0.0' in text()
    assert 'webhook_gateway_status_refusals_total{reason="token_expired"} 0.0' in text()
    async with client.ws_connect(status_path("payments", "m")) as ws:
        await ws_until(ws, lambda m: True)
        assert 'webhook_gateway_status_streams{transport="websocket"} 1.0' in text()
        async with client.get(status_path("payments", "m", ttl=-1)) as response:
            assert response.status == 401
        async with client.get(status_path("payments", "m"), headers={"Origin": "x"}):
            pass
    await eventually(
        lambda: 'webhook_gateway_status_streams{transport="websocket"} 0.0' in text(),
        "the gauge to come back to 0",
    )
    assert 'webhook_gateway_status_refusals_total{reason="token_expired"} 1.0' in text()
    assert 'webhook_gateway_status_refusals_total{reason="origin"} 1.0' in text()
    assert 'webhook_gateway_status_stream_ends_total{reason="client"} 1.0' in text()


async def test_while_the_store_cannot_be_read_new_streams_are_503_and_open_ones_wait(stack):
    with RedisServer() as redis:
        client, _ = await stack(store_url=redis.url)
        async with client.ws_connect(status_path("payments", "down")) as ws:
            await ws_until(ws, lambda m: True)
            redis.stop()
            status, body, _ = await _refusal(client, status_path("payments", "other"))
            assert (status, body["error"]) == (503, "unavailable")
            redis.start()  # the same port, empty: the stream reads its payment afresh
            store = client.server.app[STORE]
            await eventually(
                store.ping,
                "the store to answer again",
                until=lambda _: True,
                ignoring=(StoreError,),
            )
            await send(client, "down")
            seen = await ws_until(ws, lambda m: m["state"] == "completed")
            assert seen[-1]["key"] == "down"
        metrics = client.server.app[METRICS].exposition().decode()
        assert 'webhook_gateway_status_refusals_total{reason="unavailable"} 2.0' in metrics


async def test_a_page_that_leaves_frees_its_slot_at_once(marketplace, tmp_path):
    # The gateway as it runs (gateway.server): aiohttp does not cancel the handler of a
    # client that hung up there, and the heartbeat is 15 s away; the slot comes back anyway.
    _, server = marketplace
    data = config_dict(
        str(server.make_url("/api/webhooks/payments")), store_url=sqlite_url(tmp_path)
    )
    data["status"] = status_block()
    gateway = Gateway(build_config(data))
    await gateway.start(admin=False)
    try:
        assert gateway.ingress_site is not None
        base = f"http://127.0.0.1:{gateway.ingress_site.port}"
        hub = gateway.app[HUB]
        async with aiohttp.ClientSession() as session:
            async with session.get(base + status_path("payments", "gone")) as response:
                assert (await Sse(response).next())["state"] == "unknown"
                assert hub.open_streams == 1
            await eventually(
                lambda: hub.open_streams, "the SSE slot back", until=lambda n: n == 0, timeout=5
            )
            async with session.ws_connect(base + status_path("payments", "gone")) as ws:
                await ws_until(ws, lambda m: True)
                assert hub.open_streams == 1
            await eventually(
                lambda: hub.open_streams,
                "the WebSocket slot back",
                until=lambda n: n == 0,
                timeout=5,
            )
        text = gateway.metrics.exposition().decode()
        assert 'webhook_gateway_status_stream_ends_total{reason="client"} 2.0' in text
    finally:
        await gateway.stop()


async def test_stopping_the_gateway_ends_its_streams_at_once(marketplace, tmp_path):
    # SIGTERM finishes in-flight requests, waiting up to server.shutdown_timeout: a stream
    # would hold the stop that long, so the gateway ends its streams first (1001).
    _, server = marketplace
    data = config_dict(
        str(server.make_url("/api/webhooks/payments")),
        store_url=sqlite_url(tmp_path),
        server={"shutdown_timeout": "60s"},
    )
    data["status"] = status_block()
    gateway = Gateway(build_config(data))
    await gateway.start(admin=False)
    assert gateway.ingress_site is not None
    base = f"http://127.0.0.1:{gateway.ingress_site.port}"
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(base + status_path("payments", "stop")) as ws,
        session.get(base + status_path("payments", "stop")) as response,
    ):
        sse = Sse(response)
        await ws_until(ws, lambda m: True)
        await sse.next()
        # The pages go on reading (as a browser does) while the gateway stops.
        rest = asyncio.gather(ws_rest(ws), sse.end())
        async with asyncio.timeout(10):
            await gateway.stop()
        ws_after, sse_all = await rest
        assert ws_after == []
        assert ws.close_code == 1001
        assert len(sse_all) == 1 and sse.ended
