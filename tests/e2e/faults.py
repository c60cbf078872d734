"""What the fault scenarios share: a destination that fails on purpose, a sender that behaves
like a real one under steady load, and the tally that checks design.md 3 and prints the figures.

The sender sends every event until it is answered 2xx (the same id and body each time, signed
afresh, as Standard Webhooks senders retry), so once the faults stop every event has been
accepted, and the gateway may have stored an event whose answer was lost. The tally then holds
the gateway to its promise:

* every accepted event reached the destination (answered 2xx there) at least once;
* nothing reached the destination that the sender never sent (webhook-id sets compared);
* each delivery carries the gateway's signature and the sender's bytes;
* redeliveries of an event already answered 2xx are bounded by the answers the gateway lost:
  crashes x deliveries in flight, plus attempts that timed out (a destination that answers
  200 just after the gateway gave up has been delivered to, and will be again).

The figures (accepted, delivered, duplicates, max delay from the sender's first try to the
first 2xx at the destination) are printed (``pytest -s``) and, when
``WEBHOOK_GATEWAY_FAULTS_RESULTS`` names a file, appended to it as one JSON line each.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from tests.e2e.gateway_process import MARKET_PATH, Destination, GatewayProcess
from tests.support import payment_body, sign_payment, signed_by_gateway
from tests.waiting import eventually


@dataclass(frozen=True)
class Receipt:
    """One request the destination received and how it answered."""

    webhook_id: str
    at: float  # monotonic
    status: int  # what the destination answered; 0: held past the gateway's timeout
    verified: bool
    body: bytes


@dataclass
class FaultyMarketplace:
    """A destination that answers 500 to a share of requests, holds a share past the gateway's
    timeout, and otherwise answers 200 after ``delay``. Chance is seeded, so a run repeats."""

    fail_rate: float = 0.0
    hang_rate: float = 0.0
    hang: float = 0.0
    delay: float = 0.0
    seed: int = 7
    receipts: list[Receipt] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    async def handle(self, request: web.Request) -> web.Response:
        """Verify the gateway's signature, then answer as chance says."""
        body = await request.read()
        headers = dict(request.headers)
        verified = signed_by_gateway(body, headers)
        webhook_id = headers.get("webhook-id", "")
        roll = self._rng.random()
        status = 200
        if roll < self.fail_rate:
            status = 500
        elif roll < self.fail_rate + self.hang_rate:
            status = 0
        if status == 0:
            # Past the gateway's timeout: it has given up and will try again; this answer is
            # never read, so the request does not count as delivered.
            self._note(Receipt(webhook_id, time.monotonic(), 0, verified, body))
            await asyncio.sleep(self.hang)
            return web.Response(status=200)
        if self.delay:
            await asyncio.sleep(self.delay)
        self._note(Receipt(webhook_id, time.monotonic(), status, verified, body))
        return web.Response(status=status, body=b'{"ok":true}', content_type="application/json")

    def _note(self, receipt: Receipt) -> None:
        self.receipts.append(receipt)
        self.arrived.set()

    def app(self) -> web.Application:
        """The aiohttp app ``Destination`` serves."""
        app = web.Application()
        app.router.add_post(MARKET_PATH, self.handle)
        return app

    def delivered(self) -> set[str]:
        """Ids answered 2xx at least once."""
        return {r.webhook_id for r in self.receipts if 200 <= r.status < 300}

    async def wait_delivered(self, ids: set[str], timeout: float, logs: Callable[[], str]) -> None:
        """Wait until every id in ``ids`` was answered 2xx; fail with the missing ones."""
        await eventually(
            lambda: sorted(ids - self.delivered()),
            f"{len(ids)} accepted events to be delivered (seen: the ids still missing)",
            until=lambda missing: not missing,
            timeout=timeout,
            interval=0.1,
            why=logs,
        )


def faulty_destination(market: FaultyMarketplace) -> Destination:
    """A ``Destination`` (pre-chosen port, start/stop) serving ``market``."""
    return Destination(market)  # type: ignore[arg-type]  # duck-typed: app() is what it uses


@dataclass
class Sent:
    """One event as the sender sees it."""

    body: bytes
    first_try: float  # monotonic
    accepted_at: float | None = None
    tries: int = 0


