"""Redis specifics: partitions, hash slots, KEYS, and the scripts on a real Redis Cluster."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from gateway.errors import StoreError
from gateway.payments.rules import PaymentFacts
from gateway.ratelimit.gcra import Rate, RateRule
from gateway.ratelimit.memory import MemoryLimiter
from gateway.ratelimit.redis_limiter import RedisLimiter
from gateway.store import Attempt, open_store
from gateway.store.records import AcceptLimit, LimitReached
from gateway.store.redis.keys import META_KEY, partition_of
from gateway.store.redis.scripts import SCRIPTS
from harness.redis_server import RedisCluster, RedisServer

from .conftest import CLUSTER_PARTITIONS, T0, flush, flush_cluster, make_event

LUA = Path(__file__).resolve().parents[2] / "gateway" / "store" / "redis" / "lua"


async def exercise(url: str, partitions: int = 1) -> None:
    """Every kind of write the store does, once."""
    store = await open_store(url, partitions=partitions)
    try:
        await store.accept(make_event("evt_1", source="pay:ments"), ["a", "b"], 60, T0)
        await store.claim("pay:ments", "k{x}", 10, T0)
        await store.commit(make_event("evt_2", key="k{x}"), ["a"], 60, T0, Attempt(1, T0, 200, 0.1))
        leases = await store.lease_due(T0, 30, 10, "w")
        await store.complete(leases[0], Attempt(1, T0, 200, 0.1))
        await store.dead_letter(leases[1], Attempt(1, T0, 400, 0.1), "bad")
        await store.redrive(None, T0 + 1)
        [lease] = await store.lease_due(T0 + 1, 30, 10, "w")
        await store.reschedule(lease, Attempt(1, T0 + 1, 503, 0.1), T0 + 5)
        await store.replay("evt_1", ["c"], T0 + 2)
        await store.release("pay:ments", "other")
        view = await store.get_event("evt_1")
        assert view is not None
        assert {d.destination for d in view.deliveries} == {"a", "b", "c"}
        events, _ = await store.list_events()
        assert {e.id for e in events} == {"evt_1", "evt_2"}
        redriven = leases[1].destination
        assert await store.queue_depth() == {(redriven, "due"): 1, ("c", "due"): 1}
        assert await store.prune(T0 + 10, 100) == 1  # evt_2, delivered in sync mode
        events, _ = await store.list_events()
        assert [e.id for e in events] == ["evt_1"]
    finally:
        await store.close()


async def test_one_partition_keeps_every_key_in_the_slot_of_the_q_tag(redis_server: RedisServer):
    await flush(redis_server.url)
    await exercise(redis_server.url)
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        keys = [key async for key in client.scan_iter(count=1000)]
        assert await client.hget(META_KEY, "partitions") == b"1"
    finally:
        await client.aclose()
    assert len(keys) > 10
    assert {key_slot(key) for key in keys if key != META_KEY.encode()} == {key_slot(b"{q}")}


def test_every_key_a_script_touches_comes_from_keys():
    # No key name is built inside Lua: each key argument is KEYS[...] or a name the prelude
    # or the script took from KEYS (the Redis Cluster contract).
    # (payment.lua's state_keys is a table it fills from KEYS alone.)
    taken = re.compile(r"^(KEYS\[.+\]|DUE|LEASED|DEAD|DEPTH|EVENTS|STATUS\[.+\]|state_keys\[.+\])$")
    local = re.compile(r"^\s*local ([\w, ]+) = (.+)$", re.M)
    # Every call, however written, and the calls whose command and first argument are read:
    # the two counts must agree, or a call would go unchecked.
    any_call = re.compile(r"\bredis\s*\.\s*p?call\b")
    read_call = re.compile(r"\bredis\.(p?call)\('(\w+)'(?:, ([^,)]+))?")
    scripts = sorted(LUA.glob("*.lua"))
    assert {script.stem for script in scripts} == {*SCRIPTS, "prelude", "payment", "rollup"}
    protected = Counter()
    for script in scripts:
        text = script.read_text()
        names = {
            name.strip()
            for match in local.finditer(text)
            for name, value in zip(
                match.group(1).split(","),
                re.split(r",\s*(?![^\[]*\])", match.group(2)),
                strict=False,  # "local a, b = f()" has fewer values than names
            )
            if value.strip().startswith(("KEYS[", "STATUS["))
        }
        names |= {"ek", "evdk", "dk", "sk"} if script.name == "prelude.lua" else set()
        # rollup.lua's helpers take the day hash as ``an``: each caller passes a KEYS entry.
        names |= {"an"} if script.name == "rollup.lua" else set()
        calls = read_call.findall(text)
        assert calls, script.name
        assert len(calls) == len(any_call.findall(text)), script.name
        for call, command, arg in calls:
            protected[script.name] += call == "pcall"
            if command == "PUBLISH":
                continue  # its first argument is a Pub/Sub channel, which names no key
            if command == "TIME":
                assert not arg, (script.name, arg)  # the server's clock: no key at all
                continue
            assert ".." not in arg, (script.name, arg)
            assert taken.match(arg) or arg in names, (script.name, arg)
    # The change-log appends that may fail without failing the change (pcall) are checked too.
    assert +protected == {"accept.lua": 1, "finish.lua": 1}


async def test_a_changed_partition_count_is_refused(redis_server: RedisServer):
    await flush(redis_server.url)
    store = await open_store(redis_server.url, partitions=4)
    await store.accept(make_event("evt_1"), ["m"], 60, T0)
    await store.close()
    with pytest.raises(StoreError, match=r"store\.partitions is 8, but this store was created"):
        await open_store(redis_server.url, partitions=8)
    again = await open_store(redis_server.url, partitions=4)
    try:
        assert (await again.get_event("evt_1")) is not None
    finally:
        await again.close()


def blake2b_partition(source: str, dedupe_key: str, partitions: int) -> int:
    """The rule, written out apart from the store: BLAKE2b with an 8-byte digest of
    "<source>\\n<dedupe key>" in UTF-8, read as a big-endian integer, modulo the count."""
    digest = hashlib.blake2b(f"{source}\n{dedupe_key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % partitions


def test_the_partition_is_a_stable_hash_of_source_and_dedupe_key():
    assert partition_of("payments", "msg_1", 1) == 0
    spread = Counter(partition_of("payments", f"msg_{n}", 16) for n in range(16_000))
    assert set(spread) == set(range(16))
    assert max(spread.values()) < 1.2 * min(spread.values())
    for n in range(300):
        source, key = f"source-{n % 7}", f"msg_{n}"
        for partitions in (2, 3, 7, 16):
            assert partition_of(source, key, partitions) == blake2b_partition(
                source, key, partitions
            )
    # Fixed across processes and releases: a duplicate must find its original, also one that
    # an earlier release stored.
    fixed = {
        ("payments", "msg_1"): (0, 6, 3),
        ("stripe", "evt_1"): (1, 3, 1),
        ("payments", "evt_42"): (2, 4, 9),
        ("github", "a1b2"): (1, 0, 8),
        ("shop", "order-7"): (0, 4, 1),
    }
    for (source, key), expected in fixed.items():
        assert tuple(partition_of(source, key, n) for n in (3, 7, 16)) == expected, source


async def test_sixteen_partitions_spread_over_three_masters(redis_cluster: RedisCluster):
    await flush_cluster(redis_cluster)
    await exercise(redis_cluster.url, partitions=CLUSTER_PARTITIONS)
    store = await open_store(redis_cluster.url, partitions=CLUSTER_PARTITIONS)
    try:
        for n in range(300):
            await store.accept(make_event(f"evt_spread_{n}"), ["m"], 60, T0 + n)
    finally:
        await store.close()
    counts = []
    for node in redis_cluster.nodes:
        client = aioredis.Redis.from_url(node.url)
        try:
            counts.append(await client.dbsize())
        finally:
            await client.aclose()
    # Each master holds a fair share: the 16 partitions' slots fall on all three.
    assert sum(counts) > 300 * 5
    assert min(counts) > sum(counts) / 3 / 2, counts


async def _change_log(url: str, partitions: int) -> list[tuple[str, dict[str, object]]]:
    """The change log after an accept, a sync commit, an attempt, a dead letter and a
    duplicate, with a type and without one, a non-ASCII subject, and with a payment (its
    key in every entry of its event) and without one."""
    await flush(url)
    store = await open_store(url, partitions=partitions)
    pays = replace(
        make_event("évt_1", type=None),
        payment=PaymentFacts("pay-é1", None, "pending", None, "enforce"),
    )
    try:
        await store.accept(pays, ["a", "b"], 60, T0)
        await store.accept(pays, ["a", "b"], 60, T0)  # a duplicate
        await store.commit(make_event("evt_2"), ["a"], 60, T0, Attempt(1, T0, 200, 0.1))
        first, second = sorted(await store.lease_due(T0, 30, 10, "w"), key=lambda x: x.destination)
        await store.complete(first, Attempt(1, T0, 200, 0.1))
        await store.dead_letter(second, Attempt(1, T0, 400, 0.1), "bad")
        return [(c.kind, c.data) for c in await store.changes("0-0", 100)]
    finally:
        await store.close()


async def test_the_change_log_reads_the_same_whichever_script_appends_it(
    redis_server: RedisServer,
):
    # One partition: accept.lua and finish.lua append the entries; more: log.lua, after them.
    inline = await _change_log(redis_server.url, 1)
    apart = await _change_log(redis_server.url, 2)
    assert inline == apart
    kinds = [kind for kind, _ in inline]
    assert kinds == ["accepted", "accepted", "delivery", "delivery", "delivery"]
    assert inline[0][1] == {
        "event_id": "évt_1",
        "source": "payments",
        "type": None,
        "subject": "o1",
        "status": None,
        "payment_key": "pay-é1",
        "event_status": "queued",
    }
    assert [data["payment_key"] for _, data in inline] == [
        "pay-é1", None, None, "pay-é1", "pay-é1",
    ]  # fmt: skip
    assert inline[4][1]["result"] == "dead_lettered"
    assert inline[4][1]["event_status"] == "dead_lettered"


async def test_accept_decides_the_per_source_limit_in_the_limiters_own_bucket(
    redis_server: RedisServer,
):
    # One call instead of two: the accept script decides the limit first, with the limiter's
    # lines and key, so both count against one bucket; a refusal stores nothing.
    await flush(redis_server.url)
    store = await open_store(redis_server.url)
    try:
        limiter = store.rate_limiter()
        assert store.decides_limits(limiter)
        assert not store.decides_limits(RedisLimiter(store.client, clock="caller"))
        assert not store.decides_limits(MemoryLimiter())
        rule = RateRule(rate=Rate.parse("1/m"), burst=3)
        limit = AcceptLimit("source:payments", rule)
        assert (await limiter.hit("source:payments", rule, T0)).remaining == 2
        first = await store.accept(make_event("evt_1"), ["m"], 60, T0, limit=limit)
        assert first.status == "queued"
        # A resend counts too, as it did when the limiter was called before the store.
        again = await store.accept(make_event("evt_1"), ["m"], 60, T0, limit=limit)
        assert again.status == "duplicate"
        with pytest.raises(LimitReached) as refused:
            await store.accept(make_event("evt_2"), ["m"], 60, T0, limit=limit)
        decision = refused.value.decision
        assert not decision.allowed and decision.limit == 3 and decision.remaining == 0
        assert 0 < decision.retry_after <= 60
        assert await store.get_event("evt_2") is None
        assert not (await limiter.hit("source:payments", rule, T0)).allowed
    finally:
        await store.close()


async def test_accept_decides_a_first_limit_before_the_per_source_one(
    redis_server: RedisServer,
):
    # The per-IP limit, when the accept decides it: in the limiter's own bucket, before the
    # per-source limit, which a request it refuses does not consume; nothing is stored.
    await flush(redis_server.url)
    store = await open_store(redis_server.url)
    try:
        limiter = store.rate_limiter()
        ip_rule = RateRule(rate=Rate.parse("1/m"), burst=2)
        source_rule = RateRule(rate=Rate.parse("1/m"), burst=5)
        ip = AcceptLimit("ip:payments:10.0.0.1", ip_rule)
        source = AcceptLimit("source:payments", source_rule)
        assert (await limiter.hit("ip:payments:10.0.0.1", ip_rule, T0)).remaining == 1
        accepted = await store.accept(make_event("evt_1"), ["m"], 60, T0, limit=source, first=ip)
        assert accepted.status == "queued"
        with pytest.raises(LimitReached) as refused:
            await store.accept(make_event("evt_2"), ["m"], 60, T0, limit=source, first=ip)
        decision = refused.value.decision
        assert not decision.allowed and decision.limit == 2 and decision.remaining == 0
        assert await store.get_event("evt_2") is None
        # The per-source bucket saw the one accepted event only: four of five left.
        assert (await limiter.hit("source:payments", source_rule, T0)).remaining == 3
    finally:
        await store.close()


async def test_claim_decides_the_per_source_limit_first(redis_server: RedisServer):
    # Sync mode's claim takes the limit as accept does: one bucket with the limiter's, and a
    # refusal claims nothing.
    await flush(redis_server.url)
    store = await open_store(redis_server.url)
    try:
        limiter = store.rate_limiter()
        rule = RateRule(rate=Rate.parse("1/m"), burst=2)
        limit = AcceptLimit("source:payments", rule)
        assert await store.claim("payments", "k1", 10.0, T0, limit) == "claimed"
        assert await store.claim("payments", "k1", 10.0, T0, limit) == "in_progress"
        with pytest.raises(LimitReached) as refused:
            await store.claim("payments", "k2", 10.0, T0, limit)
        decision = refused.value.decision
        assert not decision.allowed and decision.limit == 2 and decision.remaining == 0
        assert not (await limiter.hit("source:payments", rule, T0)).allowed
        assert await store.claim("payments", "k2", 10.0, T0) == "claimed"  # k2 was left alone
    finally:
        await store.close()


async def test_on_a_cluster_the_limits_stay_apart(redis_cluster: RedisCluster):
    await flush_cluster(redis_cluster)
    store = await open_store(redis_cluster.url)
    try:
        assert not store.decides_limits(store.rate_limiter())
    finally:
        await store.close()


async def test_every_script_is_loaded_at_open_so_no_call_meets_noscript(
    redis_server: RedisServer,
):
    await flush(redis_server.url)
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        await client.script_flush()
        await client.config_resetstat()
        store = await open_store(redis_server.url)
        try:
            rule = RateRule(rate=Rate.parse("100/s"), burst=100)
            limiter = store.rate_limiter()
            await asyncio.gather(
                *(limiter.hit(f"ip:{n}", rule, T0) for n in range(20)),
                *(store.accept(make_event(f"evt_{n}"), ["m"], 60, T0) for n in range(20)),
            )
        finally:
            await store.close()
        stats = await client.info("commandstats")
        assert stats["cmdstat_evalsha"]["calls"] == 40
        assert stats["cmdstat_evalsha"]["failed_calls"] == 0
    finally:
        await client.aclose()


def _count_calls(store) -> Counter:
    """Count the store's script calls by script name."""
    calls: Counter = Counter()
    call = store._call

    async def counted(name, keys, args, **kw):
        calls[name] += 1
        return await call(name, keys, args, **kw)

    store._call = counted
    return calls


