"""The contract every store backend passes (design.md 3 and 5.4), run against SQLite and Redis."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gateway.store import Attempt, EventNotFound, InvalidCursor, Store
from gateway.store.records import BODY_STATUS_LIMIT, EXCERPT_LIMIT, change_order

from .conftest import T0, make_event

WINDOW = 3600.0
LEASE = 30.0


def ok(number: int = 1, at: float = T0, status: int = 200) -> Attempt:
    return Attempt(number, at, status, 0.05, None, "ok")


def failed(number: int = 1, at: float = T0, status: int | None = 503) -> Attempt:
    return Attempt(number, at, status, 0.1, None if status else "connection refused", "busy")


# -- accept and dedupe ---------------------------------------------------------------------------


async def test_accept_queues_once_and_answers_duplicates(store: Store):
    first = await store.accept(make_event("evt_1"), ["market"], WINDOW, T0)
    again = await store.accept(make_event("evt_1"), ["market"], WINDOW, T0 + 1)
    assert (first.status, first.event_id) == ("queued", "evt_1")
    assert (again.status, again.event_id) == ("duplicate", "evt_1")
    assert await store.queue_depth() == {("market", "due"): 1}
    events, _ = await store.list_events()
    assert [e.id for e in events] == ["evt_1"]


async def test_duplicate_answers_the_id_of_the_event_accepted_first(store: Store):
    await store.accept(make_event("evt_a", key="k1"), ["market"], WINDOW, T0)
    result = await store.accept(make_event("evt_b", key="k1"), ["market"], WINDOW, T0)
    assert (result.status, result.event_id) == ("duplicate", "evt_a")
    assert await store.get_event("evt_b") is None


async def test_dedupe_window_expires(store: Store):
    await store.accept(make_event(), ["market"], 60.0, T0)
    inside = await store.accept(make_event(received_at=T0 + 59.9), ["market"], 60.0, T0 + 59.9)
    after = await store.accept(make_event(received_at=T0 + 60), ["market"], 60.0, T0 + 60)
    assert inside.status == "duplicate"
    assert after.status == "queued"
    assert await store.queue_depth() == {("market", "due"): 2}
    view = await store.get_event("evt_1")
    assert view is not None
    assert view.event.received_at == T0 + 60


def _partition(store: Store, key: str) -> int:
    """The partition an event of source "payments" with this key lives in (0 if unsplit)."""
    of = getattr(store, "partition_of", None)
    return 0 if of is None else int(of("payments", key))


async def test_same_id_under_another_key_within_window_is_a_duplicate(store: Store):
    # The (source, id) check sees the partition the new event hashes to: every event when the
    # store is one part, and the events of that partition when it is split (design.md 5.4).
    home = _partition(store, "k1")
    near = next(f"k{n}" for n in range(2, 10_000) if _partition(store, f"k{n}") == home)
    await store.accept(make_event("evt_1", key="k1"), ["market"], WINDOW, T0)
    collision = await store.accept(make_event("evt_1", key=near), ["market"], WINDOW, T0 + 1)
    assert (collision.status, collision.event_id) == ("duplicate", "evt_1")
    later = await store.accept(make_event("evt_1", key="k0"), ["market"], WINDOW, T0 + WINDOW)
    assert later.status == "queued"
    far = [f"x{n}" for n in range(200) if _partition(store, f"x{n}") != home]
    if far:  # a split store: another partition does not see the id; each key still dedupes
        again = await store.accept(make_event("evt_1", key=far[0]), ["m"], WINDOW, T0 + 2)
        assert again.status == "queued"
        dup = await store.accept(make_event("evt_1", key=far[0]), ["m"], WINDOW, T0 + 3)
        assert dup.status == "duplicate"


async def test_same_key_from_another_source_is_a_new_event(store: Store):
    await store.accept(make_event(source="payments"), ["market"], WINDOW, T0)
    other = await store.accept(make_event(source="stripe"), ["market"], WINDOW, T0)
    assert other.status == "queued"
    for source in ("payments", "stripe"):
        view = await store.get_event("evt_1", source=source)
        assert view is not None
        assert view.event.source == source
    assert await store.get_event("evt_1", source="github") is None


async def test_fan_out_enqueues_one_delivery_per_destination(store: Store):
    event = make_event()
    await store.accept(event, ["a", "b", "c"], WINDOW, T0)
    leases = await store.lease_due(T0, LEASE, 10, "w1")
    assert sorted(lease.destination for lease in leases) == ["a", "b", "c"]
    assert len({lease.delivery_id for lease in leases}) == 3
    for lease in leases:
        assert lease.event == event  # every field, body bytes and headers round-trip
        assert lease.attempt == 1
        assert lease.first_attempt_at is None
        assert lease.expires_at == T0 + LEASE
        assert lease.created_at == T0


async def test_unrouted_event_is_stored_without_deliveries(store: Store):
    assert (await store.accept(make_event(), [], WINDOW, T0)).status == "queued"
    view = await store.get_event("evt_1")
    assert view is not None
    assert view.status == "unrouted"
    assert view.deliveries == ()
    assert await store.lease_due(T0, LEASE, 10, "w") == []


# -- sync mode -----------------------------------------------------------------------------------


async def test_claim_in_progress_release_and_claim_again(store: Store):
    assert await store.claim("payments", "k1", 10.0, T0) == "claimed"
    assert await store.claim("payments", "k1", 10.0, T0 + 1) == "in_progress"
    await store.release("payments", "k1")
    assert await store.claim("payments", "k1", 10.0, T0 + 2) == "claimed"


async def test_claim_lease_expires(store: Store):
    assert await store.claim("payments", "k1", 10.0, T0) == "claimed"
    assert await store.claim("payments", "k1", 10.0, T0 + 9.9) == "in_progress"
    assert await store.claim("payments", "k1", 10.0, T0 + 10) == "claimed"


async def test_commit_marks_done_for_the_window_and_records_the_attempt(store: Store):
    event = make_event(key="k1")
    assert await store.claim("payments", "k1", 10.0, T0) == "claimed"
    await store.commit(event, ["market"], WINDOW, T0 + 0.5, ok(at=T0 + 0.1))
    await store.release("payments", "k1")  # a late release does not undo done
    assert await store.claim("payments", "k1", 10.0, T0 + 20) == "done"
    dup = await store.accept(make_event("evt_2", key="k1"), ["market"], WINDOW, T0 + 30)
    assert (dup.status, dup.event_id) == ("duplicate", "evt_1")
    assert await store.claim("payments", "k1", 10.0, T0 + WINDOW + 1) == "claimed"
    view = await store.get_event("evt_1")
    assert view is not None
    assert (view.mode, view.status) == ("sync", "delivered")
    [delivery] = view.deliveries
    assert delivery.state == "delivered"
    assert delivery.attempts == (ok(at=T0 + 0.1),)
    assert await store.lease_due(T0 + 60, LEASE, 10, "w") == []
    assert await store.queue_depth() == {}


async def test_accept_during_a_live_claim_is_a_duplicate(store: Store):
    await store.claim("payments", "evt_1", 10.0, T0)
    result = await store.accept(make_event(), ["market"], WINDOW, T0 + 1)
    assert result.status == "duplicate"
    assert await store.queue_depth() == {}


# -- leases --------------------------------------------------------------------------------------


async def test_complete_records_the_attempt_and_finishes_the_delivery(store: Store):
    await store.accept(make_event(), ["market"], WINDOW, T0)
    [lease] = await store.lease_due(T0, LEASE, 10, "w1")
    assert await store.queue_depth() == {("market", "leased"): 1}
    assert await store.complete(lease, ok(at=T0 + 1))
    assert not await store.complete(lease, ok(at=T0 + 1))  # already finished
    view = await store.get_event("evt_1")
    assert view is not None
    assert view.status == "delivered"
    [delivery] = view.deliveries
    assert (delivery.state, delivery.attempts_made) == ("delivered", 1)
    assert delivery.attempts == (ok(at=T0 + 1),)
    assert await store.lease_due(T0 + 1000, LEASE, 10, "w1") == []
    assert await store.queue_depth() == {}


async def test_lease_due_respects_the_limit_and_leases_each_delivery_once(store: Store):
    for i in range(5):
        await store.accept(make_event(f"evt_{i}", received_at=T0 + i), ["m"], WINDOW, T0 + i)
    first = await store.lease_due(T0 + 10, LEASE, 3, "w1")
    second = await store.lease_due(T0 + 10, LEASE, 3, "w2")
    assert [lease.event.id for lease in first] == ["evt_0", "evt_1", "evt_2"]  # oldest first
    assert [lease.event.id for lease in second] == ["evt_3", "evt_4"]
    assert await store.lease_due(T0 + 10, LEASE, 3, "w3") == []


async def test_reschedule_makes_the_delivery_due_later(store: Store):
    await store.accept(make_event(), ["market"], WINDOW, T0)
    [lease] = await store.lease_due(T0, LEASE, 10, "w1")
    assert await store.reschedule(lease, failed(at=T0), T0 + 5)
    assert await store.queue_depth() == {("market", "due"): 1}
    assert await store.lease_due(T0 + 4.9, LEASE, 10, "w1") == []
    [again] = await store.lease_due(T0 + 5, LEASE, 10, "w1")
    assert again.delivery_id == lease.delivery_id
    assert again.attempt == 2
    assert again.first_attempt_at == T0
    assert again.token != lease.token
    view = await store.get_event("evt_1")
    assert view is not None
    assert view.status == "queued"
    assert view.deliveries[0].attempts == (failed(at=T0),)


async def _backed_off(store: Store, count: int, destination: str = "market") -> list[str]:
    """``count`` events whose first attempt to ``destination`` failed, next due in an hour."""
    ids = [f"evt_b{i}" for i in range(count)]
    for i, event_id in enumerate(ids):
        await store.accept(make_event(event_id, received_at=T0 + i), [destination], WINDOW, T0)
    for lease in await store.lease_due(T0 + 1, LEASE, 100, "w1"):
        assert await store.reschedule(lease, failed(at=T0 + 1), T0 + 3600)
    return ids


async def test_a_success_after_failures_releases_the_backlog(store: Store):
    backed_off = await _backed_off(store, 5)
    await store.accept(make_event("evt_other", received_at=T0), ["other"], WINDOW, T0)
    [other] = await store.lease_due(T0 + 1, LEASE, 10, "w1")
    assert await store.reschedule(other, failed(at=T0 + 1), T0 + 3600)
    assert await store.lease_due(T0 + 10, LEASE, 10, "w1") == []
    # The destination is back: a new event's delivery succeeds.
    await store.accept(make_event("evt_new", received_at=T0 + 10), ["market"], WINDOW, T0 + 10)
    [fresh] = await store.lease_due(T0 + 10, LEASE, 10, "w1")
    assert await store.complete(fresh, ok(at=T0 + 11))
    # Its backlog is due at once with attempt counts kept; another destination's stays.
    released = await store.lease_due(T0 + 12, LEASE, 10, "w1")
    assert sorted(lease.event.id for lease in released) == backed_off
    assert {lease.attempt for lease in released} == {2}
    assert {lease.destination for lease in released} == {"market"}
    # Failures resume: each backoff resumes from its own attempt count; no mark survives a
    # success that found the backlog empty.
    for lease in released:
        assert await store.complete(lease, ok(at=T0 + 13))
    await store.accept(make_event("evt_late", received_at=T0 + 14), ["market"], WINDOW, T0 + 14)
    [late] = await store.lease_due(T0 + 14, LEASE, 10, "w1")
    assert await store.reschedule(late, failed(at=T0 + 14), T0 + 1000)
    assert await store.lease_due(T0 + 20, LEASE, 10, "w1") == []
    view = await store.get_event("evt_other")
    assert view is not None and view.deliveries[0].next_attempt_at == T0 + 3600


async def test_a_success_without_earlier_failures_releases_nothing(store: Store):
    await store.accept(make_event("evt_a", received_at=T0), ["market"], WINDOW, T0)
    [lease] = await store.lease_due(T0, LEASE, 10, "w1")
    assert await store.reschedule(lease, failed(at=T0), T0 + 3600)
    # The mark was taken by a success: a later delivery that fails and then one that succeeds
    # release; but a success on another destination releases nothing here.
    await store.accept(make_event("evt_b", received_at=T0 + 1), ["other"], WINDOW, T0 + 1)
    [other] = await store.lease_due(T0 + 1, LEASE, 10, "w1")
    assert await store.complete(other, ok(at=T0 + 2))
    assert await store.lease_due(T0 + 3, LEASE, 10, "w1") == []


async def test_retry_now_makes_a_destination_backlog_due(store: Store):
    backed_off = await _backed_off(store, 3)
    await store.accept(make_event("evt_other", received_at=T0), ["other"], WINDOW, T0)
    [other] = await store.lease_due(T0 + 1, LEASE, 10, "w1")
    assert await store.reschedule(other, failed(at=T0 + 1), T0 + 3600)
    assert await store.retry_now("market", T0 + 5) == 3
    assert await store.retry_now("market", T0 + 5) == 0
    assert await store.retry_now("nowhere", T0 + 5) == 0
    leases = await store.lease_due(T0 + 5, LEASE, 10, "w1")
    assert sorted(lease.event.id for lease in leases) == backed_off
    assert {lease.attempt for lease in leases} == {2}
    assert await store.queue_depth() == {("market", "leased"): 3, ("other", "due"): 1}


async def test_expired_lease_goes_to_another_worker_and_the_first_loses_it(store: Store):
    await store.accept(make_event(), ["market"], WINDOW, T0)
    [lease_a] = await store.lease_due(T0, LEASE, 10, "worker-a")
    assert await store.lease_due(T0 + LEASE - 1, LEASE, 10, "worker-b") == []
    [lease_b] = await store.lease_due(T0 + LEASE, LEASE, 10, "worker-b")
    assert lease_b.delivery_id == lease_a.delivery_id
    assert lease_b.attempt == 1  # worker A never reported its attempt
    assert lease_b.token != lease_a.token
    # Worker A comes back late: every way of finishing is refused and changes nothing.
    assert not await store.complete(lease_a, ok(at=T0 + 40))
    assert not await store.reschedule(lease_a, failed(at=T0 + 40), T0 + 50)
    assert not await store.dead_letter(lease_a, failed(at=T0 + 40, status=400), "bad")
    view = await store.get_event("evt_1")
    assert view is not None
    assert view.deliveries[0].attempts == ()
    assert view.deliveries[0].state == "leased"
    assert await store.queue_depth() == {("market", "leased"): 1}
    assert await store.complete(lease_b, ok(at=T0 + 41))
    view = await store.get_event("evt_1")
    assert view is not None
    assert view.deliveries[0].attempts == (ok(at=T0 + 41),)


async def test_dead_letter_records_the_response_and_lists_it(store: Store):
    await store.accept(make_event(), ["market"], WINDOW, T0)
    [lease] = await store.lease_due(T0, LEASE, 10, "w1")
    refused = Attempt(1, T0, 404, 0.5, None, '{"error":"unknown offer"}')
    assert await store.dead_letter(lease, refused, "HTTP 404 is not retried")
    assert await store.queue_depth() == {("market", "dead"): 1}
    assert await store.lease_due(T0 + 10_000, LEASE, 10, "w1") == []
    view = await store.get_event("evt_1")
    assert view is not None
    assert view.status == "dead_lettered"
    [delivery] = view.deliveries
    assert delivery.state == "dead"
    assert delivery.dead_reason == "HTTP 404 is not retried"
    assert delivery.dead_at == T0 + 0.5
    [dead], cursor = await store.list_dead_letters()
    assert cursor is None
    assert (dead.delivery_id, dead.event_id, dead.source) == (
        lease.delivery_id,
        "evt_1",
        "payments",
    )
    assert (dead.destination, dead.attempts_made, dead.dead_at) == ("market", 1, T0 + 0.5)
    assert dead.reason == "HTTP 404 is not retried"
    assert dead.last_attempt == refused


async def test_attempt_excerpt_and_error_are_bounded(store: Store):
    await store.accept(make_event(), ["market"], WINDOW, T0)
    [lease] = await store.lease_due(T0, LEASE, 10, "w1")
    await store.reschedule(lease, Attempt(1, T0, 500, 1.0, "e" * 5000, "x" * 5000), T0 + 5)
    view = await store.get_event("evt_1")
    assert view is not None
    [attempt] = view.deliveries[0].attempts
    assert attempt.response_excerpt == "x" * EXCERPT_LIMIT
    assert attempt.error == "e" * EXCERPT_LIMIT


# -- operator ------------------------------------------------------------------------------------


async def test_redrive_makes_dead_letters_due_with_attempts_reset(store: Store):
    for name in ("evt_1", "evt_2"):
        await store.accept(make_event(name), ["market"], WINDOW, T0)
    leases = await store.lease_due(T0, LEASE, 10, "w1")
    for lease in leases:
        await store.dead_letter(lease, failed(at=T0, status=400), "HTTP 400")
    by_event = {lease.event.id: lease for lease in leases}
    moved = await store.redrive([by_event["evt_1"].delivery_id, "no-such-delivery"], T0 + 100)
    assert moved == 1
    assert await store.queue_depth() == {("market", "due"): 1, ("market", "dead"): 1}
    assert await store.redrive([by_event["evt_1"].delivery_id], T0 + 100) == 0  # not dead now
    [again] = await store.lease_due(T0 + 100, LEASE, 10, "w1")
    assert (again.event.id, again.attempt, again.first_attempt_at) == ("evt_1", 1, None)
    assert await store.redrive(None, T0 + 200) == 1
    assert await store.queue_depth() == {("market", "leased"): 1, ("market", "due"): 1}
    view = await store.get_event("evt_2")
    assert view is not None
    assert view.status == "queued"
    [delivery] = view.deliveries
    assert (delivery.state, delivery.attempts_made, delivery.next_attempt_at) == (
        "due",
        0,
        T0 + 200,
    )
    assert delivery.attempts == (failed(at=T0, status=400),)  # history stays
    assert await store.list_dead_letters() == ([], None)


async def test_replay_is_never_swallowed_by_dedupe(store: Store):
    await store.accept(make_event(), ["market"], WINDOW, T0)
    [lease] = await store.lease_due(T0, LEASE, 10, "w1")
    await store.complete(lease, ok())
    [new_id] = await store.replay("evt_1", ["market"], T0 + 10)
    assert new_id != lease.delivery_id
    view = await store.get_event("evt_1")
    assert view is not None
    assert view.status == "queued"
    assert len(view.deliveries) == 2
    [replayed] = await store.lease_due(T0 + 10, LEASE, 10, "w1")
    assert (replayed.delivery_id, replayed.attempt) == (new_id, 1)
    assert replayed.event.id == "evt_1"
    # The dedupe key is still done: the sender's retry is still a duplicate.
    assert (await store.accept(make_event(), ["market"], WINDOW, T0 + 11)).status == "duplicate"


async def test_replay_of_an_unknown_event_raises(store: Store):
    await store.accept(make_event(source="payments"), ["market"], WINDOW, T0)
    with pytest.raises(EventNotFound):
        await store.replay("nope", ["market"], T0)
    with pytest.raises(EventNotFound):
        await store.replay("evt_1", ["market"], T0, source="stripe")
    assert len(await store.replay("evt_1", ["a", "b"], T0, source="payments")) == 2


async def test_get_event_shows_every_delivery_and_attempt(store: Store):
    await store.accept(make_event(), ["a", "b"], WINDOW, T0)
    leases = {lease.destination: lease for lease in await store.lease_due(T0, LEASE, 10, "w")}
    await store.reschedule(leases["a"], failed(1, T0), T0 + 5)
    await store.complete(leases["b"], ok(1, T0))
    [lease_a] = await store.lease_due(T0 + 5, LEASE, 10, "w")
    await store.complete(lease_a, ok(2, T0 + 5))
    view = await store.get_event("evt_1")
    assert view is not None
    assert view.event == make_event()
    assert (view.mode, view.status) == ("queued", "delivered")
    by_dest = {d.destination: d for d in view.deliveries}
    assert by_dest["a"].attempts == (failed(1, T0), ok(2, T0 + 5))
    assert by_dest["a"].attempts_made == 2
    assert by_dest["b"].attempts == (ok(1, T0),)
    assert await store.get_event("unknown") is None


async def test_list_events_pages_newest_first_and_filters(store: Store):
    # Three share one received_at: paging must neither skip nor repeat ties.
    times = [T0, T0 + 1, T0 + 1, T0 + 1, T0 + 2]
    for i, at in enumerate(times):
        source = "stripe" if i % 2 else "payments"
        await store.accept(make_event(f"evt_{i}", source=source, received_at=at), ["m"], WINDOW, at)
    seen, cursor = [], None
    while True:
        page, cursor = await store.list_events(limit=2, cursor=cursor)
        assert len(page) <= 2
        seen += page
        if cursor is None:
            break
    assert (seen[0].id, seen[-1].id) == ("evt_4", "evt_0")
    assert sorted(e.id for e in seen) == [f"evt_{i}" for i in range(5)]
    assert [e.received_at for e in seen] == sorted(times, reverse=True)
    stripe, _ = await store.list_events(source="stripe")
    assert sorted(e.id for e in stripe) == ["evt_1", "evt_3"]
    [lease] = [x for x in await store.lease_due(T0 + 3, LEASE, 10, "w") if x.event.id == "evt_3"]
    await store.complete(lease, ok())
    delivered, _ = await store.list_events(status="delivered")
    assert [(e.id, e.status) for e in delivered] == [("evt_3", "delivered")]
    assert (await store.list_events(source="payments", status="delivered")) == ([], None)
    queued, _ = await store.list_events(source="stripe", status="queued")
    assert [e.id for e in queued] == ["evt_1"]
    with pytest.raises(InvalidCursor):
        await store.list_events(cursor="not a cursor")


async def test_list_dead_letters_pages_and_filters_by_destination(store: Store):
    for i in range(3):
        await store.accept(make_event(f"evt_{i}"), ["a", "b"], WINDOW, T0)
    for i, lease in enumerate(await store.lease_due(T0, LEASE, 10, "w")):
        await store.dead_letter(lease, failed(at=T0 + i, status=410), "gone")
    seen, cursor = [], None
    while True:
        page, cursor = await store.list_dead_letters(limit=4, cursor=cursor)
        seen += page
        if cursor is None:
            break
    assert len(seen) == 6
    assert len({d.delivery_id for d in seen}) == 6
    assert [d.dead_at for d in seen] == sorted((d.dead_at for d in seen), reverse=True)
    only_a, _ = await store.list_dead_letters(destination="a")
    assert len(only_a) == 3
    assert {d.destination for d in only_a} == {"a"}


async def test_queue_depth_counts_each_state_per_destination(store: Store):
    for i in range(4):
        await store.accept(make_event(f"evt_{i}"), ["a", "b"], WINDOW, T0)
    leases = await store.lease_due(T0, LEASE, 3, "w")
    await store.dead_letter(leases[0], failed(status=400), "bad")
    await store.complete(leases[1], ok())
    depth = await store.queue_depth()
    assert sum(depth.values()) == 7
    assert depth.get(("a", "dead"), 0) + depth.get(("b", "dead"), 0) == 1
    assert depth.get(("a", "leased"), 0) + depth.get(("b", "leased"), 0) == 1
    assert depth.get(("a", "due"), 0) + depth.get(("b", "due"), 0) == 5
    await store.ping()


# -- dashboard: payments by subject, timelines, search, figures, change log ---------------------


def _event(event_id: str, subject: str | None, at: float, **fields):
    return replace(make_event(event_id, received_at=at), subject=subject, **fields)


async def test_list_events_filters_by_type_and_searches_id_and_subject_prefix(store: Store):
    await store.accept(_event("pay_1", "offer-10", T0, type="payment.completed"), ["m"], WINDOW, T0)
    await store.accept(
        _event("pay_2", "offer-20", T0 + 1, type="payment.failed"), ["m"], WINDOW, T0
    )
    await store.accept(
        _event("ref_3", "offer-11", T0 + 2, type="payment.failed"), ["m"], WINDOW, T0
    )
    failed_, _ = await store.list_events(type="payment.failed")
    assert [e.id for e in failed_] == ["ref_3", "pay_2"]
    by_id, _ = await store.list_events(q="pay_")
    assert [e.id for e in by_id] == ["pay_2", "pay_1"]
    by_subject, _ = await store.list_events(q="offer-1")
    assert [e.id for e in by_subject] == ["ref_3", "pay_1"]
    both, _ = await store.list_events(q="offer-1", type="payment.failed")
    assert [e.id for e in both] == ["ref_3"]
    first, cursor = await store.list_events(q="offer", limit=2)
    rest, end = await store.list_events(q="offer", limit=2, cursor=cursor)
    assert [e.id for e in first + rest] == ["ref_3", "pay_2", "pay_1"]
    assert end is None
    assert await store.list_events(q="zzz") == ([], None)


async def test_stats_count_per_minute_and_latency(store: Store):
    for i in range(3):
        await store.accept(make_event(f"e{i}"), ["m"], WINDOW, T0 + i)
    leases = await store.lease_due(T0 + 60, LEASE, 10, "w")
    await store.complete(leases[0], Attempt(1, T0 + 60, 200, 0.010))
    await store.reschedule(leases[1], Attempt(1, T0 + 60, 503, 0.200), T0 + 90)
    await store.dead_letter(leases[2], Attempt(1, T0 + 60, 410, 0.020), "gone")
    stats = await store.stats(T0 + 120)
    assert stats.total("accepted") == 3
    assert (stats.total("delivered"), stats.total("retried"), stats.total("dead_lettered")) == (
        1,
        1,
        1,
    )
    assert stats.series("accepted")[-3] == 3  # the minute of T0, two minutes before now
    assert stats.success_ratio() == pytest.approx(1 / 2)  # the retried one has not finished
    p50, p99 = stats.latency_percentile(0.5), stats.latency_percentile(0.99)
    assert p50 is not None and 20 <= p50 < 25
    assert p99 is not None and 200 <= p99 < 250
    later = await store.stats(T0 + 3 * 3600)
    assert later.total("accepted") == 0


async def test_list_lines_count_attempts_and_keep_the_body_status(store: Store):
    await store.accept(make_event("e1"), ["a", "b"], WINDOW, T0)
    await store.accept(replace(make_event("e2"), body_status="x" * 500), ["a"], WINDOW, T0)
    for lease in await store.lease_due(T0, LEASE, 10, "w"):
        await store.reschedule(lease, failed(at=T0), T0 + 5)
    lines = {e.id: e for e in (await store.list_events())[0]}
    assert (lines["e1"].attempts, lines["e2"].attempts) == (2, 1)
    assert lines["e2"].body_status == "x" * BODY_STATUS_LIMIT
    view = await store.get_event("e2")
    assert view is not None and view.event.body_status == "x" * BODY_STATUS_LIMIT


async def test_change_log_follows_accepts_and_outcomes(store: Store):
    assert await store.changes(None, 10) == []
    await store.accept(_event("e1", "offer-1", T0, body_status="paid"), ["m"], WINDOW, T0)
    [latest] = await store.changes(None, 10)
    assert latest.kind == "accepted"
    assert latest.data["event_id"] == "e1"
    assert latest.data["status"] == "paid"
    [lease] = await store.lease_due(T0, LEASE, 10, "w")
    await store.complete(lease, ok())
    [delivery] = await store.changes(latest.id, 10)
    assert delivery.kind == "delivery"
    assert {k: delivery.data[k] for k in ("event_id", "destination", "attempt", "result")} == {
        "event_id": "e1",
        "destination": "m",
        "attempt": 1,
        "result": "delivered",
    }
    assert delivery.data["subject"] == "offer-1"
    assert change_order(delivery.id) > change_order(latest.id)
    assert await store.changes(delivery.id, 10) == []


async def test_sync_commit_is_counted_and_logged(store: Store):
    await store.commit(make_event("s1"), ["m"], WINDOW, T0, ok(at=T0))
    stats = await store.stats(T0)
    assert (stats.total("accepted"), stats.total("delivered")) == (1, 1)
    # "0-0" is before every entry of either store's log.
    assert [c.kind for c in await store.changes("0-0", 10)] == ["accepted", "delivery"]
    view = await store.get_event("s1")
    assert view is not None and view.status == "delivered"


async def test_prune_takes_the_dashboard_indexes_along(store: Store):
    await store.accept(_event("e1", "offer-1", T0), ["m"], WINDOW, T0)
    await store.accept(_event("e2", "offer-1", T0 + 1), ["m"], WINDOW, T0 + 1)
    await store.accept(_event("e3", None, T0 + 2), [], WINDOW, T0 + 2)
    for lease in await store.lease_due(T0 + 2, LEASE, 10, "w"):
        await store.complete(lease, ok(at=T0 + 2))
    assert await store.prune(T0 + 0.5, 100) == 1  # e1 only
    assert {e.id for e in (await store.list_events(q="offer-1"))[0]} == {"e2"}
    assert await store.prune(T0 + 10, 100) == 2
    assert await store.list_events(q="e") == ([], None)
    assert await store.list_events(type="payment.completed") == ([], None)
