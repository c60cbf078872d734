"""The benchmark's floor baseline (bench/floor.py) does the work it stands for: a forged or
stale request is refused and stores nothing, a signed one is stored once, a resend is a
duplicate. A floor that skipped a step would make every gateway ÷ floor figure flatter."""

from __future__ import annotations

import json
import time

import pytest
from redis.asyncio import Redis

from bench.floor import Floor, make_app
from bench.payloads import SOURCE_PATH, event_body, payments_secret, standard_webhooks
from harness.redis_server import RedisServer


@pytest.fixture
def redis_url():
    with RedisServer() as server:
        yield server.url


def signed(body: bytes, msg_id: str, at: float) -> dict[str, str]:
    return standard_webhooks().sign(body, payments_secret(), at, msg_id=msg_id)


async def test_a_signed_event_is_stored_once_and_a_resend_is_a_duplicate(aiohttp_client, redis_url):
    client = await aiohttp_client(await make_app(Floor(redis_url)))
    body = event_body(1, "floor")
    headers = signed(body, "msg_floor_1", time.time())
    first = await client.post(SOURCE_PATH, data=body, headers=headers)
    assert first.status == 202
    assert json.loads(await first.read()) == {"id": "msg_floor_1", "status": "queued"}
    assert first.headers["X-Request-ID"]
    again = await client.post(SOURCE_PATH, data=body, headers=headers)
    assert again.status == 200
    assert json.loads(await again.read()) == {"id": "msg_floor_1", "status": "duplicate"}
    redis = Redis.from_url(redis_url)
    try:
        assert await redis.hget("e:msg_floor_1", "body") == body
        assert await redis.zrange("due", 0, -1) == [b"msg_floor_1"]
    finally:
        await redis.aclose()


@pytest.mark.parametrize("forgery", ["signature", "stale", "missing"])
async def test_a_forged_or_stale_request_is_refused_and_stores_nothing(
    aiohttp_client, redis_url, forgery
):
    client = await aiohttp_client(await make_app(Floor(redis_url)))
    body = event_body(2, "floor")
    at = time.time() - (600 if forgery == "stale" else 0)
    headers = signed(body, "msg_floor_2", at)
    if forgery == "signature":
        headers["webhook-signature"] = signed(body + b" ", "msg_floor_2", at)["webhook-signature"]
    if forgery == "missing":
        del headers["webhook-signature"]
    response = await client.post(SOURCE_PATH, data=body, headers=headers)
    assert response.status == 401
    redis = Redis.from_url(redis_url)
    try:
        assert await redis.dbsize() == 0
    finally:
        await redis.aclose()
