"""Analytics rollups on every store (design.md 5.9): counted in the step that makes each change,
per source and UTC hour, amounts exact in every currency and scale."""

from __future__ import annotations

import asyncio
import random
from dataclasses import replace
from decimal import Decimal, localcontext
from importlib import resources

import pytest
import redis.asyncio as aioredis
from hypothesis import given
from hypothesis import strategies as st

from gateway.analytics.report import report
from gateway.analytics.rollup import Rollup, bin_of
from gateway.payments.amounts import Amount
from gateway.payments.rules import PaymentFacts
from gateway.store import Attempt, Store
from gateway.store.redis.scripts import ROLLUP_CONSTANTS
from harness.redis_server import RedisServer
from tests.fuzz.settings import fuzz

from .conftest import T0, flush, make_event

WINDOW = 3600.0
LEASE = 30.0
H0 = int(T0 // 3600)  # 2023-11-14 22:00 UTC
EUR = Amount(1999, 2, "EUR")


def paid(
    event_id: str, key: str, state: str | None, *, at: float = T0, amount=None, source="payments"
):
    facts = PaymentFacts(key, f"offer-{key}", state, amount, "enforce")  # type: ignore[arg-type]
    event = make_event(event_id, received_at=at, type=f"payment.{state or 'note'}", source=source)
    return replace(event, payment=facts)


def ok(at: float) -> Attempt:
    return Attempt(1, at, 200, 0.05, None, "ok")


async def hours(store: Store, sources=("payments",)) -> Rollup:
    return await store.rollups(H0 - 48, H0 + 48, list(sources))


async def test_a_payment_moves_its_count_from_one_state_to_the_other(store: Store):
    await store.accept(paid("e1", "p1", "pending"), ["m"], WINDOW, T0)
    rollup = await hours(store)
    assert rollup.counts == {H0: {"fs": 1, "st:pending": 1}}
    # Completed two hours later, with its amount.
    later = T0 + 7200
    await store.accept(paid("e2", "p1", "completed", at=later, amount=EUR), ["m"], WINDOW, later)
    rollup = await hours(store)
    assert rollup.counts[H0 + 2] == {
        "st:pending": -1,
        "st:completed": 1,
        f"tt:{bin_of(7200)}": 1,
    }
    assert rollup.amounts == {H0 + 2: {("EUR", 2): 1999}}
    # Summed over the range, the payment is in one state: completed.
    states: dict[str, int] = {}
    for fields in rollup.counts.values():
        for name, n in fields.items():
            if name.startswith("st:"):
                states[name] = states.get(name, 0) + n
    assert {k: v for k, v in states.items() if v} == {"st:completed": 1}
    # A late event (superseded) and a conflicting one change nothing.
    before = await hours(store)
    await store.accept(paid("e3", "p1", "pending", at=later + 1), ["m"], WINDOW, later + 1)
    await store.accept(paid("e4", "p1", "failed", at=later + 2), ["m"], WINDOW, later + 2)
    assert await hours(store) == before


async def test_an_amount_changed_while_completed_moves_the_difference(store: Store):
    await store.accept(paid("e1", "p", "completed", amount=EUR), ["m"], WINDOW, T0)
    again = T0 + 3600
    bigger = Amount(2500, 2, "EUR")
    await store.accept(paid("e2", "p", "completed", at=again, amount=bigger), ["m"], WINDOW, again)
    rollup = await hours(store)
    assert rollup.amounts == {H0: {("EUR", 2): 1999}, H0 + 1: {("EUR", 2): 501}}
    assert H0 + 1 not in rollup.counts, "the payment was completed already: no count moves"
    document = report(rollup, T0 - 3600, T0 + 7200, "day")
    assert document["totals"]["completed_amounts"] == {"EUR": "25.00"}
    assert document["totals"]["payments"]["completed"] == 1


async def test_amounts_in_currencies_and_scales_add_up_exactly(store: Store):
    """Against a plain sum of Decimals: values past 64 bits, several scales of one currency."""
    rng = random.Random(7)
    expected: dict[str, Decimal] = {}
    accepts = []
    for n in range(60):
        currency = rng.choice(["EUR", "USD", "XRP", "JPY", "µBTC"])
        scale = rng.choice([0, 2, 9, 18])
        value = rng.choice([1, 1999, 10**19 + 7, 10**30 - 1, rng.randrange(10**12)])
        amount = Amount(value, scale, currency)
        with localcontext(prec=200):  # a plain sum of Decimals, with room for every digit
            expected[currency] = expected.get(currency, Decimal(0)) + Decimal(value).scaleb(-scale)
        accepts.append(paid(f"e{n}", f"pay-{n}", "completed", amount=amount))
    for event in accepts:
        assert (await store.accept(event, ["m"], WINDOW, T0)).status == "queued"
    document = report(await hours(store), T0, T0 + 1, "hour")
    totals = document["totals"]["completed_amounts"]
    assert {c: Decimal(v) for c, v in totals.items()} == expected
    assert document["totals"]["payments"] == {
        "first_seen": 60, "completed": 60, "failed": 0, "expired": 0, "cancelled": 0
    }  # fmt: skip


async def test_buckets_split_at_midnight_utc(store: Store):
    midnight = (T0 // 86400 + 1) * 86400  # 2023-11-15 00:00 UTC
    before, after = midnight - 1800, midnight + 1800
    await store.accept(paid("e1", "a", "completed", at=before, amount=EUR), ["m"], WINDOW, before)
    await store.accept(paid("e2", "b", "failed", at=after), ["m"], WINDOW, after)
    await store.accept(paid("e3", "c", "completed", at=after, amount=EUR), ["m"], WINDOW, after)
    rollup = await store.rollups(int(before // 3600), int(after // 3600), ["payments"])
    document = report(rollup, before - 86400, after + 3600, "day")
    by_day = {b["start"]: b for b in document["buckets"]}
    first, second = by_day["2023-11-14T00:00:00.000Z"], by_day["2023-11-15T00:00:00.000Z"]
    assert (first["payments"]["completed"], first["completed_amounts"]) == (1, {"EUR": "19.99"})
    assert (second["payments"]["completed"], second["payments"]["failed"]) == (1, 1)
    assert second["success_ratio"] == 0.5
    # A read of the later day alone holds nothing of the earlier one.
    alone = await store.rollups(int(midnight // 3600), int(midnight // 3600) + 23, ["payments"])
    assert set(alone.counts) == {int(after // 3600)}


async def test_sources_are_kept_apart_and_summed_on_request(store: Store):
    await store.accept(paid("e1", "p", "completed", amount=EUR), ["m"], WINDOW, T0)
    await store.accept(
        paid("e2", "p", "completed", amount=Amount(5, 0, "EUR"), source="rafiki"), ["m"], WINDOW, T0
    )
    assert (await hours(store, ["payments"])).amounts == {H0: {("EUR", 2): 1999}}
    assert (await hours(store, ["rafiki"])).amounts == {H0: {("EUR", 0): 5}}
    both = report(await hours(store, ["payments", "rafiki"]), T0, T0 + 1, "hour")
    assert both["totals"]["completed_amounts"] == {"EUR": "24.99"}
    assert (await hours(store, [])).counts == {}


async def test_deliveries_count_outcomes_and_arrival_to_delivery_time(store: Store):
    await store.accept(make_event("d1"), ["m"], WINDOW, T0)
    await store.accept(make_event("d2"), ["m"], WINDOW, T0)
    await store.accept(make_event("d3"), ["m"], WINDOW, T0)
    leases = {lease.event.id: lease for lease in await store.lease_due(T0 + 30, LEASE, 10, "w")}
    assert await store.complete(leases["d1"], ok(T0 + 30))
    assert await store.reschedule(leases["d2"], Attempt(1, T0 + 30, 500, 0.05, None, ""), T0 + 60)
    assert await store.dead_letter(leases["d3"], Attempt(1, T0 + 30, 500, 0.05, None, ""), "no")
    # A sync event is delivered in its commit.
    sync = make_event("s1", key="s1")
    assert await store.claim("payments", "s1", 10.0, T0) == "claimed"
    await store.commit(sync, ["m"], WINDOW, T0 + 2, ok(T0 + 1))
    fields = (await hours(store)).counts[H0]
    assert (fields["dv"], fields["dd"]) == (2, 1)
    assert fields[f"dl:{bin_of(30.05)}"] == 1  # arrival to the end of the attempt
    assert sum(n for name, n in fields.items() if name.startswith("dl:")) == 2


async def test_a_payment_only_a_reconciliation_knows_is_first_seen_pending(store: Store):
    await store.mark_missing("payments", "lost-1", "offer-9", True, T0)
    await store.mark_missing("payments", "lost-1", "offer-9", True, T0 + 10)  # flagged again
    assert (await hours(store)).counts == {H0: {"fs": 1, "st:pending": 1}}
    await store.accept(paid("e1", "lost-1", "completed", amount=EUR), ["m"], WINDOW, T0 + 20)
    fields = (await hours(store)).counts[H0]
    assert (fields["fs"], fields["st:pending"], fields["st:completed"]) == (1, 0, 1)


async def test_concurrent_accepts_count_each_payment_once(store: Store):
    events = [paid(f"c{n}", f"pay-{n % 25}", "completed", amount=EUR) for n in range(100)]
    results = await asyncio.gather(*(store.accept(e, ["m"], WINDOW, T0) for e in events))
    assert all(r.status == "queued" for r in results)
    fields = (await hours(store)).counts[H0]
    assert (fields["fs"], fields["st:completed"]) == (25, 25)
    assert (await hours(store)).amounts[H0] == {("EUR", 2): 25 * 1999}


# -- rollup.lua's arithmetic, against Python's integers ---------------------------------------


@pytest.fixture(scope="module")
def redis_url(request: pytest.FixtureRequest) -> str:
    server: RedisServer = request.getfixturevalue("redis_server")
    return server.url


_BIGADD = (
    ROLLUP_CONSTANTS
    + (resources.files("gateway.store.redis") / "lua" / "rollup.lua").read_text()
    + "\nreturn bigadd(ARGV[1], ARGV[2])\n"
)


@fuzz(300)
@given(st.integers(-(10**45), 10**45), st.integers(-(10**45), 10**45))
def test_lua_adds_whole_numbers_of_any_size_exactly(redis_url, a, b):
    async def run() -> str:
        client = aioredis.Redis.from_url(redis_url)
        try:
            return (await client.eval(_BIGADD, 0, str(a), str(b))).decode()
        finally:
            await client.aclose()

    assert asyncio.run(run()) == str(a + b)


async def test_the_redis_rollup_lives_in_its_day_hash(redis_server: RedisServer):
    from gateway.store import open_store

    await flush(redis_server.url)
    store = await open_store(redis_server.url)
    try:
        await store.accept(paid("e1", "p", "completed", amount=EUR), ["m"], WINDOW, T0)
    finally:
        await store.close()
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        key = f"wg:{{q}}:an:{int(T0 // 86400)}:payments"
        fields = await client.hgetall(key)
        assert fields[f"{H0 % 24}|am|2|EUR".encode()] == b"1999"
        assert 0 < await client.ttl(key) <= 400 * 86400
    finally:
        await client.aclose()
