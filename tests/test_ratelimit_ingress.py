"""Rate limits on the request path: per IP before the body, per source after verification."""

from __future__ import annotations

import json

import pytest

from gateway.app import METRICS, STORE, create_app
from harness.redis_server import RedisServer
from tests.support import (
    build_config,
    config_dict,
    payment_body,
    payments_source,
    sign_payment,
    sqlite_url,
)


def _limited(per_ip=None, per_source=None, on_store_error="allow"):
    rate_limit = {"on_store_error": on_store_error}
    if per_ip:
        rate_limit["per_ip"] = per_ip
    if per_source:
        rate_limit["per_source"] = per_source
    return {"payments": payments_source(rate_limit=rate_limit)}


def _signature_failures(client) -> float:
    metrics = client.server.app[METRICS]
    return metrics.signature_failures.labels("payments")._value.get()


@pytest.fixture(params=["sqlite", "redis"])
def store_url(request, tmp_path):
    """Each per-source test on both stores: on Redis the accept script decides the limit."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path)
        return
    with RedisServer() as redis:
        yield redis.url


async def _post(client, body, headers):
    response = await client.post("/hooks/payments", data=body, headers=headers)
    return response, await response.read()


async def test_per_ip_limit_refuses_before_the_body_and_the_signature(
    make_gateway, marketplace, store_url
):
    # On Redis, with the body already here, the accept script decides the per-IP limit: a
    # request refused before it (here by its signature) is counted on its own first, so the
    # answers and the signature-failure count are those of the stage order.
    client, _ = await make_gateway(
        store_url=store_url, sources=_limited(per_ip={"rate": "1/m", "burst": 2})
    )
    forged = payment_body()
    bad = {**sign_payment(forged), "webhook-signature": "v1,AAAA"}
    for _ in range(2):
        response, _ = await _post(client, forged, bad)
        assert response.status == 401
    response, raw = await _post(client, forged, bad)
    assert response.status == 429
    assert json.loads(raw)["error"] == "rate_limited"
    assert int(response.headers["Retry-After"]) >= 1
    assert response.headers["RateLimit-Limit"] == "2"
    assert response.headers["RateLimit-Remaining"] == "0"
    assert int(response.headers["RateLimit-Reset"]) >= 1
    # The refused request is not counted as a signature failure.
    assert _signature_failures(client) == 2
    assert marketplace[0].received == []


async def test_forgeries_do_not_consume_the_source_quota(make_gateway, store_url):
    client, _ = await make_gateway(
        store_url=store_url, sources=_limited(per_source={"rate": "1/m", "burst": 3})
    )
    forged = payment_body()
    bad = {**sign_payment(forged), "webhook-signature": "v1,AAAA"}
    for _ in range(20):
        response, _ = await _post(client, forged, bad)
        assert response.status == 401
    for _ in range(3):
        body = payment_body()
        response, _ = await _post(client, body, sign_payment(body))
        assert response.status == 202
    body = payment_body()
    response, raw = await _post(client, body, sign_payment(body))
    assert response.status == 429
    assert json.loads(raw)["error"] == "rate_limited"


async def test_a_refused_request_writes_nothing_to_the_store(make_gateway, marketplace, store_url):
    client, _ = await make_gateway(
        store_url=store_url, sources=_limited(per_source={"rate": "1/m", "burst": 1})
    )
    body = payment_body()
    first, _ = await _post(client, body, sign_payment(body, msg_id="msg_one"))
    assert first.status == 202
    second = payment_body()
    limited, _ = await _post(client, second, sign_payment(second, msg_id="msg_two"))
    assert limited.status == 429
    assert limited.headers["RateLimit-Limit"] == "1"
    assert limited.headers["RateLimit-Remaining"] == "0"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    store = client.server.app[STORE]
    assert await store.get_event("msg_one") is not None
    assert await store.get_event("msg_two") is None


async def test_a_sync_source_is_limited_per_source_before_anything_is_forwarded(
    make_gateway, marketplace, store_url
):
    # On Redis the claim script decides the limit (one round trip instead of two).
    sources = _limited(per_source={"rate": "1/m", "burst": 2})
    sources["payments"]["delivery"] = "sync"
    client, _ = await make_gateway(store_url=store_url, sources=sources)
    first = payment_body()
    for msg_id in ("msg_one", "msg_one"):  # a resend counts against the limit too
        response, _ = await _post(client, first, sign_payment(first, msg_id=msg_id))
        assert response.status == 200
    second = payment_body()
    limited, raw = await _post(client, second, sign_payment(second, msg_id="msg_two"))
    assert limited.status == 429
    assert json.loads(raw)["error"] == "rate_limited"
    assert limited.headers["RateLimit-Limit"] == "2"
    assert limited.headers["RateLimit-Remaining"] == "0"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert len(marketplace[0].received) == 1
    store = client.server.app[STORE]
    assert await store.get_event("msg_two") is None
    assert await store.claim("payments", "msg_two", 10.0, 0.0) == "claimed"  # never claimed


@pytest.mark.parametrize(("policy", "status"), [("allow", 503), ("deny", 429)])
async def test_redis_limiter_down_follows_on_store_error(make_gateway, policy, status):
    with RedisServer() as redis:
        client, _ = await make_gateway(
            store_url=redis.url,
            sources=_limited(per_ip={"rate": "100/s", "burst": 10}, on_store_error=policy),
        )
        body = payment_body()
        response, _ = await _post(client, body, sign_payment(body))
        assert response.status == 202
        redis.stop()
        body = payment_body()
        response, raw = await _post(client, body, sign_payment(body))
    # allow: the limiter lets it through and the store (same Redis) answers 503 unavailable;
    # deny: the limiter refuses it with 429. Never an unhandled error.
    assert response.status == status
    assert json.loads(raw)["error"] == ("unavailable" if policy == "allow" else "rate_limited")


async def test_per_ip_limit_in_the_accept_comes_before_the_source_limit_and_stores_nothing(
    make_gateway, marketplace, store_url
):
    client, _ = await make_gateway(
        store_url=store_url,
        sources=_limited(
            per_ip={"rate": "1/m", "burst": 2}, per_source={"rate": "1/m", "burst": 5}
        ),
    )
    for msg_id in ("msg_one", "msg_one"):  # a resend counts against the limit too
        body = payment_body(note=msg_id)
        response, _ = await _post(client, body, sign_payment(body, msg_id=msg_id))
        assert response.status in (200, 202)
    body = payment_body()
    limited, raw = await _post(client, body, sign_payment(body, msg_id="msg_two"))
    assert limited.status == 429
    assert json.loads(raw)["error"] == "rate_limited"
    assert limited.headers["RateLimit-Limit"] == "2"  # the per-IP limit's, not the source's
    store = client.server.app[STORE]
    assert await store.get_event("msg_two") is None


async def test_a_request_refused_after_stage_3_is_counted_against_the_ip(
    make_gateway, marketplace, store_url
):
    # An invalid body (stage 7) and an event no route takes under on_unrouted: reject (stage
    # 8) each use up the per-IP allowance, as they would if stage 3 ran first.
    sources = _limited(per_ip={"rate": "1/m", "burst": 2})
    sources["payments"]["on_unrouted"] = "reject"
    client, _ = await make_gateway(store_url=store_url, sources=sources)
    broken = b"{not json"
    response, _ = await _post(client, broken, sign_payment(broken))
    assert response.status == 400
    unrouted = payment_body(type="refund.created")
    response, _ = await _post(client, unrouted, sign_payment(unrouted))
    assert response.status == 422
    body = payment_body()
    response, _ = await _post(client, body, sign_payment(body))
    assert response.status == 429
    assert marketplace[0].received == []


async def test_a_write_redis_made_but_could_not_confirm_is_503_even_when_the_ip_policy_denies(
    aiohttp_client, marketplace
):
    # The accept script ran (the per-IP limit was decided in it) and only the replicas'
    # confirmation is missing: the store's answer, not the per-IP on_store_error, decides.
    with RedisServer() as redis:
        data = config_dict(
            str(marketplace[1].make_url("/api/webhooks/payments")),
            store_url=redis.url,
            sources=_limited(per_ip={"rate": "100/s", "burst": 10}, on_store_error="deny"),
        )
        data["store"].update(wait_replicas=1, wait_timeout="100ms")  # no replica exists
        client = await aiohttp_client(create_app(build_config(data)))
        body = payment_body()
        response, raw = await _post(client, body, sign_payment(body))
    assert response.status == 503
    assert json.loads(raw)["error"] == "unavailable"
