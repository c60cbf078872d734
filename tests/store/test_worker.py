"""The delivery worker against a real store and a real HTTP destination, on an injected clock."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway.delivery.retry import RetryPolicy, is_retryable
from gateway.delivery.worker import DeliveryWorker
from gateway.store import Attempt, Lease, Store
from gateway.store.records import excerpt
from tests.waiting import eventually

from .conftest import T0, make_event

Observed = list[tuple[Any, ...]]


class Clock:
    """A clock that moves only when the test says so."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Destination:
    """A destination that answers the statuses it is given, in order (the last one repeats)."""

    def __init__(self, *statuses: int, body: bytes = b"nope") -> None:
        self.statuses = list(statuses)
        self.body = body
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.hold: asyncio.Event | None = None
        self.arrived = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((dict(request.headers), await request.read()))
        self.arrived.set()
        if self.hold is not None:
            await self.hold.wait()
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return web.Response(status=status, body=self.body)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        return app


@pytest.fixture
async def destination(aiohttp_server: Any):
    """Start a destination; the test sets its statuses."""
    dest = Destination(200)
    server = await aiohttp_server(dest.app())
    return dest, str(server.make_url("/hook"))


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


def make_send(session: aiohttp.ClientSession, url: str, clock: Clock):
    """A minimal send: POST the body, record the answer (the real one is gateway.delivery.forward)."""

    async def send(lease: Lease) -> Attempt:
        started = clock()
        headers = {"webhook-id": lease.event.id, "X-Gateway-Attempt": str(lease.attempt)}
        try:
            async with session.post(url, data=lease.event.body, headers=headers) as resp:
                body = await resp.read()
                return Attempt(
                    lease.attempt, started, resp.status, clock() - started, None, excerpt(body)
                )
        except aiohttp.ClientError as exc:
            return Attempt(lease.attempt, started, None, clock() - started, str(exc), "")

    return send


def worker_for(
    store: Store, send, policy: RetryPolicy, clock: Clock, observed: Observed
) -> DeliveryWorker:
    return DeliveryWorker(
        store,
        send,
        {"market": policy},
        clock=clock,
        worker_id="w1",
        concurrency=4,
        lease=30.0,
        observer=lambda *args: observed.append(args),
        rng=random.Random(7),
    )


NO_JITTER = RetryPolicy(schedule=(5, 30, 120), jitter=0.0)


async def test_retries_follow_the_schedule_then_dead_letter(store: Store, destination, http):
    dest, url = destination
    dest.statuses = [503]
    clock = Clock()
    observed: Observed = []
    worker = worker_for(store, make_send(http, url, clock), NO_JITTER, clock, observed)
    await store.accept(make_event(), ["market"], 3600, T0)

    schedule = [T0, T0 + 5, T0 + 35, T0 + 155]  # 5 s, 30 s, 120 s after each failure
    for n, at in enumerate(schedule, start=1):
        clock.now = at - 0.01
        assert await worker.run_once() == 0, f"attempt {n} came early"
        clock.now = at
        assert await worker.run_once() == 1
        assert dest.requests[-1][0]["X-Gateway-Attempt"] == str(n)
    clock.now = T0 + 10**6
    assert await worker.run_once() == 0
    assert len(dest.requests) == 4

    view = await store.get_event("evt_1")
    assert view is not None
    [delivery] = view.deliveries
    assert delivery.state == "dead"
    assert [a.status for a in delivery.attempts] == [503] * 4
    assert [a.started_at for a in delivery.attempts] == schedule
    assert delivery.dead_reason == "gave up after 4 attempts, last answer HTTP 503"
    assert [o[0] for o in observed] == ["retried"] * 3 + ["dead_lettered"]
    assert {(o[1], o[3]) for o in observed} == {("market", T0)}


async def test_success_after_a_retry_completes(store: Store, destination, http):
    dest, url = destination
    dest.statuses = [500, 204]
    clock = Clock()
    observed: Observed = []
    worker = worker_for(store, make_send(http, url, clock), NO_JITTER, clock, observed)
    await store.accept(make_event(), ["market"], 3600, T0)
    await worker.run_once()
    clock.now = T0 + 5
    await worker.run_once()
    view = await store.get_event("evt_1")
    assert view is not None
    assert view.status == "delivered"
    assert [a.status for a in view.deliveries[0].attempts] == [500, 204]
    assert [o[0] for o in observed] == ["retried", "delivered"]
    assert await store.queue_depth() == {}


