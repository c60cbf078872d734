"""One reconciliation run of a source (design.md 5.8), from the lease to the record kept.

A run takes the source's lease in the store (one run at a time across every process and
replica; renewed while it lasts, so a process killed mid-run holds it up for one lease at
most), asks the provider for its listing (``fetch``; a provider that fails fails the run and
nothing is recovered), reads each payment the provider knows into the gateway's terms, and
compares it with the gateway's payment:

* ``matched``: the gateway has the payment in the provider's (terminal) state;
* ``open``: not terminal at the provider (or terminal for less than ``grace``: its webhook
  may be on its way);
* ``recovered``: the gateway lacked it or had an earlier state, and the webhook the provider
  would have sent went through the source's own extraction, dedupe and payment state
  (origin ``reconciled``), to be delivered like any event;
* ``missing``: not recovered (``recover: false``, a dry run, or the recovery was refused,
  with why); the payment is flagged ``missing``;
* ``mismatch``: the gateway has another terminal state;
* ``unknown_to_provider``: the gateway holds the payment in a terminal state the listing does
  not show it in (within ``lookback``, past ``grace``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import aiohttp

from gateway.config.model import (
    HttpListFrom,
    RafikiFrom,
    ReconcileConfig,
    SourceConfig,
    StripeFrom,
)
from gateway.errors import RequestError
from gateway.extract import resolve_pointer
from gateway.logs import log_fields
from gateway.payments.states import TERMINAL, State, advance
from gateway.reconcile.fetch import (
    Listed,
    ProviderError,
    fetch_http_list,
    fetch_rafiki,
    fetch_stripe,
)
from gateway.reconcile.template import render
from gateway.store.protocols import ReconcileStore
from gateway.store.records import (
    RECONCILE_RESULTS,
    RUN_ITEMS_KEPT,
    Event,
    ReconcileItem,
    ReconcileResult,
    ReconcileRun,
)

if TYPE_CHECKING:  # the runner calls the ingress it is given; it never builds one
    from gateway.ingress.handler import Ingress

log = logging.getLogger("gateway.reconcile")

#: Seconds a run's lease lasts; renewed every third of it while the run goes on.
LEASE = 15.0
#: Runs ``show_last`` looks through for the last successful one.
LAST_LOOKED_AT = 10
#: Most terminal payments of the gateway a run checks against the listing.
TERMINAL_CHECKED = 10_000


def running_since(holder: str) -> tuple[str, float] | None:
    """Who holds a run lease (``host:pid``) and when that run started, read from the lease's
    holder (``host:pid:<run id>``, the run id starting with its start in milliseconds)."""
    who, _, run_id = holder.rpartition(":")
    stamp = run_id[:13]
    if not who or not stamp.isdigit():
        return None
    return who, int(stamp) / 1000


class AlreadyRunning(Exception):
    """Another run of the source holds the lease (in this process or another)."""


@dataclass
class _Known:
    """What the provider knows of one payment, in the gateway's terms."""

    key: str
    state: State | None
    raw_state: str | None
    since: float
    reference: str | None = None
    #: The webhooks to recover it with, oldest first (an http-list item: the one its
    #: template makes; an event listing: those the gateway has not seen).
    events: list[Event] = field(default_factory=list)
    refused: str | None = None


