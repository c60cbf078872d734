"""Sync delivery (design.md 3, ``delivery: sync``): claim the dedupe key, forward inline, then
commit on 2xx or release, so the sender's retry goes through after a failure.

::

    claim ──done──────────> duplicate (200 to the sender)
      ├──in_progress──────> InProgress (409, Retry-After: 1)
      └──claimed──> deliver ──2xx──> commit (done for the window) ──> the destination's answer
                              └─else─> release ──> 4xx passed back; 5xx 502; timeout 504

The ingress maps what ``forward_sync`` returns to the sender's response; the refusals are the
``RequestError``s above, so the ingress has nothing to decide.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.delivery.client import DeliveryClient
from gateway.delivery.forward import Destination, deliver
from gateway.delivery.worker import Result, log_attempt
from gateway.errors import BadGateway, GatewayTimeout, InProgress, StoreError, Unavailable
from gateway.metrics import Metrics
from gateway.store.protocols import IngressStore
from gateway.store.records import AcceptLimit, Attempt, Event

log = logging.getLogger("gateway.delivery")

#: How long a sync claim lasts beyond the destination's timeout before another may take it.
SYNC_LEASE_MARGIN = 5.0


@dataclass(frozen=True)
class Forwarded:
    """The destination's answer that goes back to the sender: a 2xx, or a 4xx it should see."""

    status: int
    body: bytes
    content_type: str | None

    @property
    def ok(self) -> bool:
        """Whether the destination took the event."""
        return 200 <= self.status < 300


async def forward_sync(
    store: IngressStore,
    client: DeliveryClient,
    metrics: Metrics,
    event: Event,
    destination: Destination,
    window: float,
    now: float,
    *,
    clock: Callable[[], float] = time.time,
    limit: AcceptLimit | None = None,
) -> Forwarded | None:
    """Forward ``event`` inline under a claim of its dedupe key; ``None`` for a duplicate.

    ``limit``: the per-source limit, decided by the claim itself (``LimitReached``)."""
    try:
        claim = await store.claim(
            event.source,
            event.dedupe_key,
            destination.timeout + SYNC_LEASE_MARGIN,
            now,
            limit,
            shard_key=event.shard_key,
        )
    except StoreError as exc:
        raise Unavailable() from exc
    if claim == "done":
        return None
    if claim == "in_progress":
        raise InProgress()
    committed = False
    try:
        result = await deliver(client, event, destination, 1, clock=clock)
        metrics.observe_delivery(destination.name, result.latency)
        attempt = Attempt(
            number=1,
            started_at=now,
            status=result.status,
            latency=result.latency,
            error=result.error,
            response_excerpt=result.excerpt,
        )
        if result.ok:
            await store.commit(event, [destination.name], window, clock(), attempt)
            committed = True
    except StoreError as exc:
        raise Unavailable() from exc
    finally:
        if not committed:
            try:
                await store.release(event.source, event.dedupe_key, shard_key=event.shard_key)
            except StoreError:
                # The claim's lease runs out by itself; the sender's retry then goes through.
                log.warning("could not release a sync claim", extra={"event_id": event.id})
    # Not delivered: the sender is answered with the failure and sends the event again.
    outcome: Result = "delivered" if result.ok else "retried"
    metrics.count_delivery(destination.name, outcome)
    log_attempt(event, destination.name, attempt, outcome, mode="sync")
    if result.timed_out:
        raise GatewayTimeout()
    if result.status is None or result.status >= 500:
        raise BadGateway()
    return Forwarded(result.status, result.body, result.content_type)
