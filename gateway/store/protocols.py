"""The store's operations, one protocol per role (and ``Store``, all of them together).

design.md section 3 and 5.4. Two implementations pass one contract suite (``tests/store``):
``SqliteStore`` (one host, one file) and ``RedisStore`` (shared by replicas, Redis Cluster safe).

Every time is a float of unix seconds passed in by the caller: the clock is injected, so the
stores never read it themselves. Every failure to reach or use the backend is raised as
``gateway.errors.StoreError`` and leaves nothing half-done (each operation is one transaction or
one Lua script).

Lifecycle of a delivery (one per event and destination)::

    accept / replay / redrive ──> due ──lease_due──> leased ──complete──> delivered ──prune──> gone
                                   ^                   │ └──dead_letter──> dead ──redrive──┐
                                   └───reschedule──────┘    (lease expiry: leased again)   │
                                   ^───────────────────────────────────────────────────────┘

Operations (see ``Store``):

* ``accept(event, destinations, window, now)``: queued mode, one atomic step: the dedupe check
  on ``(source, dedupe_key)`` within ``window`` seconds, then the event is persisted and one
  delivery per destination is enqueued, due ``now``. A duplicate enqueues nothing and answers
  the id of the event accepted first. An event whose ``(source, id)`` was accepted within the
  window under a *different* dedupe key is a duplicate as well (an id collision: the
  destinations dedupe on ``webhook-id`` and would drop it anyway, so the gateway says so).
  An event about a payment (``Event.payment``) moves its payment's state in the same step
  (``gateway.payments.states.advance``): the payment is created on its first event; its
  state only moves forward; an event that reports an earlier state is marked ``superseded``,
  one that reports another terminal state ``conflict`` (and the payment is flagged). A marked
  event of a source with ``order: enforce`` is stored without deliveries (status ``held``); a
  replay delivers it. The payment's reference and amount follow its latest unmarked event
  that carries them.
* ``claim / commit / release``: sync mode. ``claim`` takes the dedupe key for ``lease``
  seconds; ``commit`` marks it done for the window and records the event, one delivered
  delivery per destination and the attempt (the same attempt is recorded on each); ``release``
  gives the claim up after a failed forward. ``accept`` treats a live claim as a duplicate.
* ``lease_due(now, lease, limit, worker)``: deliveries due at ``now`` plus those whose lease
  expired (their worker died), each leased for ``lease`` seconds under a fresh token.
  A delivery whose event cannot be read (``UnreadableEvent``: sealed with a key no longer in
  ``store.encryption_keys``, or a corrupt row) is not returned but dead-lettered on the spot,
  the reason recorded as its attempt, and leasing goes on past it: one unreadable event never
  holds up the others. Redrive it once its key is listed again.
  ``complete``, ``reschedule`` and ``dead_letter`` take the lease back and record the attempt;
  they return ``False`` and change nothing when the lease was lost (token mismatch: the lease
  expired and another worker holds the delivery now).
  A delivery that succeeds after its destination's failures (a ``reschedule`` was recorded
  for that destination since its last success) releases the backlog: the destination's
  other deliveries waiting out a backoff become due at once, ``BACKLOG_BATCH`` per success
  (each success releases the next batch, so a backlog of any size drains at the workers'
  pace and no single step grows long). Their attempt counts are kept, so if failures resume
  each delivery's backoff resumes from its own count.
* ``retry_now(destination, now)``: the same release by hand, for every such delivery at once.
* ``replay(event_id, destinations, now, source=None)``: new deliveries of a stored event, due
  now, never swallowed by dedupe; ``EventNotFound`` if there is no such event.
* ``redrive(delivery_ids | None, now)``: dead letters (all of them for ``None``) are due again
  with their attempt count reset; the attempts already made stay recorded.
* ``prune(before, limit)``: retention. Deletes at most ``limit`` finished events (status
  delivered, unrouted or held: no delivery due, leased or dead) received before ``before``, with
  their deliveries, attempts and index entries, and answers how many. The caller loops until
  fewer than ``limit`` come back, so no transaction or script runs long. Events with a dead
  delivery stay (an operator redrives or inspects them). Dedupe keys keep their own expiry
  and are left alone; ``store.retention`` is never shorter than a dedupe window (the loader
  refuses that), so the original of a duplicate is still stored.
* ``list_payments``, ``get_payment``, ``stats``, ``changes``: for the dashboard (design.md
  5.6, 5.7): payments by latest update (filtered by source, state, attention, or a key or
  reference prefix), one payment with its events in order, per-minute counters and a latency
  histogram (``gateway.store.stats``) written with each accept and attempt, and the bounded
  change log the live stream reads. All are index walks, never scans of every event; a
  payment's ``delivered`` and ``dead_letter`` attention are read from its events' statuses.
  Each change-log entry names its event's payment (``payment_key``, with ``source``), so
  ``find_payments`` re-reads only the payments that changed, for the buyer's status stream
  (design.md 5.10).
* ``get_event``, ``list_events``, ``list_dead_letters``, ``queue_depth``: for the admin API and
  metrics. Lists are newest first and paged with an opaque cursor; a page may hold fewer than
  ``limit`` items while the cursor is not ``None`` (a filtered scan stops after a bounded
  amount of work), and ``None`` means there is nothing more.

When an event id is looked up without a source and several sources used it, the most recently
received event wins; when the same ``(source, id)`` was accepted again after its window
expired, the latest one wins too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol, runtime_checkable

from gateway.analytics.rollup import Rollup
from gateway.payments.states import State
from gateway.ratelimit.limiter import Limiter
from gateway.store.records import (
    AcceptLimit,
    AcceptResult,
    Attempt,
    Attention,
    Change,
    Claim,
    DeadLetter,
    Event,
    EventStatus,
    EventSummary,
    EventView,
    Lease,
    PaymentView,
    ReconcileRun,
)
from gateway.store.stats import Stats


class Wakeups(Protocol):
    """Wake-ups between processes sharing a store (``gateway.store.redis.wakeups``)."""

    def announce(self) -> None:
        """Tell the delivering processes that events were queued."""

    async def listen(self, on_wake: Callable[[], None]) -> None:
        """Call ``on_wake`` for every announcement until cancelled."""

    async def close(self) -> None:
        """Finish what is in flight."""


class IngressStore(Protocol):
    """What the request path needs: accept (queued mode), claim, commit, release (sync)."""

    async def accept(
        self,
        event: Event,
        destinations: Sequence[str],
        window: float,
        now: float,
        limit: AcceptLimit | None = None,
        *,
        first: AcceptLimit | None = None,
    ) -> AcceptResult:
        """Dedupe, persist and enqueue one delivery per destination, atomically; with a
        ``limit`` (only where ``decides_limits``), first decide it: ``LimitReached``. A
        ``first`` limit (the per-IP one) is decided before ``limit``, which a request it
        refuses never reaches."""

    async def claim(
        self,
        source: str,
        dedupe_key: str,
        lease: float,
        now: float,
        limit: AcceptLimit | None = None,
        *,
        shard_key: str | None = None,
    ) -> Claim:
        """Sync mode: take the dedupe key for ``lease`` seconds, unless taken or done; with a
        ``limit`` (where ``decides_limits``), decide it first: ``LimitReached``, nothing
        claimed. ``shard_key``: the event's ``Event.shard_key`` (a partitioned store keeps
        the claim where the commit will write)."""

    async def commit(
        self,
        event: Event,
        destinations: Sequence[str],
        window: float,
        now: float,
        attempt: Attempt,
    ) -> None:
        """Sync mode: mark the key done for the window; record event, deliveries, attempt."""

    async def release(self, source: str, dedupe_key: str, *, shard_key: str | None = None) -> None:
        """Sync mode: give a claim up (the forward failed); a done key is left alone."""

    def decides_limits(self, limiter: Limiter) -> bool:
        """Whether ``accept`` and ``claim`` can decide a limit of ``limiter`` themselves
        (``AcceptLimit``): one call instead of two, the same limit as ``limiter.hit`` would
        decide."""


class DeliveryQueue(Protocol):
    """What a delivery worker needs: lease what is due, then finish each lease one way."""

    async def lease_due(self, now: float, lease: float, limit: int, worker: str) -> list[Lease]:
        """Lease up to ``limit`` due deliveries (and expired leases) for ``lease`` seconds."""

    async def complete(self, lease: Lease, attempt: Attempt) -> bool:
        """Mark the delivery delivered, releasing the destination's backlog after its
        failures; ``False`` (and nothing done) if the lease was lost."""

    async def reschedule(self, lease: Lease, attempt: Attempt, next_at: float) -> bool:
        """Make the delivery due again at ``next_at``; ``False`` if the lease was lost."""

    async def dead_letter(self, lease: Lease, attempt: Attempt, reason: str) -> bool:
        """Move the delivery to the dead letters; ``False`` if the lease was lost."""


class OperatorStore(Protocol):
    """What the admin API and the CLI behind it need: events, replay, redrive, dead letters."""

    async def get_event(self, event_id: str, source: str | None = None) -> EventView | None:
        """An event with its deliveries and attempts, or ``None``."""

    async def list_events(
        self,
        *,
        source: str | None = None,
        status: EventStatus | None = None,
        limit: int = 50,
        cursor: str | None = None,
        type: str | None = None,
        q: str | None = None,
    ) -> tuple[list[EventSummary], str | None]:
        """Events newest first, filtered; the page and the cursor of the next one.

        ``q`` is a prefix of the event id or of the subject, found through an index on each
        (``SEARCH_LIMIT`` matches at most per index).
        """

    async def replay(
        self, event_id: str, destinations: Sequence[str], now: float, source: str | None = None
    ) -> list[str]:
        """New deliveries of a stored event, due now; their ids. ``EventNotFound`` if none."""

    async def redrive(self, delivery_ids: Sequence[str] | None, now: float) -> int:
        """Make dead deliveries due again (all for ``None``); how many were moved."""

    async def retry_now(self, destination: str, now: float) -> int:
        """Make the destination's deliveries waiting out a backoff due at ``now``; how many."""

    async def list_dead_letters(
        self, *, destination: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[DeadLetter], str | None]:
        """Dead letters, most recently dead first; the page and the cursor of the next one."""

    async def queue_depth(self) -> dict[tuple[str, str], int]:
        """Deliveries per ``(destination, state)`` for the states due, leased and dead."""


