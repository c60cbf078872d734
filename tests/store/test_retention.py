"""Retention (design.md 5.4): finished events are pruned after ``store.retention``, in batches."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path
from typing import Any, cast

import pytest
import redis.asyncio as aioredis

from gateway.app import PRUNER, STORE, create_app
from gateway.errors import ConfigError, StoreError
from gateway.store import Attempt, EventNotFound, Store, open_store
from gateway.store.retention import Pruner
from harness.redis_server import RedisServer
from tests.support import build_config, config_dict, payments_source

from .conftest import T0, flush, make_event

DAY = 86400.0


# -- config --------------------------------------------------------------------------------------


def _config(retention: object | None, **source: Any):
    data = config_dict("http://127.0.0.1:8000/hook", store_url="sqlite:///x.db")
    if retention is not None:
        data["store"]["retention"] = retention
    data["sources"]["payments"] = payments_source(**source)
    return build_config(data)


def test_retention_defaults_to_30_days_and_takes_a_duration():
    assert _config(None).store.retention == 30 * DAY
    assert _config("7d").store.retention == 7 * DAY
    assert "retention=604800.0" in repr(_config("7d").store)


@pytest.mark.parametrize("retention", ["71h", "0s"])
def test_retention_shorter_than_a_dedupe_window_is_refused(retention: str):
    with pytest.raises(ConfigError) as info:
        _config(retention)  # the payments source dedupes for 72h
    [problem] = info.value.problems
    assert problem.key == "store.retention"


def test_retention_is_checked_against_the_longest_window():
    data = config_dict("http://127.0.0.1:8000/hook", store_url="sqlite:///x.db")
    data["store"]["retention"] = "4d"
    data["sources"]["payments"] = payments_source()
    data["sources"]["other"] = payments_source(
        path="/hooks/other", dedupe={"key": "header:webhook-id", "window": "5d"}
    )
    with pytest.raises(ConfigError) as info:
        build_config(data)
    [problem] = info.value.problems
    assert problem.key == "store.retention"
    assert "sources.other.dedupe.window" in problem.message
    data["store"]["retention"] = "5d"
    assert build_config(data).store.retention == 5 * DAY


def test_retention_must_be_a_duration():
    with pytest.raises(ConfigError) as info:
        _config("soon")
    assert [p.key for p in info.value.problems] == ["store.retention"]


# -- the store contract: prune(before, limit) ----------------------------------------------------

WINDOW = 3600.0
LEASE = 30.0


def ok(at: float = T0) -> Attempt:
    return Attempt(1, at, 200, 0.05, None, "ok")


async def deliver_all(store: Store, now: float) -> None:
    """Complete every delivery due at ``now``."""
    for lease in await store.lease_due(now, LEASE, 100, "w"):
        assert await store.complete(lease, ok(now))


async def ids(store: Store, **filters: Any) -> set[str]:
    events, cursor = await store.list_events(limit=100, **filters)
    assert cursor is None
    return {e.id for e in events}


async def test_prune_deletes_only_finished_events_received_before_the_cutoff(store: Store):
    old, new = T0, T0 + 100
    await store.accept(make_event("delivered", received_at=old), ["m"], WINDOW, old)
    await store.accept(make_event("unrouted", received_at=old), [], WINDOW, old)
    await store.accept(make_event("dead", received_at=old), ["m"], WINDOW, old)
    await store.accept(make_event("on_cutoff", received_at=new), ["m"], WINDOW, new)
    leases = {lease.event.id: lease for lease in await store.lease_due(new, LEASE, 10, "w")}
    assert await store.complete(leases["delivered"], ok(new))
    assert await store.complete(leases["on_cutoff"], ok(new))
    assert await store.dead_letter(leases["dead"], Attempt(1, new, 400, 0.1), "HTTP 400")
    # Added after the lease round: one stays due, one is left leased. The one due waits for
    # a destination of its own: a success on "m" would release its backoff.
    await store.accept(make_event("queued", received_at=old), ["q"], WINDOW, new)
    await store.accept(make_event("leased", received_at=old), ["m", "n"], WINDOW, new)
    for lease in await store.lease_due(new, LEASE, 10, "w"):
        if lease.event.id == "leased" and lease.destination == "m":
            assert await store.complete(lease, ok(new))  # one done, the other still leased
        elif lease.event.id == "queued":
            assert await store.reschedule(lease, Attempt(1, new, 503, 0.1), new + 60)
    depth = await store.queue_depth()

    assert await store.prune(new, 100) == 2  # received before `new` and finished
    assert await store.prune(new, 100) == 0  # idempotent
    assert await ids(store) == {"dead", "on_cutoff", "queued", "leased"}
    assert await store.get_event("delivered") is None
    assert await store.get_event("unrouted") is None
    assert await ids(store, status="delivered") == {"on_cutoff"}
    assert await ids(store, status="unrouted") == set()
    assert await ids(store, source="payments") == {"dead", "on_cutoff", "queued", "leased"}
    with pytest.raises(EventNotFound):
        await store.replay("delivered", ["m"], new)
    # What is kept is untouched: dead letters, queue, deliveries and attempts.
    [dead], _ = await store.list_dead_letters()
    assert dead.event_id == "dead"
    assert await store.queue_depth() == depth
    view = await store.get_event("dead")
    assert view is not None and view.deliveries[0].attempts == (Attempt(1, new, 400, 0.1),)
    # Once finished, a kept event goes at the next prune.
    assert await store.redrive(None, new) == 1
    await deliver_all(store, new)
    assert await store.prune(new, 100) == 1
    assert await ids(store) == {"on_cutoff", "queued", "leased"}


async def test_prune_takes_at_most_limit_events_per_call(store: Store):
    for i in range(3):
        at = T0 + i
        await store.accept(make_event(f"d{i}", received_at=at), ["m"], WINDOW, at)
        await store.accept(make_event(f"u{i}", received_at=at), [], WINDOW, at)
    await deliver_all(store, T0 + 5)
    counts = [await store.prune(T0 + 10, 4) for _ in range(3)]
    assert counts == [4, 2, 0]
    assert await ids(store) == set()
    assert await store.prune(T0 + 10, 0) == 0


async def test_prune_takes_the_oldest_first(store: Store):
    for i in range(4):
        at = T0 + 10 * i
        await store.accept(make_event(f"evt_{i}", received_at=at), [], WINDOW, at)
    assert await store.prune(T0 + 100, 2) == 2
    assert await ids(store) == {"evt_2", "evt_3"}


async def test_dedupe_outlives_a_pruned_event(store: Store):
    # The loader keeps retention >= window; the store leaves dedupe to its own expiry anyway.
    await store.accept(make_event("evt_q", key="kq"), ["m"], WINDOW, T0)
    await deliver_all(store, T0)
    assert await store.claim("payments", "ks", 10.0, T0) == "claimed"
    await store.commit(make_event("evt_s", key="ks"), ["m"], WINDOW, T0, ok())
    assert await store.prune(T0 + 1, 100) == 2
    assert await ids(store) == set()
    dup = await store.accept(make_event("evt_other", key="kq"), ["m"], WINDOW, T0 + 2)
    assert (dup.status, dup.event_id) == ("duplicate", "evt_q")
    assert await store.claim("payments", "ks", 10.0, T0 + 2) == "done"
    later = T0 + WINDOW + 1
    again = await store.accept(
        make_event("evt_q", key="kq", received_at=later), ["m"], WINDOW, later
    )
    assert again.status == "queued"
    assert await ids(store) == {"evt_q"}


# -- nothing left behind ---------------------------------------------------------------------------


async def scan(url: str) -> set[bytes]:
    client = aioredis.Redis.from_url(url)
    try:
        return {key async for key in client.scan_iter(match="wg:{q}:*", count=1000)}
    finally:
        await client.aclose()


async def test_redis_prune_leaves_no_orphan_keys(redis_server: RedisServer):
    await flush(redis_server.url)
    store = await open_store(redis_server.url)
    try:
        await store.accept(make_event("keep", source="other"), ["m"], WINDOW, T0)
        [kept] = await store.lease_due(T0, LEASE, 10, "w")  # held until T0 + LEASE
        before = await scan(redis_server.url)
        # Fan-out, retries, an unrouted event, a sync commit and a replay, all finished.
        await store.accept(make_event("evt_1"), ["a", "b"], WINDOW, T0)
        await store.accept(make_event("evt_2"), [], WINDOW, T0)
        await store.claim("payments", "evt_3", 10.0, T0)
        await store.commit(make_event("evt_3"), ["a"], WINDOW, T0, ok())
        for lease in await store.lease_due(T0, LEASE, 10, "w"):
            if lease.event.id == "evt_1":
                assert await store.reschedule(lease, Attempt(1, T0, 503, 0.1), T0 + 1)
        await store.replay("evt_3", ["b"], T0 + 1)
        for lease in await store.lease_due(T0 + 1, LEASE, 10, "w"):
            assert await store.complete(lease, ok(T0 + 1))
        assert await store.prune(T0 + 1, 100) == 3
        after = await scan(redis_server.url)
        left = {key.decode().removeprefix("wg:{q}:") for key in after - before}
        # Only the dedupe entries stay, to expire with their window (and the dashboard's
        # minute counters and change log, bounded by their own TTL and length, and the
        # analytics rollups of the day, which outlive events by design: 400 days).
        rollups = f"an:{int(T0 // 86400)}:payments"
        assert left - {f"stats:{int(T0 // 60)}", rollups} == {
            "dd:payments\nevt_1",
            "dd:payments\nevt_2",
            "dd:payments\nevt_3",
        } | {
            "sid:payments\nevt_1",
            "sid:payments\nevt_2",
            "sid:payments\nevt_3",
        }
        assert before <= after
        assert await ids(store) == {"keep"}
        assert await store.complete(kept, ok(T0 + 2))  # the kept event is whole
        assert await store.prune(T0 + 1, 100) == 1
        rest = {key.decode().removeprefix("wg:{q}:") for key in await scan(redis_server.url)}
        assert {key.split(":")[0] for key in rest} == {
            "dd", "sid", "depth", "stats", "changes", "an"
        }  # fmt: skip
    finally:
        await store.close()


async def test_sqlite_prune_deletes_the_rows(tmp_path: Path):
    path = tmp_path / "gateway.db"
    store = await open_store(f"sqlite:///{path}")
    try:
        await store.accept(make_event("keep"), ["m"], WINDOW, T0)
        await store.accept(make_event("evt_1"), ["a", "b"], WINDOW, T0)
        await store.accept(make_event("evt_2"), [], WINDOW, T0)
        for lease in await store.lease_due(T0, LEASE, 10, "w"):
            if lease.event.id == "evt_1":
                assert await store.reschedule(lease, Attempt(1, T0, 503, 0.1), T0 + 1)
        for lease in await store.lease_due(T0 + 1, LEASE, 10, "w"):
            if lease.event.id == "evt_1":
                assert await store.complete(lease, ok(T0 + 1))
        assert await store.prune(T0 + 1, 100) == 2
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT id FROM events").fetchall() == [("keep",)]
        [(keep_uid,)] = conn.execute("SELECT uid FROM events").fetchall()
        deliveries = conn.execute("SELECT event_uid FROM deliveries").fetchall()
        assert deliveries == [(keep_uid,)]
        assert conn.execute("SELECT COUNT(*) FROM attempts").fetchone() == (0,)
        dedupe = conn.execute("SELECT key FROM dedupe ORDER BY key").fetchall()
        assert dedupe == [("evt_1",), ("evt_2",), ("keep",)]


# -- the pruner every process runs ---------------------------------------------------------------


class CountingStore:
    """A store stand-in for ``prune`` only: answers from a script and counts the calls."""

    def __init__(self, answers: list[int | StoreError], then: int = 0) -> None:
        self.answers = answers
        self.then = then
        self.calls: list[tuple[float, int]] = []
        self.called = asyncio.Event()

    async def prune(self, before: float, limit: int) -> int:
        self.calls.append((before, limit))
        self.called.set()
        answer = self.answers.pop(0) if self.answers else self.then
        if isinstance(answer, StoreError):
            raise answer
        return answer


async def test_pruner_prunes_batch_by_batch_at_the_retention_cutoff(
    store: Store, caplog: pytest.LogCaptureFixture
):
    for i in range(5):
        await store.accept(make_event(f"old_{i}", received_at=T0 + i), [], WINDOW, T0 + i)
    await store.accept(make_event("young", received_at=T0 + 50), [], WINDOW, T0 + 50)
    pruner = Pruner(store, 3 * DAY, clock=lambda: T0 + 3 * DAY + 10, batch=2)
    with caplog.at_level(logging.INFO, logger="gateway.store"):
        assert await pruner.prune_once() == 5
    assert await ids(store) == {"young"}
    [record] = [r for r in caplog.records if r.name == "gateway.store"]
    assert record.levelno == logging.INFO
    assert record.getMessage().startswith("pruned 5 finished events received before")
    assert await pruner.prune_once() == 0


async def test_pruner_runs_until_stopped_and_survives_store_failures(
    caplog: pytest.LogCaptureFixture,
):
    fake = CountingStore([StoreError("down"), 3, 1])
    pruner = Pruner(cast(Store, fake), DAY, clock=lambda: T0, interval=0, first_delay=0, batch=3)
    task = asyncio.create_task(pruner.run())
    while len(fake.calls) < 4:  # failed run, then a run of two batches (3 then 1), then more
        fake.called.clear()
        await asyncio.wait_for(fake.called.wait(), 30)
    pruner.stop()
    await asyncio.wait_for(task, 30)
    assert fake.calls[:3] == [(T0 - DAY, 3)] * 3
    assert "pruning old events failed: down" in caplog.text


async def test_pruner_stop_interrupts_a_long_backlog():
    fake = CountingStore([], then=10)  # always a full batch: the backlog never ends
    pruner = Pruner(cast(Store, fake), DAY, clock=lambda: T0, batch=10)
    job = asyncio.create_task(pruner.prune_once())
    while len(fake.calls) < 3:
        fake.called.clear()
        await asyncio.wait_for(fake.called.wait(), 30)
    pruner.stop()
    assert await asyncio.wait_for(job, 30) >= 30


async def test_the_app_prunes_with_the_configured_retention(aiohttp_client: Any, tmp_path: Path):
    data = config_dict("http://127.0.0.1:9/hook", store_url=f"sqlite:///{tmp_path}/g.db")
    data["store"]["retention"] = "4d"
    now = T0 + 4 * DAY + 1
    app = create_app(build_config(data), clock=lambda: now, workers=False)
    await aiohttp_client(app)
    await app[STORE].accept(make_event("old", received_at=T0), [], WINDOW, T0)
    await app[STORE].accept(make_event("young", received_at=T0 + 2), [], WINDOW, T0 + 2)
    assert await app[PRUNER].prune_once() == 1
    assert await ids(app[STORE]) == {"young"}