class Sender:
    """Sends ``rate`` events a second for ``duration`` seconds to whichever of ``gateways`` is
    running, each until it is answered 2xx (or ``give_up`` seconds pass), backing off from
    200 ms to 2 s between tries."""

    def __init__(
        self,
        gateways: Callable[[], Sequence[GatewayProcess]],
        *,
        rate: float,
        duration: float,
        give_up: float = 120.0,
    ) -> None:
        self.gateways = gateways
        self.rate = rate
        self.duration = duration
        self.give_up = give_up
        self.events: dict[str, Sent] = {}
        self.refusals: collections.Counter[str] = collections.Counter()
        self._turn = 0

    def accepted(self) -> set[str]:
        """Ids answered 2xx."""
        return {i for i, s in self.events.items() if s.accepted_at is not None}

    async def run(self) -> None:
        """Send the whole load; return once every event has been answered 2xx or given up."""
        timeout = aiohttp.ClientTimeout(total=5)
        connector = aiohttp.TCPConnector(limit=64, force_close=True)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            tasks = []
            start = time.monotonic()
            count = int(self.rate * self.duration)
            for n in range(count):
                # A steady rate, whatever happens to the answers.
                delay = start + n / self.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(self._one(session)))
            await asyncio.gather(*tasks)

    def _pick(self) -> GatewayProcess | None:
        running = [g for g in self.gateways() if g.running()]
        if not running:
            return None
        self._turn += 1
        return running[self._turn % len(running)]

    async def _one(self, session: aiohttp.ClientSession) -> None:
        msg_id = f"msg_{uuid.uuid4().hex}"
        sent = self.events[msg_id] = Sent(payment_body(), time.monotonic())
        backoff = 0.2
        while time.monotonic() - sent.first_try < self.give_up:
            sent.tries += 1
            gateway = self._pick()
            if gateway is not None:
                headers = sign_payment(sent.body, msg_id=msg_id)
                try:
                    async with session.post(gateway.url(), data=sent.body, headers=headers) as r:
                        await r.read()
                        if 200 <= r.status < 300:
                            sent.accepted_at = time.monotonic()
                            return
                        self.refusals[str(r.status)] += 1
                except (aiohttp.ClientError, TimeoutError) as exc:
                    self.refusals[type(exc).__name__] += 1
            # Backing off like a real sender: a fixed 200 ms from every waiting event is a
            # storm of its own (hundreds of requests a second while Redis is down).
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)


@dataclass(frozen=True)
class Figures:
    """What one scenario run measured."""

    scenario: str
    store: str
    accepted: int
    delivered: int
    duplicates: int
    duplicate_bound: int
    crashes: int
    timed_out: int
    max_delay: float
    seconds: float
    requests_refused: dict[str, int]
    attempts_failed: int

    def line(self) -> str:
        """One human line for ``pytest -s``."""
        return (
            f"[faults] {self.scenario} on {self.store}: accepted {self.accepted}, delivered "
            f"{self.delivered}, duplicates {self.duplicates} (bound {self.duplicate_bound} = "
            f"{self.crashes} crashes x in flight + {self.timed_out} timed-out attempts), max "
            f"delay {self.max_delay:.2f}s, failed "
            f"attempts at the destination {self.attempts_failed}, sender refusals "
            f"{dict(self.requests_refused)}, {self.seconds:.1f}s"
        )


def tally(
    scenario: str,
    store: str,
    sender: Sender,
    market: FaultyMarketplace,
    *,
    crashes: int,
    in_flight: int,
    timed_out: int,
    started: float,
) -> Figures:
    """Check design.md 3's promises on one finished run and return (and report) its figures."""
    accepted = sender.accepted()
    assert accepted == set(sender.events), (
        f"{len(set(sender.events) - accepted)} events never answered 2xx: {sender.refusals}"
    )
    delivered_receipts = [r for r in market.receipts if 200 <= r.status < 300]
    arrived = {r.webhook_id for r in market.receipts}
    invented = arrived - set(sender.events)
    assert not invented, f"delivered but never sent: {sorted(invented)[:5]}"
    missing = accepted - market.delivered()
    assert not missing, f"accepted but never delivered: {sorted(missing)[:5]}"
    for receipt in market.receipts:
        assert receipt.verified, f"gateway signature did not verify for {receipt.webhook_id}"
        assert receipt.body == sender.events[receipt.webhook_id].body, "body must be the sender's"
    counts = collections.Counter(r.webhook_id for r in delivered_receipts)
    duplicates = sum(n - 1 for n in counts.values())
    bound = crashes * in_flight + timed_out
    first: dict[str, float] = {}
    for receipt in delivered_receipts:
        first.setdefault(receipt.webhook_id, receipt.at)
    delay = max(first[i] - sender.events[i].first_try for i in accepted)
    figures = Figures(
        scenario=scenario,
        store=store,
        accepted=len(accepted),
        delivered=len(market.delivered()),
        duplicates=duplicates,
        duplicate_bound=bound,
        crashes=crashes,
        timed_out=timed_out,
        max_delay=round(delay, 3),
        seconds=round(time.monotonic() - started, 1),
        requests_refused=dict(sender.refusals),
        attempts_failed=len(market.receipts) - len(delivered_receipts),
    )
    report(figures)
    assert duplicates <= bound, figures.line()
    return figures


def timed_out_attempts(gateways: Sequence[GatewayProcess]) -> int:
    """Delivery attempts the gateways' logs say timed out: answers they may have lost."""
    return sum(
        1
        for gateway in gateways
        for record in gateway.log_records()
        if record.get("msg") == "delivery attempt" and record.get("error") == "timed out"
    )


def report(figures: Figures) -> None:
    """Print the figures, and append them to ``WEBHOOK_GATEWAY_FAULTS_RESULTS`` if set."""
    print(figures.line())
    path = os.environ.get("WEBHOOK_GATEWAY_FAULTS_RESULTS")
    if path:
        record: dict[str, Any] = dict(figures.__dict__)
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")
