"""Payments on every store (design.md 5.7): one row per payment, its state only moving forward,
decided in the accept's own atomic step, its money kept exactly."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import replace

import pytest

from gateway.payments.amounts import Amount
from gateway.payments.rules import PaymentFacts
from gateway.store import Attempt, Store, open_store
from harness.redis_server import RedisCluster, RedisServer

from .conftest import CLUSTER_PARTITIONS, T0, flush, flush_cluster, make_event

WINDOW = 3600.0
LEASE = 30.0
EUR = Amount(1999, 2, "EUR")


def paid(
    event_id: str,
    key: str,
    state: str | None,
    *,
    at: float = T0,
    reference: str | None = "offer-42",
    amount: Amount | None = None,
    order: str = "enforce",
    type: str | None = None,
):
    """An event of payment ``key`` reporting ``state``."""
    facts = PaymentFacts(key, reference, state, amount, order)  # type: ignore[arg-type]
    return replace(
        make_event(event_id, received_at=at, type=type or f"payment.{state or 'note'}"),
        payment=facts,
    )


def ok(at: float = T0) -> Attempt:
    return Attempt(1, at, 200, 0.05, None, "ok")


async def deliver_all(store: Store, now: float) -> None:
    for lease in await store.lease_due(now, LEASE, 100, "w"):
        assert await store.complete(lease, ok(now))


async def test_the_first_event_makes_the_payment(store: Store):
    result = await store.accept(paid("e1", "pend-1", "pending", amount=EUR), ["m"], WINDOW, T0)
    assert (result.status, result.mark, result.held) == ("queued", None, False)
    [payment], cursor = await store.list_payments()
    assert cursor is None
    assert (payment.source, payment.key, payment.reference) == ("payments", "pend-1", "offer-42")
    assert (payment.state, payment.amount, payment.events) == ("pending", EUR, 1)
    assert payment.amount is not None and payment.amount.decimal == "19.99"
    assert (payment.delivered, payment.attention) == (False, None)
    assert payment.first_seen == payment.updated_at == T0
    found = await store.get_payment("payments", "pend-1")
    assert found is not None
    view, events = found
    assert view == payment
    assert [(e.event.id, e.payment_key, e.mark, e.status) for e in events] == [
        ("e1", "pend-1", None, "queued")
    ]
    assert await store.get_payment("payments", "nobody") is None
    assert await store.get_payment("other", "pend-1") is None


async def test_the_state_moves_forward_and_a_late_event_is_held(store: Store):
    await store.accept(paid("e1", "p", "pending"), ["m"], WINDOW, T0)
    await store.accept(paid("e2", "p", "completed", at=T0 + 1, amount=EUR), ["m"], WINDOW, T0 + 1)
    late = await store.accept(
        paid("e3", "p", "pending", at=T0 + 2, amount=Amount(0, 2, "EUR")), ["m"], WINDOW, T0 + 2
    )
    assert (late.status, late.mark, late.held) == ("queued", "superseded", True)
    found = await store.get_payment("payments", "p")
    assert found is not None
    payment, events = found
    # The late event changed neither the state nor the money; it counts as an event.
    assert (payment.state, payment.amount, payment.events) == ("completed", EUR, 3)
    assert [(e.event.id, e.mark, e.status, len(e.deliveries)) for e in events] == [
        ("e1", None, "queued", 1),
        ("e2", None, "queued", 1),
        ("e3", "superseded", "held", 0),
    ]
    # Only the two unmarked events are delivered; a replay delivers the held one by hand.
    leased = await store.lease_due(T0 + 3, LEASE, 10, "w")
    assert sorted(lease.event.id for lease in leased) == ["e1", "e2"]
    for lease in leased:
        assert await store.complete(lease, ok(T0 + 3))
    [payment], _ = await store.list_payments()
    assert payment.delivered
    events, _ = await store.list_events(status="held")
    assert [e.id for e in events] == ["e3"]
    await store.replay("e3", ["m"], T0 + 4)
    [lease] = await store.lease_due(T0 + 4, LEASE, 10, "w")
    assert lease.event.id == "e3"
    assert await store.list_events(status="held") == ([], None)
    assert (await store.get_payment("payments", "p"))[0].delivered is False  # type: ignore[index]


async def test_another_terminal_state_is_a_conflict(store: Store):
    await store.accept(paid("e1", "p", "completed"), ["m"], WINDOW, T0)
    result = await store.accept(paid("e2", "p", "failed", at=T0 + 1), ["m"], WINDOW, T0 + 1)
    assert (result.mark, result.held) == ("conflict", True)
    # The same terminal state again is no conflict (a resend under another id).
    again = await store.accept(paid("e3", "p", "completed", at=T0 + 2), ["m"], WINDOW, T0 + 2)
    assert (again.mark, again.held) == (None, False)
    await store.accept(paid("e4", "q", "completed", at=T0 + 3), ["m"], WINDOW, T0 + 3)
    payment = (await store.get_payment("payments", "p"))[0]  # type: ignore[index]
    assert (payment.state, payment.attention) == ("completed", "conflict")
    flagged, _ = await store.list_payments(attention="conflict")
    assert [p.key for p in flagged] == ["p"]


async def test_order_record_marks_and_delivers(store: Store):
    await store.accept(paid("e1", "p", "completed", order="record"), ["m"], WINDOW, T0)
    result = await store.accept(
        paid("e2", "p", "pending", at=T0 + 1, order="record"), ["m"], WINDOW, T0 + 1
    )
    assert (result.mark, result.held) == ("superseded", False)
    leased = await store.lease_due(T0 + 2, LEASE, 10, "w")
    assert sorted(lease.event.id for lease in leased) == ["e1", "e2"]


async def test_reference_and_amount_follow_the_latest_unmarked_event(store: Store):
    await store.accept(paid("e1", "p", "pending", reference=None), ["m"], WINDOW, T0)
    payment = (await store.get_payment("payments", "p"))[0]  # type: ignore[index]
    assert (payment.reference, payment.amount) == (None, None)
    big = Amount(123456789012345678901234567890, 8, "BTC")
    await store.accept(
        paid("e2", "p", "processing", at=T0 + 1, reference="offer-7", amount=big),
        ["m"],
        WINDOW,
        T0 + 1,
    )
    # A later event without an amount or a reference keeps the ones the payment has.
    await store.accept(
        paid("e3", "p", "completed", at=T0 + 2, reference=None), ["m"], WINDOW, T0 + 2
    )
    payment = (await store.get_payment("payments", "p"))[0]  # type: ignore[index]
    assert (payment.state, payment.reference, payment.amount) == ("completed", "offer-7", big)
    assert payment.amount is not None
    assert payment.amount.decimal == "1234567890123456789012.34567890"
    found, _ = await store.list_payments(q="offer-7")
    assert [p.key for p in found] == ["p"]


async def test_three_payments_of_one_offer_are_three_rows(store: Store):
    for n, state in enumerate(["completed", "failed", "completed"]):
        await store.accept(paid(f"e{n}", f"pend-{n}", state, at=T0 + n), ["m"], WINDOW, T0 + n)
    await store.accept(make_event("plain", received_at=T0 + 9), ["m"], WINDOW, T0 + 9)
    rows, _ = await store.list_payments()
    assert [(p.key, p.state, p.reference) for p in rows] == [
        ("pend-2", "completed", "offer-42"),
        ("pend-1", "failed", "offer-42"),
        ("pend-0", "completed", "offer-42"),
    ]
    by_reference, _ = await store.list_payments(q="offer-4")
    assert len(by_reference) == 3
    by_key, _ = await store.list_payments(q="pend-1")
    assert [p.key for p in by_key] == ["pend-1"]
    failed, _ = await store.list_payments(state="failed")
    assert [p.key for p in failed] == ["pend-1"]
    assert (await store.list_payments(source="other")) == ([], None)
    seen, cursor = [], None
    while True:
        page, cursor = await store.list_payments(limit=1, cursor=cursor)
        seen += [p.key for p in page]
        if cursor is None:
            break
    assert seen == ["pend-2", "pend-1", "pend-0"]


async def test_a_dead_letter_needs_attention(store: Store):
    await store.accept(paid("e1", "p", "completed"), ["m"], WINDOW, T0)
    await store.accept(paid("e2", "q", "completed", at=T0 + 1), ["m"], WINDOW, T0 + 1)
    for lease in await store.lease_due(T0 + 2, LEASE, 10, "w"):
        if lease.event.id == "e1":
            assert await store.dead_letter(lease, Attempt(1, T0 + 2, 404, 0.1), "HTTP 404")
        else:
            assert await store.complete(lease, ok(T0 + 2))
    attention, _ = await store.list_payments(attention="dead_letter")
    assert [(p.key, p.attention, p.delivered) for p in attention] == [("p", "dead_letter", False)]
    rows, _ = await store.list_payments()
    assert {p.key: (p.attention, p.delivered) for p in rows} == {
        "p": ("dead_letter", False),
        "q": (None, True),
    }


async def test_a_payment_goes_with_its_last_pruned_event(store: Store):
    await store.accept(paid("e1", "p", "pending"), ["m"], WINDOW, T0)
    await store.accept(paid("e2", "p", "completed", at=T0 + 1), ["m"], WINDOW, T0 + 1)
    await store.accept(paid("e3", "p", "pending", at=T0 + 2), ["m"], WINDOW, T0 + 2)  # held
    await deliver_all(store, T0 + 3)
    assert await store.prune(T0 + 0.5, 100) == 1
    payment = (await store.get_payment("payments", "p"))[0]  # type: ignore[index]
    assert payment.events == 2
    assert await store.prune(T0 + 10, 100) == 2  # the held one is finished too
    assert await store.get_payment("payments", "p") is None
    assert await store.list_payments() == ([], None)
    assert await store.list_payments(q="p") == ([], None)
    assert await store.list_payments(state="completed") == ([], None)


async def test_any_order_of_a_lifecycle_ends_in_its_terminal_state(store: Store):
    lifecycle = ["pending", "processing", "completed"]
    for n, order in enumerate(itertools.permutations(lifecycle)):
        key = f"perm-{n}"
        for i, state in enumerate(order):
            at = T0 + 10 * n + i
            await store.accept(paid(f"{key}-{state}", key, state, at=at), ["m"], WINDOW, at)
        found = await store.get_payment("payments", key)
        assert found is not None
        payment, events = found
        assert payment.state == "completed", order
        # Every event that came after a later state is the one marked.
        expected = []
        best = -1
        for state in order:
            rank = lifecycle.index(state)
            expected.append(None if rank >= best else "superseded")
            best = max(best, rank)
        assert [e.mark for e in events] == expected, order


async def test_a_sync_commit_records_the_payment(store: Store):
    await store.commit(paid("s1", "p", "completed"), ["m"], WINDOW, T0, ok())
    await store.commit(paid("s2", "p", "pending", at=T0 + 1), ["m"], WINDOW, T0 + 1, ok())
    found = await store.get_payment("payments", "p")
    assert found is not None
    payment, events = found
    assert (payment.state, payment.delivered) == ("completed", True)
    # Forwarded already: marked, not held back.
    assert [(e.mark, e.status) for e in events] == [
        (None, "delivered"),
        ("superseded", "delivered"),
    ]


async def test_each_change_log_entry_names_its_payment(store: Store):
    # The buyer's status stream (design.md 5.10) learns from the entry alone which payment
    # changed: accepted, every delivery outcome, a sync commit, and none for a plain event.
    await store.accept(paid("e1", "pend-1", "pending"), ["m", "n"], WINDOW, T0)
    await store.accept(make_event("plain"), ["m"], WINDOW, T0)
    await store.commit(paid("s1", "pend-2", "completed"), ["m"], WINDOW, T0, ok())
    leases = sorted(await store.lease_due(T0, LEASE, 10, "w"), key=lambda x: x.event.id)
    outcomes = [store.complete, store.reschedule, store.dead_letter]
    for lease, finish in zip(leases, outcomes, strict=True):
        extra = {store.reschedule: (T0 + 60,), store.dead_letter: ("gone",)}.get(finish, ())
        assert await finish(lease, ok(), *extra)  # type: ignore[operator]
    changes = await store.changes("0-0", 100)
    named = [(c.kind, c.data["event_id"], c.payment) for c in changes]
    assert sorted(named, key=str) == sorted(
        [
            ("accepted", "e1", ("payments", "pend-1")),
            ("accepted", "plain", None),
            ("accepted", "s1", ("payments", "pend-2")),
            ("delivery", "s1", ("payments", "pend-2")),
            ("delivery", "e1", ("payments", "pend-1")),
            ("delivery", "e1", ("payments", "pend-1")),
            ("delivery", "plain", None),
        ],
        key=str,
    )
    assert all(c.data["payment_key"] is None for c in changes if c.payment is None)


async def test_find_payments_reads_each_payment_alone(store: Store):
    await store.accept(paid("e1", "p", "pending", amount=EUR), ["m"], WINDOW, T0)
    await store.accept(paid("e2", "q", "completed", at=T0 + 1), ["m"], WINDOW, T0 + 1)
    assert await store.find_payments([]) == []
    found = await store.find_payments(
        [("payments", "q"), ("payments", "nobody"), ("other", "p"), ("payments", "p")]
    )
    listed = {(v.source, v.key): v for v in (await store.list_payments())[0]}
    assert found == [listed["payments", "q"], None, None, listed["payments", "p"]]
    assert found[3] is not None and (found[3].state, found[3].amount) == ("pending", EUR)
    # ``delivered`` follows the payment's events, as everywhere else.
    assert [v.delivered for v in found if v is not None] == [False, False]
    await deliver_all(store, T0 + 2)
    q, p = await store.find_payments([("payments", "q"), ("payments", "p")])
    assert q is not None and p is not None and (q.delivered, p.delivered) == (True, True)


# -- two processes at once --------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "redis", "cluster16"])
async def two_stores(request, tmp_path):
    """Two stores on one backend, as two gateway processes have them."""
    if request.param == "sqlite":
        url, partitions = f"sqlite:///{tmp_path}/gw.db", 1
    elif request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        await flush(server.url)
        url, partitions = server.url, 1
    else:
        cluster: RedisCluster = request.getfixturevalue("redis_cluster")
        await flush_cluster(cluster)
        url, partitions = cluster.url, CLUSTER_PARTITIONS
    first = await open_store(url, partitions=partitions)
    second = await open_store(url, partitions=partitions)
    yield first, second
    await first.close()
    await second.close()


async def test_two_processes_at_once_never_move_a_state_back(two_stores):
    a, b = two_stores
    for n in range(20):
        key = f"race-{n}"
        created = paid(f"{key}-c", key, "pending", at=T0 + n)
        completed = paid(f"{key}-d", key, "completed", at=T0 + n)
        first, second = (a, b) if n % 2 else (b, a)
        results = await asyncio.gather(
            first.accept(created, ["m"], WINDOW, T0 + n),
            second.accept(completed, ["m"], WINDOW, T0 + n),
        )
        payment = (await a.get_payment("payments", key))[0]  # type: ignore[index]
        assert (payment.state, payment.events) == ("completed", 2)
        marks = {r.mark for r in results}
        # Whichever came second: the pending one is superseded or came first, never both.
        assert marks in ({None}, {None, "superseded"})
