"""The Redis limiter against a real redis-server: the table, agreement with the pure GCRA,
the server clock, key layout and expiry, script reloading, a cluster, and store failures."""

from __future__ import annotations

import asyncio
import random

import pytest
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from gateway.errors import StoreError
from gateway.ratelimit import (
    Limiter,
    Rate,
    RateRule,
    RedisLimiter,
    decide,
    redis_key,
    to_micros,
)
from harness.redis_server import RedisServer
from tests.waiting import eventually

from . import gcra_table as table

HOUR3 = RateRule.parse("1/h", 3)


async def test_hand_worked_table(redis_client: redis.asyncio.Redis) -> None:
    # T = 60 s: every key lives for minutes of real time while the table runs.
    limiter = RedisLimiter(redis_client, clock="caller")
    assert isinstance(limiter, Limiter)
    for row in table.ROWS:
        got = await limiter.hit("ip:203.0.113.9", table.rule(60), table.now(row, 60))
        assert got == table.expected(row, 60), row.note
        stored = await redis_client.get(redis_key("ip:203.0.113.9"))
        assert stored is not None
        assert int(stored) == got.new_tat_us, row.note


async def test_lua_agrees_with_the_pure_function(redis_client: redis.asyncio.Redis) -> None:
    """Random hits, the clock going forward, standing still and back: the script returns what
    ``decide`` returns and stores the TAT it says, step by step. Intervals are long (>= 5 s) so
    no key can expire in real time while the test runs."""
    limiter = RedisLimiter(redis_client, clock="caller")
    rng = random.Random(7)
    rules = [
        RateRule(Rate(7, 60), 4),  # T = 8571428.57.. us, rounded up
        RateRule(Rate(10, 3600), 3),
        RateRule(Rate(1, 5), 2),
        RateRule(Rate(13, 120), 1),
        RateRule(Rate(3, 86400), 1000),
    ]
    for n, rule in enumerate(rules):
        key = f"agree:{n}"
        tat: int | None = None
        now_us = to_micros(table.BASE)
        for step in range(150):
            now_us += rng.choice(
                [0, 0, 1, rule.interval_us // 7, rule.interval_us, -rule.interval_us // 2]
            )
            if step % 50 == 49:
                now_us -= 3 * rule.window_us  # a large step back now and then
            expected = decide(tat, now_us, rule)
            got = await limiter.hit(key, rule, now_us / 1_000_000)
            assert to_micros(now_us / 1_000_000) == now_us
            assert got == expected, (rule, step)
            stored = await redis_client.get(redis_key(key))
            assert stored is not None
            assert int(stored) == expected.new_tat_us, (rule, step)
            tat = expected.new_tat_us


async def test_server_clock_ignores_the_callers_now(redis_client: redis.asyncio.Redis) -> None:
    limiter = RedisLimiter(redis_client)
    verdicts = [await limiter.hit("k", HOUR3, now) for now in (0.0, 1e12, -5.0, 0.0)]
    assert [d.allowed for d in verdicts] == [True, True, True, False]
    assert [d.remaining for d in verdicts] == [2, 1, 0, 0]
    refused = verdicts[-1]
    assert 3599 < refused.retry_after <= 3600
    assert 3 * 3600 - 60 < refused.reset_after <= 3 * 3600
    seconds, micros = await redis_client.time()
    assert abs(verdicts[0].new_tat_us - (seconds * 1_000_000 + micros) - 3_600_000_000) < 60e6


async def test_key_is_hash_tagged_and_expires_when_the_bucket_is_full(
    redis_client: redis.asyncio.Redis,
) -> None:
    limiter = RedisLimiter(redis_client)
    assert redis_key("ip:payments:2001:db8::1") == "wg:{rl:ip:payments:2001:db8::1}"
    await limiter.hit("ip:payments:2001:db8::1", HOUR3, 0.0)
    assert await redis_client.keys("*") == [b"wg:{rl:ip:payments:2001:db8::1}"]
    ttl_ms = await redis_client.pttl(redis_key("ip:payments:2001:db8::1"))
    assert 3_540_000 < ttl_ms <= 3_600_001

    fast = RateRule.parse("1000/s", 1)  # full again after 1 ms: the key must vanish
    await limiter.hit("fleeting", fast, 0.0)

    async def gone() -> bool:
        return not await redis_client.exists(redis_key("fleeting"))

    await eventually(gone, "the full key to expire", interval=0.01)


async def test_refusal_leaves_the_stored_state_alone(redis_client: redis.asyncio.Redis) -> None:
    limiter = RedisLimiter(redis_client)
    rule = RateRule.parse("1/h", 1)
    assert (await limiter.hit("k", rule, 0.0)).allowed
    before = await redis_client.get(redis_key("k"))
    for _ in range(20):
        assert not (await limiter.hit("k", rule, 0.0)).allowed
    assert await redis_client.get(redis_key("k")) == before


async def test_script_is_loaded_again_after_script_flush(
    redis_client: redis.asyncio.Redis,
) -> None:
    limiter = RedisLimiter(redis_client)
    assert (await limiter.hit("k", HOUR3, 0.0)).allowed
    await redis_client.script_flush()
    assert (await limiter.hit("k", HOUR3, 0.0)).remaining == 1


@pytest.mark.cluster  # starts its own, without a fixture
async def test_works_on_redis_cluster() -> None:
    """A one-node Redis Cluster owning every slot, through ``RedisCluster``."""
    args = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
    with RedisServer(extra_args=args) as server:
        admin = redis.asyncio.Redis.from_url(server.url)
        await admin.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)

        async def ok() -> bool:
            return b"cluster_state:ok" in await admin.execute_command("CLUSTER", "INFO")

        await eventually(ok, "the one-node cluster to be ok", interval=0.01)
        await admin.aclose()
        cluster = redis.asyncio.RedisCluster(host=server.host, port=server.port)
        try:
            limiter = RedisLimiter(cluster, clock="caller")
            for row in table.ROWS:
                got = await limiter.hit("ip:198.51.100.7", table.rule(60), table.now(row, 60))
                assert got == table.expected(row, 60), row.note
            assert await cluster.exists(redis_key("ip:198.51.100.7"))
        finally:
            await cluster.aclose()


