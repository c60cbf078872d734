"""The store interface: durable dedupe, queue, leases, retries, dead letters and replay.

DESIGN section 3 and 5.4. Two implementations pass one contract suite (``tests/store``):
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
  delivered or unrouted: no delivery due, leased or dead) received before ``before``, with
  their deliveries, attempts and index entries, and answers how many. The caller loops until
  fewer than ``limit`` come back, so no transaction or script runs long. Events with a dead
  delivery stay (an operator redrives or inspects them). Dedupe keys keep their own expiry
  and are left alone; ``store.retention`` is never shorter than a dedupe window (the loader
  refuses that), so the original of a duplicate is still stored.
* ``list_payments``, ``subject_timeline``, ``stats``, ``changes``: for the dashboard (DESIGN
  5.6): subjects by latest event, one subject's events in order, per-minute counters and a
  latency histogram (``gateway.store.stats``) written with each accept and attempt, and the
  bounded change log the live stream reads. All are index walks, never scans of every event.
* ``get_event``, ``list_events``, ``list_dead_letters``, ``queue_depth``: for the admin API and
  metrics. Lists are newest first and paged with an opaque cursor; a page may hold fewer than
  ``limit`` items while the cursor is not ``None`` (a filtered scan stops after a bounded
  amount of work), and ``None`` means there is nothing more.

When an event id is looked up without a source and several sources used it, the most recently
received event wins; when the same ``(source, id)`` was accepted again after its window
expired, the latest one wins too.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar, runtime_checkable

from gateway.errors import InvalidCursor, StoreError
from gateway.jsontext import dumps
from gateway.logs import log_fields
from gateway.ratelimit.gcra import Decision, RateRule
from gateway.ratelimit.limiter import Limiter
from gateway.store.stats import Stats

log = logging.getLogger("gateway.store")

#: Bound on the response excerpt (and error text) recorded with each attempt.
EXCERPT_LIMIT = 1024
#: Bound on the body ``status`` kept with an event for the payments view.
BODY_STATUS_LIMIT = 64
#: Most events one subject's timeline returns (the newest ones, in order).
TIMELINE_LIMIT = 200
#: Most matches a text search (``q``) of ``list_events`` considers per index walked.
SEARCH_LIMIT = 1000

DeliveryState = Literal["due", "leased", "delivered", "dead"]
DELIVERY_STATES: tuple[DeliveryState, ...] = ("due", "leased", "delivered", "dead")
Mode = Literal["queued", "sync"]
MODES: tuple[Mode, ...] = ("queued", "sync")
AcceptStatus = Literal["queued", "duplicate"]
ACCEPT_STATUSES: tuple[AcceptStatus, ...] = ("queued", "duplicate")
Claim = Literal["claimed", "in_progress", "done"]
CLAIMS: tuple[Claim, ...] = ("claimed", "in_progress", "done")
#: ``queued``: some delivery is due or leased; ``dead_lettered``: none is, some are dead;
#: ``delivered``: every delivery was delivered; ``unrouted``: the event has no delivery at all.
EventStatus = Literal["queued", "delivered", "dead_lettered", "unrouted"]
EVENT_STATUSES: tuple[EventStatus, ...] = ("queued", "delivered", "dead_lettered", "unrouted")
#: The states ``queue_depth`` counts (the metric's ``state`` label, DESIGN 5.5).
DEPTH_STATES: tuple[DeliveryState, ...] = ("due", "leased", "dead")
#: Deliveries waiting out a backoff that one successful delivery makes due again (see
#: ``complete``); the next success releases the next batch.
BACKLOG_BATCH = 1000
#: How many unreadable deliveries one ``lease_due`` may dead-letter while it leases on past
#: them: bounds one call even when a lost key left thousands behind.
POISON_BUDGET = 100


class UnreadableEvent(StoreError):
    """A stored event cannot be read back: its key is not configured, or its row is corrupt.

    ``lease_due`` dead-letters its deliveries with the message as the reason (it names a key id
    at most, never key material nor payload) instead of failing the whole batch.
    """


@dataclass(frozen=True)
class Event:
    """An event as ingress hands it to the store and as a worker gets it back."""

    id: str  # unique per source; sent to destinations as webhook-id and ce-id
    source: str
    type: str | None
    subject: str | None
    time: str | None  # as extracted, text
    dedupe_key: str
    body: bytes  # the raw bytes exactly as received
    headers: tuple[tuple[str, str], ...]  # content-type and the source's forward_headers
    request_id: str
    received_at: float
    #: The body's own ``status`` field (a payment's "paid", "failed"), cut to
    #: ``BODY_STATUS_LIMIT`` characters; ``None`` when the body has none.
    body_status: str | None = None


@dataclass(frozen=True)
class AcceptResult:
    """The answer to ``accept``: for a duplicate, the id of the event accepted first."""

    status: AcceptStatus
    event_id: str


@dataclass(frozen=True)
class AcceptLimit:
    """A rate limit decided in the same atomic step as an accept or a sync claim, before
    anything is stored (the per-source limit, when the store keeps the limits too:
    ``Store.decides_limits``)."""

    key: str
    rule: RateRule


class LimitReached(Exception):
    """``accept`` or ``claim`` stored nothing: its ``AcceptLimit`` refused the request."""

    def __init__(self, decision: Decision) -> None:
        super().__init__("the rate limit refused the request")
        self.decision = decision


@dataclass(frozen=True)
class Attempt:
    """One try at delivering: when, the answer (``None`` if there was none) and how long."""

    number: int  # 1-based, counted since the delivery was created or redriven
    started_at: float
    status: int | None
    latency: float
    error: str | None = None
    response_excerpt: str = ""

    def bounded(self) -> Attempt:
        """This attempt with its error and excerpt cut to ``EXCERPT_LIMIT`` characters."""
        error = None if self.error is None else excerpt(self.error)
        return Attempt(
            self.number,
            self.started_at,
            self.status,
            self.latency,
            error,
            excerpt(self.response_excerpt),
        )

    def to_json(self) -> str:
        """Compact JSON, as the Redis store keeps attempts."""
        return dumps(
            [
                self.number,
                self.started_at,
                self.status,
                self.latency,
                self.error,
                self.response_excerpt,
            ]
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Attempt:
        """Inverse of ``to_json``."""
        number, started_at, status, latency, error, excerpt_ = json.loads(text)
        return cls(int(number), float(started_at), status, float(latency), error, excerpt_)


def excerpt(data: bytes | str, limit: int = EXCERPT_LIMIT) -> str:
    """A response body (UTF-8 with replacement) or an error text as kept in the record: at
    most ``limit`` characters. The one place a recorded text is cut."""
    if isinstance(data, bytes):
        data = data[: limit * 4].decode("utf-8", errors="replace")
    return data[:limit]


_L = TypeVar("_L", bound=str)


def one_of(value: str, allowed: tuple[_L, ...], what: str) -> _L:
    """``value`` as one of the ``allowed`` literals; ``UnreadableEvent`` if it is none of them
    (a stored field a store reads back and the type system cannot vouch for)."""
    for option in allowed:
        if value == option:
            return option
    raise UnreadableEvent(f"stored {what} {value[:40]!r} is not one of {', '.join(allowed)}")


@dataclass(frozen=True)
class Lease:
    """A delivery held by one worker until ``expires_at``; ``token`` proves it is still held."""

    delivery_id: str
    event: Event
    destination: str
    attempt: int  # number of the attempt about to be made, 1-based
    token: str
    expires_at: float
    first_attempt_at: float | None  # None before the first attempt (since creation/redrive)
    created_at: float


@dataclass(frozen=True)
class DeliveryView:
    """One delivery of an event, with every attempt made (also those before a redrive)."""

    id: str
    destination: str
    state: DeliveryState
    attempts_made: int  # since creation or the last redrive
    created_at: float
    next_attempt_at: float | None  # when due
    dead_reason: str | None
    dead_at: float | None
    attempts: tuple[Attempt, ...]


@dataclass(frozen=True)
class EventView:
    """An event with all its deliveries, for the admin API."""

    event: Event
    mode: Mode
    status: EventStatus
    deliveries: tuple[DeliveryView, ...]


@dataclass(frozen=True)
class EventSummary:
    """One line of an event list."""

    id: str
    source: str
    type: str | None
    subject: str | None
    received_at: float
    status: EventStatus
    mode: Mode
    body_status: str | None = None
    attempts: int = 0  # attempts made over all its deliveries (as last recorded)


@dataclass(frozen=True)
class PaymentSummary:
    """One line of the payments view: a subject and where it stands (its latest event)."""

    subject: str | None  # None: an event without a subject, standing alone
    event_id: str  # the latest event's id
    source: str
    type: str | None
    body_status: str | None
    status: EventStatus  # of the latest event
    events: int
    latest_at: float


@dataclass(frozen=True)
class Change:
    """One entry of the store's change log, the source of the live stream.

    ``kind`` is ``accepted`` or ``delivery``; ``id`` orders entries (``change_order``) and is
    what a stream client sends back as ``Last-Event-ID``.
    """

    id: str
    kind: Literal["accepted", "delivery"]
    data: dict[str, object]


@dataclass(frozen=True)
class DeadLetter:
    """A dead delivery, with why it died and the last attempt made."""

    delivery_id: str
    event_id: str
    source: str
    destination: str
    attempts_made: int
    dead_at: float
    reason: str
    last_attempt: Attempt | None


class Wakeups(Protocol):
    """Wake-ups between processes sharing a store (``gateway.store.wakeups``)."""

    def announce(self) -> None:
        """Tell the delivering processes that events were queued."""

    async def listen(self, on_wake: Callable[[], None]) -> None:
        """Call ``on_wake`` for every announcement until cancelled."""

    async def close(self) -> None:
        """Finish what is in flight."""


@runtime_checkable
class Store(Protocol):
    """The durable store both backends implement (see the module docstring)."""

    async def accept(
        self,
        event: Event,
        destinations: Sequence[str],
        window: float,
        now: float,
        limit: AcceptLimit | None = None,
    ) -> AcceptResult:
        """Dedupe, persist and enqueue one delivery per destination, atomically; with a
        ``limit`` (only where ``decides_limits``), first decide it: ``LimitReached``."""

    async def claim(
        self,
        source: str,
        dedupe_key: str,
        lease: float,
        now: float,
        limit: AcceptLimit | None = None,
    ) -> Claim:
        """Sync mode: take the dedupe key for ``lease`` seconds, unless taken or done; with a
        ``limit`` (where ``decides_limits``), decide it first: ``LimitReached``, nothing
        claimed."""

    async def commit(
        self,
        event: Event,
        destinations: Sequence[str],
        window: float,
        now: float,
        attempt: Attempt,
    ) -> None:
        """Sync mode: mark the key done for the window; record event, deliveries, attempt."""

    async def release(self, source: str, dedupe_key: str) -> None:
        """Sync mode: give a claim up (the forward failed); a done key is left alone."""

    async def lease_due(self, now: float, lease: float, limit: int, worker: str) -> list[Lease]:
        """Lease up to ``limit`` due deliveries (and expired leases) for ``lease`` seconds."""

    async def complete(self, lease: Lease, attempt: Attempt) -> bool:
        """Mark the delivery delivered, releasing the destination's backlog after its
        failures; ``False`` (and nothing done) if the lease was lost."""

    async def reschedule(self, lease: Lease, attempt: Attempt, next_at: float) -> bool:
        """Make the delivery due again at ``next_at``; ``False`` if the lease was lost."""

    async def dead_letter(self, lease: Lease, attempt: Attempt, reason: str) -> bool:
        """Move the delivery to the dead letters; ``False`` if the lease was lost."""

    async def retry_now(self, destination: str, now: float) -> int:
        """Make the destination's deliveries waiting out a backoff due at ``now``; how many."""

    async def replay(
        self, event_id: str, destinations: Sequence[str], now: float, source: str | None = None
    ) -> list[str]:
        """New deliveries of a stored event, due now; their ids. ``EventNotFound`` if none."""

    async def redrive(self, delivery_ids: Sequence[str] | None, now: float) -> int:
        """Make dead deliveries due again (all for ``None``); how many were moved."""

    async def prune(self, before: float, limit: int) -> int:
        """Delete up to ``limit`` finished events received before ``before``; how many."""

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

    async def list_payments(
        self, *, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[PaymentSummary], str | None]:
        """Subjects, latest activity first; the page and the cursor of the next one."""

    async def subject_timeline(self, subject: str) -> list[EventView]:
        """The events of one subject in the order received (the last ``TIMELINE_LIMIT``)."""

    async def stats(self, now: float) -> Stats:
        """Counts per minute over the hour before ``now`` and the latency histogram."""

    async def changes(self, after: str | None, limit: int) -> list[Change]:
        """Change-log entries after ``after`` (the latest one only, for ``None``), oldest first."""

    async def list_dead_letters(
        self, *, destination: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[DeadLetter], str | None]:
        """Dead letters, most recently dead first; the page and the cursor of the next one."""

    async def queue_depth(self) -> dict[tuple[str, str], int]:
        """Deliveries per ``(destination, state)`` for the states due, leased and dead."""

    def rate_limiter(self) -> Limiter:
        """The rate limiter that keeps its state where this store does (DESIGN 5.3): in the
        process for SQLite, in the same Redis (one limit for every replica) for Redis."""

    def decides_limits(self, limiter: Limiter) -> bool:
        """Whether ``accept`` and ``claim`` can decide a limit of ``limiter`` themselves
        (``AcceptLimit``): one call instead of two, the same limit as ``limiter.hit`` would
        decide."""

    def wakeups(self) -> Wakeups | None:
        """How a process that delivers nothing wakes the processes that deliver its events,
        or ``None`` where they find them by polling alone."""

    async def ping(self) -> None:
        """Return if the store answers; raise ``StoreError`` otherwise."""

    async def close(self) -> None:
        """Release connections and threads; the store is unusable afterwards."""


