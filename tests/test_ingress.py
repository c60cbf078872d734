"""The request path end to end through real sockets: acceptance and every refusal (design.md 2)."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import pytest

from gateway.app import STORE, create_app
from gateway.appkeys import METRICS
from tests.support import (
    OLD_PAYMENTS_SECRET,
    PAYMENTS_SECRET,
    build_config,
    config_dict,
    delivered_once,
    payment_body,
    payments_source,
    sign_payment,
    sqlite_url,
)


async def _post(client, body: bytes, headers: dict[str, str], path: str = "/hooks/payments"):
    response = await client.post(path, data=body, headers=headers)
    return response, await response.read()


async def nothing_accepted(client, marketplace) -> None:
    """The refused request left nothing behind: no event stored (so no delivery can ever be
    made of it, however long one waits) and nothing at the destination."""
    events, _ = await client.app[STORE].list_events()
    assert events == []
    assert marketplace[0].received == []


def _error(raw: bytes) -> dict:
    payload = json.loads(raw)
    expected = {"error", "message", "request_id"}
    if payload.get("error") == "missing_field":
        expected.add("missing")
    assert set(payload) == expected
    return payload


async def test_signed_event_is_queued_and_delivered_byte_for_byte(make_gateway, marketplace):
    market, _ = marketplace
    client, _ = await make_gateway()
    body = payment_body(note="café ✓")
    headers = sign_payment(body, msg_id="msg_first")
    response, raw = await _post(client, body, headers)
    assert response.status == 202
    assert json.loads(raw) == {"id": "msg_first", "status": "queued"}
    assert response.headers["X-Request-ID"]
    await market.wait_for(1)
    received = market.received[0]
    assert received.body == body
    assert received.verified, "the marketplace verifies the gateway's signature"
    assert received.headers["webhook-id"] == "msg_first"
    assert received.headers["ce-specversion"] == "1.0"
    assert received.headers["ce-id"] == "msg_first"
    assert received.headers["ce-source"] == "/sources/payments"
    assert received.headers["ce-type"] == "payment.completed"
    assert received.headers["ce-subject"] == "offer-42"
    assert received.headers["ce-time"] == "2026-11-26T10:00:00.000Z"
    assert received.headers["Content-Type"] == "application/json"
    assert received.headers["X-Gateway-Attempt"] == "1"
    assert received.headers["X-Request-ID"] == response.headers["X-Request-ID"]
    # The sender's signature headers stay behind: the destination sees the gateway's own.
    assert received.headers["webhook-signature"] != headers["webhook-signature"]


async def test_routes_follow_each_event_type_past_the_route_cache(
    make_gateway, marketplace, monkeypatch
):
    # One remembered type: every other is matched afresh, and a remembered one stays right.
    monkeypatch.setattr("gateway.ingress.plan.ROUTE_CACHE_SIZE", 1)
    market, _ = marketplace
    client, _ = await make_gateway()
    types = ["payment.completed", "refund.created", "payment.failed", "refund.created"]
    for index, type_ in enumerate(types):
        body = payment_body(type=type_)
        response, _ = await _post(client, body, sign_payment(body, msg_id=f"msg_type_{index}"))
        assert response.status == 202
    await market.wait_for(2)
    assert sorted(r.headers["ce-type"] for r in market.received) == [
        "payment.completed",
        "payment.failed",
    ]
    events, _ = await client.app[STORE].list_events(status="unrouted")
    assert sorted(e.id for e in events) == ["msg_type_1", "msg_type_3"]


async def test_an_unrouted_event_is_stored_answered_counted_and_logged(
    make_gateway, marketplace, caplog
):
    client, _ = await make_gateway()
    body = payment_body(type="refund.created")
    with caplog.at_level(logging.INFO, logger="gateway.ingress"):
        response, raw = await _post(client, body, sign_payment(body, msg_id="msg_refund"))
    assert response.status == 202
    assert json.loads(raw) == {"id": "msg_refund", "status": "unrouted"}
    [line] = [r for r in caplog.records if getattr(r, "event_id", None) == "msg_refund"]
    assert (line.levelno, line.outcome, line.type) == (  # type: ignore[attr-defined]
        logging.WARNING, "unrouted", "refund.created",
    )  # fmt: skip
    metrics = client.app[METRICS].exposition().decode()
    assert 'webhook_gateway_requests_total{outcome="unrouted",source="payments"} 1.0' in metrics
    view = await client.app[STORE].get_event("msg_refund")
    assert view is not None and view.status == "unrouted" and view.deliveries == ()
    stats = await client.app[STORE].stats(time.time())
    assert (stats.total("accepted"), stats.total("unrouted")) == (1, 1)
    # Sent again: a duplicate, like any other event.
    response, raw = await _post(client, body, sign_payment(body, msg_id="msg_refund"))
    assert (response.status, json.loads(raw)["status"]) == (200, "duplicate")


async def test_on_unrouted_reject_answers_422_and_stores_nothing(make_gateway, marketplace):
    client, _ = await make_gateway(sources={"payments": payments_source(on_unrouted="reject")})
    body = payment_body(type="refund.created")
    response, raw = await _post(client, body, sign_payment(body, msg_id="msg_refused"))
    assert response.status == 422
    payload = _error(raw)
    assert payload["error"] == "unrouted"
    assert "refund.created" in payload["message"]
    assert await client.app[STORE].get_event("msg_refused") is None
    # A routed type still goes through.
    body = payment_body()
    response, _ = await _post(client, body, sign_payment(body))
    assert response.status == 202


async def test_request_id_from_the_sender_is_kept(make_gateway):
    client, _ = await make_gateway()
    body = payment_body()
    headers = {**sign_payment(body), "X-Request-ID": "req-abc.123"}
    response, _ = await _post(client, body, headers)
    assert response.headers["X-Request-ID"] == "req-abc.123"


async def test_unknown_path_is_404(make_gateway, marketplace):
    client, _ = await make_gateway()
    body = payment_body()
    response, raw = await _post(client, body, sign_payment(body), path="/hooks/nope")
    assert response.status == 404
    assert _error(raw)["error"] == "unknown_source"
    assert response.headers["X-Request-ID"] == _error(raw)["request_id"]
    await nothing_accepted(client, marketplace)


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
async def test_other_methods_on_a_source_path_are_405(make_gateway, marketplace, method):
    client, _ = await make_gateway()
    response = await client.request(method, "/hooks/payments")
    assert response.status == 405
    assert _error(await response.read())["error"] == "method_not_allowed"
    assert response.headers["Allow"] == "POST"


async def test_ip_outside_the_allow_list_is_403(make_gateway, marketplace):
    client, _ = await make_gateway(
        sources={"payments": payments_source(allow_ips=["10.0.0.0/8", "2001:db8::/32"])}
    )
    body = payment_body()
    response, raw = await _post(client, body, sign_payment(body))
    assert response.status == 403
    payload = _error(raw)
    assert payload["error"] == "ip_not_allowed"
    assert "10.0.0.0" not in payload["message"]
    await nothing_accepted(client, marketplace)


async def test_forwarded_for_is_honoured_only_from_a_trusted_proxy(make_gateway):
    sources = {"payments": payments_source(allow_ips=["203.0.113.7/32"])}
    body = payment_body()
    spoofed = {**sign_payment(body), "X-Forwarded-For": "203.0.113.7"}
    # Untrusted peer: the header is ignored, the peer (127.0.0.1) is refused.
    client, _ = await make_gateway(sources=sources)
    response, _ = await _post(client, body, spoofed)
    assert response.status == 403


async def test_forwarded_for_through_a_trusted_proxy_is_allowed(make_gateway):
    sources = {"payments": payments_source(allow_ips=["203.0.113.7/32"])}
    client, _ = await make_gateway(sources=sources, server={"trusted_proxies": ["127.0.0.0/8"]})
    body = payment_body()
    headers = {**sign_payment(body), "X-Forwarded-For": "198.51.100.1, 203.0.113.7"}
    response, _ = await _post(client, body, headers)
    assert response.status == 202


async def test_declared_body_over_the_limit_is_413_before_reading(make_gateway, marketplace):
    client, _ = await make_gateway(server={"max_body_bytes": 1024})
    body = payment_body(pad="x" * 2000)
    response, raw = await _post(client, body, sign_payment(body))
    assert response.status == 413
    assert _error(raw)["error"] == "body_too_large"
    await nothing_accepted(client, marketplace)


async def test_streamed_body_over_the_limit_is_413(make_gateway, marketplace):
    client, _ = await make_gateway(server={"max_body_bytes": 1024})
    body = payment_body(pad="x" * 4000)
    headers = sign_payment(body)

    async def chunks():
        for start in range(0, len(body), 500):
            yield body[start : start + 500]

    # A generator body is sent chunked: no Content-Length to refuse up front.
    response = await client.post("/hooks/payments", data=chunks(), headers=headers)
    assert response.status == 413
    assert _error(await response.read())["error"] == "body_too_large"
    await nothing_accepted(client, marketplace)


async def test_slow_body_is_408(make_gateway, marketplace):
    client, _ = await make_gateway(server={"body_timeout": "300ms"})
    body = payment_body()
    headers = sign_payment(body)

    async def slow():
        yield body[:10]
        await asyncio.sleep(1.5)
        yield body[10:]

    response = await client.post("/hooks/payments", data=slow(), headers=headers)
    assert response.status == 408
    assert _error(await response.read())["error"] == "request_timeout"
    await nothing_accepted(client, marketplace)


@pytest.mark.parametrize(
    "tamper",
    ["body", "wrong_secret", "no_signature", "old_timestamp", "future_timestamp", "bad_timestamp"],
)
async def test_bad_signatures_are_401(make_gateway, marketplace, tamper):
    client, _ = await make_gateway()
    body = payment_body()
    now = time.time()
    if tamper == "wrong_secret":
        headers = sign_payment(body, secret=OLD_PAYMENTS_SECRET)
    elif tamper == "old_timestamp":
        headers = sign_payment(body, at=now - 360)
    elif tamper == "future_timestamp":
        headers = sign_payment(body, at=now + 360)
    else:
        headers = sign_payment(body)
    if tamper == "body":
        body = body.replace(b"completed", b"refunded!")
    elif tamper == "no_signature":
        del headers["webhook-signature"]
    elif tamper == "bad_timestamp":
        headers["webhook-timestamp"] = "soon"
    response, raw = await _post(client, body, headers)
    assert response.status == 401
    payload = _error(raw)
    assert payload["error"] == "invalid_signature"
    assert "secret" not in payload["message"]
    await nothing_accepted(client, marketplace)


async def test_rotation_accepts_both_listed_secrets(make_gateway):
    sources = {
        "payments": payments_source(
            secrets=["${PAYMENTS_WEBHOOK_SECRET}", "${PAYMENTS_WEBHOOK_SECRET_OLD}"]
        )
    }
    client, _ = await make_gateway(
        sources=sources, env={"PAYMENTS_WEBHOOK_SECRET_OLD": OLD_PAYMENTS_SECRET}
    )
    for secret in (PAYMENTS_SECRET, OLD_PAYMENTS_SECRET):
        body = payment_body()
        response, _ = await _post(client, body, sign_payment(body, secret=secret))
        assert response.status == 202


async def test_body_that_is_not_json_is_400(make_gateway, marketplace):
    client, _ = await make_gateway()
    body = b"not json at all"
    response, raw = await _post(client, body, sign_payment(body))
    assert response.status == 400
    assert _error(raw)["error"] == "invalid_body"
    await nothing_accepted(client, marketplace)


@pytest.mark.parametrize("missing", ["type", "pendingId", "offerId", "status"])
async def test_missing_required_field_is_422(make_gateway, marketplace, missing):
    client, _ = await make_gateway()
    event = json.loads(payment_body())
    del event[missing]
    body = json.dumps(event).encode()
    response, raw = await _post(client, body, sign_payment(body))
    assert response.status == 422
    payload = _error(raw)
    assert payload["error"] == "missing_field"
    assert missing in payload["message"]
    assert payload["missing"] == [f"/{missing}"]
    await nothing_accepted(client, marketplace)


async def test_every_missing_field_is_named_in_one_answer(make_gateway, marketplace):
    client, _ = await make_gateway()
    body = json.dumps({"note": "nothing the source requires"}).encode()
    response, raw = await _post(client, body, sign_payment(body))
    assert response.status == 422
    payload = _error(raw)
    assert payload["missing"] == ["/type", "/pendingId", "/offerId", "/status"]
    assert payload["message"] == "required fields missing: /type, /pendingId, /offerId, /status"
    await nothing_accepted(client, marketplace)


async def test_duplicate_is_answered_and_not_delivered_again(make_gateway, marketplace):
    market, _ = marketplace
    client, _ = await make_gateway()
    body = payment_body()
    headers = sign_payment(body, msg_id="msg_dup")
    first, _ = await _post(client, body, headers)
    assert first.status == 202
    await market.wait_for(1)
    again, raw = await _post(client, body, sign_payment(body, msg_id="msg_dup"))
    assert again.status == 200
    assert json.loads(raw) == {"id": "msg_dup", "status": "duplicate"}
    # The duplicate enqueued nothing: the one delivery went out once and nothing is left to
    # send, so the marketplace has all it will ever get.
    store = client.app[STORE]
    events, _ = await store.list_events()
    assert [e.id for e in events] == ["msg_dup"]
    await delivered_once(store, "msg_dup")
    assert [r.headers["webhook-id"] for r in market.received] == ["msg_dup"]


async def test_a_bug_still_gets_a_json_answer_and_nothing_is_acknowledged(
    aiohttp_client, tmp_path, marketplace
):
    plugin_dir = tmp_path / "plugins"
    plugin_dir.mkdir()
    (plugin_dir / "broken.py").write_text(
        "from gateway.providers import BaseProvider\n"
        "class Broken(BaseProvider):\n"
        "    name = 'broken'\n"
        "    def verify(self, body, headers, secrets, now):\n"
        "        raise RuntimeError('a bug')\n"
        "PROVIDERS = (Broken,)\n"
    )
    data = config_dict(
        "http://127.0.0.1:9/x",
        store_url=sqlite_url(tmp_path),
        sources={
            "payments": payments_source(provider="broken", secrets=["broken-provider-secret"])
        },
    )
    data["plugins"] = {"paths": [str(plugin_dir)]}
    client = await aiohttp_client(create_app(build_config(data)))
    response, raw = await _post(client, payment_body(), {"X-Request-ID": "req-bug"})
    assert response.status == 500
    assert _error(raw) == {
        "error": "internal_error",
        "message": "internal error, retry later",
        "request_id": "req-bug",
    }


async def test_a_source_path_is_a_route_of_its_own_and_a_trailing_slash_still_arrives(
    make_gateway, marketplace
):
    # The configured path is found by aiohttp's dict lookup, not the catch-all's regex; the
    # same path with a trailing slash still reaches the source through the catch-all.
    client, _ = await make_gateway()
    plain = [r for r in client.app.router.resources() if r.canonical == "/hooks/payments"]
    assert len(plain) == 1
    assert [route.method for route in plain[0]] == ["POST"]
    body = payment_body()
    response, raw = await _post(client, body, sign_payment(body), path="/hooks/payments/")
    assert response.status == 202, raw