def no_retries() -> Retry:
    return Retry(NoBackoff(), 0)


async def test_unreachable_store_raises_store_error(redis_server: RedisServer) -> None:
    # A port nobody listens on: the connection is refused at once.
    with RedisServer() as gone:
        url = gone.url
    client = redis.asyncio.Redis.from_url(url, retry=no_retries())
    try:
        with pytest.raises(StoreError, match="ConnectionError"):
            await RedisLimiter(client).hit("k", HOUR3, 0.0)
    finally:
        await client.aclose()


async def silent_server() -> asyncio.Server:
    """A TCP server that accepts connections and never answers: a hung Redis."""

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    return await asyncio.start_server(swallow, "127.0.0.1", 0)


async def test_socket_timeout_raises_store_error() -> None:
    server = await silent_server()
    port = server.sockets[0].getsockname()[1]
    client = redis.asyncio.Redis(port=port, socket_timeout=0.2, retry=no_retries())
    try:
        with pytest.raises(StoreError, match="TimeoutError"):
            await RedisLimiter(client).hit("k", HOUR3, 0.0)
    finally:
        await client.aclose()
        server.close()
        await server.wait_closed()


async def test_limiter_timeout_bounds_a_hung_store() -> None:
    server = await silent_server()
    port = server.sockets[0].getsockname()[1]
    client = redis.asyncio.Redis(port=port, socket_timeout=None, retry=no_retries())
    try:
        with pytest.raises(StoreError, match=r"did not answer within 0\.2 s"):
            await RedisLimiter(client, timeout=0.2).hit("k", HOUR3, 0.0)
    finally:
        await client.aclose()
        server.close()
        await server.wait_closed()


async def test_store_going_down_and_coming_back() -> None:
    """Down: StoreError. Back (a fresh process, its script cache empty): decisions resume."""
    with RedisServer() as server:
        client = redis.asyncio.Redis.from_url(server.url, retry=no_retries())
        limiter = RedisLimiter(client)
        try:
            assert (await limiter.hit("k", HOUR3, 0.0)).remaining == 2
            server.stop()
            with pytest.raises(StoreError):
                await limiter.hit("k", HOUR3, 0.0)
            server.start()
            # The data went with the process (no persistence): a fresh bucket.
            assert (await limiter.hit("k", HOUR3, 0.0)).remaining == 2
        finally:
            await client.aclose()


def test_bad_arguments() -> None:
    client = redis.asyncio.Redis()
    with pytest.raises(ValueError, match="clock must be"):
        RedisLimiter(client, clock="local")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout must be positive"):
        RedisLimiter(client, timeout=0)