def encode_cursor(score: float, key: str) -> str:
    """An opaque cursor for "after (score, key)" in a newest-first list."""
    raw = json.dumps([score, key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    """Inverse of ``encode_cursor``; ``InvalidCursor`` for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        score, key = json.loads(raw)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise InvalidCursor("invalid cursor") from exc
    if not isinstance(score, int | float) or not isinstance(key, str):
        raise InvalidCursor("invalid cursor")
    return float(score), key


def log_backlog_released(destination: str, count: int) -> None:
    """One line when a destination's backlog is made due again after it came back."""
    log_fields(
        log,
        logging.INFO,
        "destination back: deliveries waiting out a backoff are due now",
        {"destination": destination, "deliveries": count},
    )


def event_status(n_deliveries: int, pending: int, dead: int) -> EventStatus:
    """An event's status from the count of its deliveries, pending ones and dead ones."""
    if n_deliveries == 0:
        return "unrouted"
    if pending:
        return "queued"
    if dead:
        return "dead_lettered"
    return "delivered"


def change_order(change_id: str) -> tuple[int, int]:
    """A change id as a sortable pair (``"12"`` for SQLite, ``"1700000000000-3"`` for Redis);
    ``(-1, -1)`` for text that is neither."""
    first, _, second = change_id.partition("-")
    if not first.isdigit() or not (second.isdigit() or second == ""):
        return (-1, -1)
    return int(first), int(second or 0)


def body_status_of(value: str | None) -> str | None:
    """A body ``status`` as kept: cut to ``BODY_STATUS_LIMIT`` characters."""
    return None if value is None else value[:BODY_STATUS_LIMIT]