@pytest.mark.parametrize("status", [400, 401, 404, 410, 422])
async def test_a_4xx_is_dead_lettered_at_once_with_the_response(
    store: Store, destination, http, status: int
):
    dest, url = destination
    dest.statuses, dest.body = [status], b'{"detail":"unknown offer"}'
    clock = Clock()
    observed: Observed = []
    worker = worker_for(store, make_send(http, url, clock), NO_JITTER, clock, observed)
    await store.accept(make_event(), ["market"], 3600, T0)
    assert await worker.run_once() == 1
    clock.now = T0 + 10**6
    assert await worker.run_once() == 0
    assert len(dest.requests) == 1
    [dead], _ = await store.list_dead_letters()
    assert dead.reason == f"HTTP {status} is not retried"
    assert dead.last_attempt is not None
    assert dead.last_attempt.status == status
    assert dead.last_attempt.response_excerpt == '{"detail":"unknown offer"}'
    assert [o[0] for o in observed] == ["dead_lettered"]


@pytest.mark.parametrize("status", [408, 409, 425, 429, 500, 502, 503, 504])
async def test_retryable_statuses_are_rescheduled(store: Store, destination, http, status: int):
    dest, url = destination
    dest.statuses = [status]
    clock = Clock()
    observed: Observed = []
    worker = worker_for(store, make_send(http, url, clock), NO_JITTER, clock, observed)
    await store.accept(make_event(), ["market"], 3600, T0)
    await worker.run_once()
    assert await store.queue_depth() == {("market", "due"): 1}
    assert observed[0][0] == "retried"


async def test_unreachable_destination_is_retried(store: Store, http, unused_tcp_port: int):
    clock = Clock()
    observed: Observed = []
    url = f"http://127.0.0.1:{unused_tcp_port}/hook"
    worker = worker_for(store, make_send(http, url, clock), NO_JITTER, clock, observed)
    await store.accept(make_event(), ["market"], 3600, T0)
    await worker.run_once()
    view = await store.get_event("evt_1")
    assert view is not None
    [attempt] = view.deliveries[0].attempts
    assert attempt.status is None
    assert attempt.error
    assert view.deliveries[0].next_attempt_at == T0 + 5


async def test_max_age_dead_letters_before_max_attempts(store: Store, destination, http):
    dest, url = destination
    dest.statuses = [503]
    policy = RetryPolicy(schedule=(20,), max_attempts=100, max_age=30, jitter=0.0)
    clock = Clock()
    observed: Observed = []
    worker = worker_for(store, make_send(http, url, clock), policy, clock, observed)
    await store.accept(make_event(), ["market"], 3600, T0)
    await worker.run_once()  # next at T0 + 20: within 30 s of the first attempt
    clock.now = T0 + 20
    await worker.run_once()  # next would be T0 + 40: too old
    view = await store.get_event("evt_1")
    assert view is not None
    assert view.deliveries[0].state == "dead"
    assert view.deliveries[0].dead_reason == (
        "gave up: older than max_age (30 s), last answer HTTP 503"
    )
    assert len(dest.requests) == 2


async def test_jitter_spreads_retries_within_bounds(store: Store, destination, http):
    dest, url = destination
    dest.statuses = [503]
    policy = RetryPolicy(schedule=(100,), jitter=0.1)
    clock = Clock()
    worker = worker_for(store, make_send(http, url, clock), policy, clock, [])
    for i in range(8):
        await store.accept(make_event(f"evt_{i}"), ["market"], 3600, T0)
    while await worker.run_once():
        pass
    due = []
    for i in range(8):
        view = await store.get_event(f"evt_{i}")
        assert view is not None
        at = view.deliveries[0].next_attempt_at
        assert at is not None
        due.append(at)
    assert all(T0 + 90 <= at <= T0 + 110 for at in due)
    assert len(set(due)) > 1


async def test_a_failing_send_is_recorded_and_retried(store: Store):
    async def broken(lease: Lease) -> Attempt:
        raise RuntimeError("bug in send")

    clock = Clock()
    observed: Observed = []
    worker = worker_for(store, broken, NO_JITTER, clock, observed)
    await store.accept(make_event(), ["market"], 3600, T0)
    await worker.run_once()
    view = await store.get_event("evt_1")
    assert view is not None
    assert view.deliveries[0].state == "due"
    assert "bug in send" in (view.deliveries[0].attempts[0].error or "")


