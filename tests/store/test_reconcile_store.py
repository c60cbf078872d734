"""The store's part in reconciliation (design.md 5.8), on every store: the run lease, the
gateway's side of the comparison, the missing flag, sightings and the runs kept."""

from __future__ import annotations

from dataclasses import replace

from gateway.payments.rules import PaymentFacts
from gateway.store import Store
from gateway.store.records import RUNS_KEPT, ReconcileItem, ReconcileRun

from .conftest import T0, make_event

WINDOW = 3600.0


def paid(event_id: str, key: str, state: str, at: float = T0):
    facts = PaymentFacts(key, "offer-1", state, None, "enforce")  # type: ignore[arg-type]
    return replace(make_event(event_id, received_at=at), payment=facts)


async def test_one_run_at_a_time_per_source(store: Store):
    assert await store.reconcile_holder("payments", T0) is None
    assert await store.acquire_reconcile("payments", "a", T0, 60)
    assert await store.reconcile_holder("payments", T0 + 1) == "a"
    assert not await store.acquire_reconcile("payments", "b", T0 + 1, 60)
    assert await store.acquire_reconcile("rafiki", "b", T0 + 1, 60)  # another source
    assert await store.acquire_reconcile("payments", "a", T0 + 2, 60)  # its holder renews
    await store.release_reconcile("payments", "b")  # not b's: nothing happens
    assert not await store.acquire_reconcile("payments", "b", T0 + 3, 60)
    await store.release_reconcile("payments", "a")
    assert await store.reconcile_holder("payments", T0 + 4) is None
    assert await store.acquire_reconcile("payments", "b", T0 + 4, 60)


async def test_the_gateway_side_of_the_comparison(store: Store):
    await store.accept(paid("e1", "p1", "completed", T0), ["m"], WINDOW, T0)
    await store.accept(paid("e2", "p2", "pending", T0 + 1), ["m"], WINDOW, T0 + 1)
    await store.accept(paid("e3", "p3", "failed", T0 + 2), ["m"], WINDOW, T0 + 2)
    assert await store.payment_states("payments", ["p1", "p2", "nope", "p1"]) == {
        "p1": "completed",
        "p2": "pending",
    }
    assert await store.payment_states("other", ["p1"]) == {}
    terminal = await store.terminal_payments("payments", T0, T0 + 10, 100)
    assert sorted(terminal) == [("p1", "completed"), ("p3", "failed")]
    # First seen too early, or updated too late (its webhook may be on its way): left out.
    assert await store.terminal_payments("payments", T0 + 1, T0 + 10, 100) == [("p3", "failed")]
    assert await store.terminal_payments("payments", T0, T0 + 1, 100) == [("p1", "completed")]
    assert await store.terminal_payments("payments", T0, T0 + 10, 1) == [("p1", "completed")]
    seen = await store.seen([paid("e1", "p1", "completed"), paid("e9", "p9", "completed")], T0 + 5)
    assert seen == [True, False]
    assert await store.seen([paid("e1", "p1", "completed")], T0 + WINDOW + 1) == [False]


async def test_a_missing_payment_is_flagged_until_an_event_of_it_arrives(store: Store):
    await store.mark_missing("payments", "lost", "offer-9", True, T0)
    [payment], _ = await store.list_payments(attention="missing")
    assert (payment.key, payment.reference, payment.state, payment.events) == (
        "lost",
        "offer-9",
        "pending",
        0,
    )
    found, _ = await store.list_payments(q="offer-9")
    assert [p.key for p in found] == ["lost"]
    await store.accept(paid("e1", "lost", "completed", T0 + 1), ["m"], WINDOW, T0 + 1)
    payment = (await store.get_payment("payments", "lost"))[0]  # type: ignore[index]
    assert (payment.state, payment.attention, payment.events) == ("completed", None, 1)
    # Flagged and cleared again by hand (a later run found it matched).
    await store.mark_missing("payments", "lost", None, True, T0 + 2)
    assert (await store.get_payment("payments", "lost"))[0].attention == "missing"  # type: ignore[index]
    await store.mark_missing("payments", "lost", None, False, T0 + 3)
    assert (await store.get_payment("payments", "lost"))[0].attention is None  # type: ignore[index]
    await store.mark_missing("payments", "never", None, False, T0 + 3)
    assert await store.get_payment("payments", "never") is None


async def test_sightings_say_since_when_a_state_has_been_listed(store: Store):
    assert await store.sightings("payments", {"a": "completed", "b": "failed"}, T0) == {
        "a": T0,
        "b": T0,
    }
    assert await store.sightings(
        "payments", {"a": "completed", "b": "completed", "c": "failed"}, T0 + 10
    ) == {"a": T0, "b": T0 + 10, "c": T0 + 10}
    # "a" is not listed any more: forgotten, so listed again it starts again.
    assert await store.sightings("payments", {"b": "completed"}, T0 + 20) == {"b": T0 + 10}
    assert await store.sightings("payments", {"a": "completed"}, T0 + 30) == {"a": T0 + 30}
    assert await store.sightings("other", {"a": "completed"}, T0 + 40) == {"a": T0 + 40}


async def test_runs_are_kept_newest_first(store: Store):
    items = (ReconcileItem("p1", "completed", None, "recovered", "e1"),)
    for n in range(RUNS_KEPT + 3):
        run = ReconcileRun(
            id=f"run-{n:03d}",
            source="payments",
            started_at=T0 + n,
            finished_at=T0 + n + 0.5,
            ok=n % 2 == 0,
            error=None if n % 2 == 0 else "HTTP 503",
            dry_run=False,
            counts={"recovered": 1},
            items=items,
        )
        await store.save_run(run)
    recent = await store.recent_runs("payments", 5)
    assert [r.id for r in recent] == [
        f"run-{n:03d}" for n in range(RUNS_KEPT + 2, RUNS_KEPT - 3, -1)
    ]
    assert recent[0].items == items and recent[0].counts == {"recovered": 1}
    assert len(await store.recent_runs("payments", 1000)) == RUNS_KEPT
    assert await store.get_run("run-000") is None  # the oldest went
    kept = await store.get_run(f"run-{RUNS_KEPT + 2:03d}")
    assert kept == recent[0]
    assert await store.recent_runs("other", 5) == []
