"""The values every store backend shares: events, attempts, leases, views, and their bounds.

Frozen dataclasses only, with the few pure helpers that build or read them (cursors, the
change-log record, an event's status); the operations on them are the role protocols of
``gateway.store.protocols``.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from gateway.errors import InvalidCursor, StoreError
from gateway.jsontext import dumps
from gateway.logs import log_fields
from gateway.payments.amounts import Amount
from gateway.payments.rules import PaymentFacts
from gateway.payments.states import Mark, State
from gateway.ratelimit.gcra import Decision, RateRule

log = logging.getLogger("gateway.store")

#: Bound on the response excerpt (and error text) recorded with each attempt.
EXCERPT_LIMIT = 1024
#: Bound on the body ``status`` kept with an event for the payments view.
BODY_STATUS_LIMIT = 64
#: Reconciliation runs kept per source.
RUNS_KEPT = 50
#: Most items (not matched or open) one run keeps.
RUN_ITEMS_KEPT = 1000
#: Most events one payment's timeline returns (the newest ones, in order).
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
#: ``held``: a payment's event marked superseded or conflict and, under ``order: enforce``,
#: not delivered (a replay delivers it).
EventStatus = Literal["queued", "delivered", "dead_lettered", "unrouted", "held"]
EVENT_STATUSES: tuple[EventStatus, ...] = (
    "queued", "delivered", "dead_lettered", "unrouted", "held",
)  # fmt: skip
Origin = Literal["webhook", "reconciled"]
ORIGINS: tuple[Origin, ...] = ("webhook", "reconciled")
Attention = Literal["conflict", "dead_letter", "missing"]
ATTENTIONS: tuple[Attention, ...] = ("conflict", "dead_letter", "missing")
#: The states ``queue_depth`` counts (the metric's ``state`` label, design.md 5.5).
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
    #: What the event says of its payment (design.md 5.7), as ingress read it; ``None`` for
    #: an event that is not about a payment. Not read back from the store (its key and mark
    #: are, in ``EventView``).
    payment: PaymentFacts | None = None
    #: ``webhook``: a sender posted it; ``reconciled``: recovered from the provider's listing.
    origin: Origin = "webhook"

    @property
    def shard_key(self) -> str:
        """What decides where the event is stored in a partitioned store: its payment's key
        (every event of a payment in one part, so its state is decided in one step), or its
        dedupe key (a duplicate always meets its original)."""
        return self.payment.key if self.payment is not None else self.dedupe_key


@dataclass(frozen=True)
class AcceptResult:
    """The answer to ``accept``: for a duplicate, the id of the event accepted first."""

    status: AcceptStatus
    event_id: str
    #: What the payment's state machine made of the event (design.md 5.7): ``superseded`` or
    #: ``conflict``, or ``None``; ``held``: marked and not delivered (``order: enforce``).
    mark: Mark | None = None
    held: bool = False


@dataclass(frozen=True)
class AcceptLimit:
    """A rate limit decided in the same atomic step as an accept or a sync claim, before
    anything is stored (the per-source limit, and for an accept the per-IP one, when the
    store keeps the limits too: ``Store.decides_limits``)."""

    key: str
    rule: RateRule


class LimitReached(Exception):
    """``accept`` or ``claim`` stored nothing: one of its ``AcceptLimit``s refused the request
    (``decision`` is that limit's)."""

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
    payment_key: str | None = None
    mark: Mark | None = None


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
class PaymentView:
    """One payment (design.md 5.7): where it stands, for how much, and whether the marketplace
    has it."""

    source: str
    key: str
    reference: str | None
    state: State
    amount: Amount | None
    events: int
    #: Every delivery of its events that are delivered at all (not held) is done, and at
    #: least one was made: the marketplace has the payment as it stands.
    delivered: bool
    attention: Attention | None
    first_seen: float
    updated_at: float


ReconcileResult = Literal[
    "matched", "open", "recovered", "missing", "mismatch", "unknown_to_provider"
]
RECONCILE_RESULTS: tuple[ReconcileResult, ...] = (
    "matched", "open", "recovered", "missing", "mismatch", "unknown_to_provider",
)  # fmt: skip


@dataclass(frozen=True)
class ReconcileItem:
    """One payment of a reconciliation run (design.md 5.8): the provider's state against the
    gateway's, and what the run made of it."""

    key: str
    provider_state: str | None
    gateway_state: str | None
    result: ReconcileResult
    event_id: str | None = None  # the event recovered (or that would have been)
    reason: str | None = None  # why it is missing, or what the provider listed

    def to_json(self) -> dict[str, object]:
        """The admin API's (and the store's) form."""
        return {
            "key": self.key,
            "provider_state": self.provider_state,
            "gateway_state": self.gateway_state,
            "result": self.result,
            "event_id": self.event_id,
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ReconcileItem:
        """Inverse of ``to_json``."""
        return cls(
            key=str(data["key"]),
            provider_state=data.get("provider_state"),
            gateway_state=data.get("gateway_state"),
            result=one_of(str(data["result"]), RECONCILE_RESULTS, "reconcile result"),
            event_id=data.get("event_id"),
            reason=data.get("reason"),
        )


@dataclass(frozen=True)
class ReconcileRun:
    """One reconciliation run of a source: when, whether it could ask the provider, the count
    of each result, and every item that is not matched or open."""

    id: str
    source: str
    started_at: float
    finished_at: float | None
    ok: bool
    error: str | None
    dry_run: bool
    counts: dict[str, int]
    items: tuple[ReconcileItem, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """As the store keeps it (times as numbers)."""
        return {
            "id": self.id,
            "source": self.source,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "ok": self.ok,
            "error": self.error,
            "dry_run": self.dry_run,
            "counts": self.counts,
            "items": [item.to_json() for item in self.items],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ReconcileRun:
        """Inverse of ``to_json``."""
        return cls(
            id=str(data["id"]),
            source=str(data["source"]),
            started_at=float(data["started_at"]),
            finished_at=None if data.get("finished_at") is None else float(data["finished_at"]),
            ok=bool(data["ok"]),
            error=data.get("error"),
            dry_run=bool(data.get("dry_run", False)),
            counts={str(k): int(v) for k, v in data.get("counts", {}).items()},
            items=tuple(ReconcileItem.from_json(i) for i in data.get("items", [])),
        )


@dataclass(frozen=True)
class Change:
    """One entry of the store's change log, the source of the live stream.

    ``kind`` is ``accepted`` or ``delivery``; ``id`` orders entries (``change_order``) and is
    what a stream client sends back as ``Last-Event-ID``.
    """

    id: str
    kind: Literal["accepted", "delivery"]
    data: dict[str, object]

    @property
    def payment(self) -> tuple[str, str] | None:
        """The (source, key) of the payment the entry's event is about, if any."""
        source, key = self.data.get("source"), self.data.get("payment_key")
        if isinstance(source, str) and isinstance(key, str):
            return source, key
        return None


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


def event_status(n_deliveries: int, pending: int, dead: int, held: bool = False) -> EventStatus:
    """An event's status from the count of its deliveries, pending ones and dead ones
    (``held``: a marked payment event kept back from delivery)."""
    if n_deliveries == 0:
        return "held" if held else "unrouted"
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


def subject_key(subject: str | None, uid: str) -> str:
    """An event's entry in the subjects index the payments view walks: ``s:<subject>``, or
    ``e:<uid>`` for an event without a subject (it stands alone)."""
    return f"e:{uid}" if subject is None else f"s:{subject}"


def new_token() -> str:
    """A fresh lease token: 32 random hex digits (a lost lease is told by its token)."""
    return os.urandom(16).hex()


def event_change(
    event_id: str | None,
    source: str | None,
    type_: str | None,
    subject: str | None,
    body_status: str | None,
    payment_key: str | None = None,
) -> dict[str, object]:
    """What the change log says of an event (the live stream's ``data``), before the store
    adds the event's status; ``delivery_change`` adds an attempt's outcome. ``finish.lua``
    writes the same fields for a Redis store of one partition. The id and source are ``None``
    only as read back from a corrupt event (its deliveries are dead-lettered all the same).

    ``payment_key`` names the payment the event is about (with its source), ``None`` for an
    event about none: a reader following payments (the buyer's status stream, design.md 5.10)
    learns which one changed from the entry alone, without reading the store per entry.
    """
    return {
        "event_id": event_id,
        "source": source,
        "type": type_,
        "subject": subject,
        "status": body_status,
        "payment_key": payment_key,
    }


def delivery_change(
    event: dict[str, object], destination: str, attempt: int, result: str
) -> dict[str, object]:
    """An ``event_change`` with one delivery attempt's outcome."""
    return {**event, "destination": destination, "attempt": attempt, "result": result}
