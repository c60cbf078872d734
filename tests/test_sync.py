"""delivery: sync: claim, forward inline, commit on 2xx or release; the sender sees the answer."""

from __future__ import annotations

import asyncio
import json

from harness.redis_server import free_port
from tests.support import payment_body, payments_source, sign_payment

SYNC = {"payments": payments_source(delivery="sync")}


async def _send(client, body, headers):
    response = await client.post("/hooks/payments", data=body, headers=headers)
    return response, await response.read()


async def test_2xx_is_passed_back_and_the_event_is_then_a_duplicate(make_gateway, marketplace):
    market, _ = marketplace
    market.status, market.answer = 201, b'{"created":true}'
    client, _ = await make_gateway(sources=SYNC)
    body = payment_body()
    response, raw = await _send(client, body, sign_payment(body, msg_id="msg_sync"))
    assert response.status == 201
    assert raw == b'{"created":true}'
    assert len(market.received) == 1
    assert market.received[0].verified
    assert market.received[0].body == body
    again, raw = await _send(client, body, sign_payment(body, msg_id="msg_sync"))
    assert again.status == 200
    assert json.loads(raw)["status"] == "duplicate"
    assert len(market.received) == 1


async def test_4xx_from_the_destination_reaches_the_sender_and_releases(make_gateway, marketplace):
    market, _ = marketplace
    market.status, market.answer = 404, b'{"error":"unknown offer"}'
    client, _ = await make_gateway(sources=SYNC)
    body = payment_body()
    response, raw = await _send(client, body, sign_payment(body, msg_id="msg_404"))
    assert response.status == 404
    assert raw == b'{"error":"unknown offer"}'
    # Released, not marked seen: once the offer exists, the sender's retry goes through.
    market.status, market.answer = 200, b"{}"
    retry, _ = await _send(client, body, sign_payment(body, msg_id="msg_404"))
    assert retry.status == 200
    assert len(market.received) == 2


async def test_5xx_becomes_502_and_releases(make_gateway, marketplace):
    market, _ = marketplace
    market.status = 500
    client, _ = await make_gateway(sources=SYNC)
    body = payment_body()
    response, raw = await _send(client, body, sign_payment(body, msg_id="msg_500"))
    assert response.status == 502
    assert json.loads(raw)["error"] == "bad_gateway"
    market.status = 200
    retry, _ = await _send(client, body, sign_payment(body, msg_id="msg_500"))
    assert retry.status == 200


async def test_destination_timeout_becomes_504(make_gateway, marketplace):
    market, _ = marketplace
    market.delay = 2.0
    client, _ = await make_gateway(sources=SYNC, destination={"timeout": "300ms"})
    body = payment_body()
    response, raw = await _send(client, body, sign_payment(body))
    assert response.status == 504
    assert json.loads(raw)["error"] == "gateway_timeout"


async def test_unreachable_destination_becomes_502(make_gateway):
    closed = f"http://127.0.0.1:{free_port()}/api/webhooks/payments"
    client, _ = await make_gateway(sources=SYNC, destination={"url": closed})
    body = payment_body()
    response, raw = await _send(client, body, sign_payment(body))
    assert response.status == 502
    assert json.loads(raw)["error"] == "bad_gateway"


async def test_concurrent_duplicate_is_409_in_progress(make_gateway, marketplace):
    market, _ = marketplace
    market.delay = 1.0
    client, _ = await make_gateway(sources=SYNC)
    body = payment_body()
    first = asyncio.create_task(_send(client, body, sign_payment(body, msg_id="msg_race")))
    await market.wait_for(1)
    second, raw = await _send(client, body, sign_payment(body, msg_id="msg_race"))
    assert second.status == 409
    assert second.headers["Retry-After"] == "1"
    assert json.loads(raw)["error"] == "in_progress"
    response, _ = await first
    assert response.status == 200
    assert len(market.received) == 1


async def test_structured_format_sends_one_cloudevents_document(make_gateway, marketplace):
    market, _ = marketplace
    client, _ = await make_gateway(sources=SYNC, destination={"format": "structured"})
    body = payment_body()
    response, _ = await _send(client, body, sign_payment(body, msg_id="msg_struct"))
    assert response.status == 200
    received = market.received[0]
    assert received.verified, "the signature covers the structured body"
    assert received.headers["Content-Type"].startswith("application/cloudevents+json")
    document = json.loads(received.body)
    assert document["specversion"] == "1.0"
    assert document["id"] == "msg_struct"
    assert document["source"] == "/sources/payments"
    assert document["type"] == "payment.completed"
    assert document["datacontenttype"] == "application/json"
    assert document["data"] == json.loads(body)


async def test_each_sync_attempt_logs_a_delivery_line(make_gateway, marketplace, caplog):
    market, _ = marketplace
    client, _ = await make_gateway(sources=SYNC)
    caplog.set_level("INFO", logger="gateway.delivery")
    for status, msg_id in ((500, "msg_log_fail"), (200, "msg_log_ok")):
        market.status = status
        body = payment_body()
        await _send(client, body, sign_payment(body, msg_id=msg_id))
    lines = [r for r in caplog.records if r.getMessage() == "delivery attempt"]
    assert [(r.event_id, r.status, r.result, r.mode) for r in lines] == [
        ("msg_log_fail", 500, "retried", "sync"),
        ("msg_log_ok", 200, "delivered", "sync"),
    ]
    assert all(r.destination == "marketplace" and r.attempt == 1 for r in lines)
