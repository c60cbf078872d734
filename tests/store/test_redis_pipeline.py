"""Auto-pipelining against a real redis-server: concurrent script calls share a round trip,
each caller gets its own answer or error, and a flushed script cache is recovered from; on a
real Redis Cluster, one pipeline per master and MOVED followed; with a real replica, a durable
call is answered only once the replica has it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

import pytest
import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.redisio.pipeline import AutoPipeline, NotReplicated
from harness.redis_server import RedisServer
from tests.waiting import eventually

from .conftest import flush, flush_cluster

ECHO = "return {KEYS[1], ARGV[1]}"
FAIL = "return redis.error_reply('nope ' .. ARGV[1])"


@pytest.fixture
async def client(redis_server: RedisServer):
    await flush(redis_server.url)
    c = aioredis.Redis.from_url(redis_server.url)
    yield c
    await c.aclose()


def _count_writes(batch: AutoPipeline, monkeypatch) -> list[int]:
    """The size of each batch ``batch`` writes from now on."""
    sent: list[int] = []
    write = batch._write

    def counting(link, calls):
        sent.append(len(calls))
        write(link, calls)

    monkeypatch.setattr(batch, "_write", counting)
    return sent


async def test_concurrent_calls_go_in_one_pipeline_each_with_its_answer(client, monkeypatch):
    batch = AutoPipeline(client, early_flush=1000)
    echo = client.register_script(ECHO)
    await batch.load([echo])
    await batch.call(echo, ["k"], [0])  # the link is open
    sent = _count_writes(batch, monkeypatch)
    answers = await asyncio.gather(*(batch.call(echo, [f"k{n}"], [n]) for n in range(200)))
    assert answers == [[f"k{n}".encode(), str(n).encode()] for n in range(200)]
    assert sent == [200]  # one round trip for all of them


async def test_a_long_turn_is_written_a_few_calls_at_a_time(client, monkeypatch):
    # 200 calls made in one turn of the loop: Redis gets them four at a time as they are made,
    # not all at the end of the turn, and each caller still gets its own answer, in order.
    batch = AutoPipeline(client)
    echo = client.register_script(ECHO)
    await batch.load([echo])
    await batch.call(echo, ["k"], [0])
    sent = _count_writes(batch, monkeypatch)
    answers = await asyncio.gather(*(batch.call(echo, [f"k{n}"], [n]) for n in range(202)))
    assert answers == [[f"k{n}".encode(), str(n).encode()] for n in range(202)]
    assert sent == [4] * 50 + [2]  # the last two at the end of the turn


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
    await client.config_resetstat()
    answers = await asyncio.gather(*(batch.call(echo, ["k"], [n]) for n in range(50)))
    assert [a[1] for a in answers] == [str(n).encode() for n in range(50)]
    # One load for the whole batch that met NOSCRIPT, not one per call.
    stats = await client.info("commandstats")
    assert stats["cmdstat_script|load"]["calls"] == 1


async def test_on_a_cluster_each_master_gets_one_pipeline(redis_cluster):
    # Keys of many slots: one batch becomes one pipeline per master, each caller its answer.
    await flush_cluster(redis_cluster)
    client = aioredis.RedisCluster.from_url(redis_cluster.url.replace("+cluster", ""))
    try:
        batch = AutoPipeline(client)
        echo = client.register_script(ECHO)
        await batch.load([echo])
        nodes = client.get_primaries()
        sent: list[tuple[str, int]] = []
        send = batch._send_node

        async def counting(node, calls):
            sent.append((node.name, len(calls)))
            await send(node, calls)

        batch._send_node = counting  # type: ignore[method-assign]
        answers = await asyncio.gather(*(batch.call(echo, [f"{{k{n}}}"], [n]) for n in range(300)))
        assert answers == [[f"{{k{n}}}".encode(), str(n).encode()] for n in range(300)]
        # One pipeline per master, all 300 calls among them.
        assert sorted(name for name, _ in sent) == sorted(node.name for node in nodes)
        assert sum(n for _, n in sent) == 300
    finally:
        await client.aclose()


async def test_a_call_sent_to_the_wrong_master_runs_on_the_right_one(redis_cluster):
    # A stale slot table (as after a failover or a resharding): the master answers MOVED, the
    # call did not run; it is sent again where the slot lives, and runs once.
    await flush_cluster(redis_cluster)
    client = aioredis.RedisCluster.from_url(redis_cluster.url.replace("+cluster", ""))
    try:
        await client.initialize()
        batch = AutoPipeline(client)
        incr = client.register_script("return redis.call('INCR', KEYS[1])")
        await batch.load([incr])
        right = client.get_node_from_key("{moved}")
        wrong = next(node for node in client.get_primaries() if node.name != right.name)
        real = client.get_node_from_key
        lied = []

        def stale(key, replica=False):
            if not lied:
                lied.append(key)
                return wrong
            return real(key, replica)

        client.get_node_from_key = stale  # type: ignore[method-assign]
        assert await batch.call(incr, ["{moved}"], []) == 1
        assert lied == ["{moved}"]
        assert await client.get("{moved}") == b"1"
    finally:
        await client.aclose()


def _replica_of(master: RedisServer) -> RedisServer:
    return RedisServer(extra_args=["--replicaof", master.host, str(master.port)])


async def _in_sync(replica: RedisServer) -> None:
    client = aioredis.Redis.from_url(replica.url)

    async def link() -> object:
        return (await client.info("replication")).get("master_link_status")

    try:
        await eventually(link, "the replica to sync", until=lambda status: status == "up")
    finally:
        await client.aclose()


async def test_a_durable_call_is_answered_once_the_replica_has_it():
    with RedisServer() as master, _replica_of(master) as replica:
        await _in_sync(replica)
        client = aioredis.Redis.from_url(master.url)
        seen = aioredis.Redis.from_url(replica.url)
        try:
            batch = AutoPipeline(client, replicas=1, replica_timeout=5)
            write = client.register_script("return redis.call('INCR', KEYS[1])")
            await batch.load([write])
            answers = await asyncio.gather(
                *(batch.call(write, [f"w{n}"], [], durable=True) for n in range(50))
            )
            assert answers == [1] * 50
            # WAIT said the replica had them all: it holds every one right now.
            assert await seen.mget([f"w{n}" for n in range(50)]) == [b"1"] * 50
        finally:
            await client.aclose()
            await seen.aclose()


async def test_without_the_replicas_a_durable_call_fails_and_others_do_not():
    with RedisServer() as master, _replica_of(master) as replica:
        await _in_sync(replica)
        client = aioredis.Redis.from_url(master.url)
        try:
            batch = AutoPipeline(client, replicas=1, replica_timeout=0.2)
            write = client.register_script("return redis.call('INCR', KEYS[1])")
            await batch.load([write])
            replica.kill()
            durable, plain = await asyncio.gather(
                batch.call(write, ["a"], [], durable=True),
                batch.call(write, ["b"], []),
                return_exceptions=True,
            )
            assert isinstance(durable, NotReplicated), durable
            assert "0 of 1 replicas" in str(durable)
            assert plain == 1
        finally:
            await client.aclose()


async def test_a_script_that_will_not_load_fails_its_caller_instead_of_looping(client):
    batch = AutoPipeline(client)
    echo = client.register_script(ECHO)
    await batch.load([echo])
    await client.script_flush()
    loads = []

    async def useless_load(text):
        loads.append(text)
        return "0" * 40  # a sha the server never heard of

    client.script_load = useless_load  # type: ignore[method-assign]
    with pytest.raises(NoScriptError):
        await batch.call(echo, ["k"], [1])
    assert 1 <= len(loads) <= 10


@contextlib.asynccontextmanager
async def _own_server(socket_timeout: float):
    """A pipeline with the echo script loaded, on a redis-server of its own (to freeze)."""
    with RedisServer() as server:
        client = aioredis.Redis.from_url(server.url, socket_timeout=socket_timeout)
        try:
            batch = AutoPipeline(client)
            echo = client.register_script(ECHO)
            await batch.load([echo])
            yield server, batch, echo
        finally:
            await client.aclose()


@contextlib.contextmanager
def _frozen(server: RedisServer):
    """The server stopped (SIGSTOP): it answers nothing until the block ends."""
    assert server.pid is not None
    os.kill(server.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.pid, signal.SIGCONT)


async def test_a_hung_redis_fails_the_batch_after_the_socket_timeout_then_recovers():
    # A frozen server answers nothing: the batch waits the client's socket timeout, then its
    # callers get a timeout; once it runs again, the next call opens a new link.
    async with _own_server(socket_timeout=0.3) as (server, batch, echo):
        assert await batch.call(echo, ["k"], [1]) == [b"k", b"1"]
        with _frozen(server), pytest.raises(RedisTimeoutError):
            await asyncio.wait_for(batch.call(echo, ["k"], [2]), 5)
        assert await batch.call(echo, ["k"], [3]) == [b"k", b"3"]


async def test_a_call_gives_up_after_its_own_time_and_the_rest_go_on():
    async with _own_server(socket_timeout=5) as (server, batch, echo):
        with _frozen(server):
            quick = asyncio.ensure_future(batch.call(echo, ["a"], [1], give_up_after=0.2))
            patient = asyncio.ensure_future(batch.call(echo, ["b"], [2]))
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(quick, 3)
            assert not patient.done()
        # The late reply of the abandoned call is dropped; the patient one gets its own.
        assert await asyncio.wait_for(patient, 5) == [b"b", b"2"]
        assert await batch.call(echo, ["c"], [3]) == [b"c", b"3"]


async def test_a_dropped_connection_fails_what_was_on_it_and_the_next_call_reconnects(client):
    batch = AutoPipeline(client)
    echo = client.register_script(ECHO)
    await batch.load([echo])
    assert await batch.call(echo, ["k"], [1]) == [b"k", b"1"]
    killed = await client.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "no")
    assert killed >= 1
    # Redis closed the link's connection: noticed when it happened, not on the next write.
    await asyncio.sleep(0.1)
    assert await batch.call(echo, ["k"], [2]) == [b"k", b"2"]
    answers = await asyncio.gather(*(batch.call(echo, ["k"], [n]) for n in range(50)))
    assert [a[1] for a in answers] == [str(n).encode() for n in range(50)]


async def test_a_pooled_connection_redis_closed_is_not_taken_for_the_link(client, monkeypatch):
    # A connection Redis closed while it sat in the pool, its end of stream already read: a
    # link on it would never hear of the close and its calls would wait forever. (redis-py's
    # pool checks for this when it hands a connection out, but now and then one got through:
    # about 3 in 200 runs of the test above hung so; its check is left out here to make it
    # happen every time.)
    batch = AutoPipeline(client)
    echo = client.register_script(ECHO)
    await batch.load([echo])
    pool = client.connection_pool
    connection = await pool.get_connection()
    victim = await _client_id_of(connection)
    await client.execute_command("CLIENT", "KILL", "ID", victim)
    await eventually(
        connection._reader.at_eof, "the pooled connection to read the close", interval=0.01
    )
    await pool.release(connection)

    async def unchecked(conn):
        return None

    monkeypatch.setattr(pool, "ensure_connection", unchecked)
    async with asyncio.timeout(5):
        assert await batch.call(echo, ["k"], [1]) == [b"k", b"1"]


async def _client_id_of(connection) -> int:
    await connection.send_command("CLIENT", "ID")
    return int(await connection.read_response())
