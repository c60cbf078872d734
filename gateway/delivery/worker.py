"""The delivery worker: lease due deliveries, send them, and record what happened (design.md 3).

One loop per process::

    lease_due ──> send (at most ``concurrency`` at once) ──> 2xx               complete
                                                       ├──> retryable fail    reschedule (policy)
                                                       │      or, exhausted / too old: dead_letter
                                                       └──> other 4xx         dead_letter at once

The HTTP POST itself is injected (``send``), so this module holds only the decisions; the
clock is injected too, and ``run_once`` lets a test drive one round at a chosen time.

A worker that dies holding leases loses them after ``lease`` seconds and another takes the
deliveries again (at-least-once; destinations dedupe on ``webhook-id``). ``lease`` must be
longer than the longest destination timeout, or a slow delivery is sent twice.

A store failure while recording an outcome is logged and left to the lease: the delivery
comes back when the lease expires.

The worker leases as many deliveries again as it has slots and keeps them ready, so that a
slot whose delivery has been recorded starts the next one at once, not after a lease's round
trip. Under load, with the loop busy accepting, that round trip is as long as a POST, and
slots that waited for it delivered far less than the core allowed. The deliveries recorded
together also start together, so their answers, and their records, come back together (fewer
group commits, fewer pipelines). Only ``concurrency`` deliveries are ever sent and not yet
recorded: all a crash can make a destination see twice. One kept ready longer than
``ready_for`` seconds is not sent, lest its lease end while it is; it comes back when its
lease expires. On ``stop`` the ready ones are delivered too, as slots free up.

Every recorded attempt logs one JSON line (design.md 5.5, ``log_attempt``): the event, destination,
attempt number, status, latency and result, with the next attempt's time for a retry and the
reason for a dead letter, so an event can be followed in the logs alone.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from gateway.delivery.retry import RetryPolicy, is_retryable
from gateway.errors import StoreError
from gateway.logs import log_fields
from gateway.store.protocols import DeliveryQueue
from gateway.store.records import Attempt, Event, Lease
from gateway.times import rfc3339

log = logging.getLogger("gateway.delivery")

Send = Callable[[Lease], Awaitable[Attempt]]
Result = Literal["delivered", "retried", "dead_lettered"]
#: ``observer(result, destination, duration, received_at)``: duration is the attempt's latency,
#: received_at when ingress accepted the event (for the received-to-delivered latency).
Observer = Callable[[Result, str, float, float], None]
_LEVELS = {"delivered": logging.INFO, "retried": logging.WARNING, "dead_lettered": logging.ERROR}
#: After a full batch the worker leases again once 1/_REFILL of its slots is free: one lease
#: call for several deliveries rather than one per delivery (the call, its reply's events
#: decoded and its write to the store each cost about as much for one lease as for four),
#: while at most that share of the slots waits for its next lease.
_REFILL = 4
#: Below this ``ready_for`` (seconds), nothing is leased ahead of the free slots.
_MIN_READY_FOR = 1.0


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to: the result, whether the store took it, and what is next."""

    result: Result
    recorded: bool
    next_attempt_at: float | None = None  # retried: when
    reason: str | None = None  # dead_lettered: why


def log_attempt(
    event: Event,
    destination: str,
    attempt: Attempt,
    result: Result,
    *,
    next_attempt_at: float | None = None,
    reason: str | None = None,
    mode: str = "queued",
) -> None:
    """One JSON log line for one delivery attempt (never the body, never a secret)."""
    fields: dict[str, object] = {
        "event_id": event.id,
        "source": event.source,
        "request_id": event.request_id,
        "destination": destination,
        "attempt": attempt.number,
        "status": attempt.status,
        "latency_ms": round(attempt.latency * 1000, 1),
        "result": result,
        "mode": mode,
    }
    if attempt.error:
        fields["error"] = attempt.error
    if next_attempt_at is not None:
        fields["next_attempt_at"] = rfc3339(next_attempt_at)
    if reason is not None:
        fields["reason"] = reason
    log_fields(log, _LEVELS[result], "delivery attempt", fields)