async def test_a_lost_lease_is_not_recorded_twice(store: Store):
    clock = Clock()
    observed: Observed = []

    async def slow(lease: Lease) -> Attempt:
        # While this worker "hangs", its lease expires and another worker delivers.
        [other] = await store.lease_due(lease.expires_at, 30.0, 10, "w2")
        await store.complete(other, Attempt(1, lease.expires_at, 200, 0.1))
        return Attempt(lease.attempt, T0, 200, 40.0)

    worker = worker_for(store, slow, NO_JITTER, clock, observed)
    await store.accept(make_event(), ["market"], 3600, T0)
    await worker.run_once()
    assert observed == []
    view = await store.get_event("evt_1")
    assert view is not None
    assert len(view.deliveries[0].attempts) == 1


async def test_run_delivers_and_stop_waits_for_in_flight(store: Store, destination, http):
    dest, url = destination
    dest.hold = asyncio.Event()
    observed: Observed = []
    worker = DeliveryWorker(
        store,
        make_send(http, url, Clock()),
        {"market": NO_JITTER},
        clock=time.time,
        worker_id="w1",
        concurrency=2,
        poll_interval=0.05,
        observer=lambda *args: observed.append(args),
    )
    await store.accept(make_event(), ["market"], 3600, time.time())
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(dest.arrived.wait(), 30)
    stopping = asyncio.create_task(worker.stop())
    await asyncio.sleep(0)
    assert not stopping.done()  # the delivery is still in flight
    dest.hold.set()
    await asyncio.wait_for(stopping, 30)
    await asyncio.wait_for(task, 30)
    view = await store.get_event("evt_1")
    assert view is not None
    assert view.status == "delivered"
    assert [o[0] for o in observed] == ["delivered"]


class _GatedLeases:
    """The real store, with lease_due held at a gate: stop() can land while it runs."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()

    async def lease_due(self, *args: Any, **kwargs: Any) -> list[Lease]:
        self.entered.set()
        await self.gate.wait()
        return await self.store.lease_due(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


async def test_deliveries_leased_while_stopping_finish_before_run_returns(
    store: Store, destination, http
):
    dest, url = destination
    gated = _GatedLeases(store)
    worker = DeliveryWorker(
        gated,  # type: ignore[arg-type]
        make_send(http, url, Clock()),
        {"market": NO_JITTER},
        clock=time.time,
        worker_id="w1",
        concurrency=2,
        poll_interval=0.05,
    )
    await store.accept(make_event(), ["market"], 3600, time.time())
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(gated.entered.wait(), 30)
    await worker.stop()  # nothing in flight yet: returns at once
    gated.gate.set()  # the lease that was under way comes back with a delivery
    await asyncio.wait_for(task, 30)
    # run() returned only after that delivery finished and was recorded.
    view = await store.get_event("evt_1")
    assert view is not None
    assert view.status == "delivered"
    assert len(dest.requests) == 1


class _CountedLeases:
    """The real store, with the number of deliveries each ``lease_due`` call returned."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.polls: list[int] = []

    async def lease_due(self, *args: Any, **kwargs: Any) -> list[Lease]:
        leases = await self.store.lease_due(*args, **kwargs)
        self.polls.append(len(leases))
        return leases

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def counted_worker(
    store: Store, session: aiohttp.ClientSession, url: str, **options: Any
) -> tuple[_CountedLeases, DeliveryWorker]:
    """A worker on ``store`` (its leases counted) on the real clock, polling every 50 ms
    unless ``options`` say otherwise."""
    counted = _CountedLeases(store)
    worker = DeliveryWorker(
        counted,
        make_send(session, url, Clock()),
        {"market": NO_JITTER},
        clock=time.time,
        worker_id="w1",
        **{"poll_interval": 0.05, **options},
    )
    return counted, worker


async def accept_backlog(store: Store, count: int) -> list[str]:
    """Accept events ``evt_0`` .. for the one destination; their ids."""
    ids = [f"evt_{n}" for n in range(count)]
    for event_id in ids:
        await store.accept(make_event(event_id), ["market"], 3600, time.time())
    return ids


async def assert_delivered(store: Store, ids: list[str]) -> None:
    for event_id in ids:
        view = await store.get_event(event_id)
        assert view is not None and view.status == "delivered", event_id


@contextlib.asynccontextmanager
async def running(worker: DeliveryWorker) -> AsyncIterator[None]:
    """``worker.run()`` for the block; stopped, and its run awaited, at the end."""
    task = asyncio.create_task(worker.run())
    try:
        yield
    finally:
        await worker.stop()
        await asyncio.wait_for(task, 30)