class DashboardReads(Protocol):
    """What the dashboard reads besides the operator's lists: payments, figures, analytics."""

    async def list_payments(
        self,
        *,
        source: str | None = None,
        state: State | None = None,
        q: str | None = None,
        attention: Attention | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[PaymentView], str | None]:
        """Payments, latest update first, filtered; ``q`` is a prefix of a payment's key or
        of its reference. The page and the cursor of the next one."""

    async def get_payment(
        self, source: str, key: str
    ) -> tuple[PaymentView, list[EventView]] | None:
        """One payment and its events in the order received (the last ``TIMELINE_LIMIT``),
        or ``None``."""

    async def stats(self, now: float) -> Stats:
        """Counts per minute over the hour before ``now`` and the latency histogram."""

    async def rollups(self, first_hour: int, last_hour: int, sources: Sequence[str]) -> Rollup:
        """The analytics rollups (design.md 5.9) of the UTC hours ``first_hour`` to
        ``last_hour`` (``time // 3600``, both included) of ``sources``, summed."""


class LiveReads(Protocol):
    """What the live streams read: the change log (the dashboard's stream, design.md 5.6) and
    the payments its entries name (the buyer's status stream, design.md 5.10)."""

    async def changes(self, after: str | None, limit: int) -> list[Change]:
        """Change-log entries after ``after`` (the latest one only, for ``None``), oldest first."""

    async def find_payments(self, keys: Sequence[tuple[str, str]]) -> list[PaymentView | None]:
        """The payment of each ``(source, key)``, ``None`` for one the store does not have:
        the payment alone, without its events (one look-up each)."""