class DeliveryWorker:
    """Leases due deliveries from a store and delivers them with ``send``."""

    def __init__(
        self,
        store: DeliveryQueue,
        send: Send,
        policies: Mapping[str, RetryPolicy],
        *,
        clock: Callable[[], float],
        worker_id: str,
        concurrency: int = 16,
        poll_interval: float = 1.0,
        lease: float = 60.0,
        ready_for: float = 15.0,
        observer: Observer | None = None,
        wake: asyncio.Event | None = None,
        default_policy: RetryPolicy | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._store = store
        self._send = send
        self._policies = policies
        self._default_policy = default_policy or RetryPolicy()
        self._clock = clock
        self._worker_id = worker_id
        self._concurrency = concurrency
        self._poll_interval = poll_interval
        self._lease = lease
        self._observer = observer
        self._wake = wake or asyncio.Event()
        self._rng = rng or random.Random()  # jitter, not a secret
        self._stopping = asyncio.Event()
        self._ready_for = ready_for
        self._inflight: set[asyncio.Task[Result | None]] = set()
        self._refill = max(1, concurrency // _REFILL)
        #: Leased, not yet started: at most ``_ahead`` beyond the free slots.
        self._ready: deque[Lease] = deque()
        self._ahead = concurrency if ready_for >= _MIN_READY_FOR else 0
        #: Set once ``_refill`` more deliveries may be leased (or stop is asked for).
        self._slots = asyncio.Event()

    async def run_once(self, now: float | None = None) -> int:
        """Lease what is due at ``now`` (default: the clock), deliver it all; how many leased."""
        at = self._clock() if now is None else now
        leases = await self._store.lease_due(at, self._lease, self._concurrency, self._worker_id)
        if leases:
            await asyncio.gather(*(self._deliver(lease) for lease in leases))
        return len(leases)

    async def run(self) -> None:
        """Deliver until ``stop``: keep up to ``concurrency`` deliveries in flight."""
        while not self._stopping.is_set():
            wanted = self._wanted()
            leased = 0
            if wanted > 0:
                try:
                    leases = await self._store.lease_due(
                        self._clock(), self._lease, wanted, self._worker_id
                    )
                except StoreError as exc:
                    log.warning("leasing deliveries failed: %s", exc)
                    leases = []
                self._ready.extend(leases)
                self._start_ready()
                leased = len(leases)
            if leased and leased == wanted:
                # A full batch: more may be due; lease again once ``_refill`` more are wanted.
                await self._wait_for_slots()
                continue
            await self._idle()
        # stop() may have been called while lease_due was running, and leases may be kept
        # ready: those deliveries are started once there is room and finished here, before
        # the caller closes the store and the HTTP session under them.
        while self._inflight or self._ready:
            self._start_ready()
            await asyncio.gather(*self._inflight, return_exceptions=True)

    def _wanted(self) -> int:
        """How many more deliveries to lease: the free slots and the ones kept ready."""
        return self._concurrency + self._ahead - len(self._inflight) - len(self._ready)

    def _start_ready(self) -> None:
        """Start leased deliveries while a slot is free."""
        while self._ready and len(self._inflight) < self._concurrency:
            lease = self._ready.popleft()
            waited = self._clock() - (lease.expires_at - self._lease)
            if self._ahead and waited > self._ready_for:
                log.warning(
                    "delivery %s waited %.1f s for a free slot: left to its lease, which"
                    " expires in %.1f s",
                    lease.delivery_id,
                    waited,
                    self._lease - waited,
                )
                continue
            task = asyncio.create_task(self._deliver(lease))
            self._inflight.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Result | None]) -> None:
        self._inflight.discard(task)
        self._start_ready()
        if self._wanted() >= self._refill:
            self._slots.set()

    async def _wait_for_slots(self) -> None:
        """Wait until ``_refill`` more deliveries may be leased (or stop is asked for)."""
        if self._stopping.is_set() or self._wanted() >= self._refill:
            return
        self._slots.clear()
        await self._slots.wait()

    async def _idle(self) -> None:
        """Sleep for the poll interval, waking early on ``wake``, ``stop`` or a free slot."""
        waiters = {
            asyncio.create_task(self._wake.wait()),
            asyncio.create_task(self._stopping.wait()),
        }
        if self._wanted() <= 0:
            self._slots.clear()
            waiters.add(asyncio.create_task(self._slots.wait()))
        try:
            await asyncio.wait(
                waiters,
                timeout=self._poll_interval,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            for waiter in waiters:
                waiter.cancel()
        self._wake.clear()

    async def stop(self) -> None:
        """Stop leasing and wait for the deliveries in flight to finish and be recorded."""
        self._stopping.set()
        self._slots.set()
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)

    async def _deliver(self, lease: Lease) -> Result | None:
        """Send one leased delivery and record the outcome; ``None`` if it was not recorded."""
        try:
            attempt = await self._send(lease)
        except Exception as exc:  # a bug in one send must not stop the worker
            log.exception("sending delivery %s failed", lease.delivery_id)
            now = self._clock()
            attempt = Attempt(lease.attempt, now, None, 0.0, f"internal error: {exc!r}", "")
        try:
            outcome = await self._record(lease, attempt)
        except StoreError as exc:
            # The lease expires and the delivery is taken again: at-least-once.
            log.warning("recording delivery %s failed: %s", lease.delivery_id, exc)
            return None
        if not outcome.recorded:
            log.warning("lease on delivery %s was lost before it was recorded", lease.delivery_id)
            return None
        log_attempt(
            lease.event,
            lease.destination,
            attempt,
            outcome.result,
            next_attempt_at=outcome.next_attempt_at,
            reason=outcome.reason,
        )
        if self._observer is not None:
            self._observer(
                outcome.result, lease.destination, attempt.latency, lease.event.received_at
            )
        return outcome.result

    async def _record(self, lease: Lease, attempt: Attempt) -> Outcome:
        """Decide what the attempt means and tell the store (design.md 3)."""
        if attempt.status is not None and 200 <= attempt.status < 300:
            return Outcome("delivered", await self._store.complete(lease, attempt))
        if not is_retryable(attempt.status):
            # A 4xx other than 408/409/425/429 will not get better by waiting.
            reason = f"HTTP {attempt.status} is not retried"
            recorded = await self._store.dead_letter(lease, attempt, reason)
            return Outcome("dead_lettered", recorded, reason=reason)
        policy = self._policies.get(lease.destination, self._default_policy)
        first = lease.first_attempt_at if lease.first_attempt_at is not None else attempt.started_at
        finished = attempt.started_at + attempt.latency
        next_at = policy.next_attempt_at(lease.attempt, first, finished, self._rng)
        if next_at is None:
            if lease.attempt >= policy.attempts_allowed:
                reason = f"gave up after {lease.attempt} attempts"
            else:
                reason = f"gave up: older than max_age ({policy.max_age:g} s)"
            if attempt.status is not None:
                reason += f", last answer HTTP {attempt.status}"
            elif attempt.error:
                reason += f", last error: {attempt.error}"
            recorded = await self._store.dead_letter(lease, attempt, reason)
            return Outcome("dead_lettered", recorded, reason=reason)
        recorded = await self._store.reschedule(lease, attempt, next_at)
        return Outcome("retried", recorded, next_attempt_at=next_at)
