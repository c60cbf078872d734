"""hiredis packing for the store's Redis connections: the same bytes as redis-py's own packing,
and the store's clients (plain and cluster) really use it."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio.connection import Connection
from redis.exceptions import DataError

from gateway.redisio.packing import HiredisPacking, use_hiredis_packing
from gateway.store import open_store
from harness.redis_server import RedisServer

from .conftest import CLUSTER_PARTITIONS, flush, flush_cluster

plain = Connection()
packing = type("Packing", (HiredisPacking, Connection), {})()

argument = st.one_of(
    st.text(), st.binary(), st.integers(), st.floats(allow_nan=False), st.just("é\n{q}")
)


@given(st.lists(argument, max_size=12))
def test_the_same_bytes_as_redis_py_packs(args):
    for command in ("EVALSHA", b"EVALSHA", "CONFIG GET", b"CLIENT SETNAME"):
        want = b"".join(plain.pack_command(command, *args))
        assert b"".join(packing.pack_command(command, *args)) == want


def test_what_redis_py_refuses_is_refused():
    with pytest.raises(DataError):
        packing.pack_command("SET", "k", None)


async def test_the_store_client_packs_with_hiredis(redis_server: RedisServer):
    await flush(redis_server.url)
    store = await open_store(redis_server.url)
    try:
        await store.ping()
        pool = store.client.connection_pool  # type: ignore[attr-defined]
        assert issubclass(pool.connection_class, HiredisPacking)
        connection = await pool.get_connection()
        try:
            assert isinstance(connection, HiredisPacking)
        finally:
            await pool.release(connection)
    finally:
        await store.close()


async def test_the_cluster_client_packs_with_hiredis(redis_cluster):
    await flush_cluster(redis_cluster)
    store = await open_store(redis_cluster.url, partitions=CLUSTER_PARTITIONS)
    try:
        await store.ping()
        client = store.client  # type: ignore[attr-defined]
        nodes = client.get_nodes()
        assert nodes and all(issubclass(n.connection_class, HiredisPacking) for n in nodes)
    finally:
        await store.close()


def test_packing_is_given_once_and_kept():
    client = aioredis.Redis()
    use_hiredis_packing(client)
    first = client.connection_pool.connection_class
    use_hiredis_packing(client)
    assert client.connection_pool.connection_class is first
