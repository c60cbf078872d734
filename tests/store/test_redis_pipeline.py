"""Auto-pipelining against a real redis-server: concurrent script calls share a round trip,
each caller gets its own answer or error, and a flushed script cache is recovered from."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from gateway.redis_pipeline import AutoPipeline
from tests.redis_server import RedisServer

from .conftest import flush

ECHO = "return {KEYS[1], ARGV[1]}"
FAIL = "return redis.error_reply('nope ' .. ARGV[1])"


@pytest.fixture
async def client(redis_server: RedisServer):
    await flush(redis_server.url)
    c = aioredis.Redis.from_url(redis_server.url)
    yield c
    await c.aclose()


async def test_concurrent_calls_go_in_one_pipeline_each_with_its_answer(client, monkeypatch):
    batch = AutoPipeline(client)
    echo = client.register_script(ECHO)
    await batch.load([echo])
    sent: list[int] = []
    send = batch._send

    async def counting(calls):
        sent.append(len(calls))
        await send(calls)

    monkeypatch.setattr(batch, "_send", counting)
    answers = await asyncio.gather(*(batch.call(echo, [f"k{n}"], [n]) for n in range(200)))
    assert answers == [[f"k{n}".encode(), str(n).encode()] for n in range(200)]
    assert sent == [200]  # one round trip for all of them


async def test_an_error_reaches_only_its_caller(client):
    batch = AutoPipeline(client)
    echo, fail = client.register_script(ECHO), client.register_script(FAIL)
    await batch.load([echo, fail])
    ok, bad = await asyncio.gather(
        batch.call(echo, ["a"], [1]), batch.call(fail, ["b"], [2]), return_exceptions=True
    )
    assert ok == [b"a", b"1"]
    assert isinstance(bad, ResponseError) and "nope 2" in str(bad)


async def test_calls_recover_when_redis_forgot_the_scripts(client):
    batch = AutoPipeline(client)
    echo = client.register_script(ECHO)
    await batch.load([echo])
    await client.script_flush()  # as after a restart or a failover
    answers = await asyncio.gather(*(batch.call(echo, ["k"], [n]) for n in range(5)))
    assert [a[1] for a in answers] == [str(n).encode() for n in range(5)]