async def test_wake_makes_run_poll_at_once(store: Store, destination, http):
    dest, url = destination
    wake = asyncio.Event()
    counted, worker = counted_worker(
        store,
        http,
        url,
        poll_interval=3600,  # the second poll is an hour away: only a wake-up brings it now
        wake=wake,
    )
    task = asyncio.create_task(worker.run())
    try:
        # The first poll, at start, found nothing: the event is accepted after it.
        await eventually(lambda: counted.polls, "the worker's first poll")
        assert counted.polls == [0]
        await store.accept(make_event(), ["market"], 3600, time.time())
        wake.set()
        await eventually(lambda: dest.requests, "the delivery the wake-up starts", timeout=10)
        assert counted.polls == [0, 1]  # one more poll, the woken one, leased it
    finally:
        await worker.stop()
        await asyncio.wait_for(task, 30)


async def test_a_backlog_is_leased_a_quarter_of_the_slots_at_a_time(
    store: Store, destination, http
):
    _dest, url = destination
    counted, worker = counted_worker(store, http, url, concurrency=8)
    ids = await accept_backlog(store, 60)
    async with running(worker):
        await eventually(lambda: sum(counted.polls), "the backlog leased", until=lambda n: n == 60)
    # The first call fills every slot and as many more kept ready; the next ones wait for a
    # quarter of them (2) to free up, rather than leasing one delivery per call.
    busy = [size for size in counted.polls if size]
    assert busy[0] == 16, counted.polls
    assert min(busy[1:-1]) >= 2, counted.polls
    await assert_delivered(store, ids)


async def test_deliveries_are_leased_ahead_of_the_slots_but_sent_only_in_them(
    store: Store, destination, http
):
    dest, url = destination
    dest.hold = asyncio.Event()
    counted, worker = counted_worker(store, http, url, concurrency=4)
    ids = await accept_backlog(store, 10)
    async with running(worker):
        try:
            await eventually(lambda: len(dest.requests), "four POSTs held", until=lambda n: n == 4)
            # Four more than the slots are leased and kept ready; none is sent beyond the four.
            assert counted.polls[0] == 8, counted.polls
            await asyncio.sleep(0.2)
            assert len(dest.requests) == 4
            assert sum(counted.polls) == 8, counted.polls
        finally:
            dest.hold.set()
        await eventually(lambda: len(dest.requests), "every event sent", until=lambda n: n == 10)
    assert len(dest.requests) == 10
    await assert_delivered(store, ids)


async def test_a_delivery_kept_ready_too_long_is_left_to_its_lease(
    store: Store, destination, http, caplog: pytest.LogCaptureFixture
):
    dest, url = destination
    dest.hold = asyncio.Event()
    clock = Clock()
    worker = DeliveryWorker(
        store,
        make_send(http, url, clock),
        {"market": NO_JITTER},
        clock=clock,
        worker_id="w1",
        concurrency=1,
        poll_interval=0.05,
        lease=60.0,
        ready_for=5.0,
    )
    for event_id in ("evt_a", "evt_b"):
        await store.accept(make_event(event_id), ["market"], 3600, T0)
    async with running(worker):
        try:
            # One sent and held at the destination, one leased and kept ready.
            await eventually(lambda: len(dest.requests), "the first POST", until=lambda n: n == 1)
            clock.now = T0 + 10  # the ready one has now waited longer than ready_for
        finally:
            dest.hold.set()
        await eventually(
            lambda: [r for r in caplog.records if "waited" in r.getMessage()],
            "the warning for the delivery kept too long",
        )
        await asyncio.sleep(0.2)
        assert len(dest.requests) == 1  # not sent: its lease might end while it was
        clock.now = T0 + 61  # its lease has expired: leased again, and sent
        await eventually(lambda: len(dest.requests), "the second POST", until=lambda n: n == 2)
    sent = [headers["webhook-id"] for headers, _ in dest.requests]
    assert sorted(sent) == ["evt_a", "evt_b"]
    await assert_delivered(store, sent)


# -- the policy itself ---------------------------------------------------------------------------


def test_policy_schedule_and_exponential_fallback():
    assert NO_JITTER.attempts_allowed == 4
    assert [NO_JITTER.base_delay(n) for n in (1, 2, 3, 4)] == [5, 30, 120, 120]
    exp = RetryPolicy(schedule=(), initial=1, factor=2, max_delay=10, jitter=0)
    assert [exp.base_delay(n) for n in (1, 2, 3, 4, 5, 6)] == [1, 2, 4, 8, 10, 10]
    assert exp.next_attempt_at(10, T0, T0) is None
    assert exp.next_attempt_at(3, T0, T0 + 1) == T0 + 5


def test_retryable_statuses():
    assert [s for s in (None, 200, 400, 404, 408, 409, 410, 425, 429, 500, 503) if is_retryable(s)] == [
        None, 408, 409, 425, 429, 500, 503,
    ]  # fmt: skip
