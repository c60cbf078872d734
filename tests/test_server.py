"""The running process: admin listener, header deadline, config reload (design.md 5.5)."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import aiohttp
import pytest
import yaml
from redis import asyncio as aioredis

from gateway.config import load_config
from gateway.server import Gateway
from gateway.store.redis.wakeups import channel_of
from harness.redis_server import RedisServer
from tests.support import ENV, config_dict, payment_body, payments_source, sign_payment
from tests.waiting import eventually


def _write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
async def running(tmp_path, monkeypatch, marketplace):
    """A Gateway on free ports with its config file, stopped after the test."""
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    _, server = marketplace
    data = config_dict(
        str(server.make_url("/api/webhooks/payments")),
        store_url=f"sqlite:///{tmp_path / 'gw.db'}",
        server={"header_timeout": "500ms"},
    )
    path = _write(tmp_path / "config.yaml", data)
    gateway = Gateway(load_config(path), config_path=path)
    await gateway.start()
    yield gateway, data, path
    await gateway.stop()


def _gateway(path: Path, url: str, store: str, **server: object) -> Gateway:
    """A Gateway on free ports for ``store``, delivering to ``url``, with ``server`` settings."""
    return Gateway(load_config(_write(path, config_dict(url, store_url=store, server=server))))


async def _delivered(market, body: bytes, event_id: str) -> None:
    """The marketplace got exactly this event first, byte for byte, as the gateway signs it."""
    await market.wait_for(1)
    assert market.received[0].body == body
    assert market.received[0].headers["webhook-id"] == event_id


def _urls(gateway: Gateway) -> tuple[str, str]:
    assert gateway.ingress_site is not None
    assert gateway.admin_site is not None
    return (
        f"http://127.0.0.1:{gateway.ingress_site.port}",
        f"http://127.0.0.1:{gateway.admin_site.port}",
    )


async def _post_payment(session: aiohttp.ClientSession, ingress: str) -> tuple[bytes, str]:
    """POST one signed payment event, expect 202; its body and event id."""
    body = payment_body()
    async with session.post(
        f"{ingress}/hooks/payments", data=body, headers=sign_payment(body)
    ) as r:
        assert r.status == 202
        return body, (await r.json())["id"]


async def test_health_readiness_and_metrics(running):
    gateway, _, _ = running
    ingress, admin = _urls(gateway)
    async with aiohttp.ClientSession() as session:
        await _post_payment(session, ingress)
        async with session.get(f"{admin}/healthz") as r:
            assert r.status == 200
        async with session.get(f"{admin}/readyz") as r:
            assert r.status == 200
            assert (await r.json())["status"] == "ready"
        async with session.get(f"{admin}/metrics") as r:
            text = await r.text()
        # The admin listener is separate: ingress paths are not there, admin paths not on ingress.
        async with session.get(f"{ingress}/metrics") as r:
            assert r.status == 404
    assert 'webhook_gateway_requests_total{outcome="accepted",source="payments"} 1.0' in text
    assert "webhook_gateway_build_info" in text


async def test_readyz_is_503_when_the_store_is_down(tmp_path, monkeypatch, marketplace):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    _, server = marketplace
    with RedisServer() as redis:
        data = config_dict(str(server.make_url("/x")), store_url=redis.url)
        gateway = Gateway(load_config(_write(tmp_path / "c.yaml", data)))
        await gateway.start()
        try:
            _, admin = _urls(gateway)
            async with aiohttp.ClientSession() as session:
                async with session.get(f"{admin}/readyz") as r:
                    assert r.status == 200
                redis.stop()
                async with session.get(f"{admin}/readyz") as r:
                    assert r.status == 503
                    assert (await r.json())["status"] == "unavailable"
                async with session.get(f"{admin}/healthz") as r:
                    assert r.status == 200
        finally:
            await gateway.stop()


async def test_a_slow_sender_cannot_hold_a_connection_with_partial_headers(running):
    gateway, _, _ = running
    assert gateway.ingress_site is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.ingress_site.port)
    writer.write(b"POST /hooks/payments HTTP/1.1\r\nHost: x\r\n")
    await writer.drain()
    # The header deadline is 500 ms; the server closes the connection without an answer.
    async with asyncio.timeout(5):
        assert await reader.read() == b""
    writer.close()


@pytest.mark.parametrize("lead", [b"\r\n\r\n", b"\r\n", b"\r\n\r\n\r\n\r\n"])
async def test_leading_empty_lines_do_not_escape_the_header_deadline(running, lead):
    # Empty lines before a request line end no headers: the deadline counts from the first
    # byte, whatever it is, and a trickled request line after them is cut like any other.
    gateway, _, _ = running
    assert gateway.ingress_site is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.ingress_site.port)
    closed = asyncio.ensure_future(reader.read())  # b"" once the gateway closes it
    writer.write(lead)
    sent = 0
    for byte in b"POST /hooks/payments HTTP/1.1\r\nHost: x\r\n":
        await asyncio.wait({closed}, timeout=0.2)
        if closed.done():
            break
        writer.write(bytes([byte]))
        sent += 1
    async with asyncio.timeout(5):
        assert await closed == b""
    writer.close()
    # Cut by the 500 ms deadline, a few bytes in, long before the 41-byte trickle ended.
    assert sent < 20


async def test_complete_headers_in_time_are_served(running):
    gateway, _, _ = running
    assert gateway.ingress_site is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.ingress_site.port)
    writer.write(b"GET /hooks/payments HTTP/1.1\r\nHost: x\r\n")
    await writer.drain()
    await asyncio.sleep(0.2)
    writer.write(b"Connection: close\r\n\r\n")
    await writer.drain()
    async with asyncio.timeout(5):
        answer = await reader.read()
    assert answer.startswith(b"HTTP/1.1 405")
    writer.close()


async def test_the_deadline_applies_again_to_the_next_request_on_a_kept_alive_connection(running):
    gateway, _, _ = running
    assert gateway.ingress_site is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.ingress_site.port)
    writer.write(b"GET /hooks/payments HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    async with asyncio.timeout(5):
        status = await reader.readline()
        assert status.startswith(b"HTTP/1.1 405")
        while (await reader.readline()).strip():
            pass  # headers of the answer
        await reader.readexactly(len(b'{"error":"method_not_allowed"'))  # part of the body
    # The connection stays open for a second request, whose headers never finish.
    writer.write(b"POST /hooks/payments HTTP/1.1\r\n")
    await writer.drain()
    async with asyncio.timeout(5):
        while await reader.read(4096):
            pass  # the rest of the first answer, then the close
    writer.close()


async def test_reload_refuses_a_bad_config_and_applies_a_good_one(running):
    gateway, data, path = running
    ingress, admin = _urls(gateway)
    # A broken config is refused; the old one keeps serving.
    data["sources"]["payments"]["provider"] = "no-such-provider"
    _write(path, data)
    assert gateway.reload() is False
    async with aiohttp.ClientSession() as session:
        body = payment_body()
        async with session.post(
            f"{ingress}/hooks/payments", data=body, headers=sign_payment(body)
        ) as r:
            assert r.status == 202
        # A good config with a second path is applied without a restart.
        data["sources"]["payments"]["provider"] = "standard-webhooks"
        data["sources"]["orders"] = payments_source(path="/hooks/orders")
        _write(path, data)
        assert gateway.reload() is True
        body = payment_body()
        async with session.post(
            f"{ingress}/hooks/orders", data=body, headers=sign_payment(body)
        ) as r:
            assert r.status == 202
        async with session.get(f"{admin}/metrics") as r:
            text = await r.text()
    assert 'webhook_gateway_config_reloads_total{result="failure"} 1.0' in text
    assert 'webhook_gateway_config_reloads_total{result="success"} 1.0' in text
    assert json.loads(json.dumps(data))  # the file stayed valid YAML/JSON data


async def test_a_refused_reload_names_each_key_that_needs_a_restart(running, caplog):
    gateway, data, path = running
    data["server"]["workers"] = 2
    data["server"]["max_body_bytes"] = 4096
    data["store"]["retention"] = "90d"
    _write(path, data)
    with caplog.at_level(logging.ERROR, logger="gateway"):
        assert gateway.reload() is False
    [record] = [r for r in caplog.records if "reload refused" in r.getMessage()]
    assert record.errors.splitlines() == [  # type: ignore[attr-defined]
        "server.workers: changes only on restart; not reloaded",
        "server.max_body_bytes: changes only on restart; not reloaded",
        "store.retention: changes only on restart; not reloaded",
    ]


async def test_an_ingress_only_process_accepts_and_another_process_delivers(
    tmp_path, monkeypatch, marketplace, caplog
):
    """``delivery_concurrency: 0``: the process answers 202 and queues, but never delivers;
    a process with workers on the same store delivers what it accepted."""
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    market, server = marketplace
    url = str(server.make_url("/api/webhooks/payments"))
    store = f"sqlite:///{tmp_path / 'gw.db'}"
    ingress_only = _gateway(tmp_path / "ingress.yaml", url, store, delivery_concurrency=0)
    with caplog.at_level(logging.INFO, logger="gateway"):
        await ingress_only.start()
    assert any("ingress only" in r.getMessage() for r in caplog.records)
    try:
        ingress, admin = _urls(ingress_only)
        async with aiohttp.ClientSession() as session:
            body, event_id = await _post_payment(session, ingress)
            # No delivery worker runs in this process (the only gateway in it so far), so
            # nothing here can ever lease the event, however long one waits.
            workers = [t for t in asyncio.all_tasks() if t.get_name() == "delivery-worker"]
            assert workers == []
            assert market.received == []
            async with session.get(
                f"{admin}/admin/events/{event_id}",
                headers={"Authorization": f"Bearer {ENV['GATEWAY_ADMIN_TOKEN']}"},
            ) as r:
                assert r.status == 200
                view = await r.json()
            assert view["status"] == "queued"
            assert [d["attempts_made"] for d in view["deliveries"]] == [0]
        delivering = _gateway(
            tmp_path / "delivery.yaml", url, store, delivery_poll_interval="100ms"
        )
        await delivering.start()
        try:
            # The same look finds the delivering process's worker: the check above can fail.
            workers = [t for t in asyncio.all_tasks() if t.get_name() == "delivery-worker"]
            assert len(workers) == 1
            await _delivered(market, body, event_id)
        finally:
            await delivering.stop()
    finally:
        await ingress_only.stop()


async def test_on_redis_an_ingress_only_process_wakes_the_delivering_one(
    tmp_path, monkeypatch, marketplace
):
    """The delivering process polls once an hour here: it delivers the first event at its
    first poll, at start, and the second only if the ingress-only process's announcement over
    Redis Pub/Sub wakes it."""
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    market, server = marketplace
    url = str(server.make_url("/api/webhooks/payments"))
    with RedisServer() as redis:
        delivering = _gateway(
            tmp_path / "delivery.yaml", url, redis.url, delivery_poll_interval="1h"
        )
        ingress_only = _gateway(tmp_path / "ingress.yaml", url, redis.url, delivery_concurrency=0)
        watcher = aioredis.Redis.from_url(redis.url)
        channel = channel_of(watcher)
        await ingress_only.start()
        try:
            ingress, _ = _urls(ingress_only)
            async with aiohttp.ClientSession() as session:
                # Queued before the delivering process starts, so its first poll takes it:
                # once it arrives, that poll is over and the next one is an hour away.
                first_body, first_id = await _post_payment(session, ingress)
                await delivering.start()
                try:
                    await _delivered(market, first_body, first_id)

                    async def subscribed() -> int:
                        return int((await watcher.pubsub_numsub(channel))[0][1])

                    await eventually(subscribed, "the delivering process to listen for wake-ups")
                    body, event_id = await _post_payment(session, ingress)
                    await market.wait_for(2)  # the event the wake-up delivers
                    assert market.received[1].body == body
                    assert market.received[1].headers["webhook-id"] == event_id
                finally:
                    await delivering.stop()
        finally:
            await ingress_only.stop()
            await watcher.aclose()