class ReconcileStore(Protocol):
    """What reconciliation needs (design.md 5.8): one run at a time per source across every
    process and replica, the gateway's side of the comparison, and the runs kept."""

    async def acquire_reconcile(self, source: str, holder: str, now: float, lease: float) -> bool:
        """Take the source's run lease for ``lease`` seconds, unless another holder has it."""

    async def release_reconcile(self, source: str, holder: str) -> None:
        """Give the lease up (only if ``holder`` still has it)."""

    async def reconcile_holder(self, source: str, now: float) -> str | None:
        """Who holds the source's run lease now (a run is going on), or ``None``."""

    async def payment_states(self, source: str, keys: Sequence[str]) -> dict[str, State]:
        """The state of each of these payments the gateway has."""

    async def terminal_payments(
        self, source: str, since: float, until: float, limit: int
    ) -> list[tuple[str, State]]:
        """Payments in a terminal state first seen at or after ``since`` and last updated
        before ``until``: what a complete listing of the provider must show."""

    async def seen(self, events: Sequence[Event], now: float) -> list[bool]:
        """Whether each event's dedupe key is live (the gateway has it, or is forwarding it)."""

    async def mark_missing(
        self, source: str, key: str, reference: str | None, missing: bool, now: float
    ) -> None:
        """Flag a payment a run could not recover (``missing``; one is made for a payment the
        gateway never saw, in state pending), or clear the flag."""

    async def sightings(
        self, source: str, observed: Mapping[str, str], now: float
    ) -> dict[str, float]:
        """For each key the provider lists in a terminal state (``observed``: key -> state),
        since when it has been listed in that state (``now`` for a new sighting); keys not
        listed any more are forgotten."""

    async def save_run(self, run: ReconcileRun) -> None:
        """Keep a run (the last ``RUNS_KEPT`` of each source)."""

    async def recent_runs(self, source: str, limit: int) -> list[ReconcileRun]:
        """The source's last runs, newest first."""

    async def get_run(self, run_id: str) -> ReconcileRun | None:
        """One run with its items, or ``None``."""


class Upkeep(Protocol):
    """What the process around the store needs: retention, health, limits, wake-ups."""

    async def prune(self, before: float, limit: int) -> int:
        """Delete up to ``limit`` finished events received before ``before``; how many."""

    def rate_limiter(self) -> Limiter:
        """The rate limiter that keeps its state where this store does (design.md 5.3): in the
        process for SQLite, in the same Redis (one limit for every replica) for Redis."""

    def wakeups(self) -> Wakeups | None:
        """How a process that delivers nothing wakes the processes that deliver its events,
        or ``None`` where they find them by polling alone."""

    async def ping(self) -> None:
        """Return if the store answers; raise ``StoreError`` otherwise."""

    async def close(self) -> None:
        """Release connections and threads; the store is unusable afterwards."""


@runtime_checkable
class Store(
    IngressStore,
    DeliveryQueue,
    OperatorStore,
    DashboardReads,
    LiveReads,
    ReconcileStore,
    Upkeep,
    Protocol,
):
    """A whole store: every role, as each backend implements it (see the module docstring)."""