class Reconciler:
    """Runs reconciliations for the sources of the current config."""

    def __init__(
        self,
        store: ReconcileStore,
        ingress: Callable[[], Ingress],
        session: aiohttp.ClientSession,
        *,
        clock: Callable[[], float] = time.time,
        lease: float = LEASE,
        on_run: Callable[[ReconcileRun], None] | None = None,
        on_last: Callable[[ReconcileRun], None] | None = None,
    ) -> None:
        self._store = store
        self._ingress = ingress
        self._session = session
        self._clock = clock
        self._lease = lease
        self._on_run = on_run
        self._on_last = on_last
        self._holder = f"{socket.gethostname()}:{os.getpid()}"

    async def run(self, source: SourceConfig, *, dry_run: bool = False) -> ReconcileRun:
        """One run now; ``AlreadyRunning`` if another holds the source's lease."""
        assert source.reconcile is not None
        started = self._clock()
        run_id = f"{int(started * 1000):013d}-{os.urandom(4).hex()}"
        holder = f"{self._holder}:{run_id}"
        if not await self._store.acquire_reconcile(source.name, holder, started, self._lease):
            raise AlreadyRunning(source.name)
        renew = asyncio.create_task(self._renew(source.name, holder))
        try:
            run = await self._run(source, source.reconcile, run_id, started, dry_run)
            await self._store.save_run(run)
        finally:
            renew.cancel()
            await asyncio.gather(renew, return_exceptions=True)
            await self._store.release_reconcile(source.name, holder)
        log_fields(
            log,
            logging.INFO if run.ok else logging.ERROR,
            "reconciliation run",
            {
                "source": source.name,
                "run_id": run.id,
                "ok": run.ok,
                "dry_run": dry_run,
                "error": run.error,
                "counts": run.counts,
            },
        )
        if self._on_run is not None:
            self._on_run(run)
        return run

    async def show_last(self, source: str) -> None:
        """Hand the source's last successful run, wherever it ran, to ``on_last`` (so every
        process shows the same figures for it)."""
        if self._on_last is None:
            return
        runs = await self._store.recent_runs(source, LAST_LOOKED_AT)
        last = next((run for run in runs if run.ok and not run.dry_run), None)
        if last is not None:
            self._on_last(last)

    async def _renew(self, source: str, holder: str) -> None:
        while True:
            await asyncio.sleep(self._lease / 3)
            await self._store.acquire_reconcile(source, holder, self._clock(), self._lease)

    async def _run(
        self,
        source: SourceConfig,
        config: ReconcileConfig,
        run_id: str,
        started: float,
        dry_run: bool,
    ) -> ReconcileRun:
        try:
            known = await self._listing(source, config, run_id, started)
        except ProviderError as exc:
            return ReconcileRun(
                run_id, source.name, started, self._clock(), False, str(exc), dry_run, {}
            )
        now = self._clock()
        states = await self._store.payment_states(source.name, [k.key for k in known])
        items = [
            await self._settle(source, config, item, states.get(item.key), now, dry_run)
            for item in known
        ]
        listed = {k.key: k.state for k in known}
        for key, state in await self._store.terminal_payments(
            source.name, now - config.lookback, now - config.grace, TERMINAL_CHECKED
        ):
            if key not in listed:
                items.append(
                    ReconcileItem(key, None, state, "unknown_to_provider", None, "not listed")
                )
        counts: dict[str, int] = dict.fromkeys(RECONCILE_RESULTS, 0)
        for item in items:
            counts[item.result] += 1
        kept = tuple(i for i in items if i.result not in ("matched", "open"))[:RUN_ITEMS_KEPT]
        return ReconcileRun(
            run_id, source.name, started, self._clock(), True, None, dry_run, counts, kept
        )

    async def _listing(
        self, source: SourceConfig, config: ReconcileConfig, run_id: str, now: float
    ) -> list[_Known]:
        """What the provider knows, one entry per payment."""
        provider = config.provider
        if isinstance(provider, HttpListFrom):
            return await self._http_list(source, provider, run_id, now)
        assert source.payment is not None
        types = list(source.payment.states)
        since = now - config.lookback
        if isinstance(provider, RafikiFrom):
            listed = await fetch_rafiki(self._session, provider, types, since)
        else:
            assert isinstance(provider, StripeFrom)
            listed = await fetch_stripe(self._session, provider, types, since)
        return await self._events(source, listed, run_id, now)

    async def _http_list(
        self, source: SourceConfig, provider: HttpListFrom, run_id: str, now: float
    ) -> list[_Known]:
        items = await fetch_http_list(self._session, provider)
        known: dict[str, _Known] = {}
        for item in items:
            if not isinstance(item, dict):
                raise ProviderError("an item of the listing is not an object")
            key = _text_at(item, provider.key.tokens)
            if key is None:
                continue  # no key: nothing to compare
            raw = _text_at(item, provider.state.tokens)
            state = provider.state_map.get(raw) if raw is not None else None
            entry = _Known(key, state, raw, now)
            template = provider.events.get(state) if state is not None else None
            if state in TERMINAL and template is not None:
                body = render(template, item, now)
                try:
                    plan_event = self._ingress().read_recovered(
                        source.name, body, f"reconcile-{run_id}-{len(known)}", now
                    )[1]
                except RequestError as exc:
                    entry.refused = f"the recovered event is refused: {exc.message}"
                else:
                    entry.events.append(plan_event)
                    if plan_event.payment is not None:
                        entry.reference = plan_event.payment.reference
            elif state in TERMINAL:
                entry.refused = f"no event template for state {state}"
            known[key] = entry
        terminal = {k: str(e.state) for k, e in known.items() if e.state in TERMINAL}
        since = await self._store.sightings(source.name, terminal, now)
        for key, when in since.items():
            known[key].since = when
        return list(known.values())

    async def _events(
        self, source: SourceConfig, listed: Sequence[Listed], run_id: str, now: float
    ) -> list[_Known]:
        """Listed webhooks (newest first) grouped by payment: the state they lead to, and
        those the gateway has not seen."""
        known: dict[str, _Known] = {}
        read: list[tuple[_Known, Event]] = []
        ingress = self._ingress()
        for n, entry in enumerate(sorted(listed, key=lambda e: e.created_at)):
            try:
                _, event = ingress.read_recovered(
                    source.name, entry.body, f"reconcile-{run_id}-{n}", now
                )
            except RequestError:
                continue  # not an event of this source's kind: nothing to compare
            facts = event.payment
            if facts is None:
                continue
            payment = known.get(facts.key)
            if payment is None:
                payment = known[facts.key] = _Known(facts.key, None, None, entry.created_at)
            before = payment.state
            payment.state, _ = advance(payment.state, facts.state)
            if payment.state != before:
                payment.since, payment.raw_state = entry.created_at, event.type
            payment.reference = facts.reference or payment.reference
            read.append((payment, event))
        seen = await self._store.seen([event for _, event in read], now)
        for (payment, event), was_seen in zip(read, seen, strict=True):
            if not was_seen:
                payment.events.append(event)
        return list(known.values())

    async def _settle(
        self,
        source: SourceConfig,
        config: ReconcileConfig,
        known: _Known,
        gateway: State | None,
        now: float,
        dry_run: bool,
    ) -> ReconcileItem:
        """What the run makes of one payment the provider knows (see the module docstring)."""

        def item(
            result: ReconcileResult, reason: str | None = None, event: str | None = None
        ) -> ReconcileItem:
            return ReconcileItem(known.key, known.state, gateway, result, event, reason)

        if known.state not in TERMINAL:
            if gateway in TERMINAL and known.state is not None:
                return item("unknown_to_provider", f"listed as {known.raw_state}")
            return item("open")
        if gateway == known.state:
            return item("matched")
        if gateway in TERMINAL:
            return item("mismatch")
        if now - known.since < config.grace:
            return item("open", "within grace")
        reason = known.refused
        if reason is None and not known.events:
            reason = f"every listed event is stored, yet the payment is {gateway or 'absent'}"
        elif reason is None and dry_run:
            reason = "dry run"
        elif reason is None and not config.recover:
            reason = "recover: false"
        if reason is None:
            recovered = await self._recover(source, known.events, now)
            if isinstance(recovered, str) and recovered.startswith("refused:"):
                reason = recovered.removeprefix("refused:")
            else:
                return item("recovered", event=recovered)
        if not dry_run:
            await self._store.mark_missing(source.name, known.key, known.reference, True, now)
        return item("missing", reason, known.events[-1].id if known.events else None)

    async def _recover(self, source: SourceConfig, events: Sequence[Event], now: float) -> str:
        """Each event through stage 8 as a webhook; the last one's id, or ``refused:<why>``."""
        ingress = self._ingress()
        plan = next(p for p in ingress.plans.values() if p.source.name == source.name)
        last = "refused:every event was a duplicate of one stored"
        for event in events:
            try:
                accepted = await ingress.admit(plan, event, now)
            except RequestError as exc:
                return f"refused:the recovered event is refused: {exc.message}"
            if accepted.outcome in ("accepted", "unrouted"):
                log_fields(
                    log,
                    logging.WARNING,
                    "reconciliation recovered an event",
                    {"source": source.name, "event_id": event.id, "type": event.type},
                )
                last = event.id
        return last


def _text_at(item: object, tokens: tuple[str, ...]) -> str | None:
    """The value at a pointer into a listing item, as text (``None`` when absent)."""
    try:
        node = resolve_pointer(item, tokens)
    except KeyError:
        return None
    if node is None or isinstance(node, dict | list):
        return None
    if isinstance(node, bool):
        return "true" if node else "false"
    return str(node)