async def test_with_a_backlog_each_lease_starts_from_what_the_last_one_read(
    redis_server: RedisServer,
):
    # One partition: the lease script reads the next candidates once it has leased, so a
    # worker draining a backlog makes one script call per lease round, not two.
    await flush(redis_server.url)
    store = await open_store(redis_server.url)
    try:
        for n in range(20):
            await store.accept(make_event(f"evt_{n}"), ["a"], 60, T0 + n / 100)
        calls = _count_calls(store)
        taken = []
        for _ in range(5):
            taken += [lease.event.id for lease in await store.lease_due(T0 + 1, 30, 4, "w")]
        assert sorted(taken) == sorted(f"evt_{n}" for n in range(20))
        assert taken[:4] == ["evt_0", "evt_1", "evt_2", "evt_3"]  # the oldest first
        assert calls == {"due": 1, "lease": 5}
        assert await store.lease_due(T0 + 1, 30, 4, "w") == []
    finally:
        await store.close()


async def test_candidates_read_ahead_and_taken_by_another_worker_are_read_afresh(
    redis_server: RedisServer,
):
    await flush(redis_server.url)
    one, other = await open_store(redis_server.url), await open_store(redis_server.url)
    try:
        for n in range(20):
            await one.accept(make_event(f"evt_{n}"), ["a"], 60, T0 + n / 100)
        first = await one.lease_due(T0 + 1, 30, 4, "one")  # reads ahead evt_4 to evt_11
        taken = await other.lease_due(T0 + 1, 30, 8, "other")  # takes exactly those
        calls = _count_calls(one)
        again = await one.lease_due(T0 + 1, 30, 4, "one")
        # Nothing read ahead was left: the lease call that found so reads again, and a second
        # one takes the next four from that read. None is leased twice.
        assert [lease.event.id for lease in again] == [f"evt_{n}" for n in range(12, 16)]
        assert calls == {"lease": 2}
        ids = [lease.delivery_id for lease in (*first, *taken, *again)]
        assert len(set(ids)) == len(ids) == 16
    finally:
        await one.close()
        await other.close()
