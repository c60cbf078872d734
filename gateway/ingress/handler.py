"""The ingress request path, stage by stage, in the order of design.md 2.

1 route · 2 client IP · 3 per-IP limit · 4 body · 5 verify · 6 per-source limit ·
7 extract · 8 dedupe + durable enqueue (queued) or claim + forward (sync).

Each refusal is a ``RequestError`` caught once at the top, so the order of the stages reads
straight down ``handle``. Cheap stages come first: a flood is refused before its body is read,
a forgery before it touches the store.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import HttpVersion10, web
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.config.model import Config, SourceConfig
from gateway.delivery.client import DeliveryClient
from gateway.delivery.sync import forward_sync
from gateway.errors import (
    ClientClosed,
    InternalError,
    InvalidBody,
    InvalidRequest,
    IpNotAllowed,
    MethodNotAllowed,
    MissingField,
    RateLimited,
    RequestError,
    StoreError,
    StoreUnreachable,
    Unavailable,
    UnknownSource,
    UnroutedRefused,
    VerificationError,
)
from gateway.extract import Payload
from gateway.http.answers import error_response, json_response, request_id_of
from gateway.http.clientip import client_ip
from gateway.http.text import has_control, is_text
from gateway.ingress.body import read_body
from gateway.ingress.deadline import headers_arrived, response_started
from gateway.ingress.headers import check_single, check_text
from gateway.ingress.plan import SourcePlan, plan_source
from gateway.logs import log_fields
from gateway.metrics import Metrics
from gateway.ratelimit.gcra import RateRule
from gateway.ratelimit.headers import rate_limit_headers
from gateway.ratelimit.limiter import Limiter
from gateway.store.protocols import IngressStore
from gateway.store.records import AcceptLimit, Event, LimitReached, Origin, body_status_of

log = logging.getLogger("gateway.ingress")

#: Longest event id or dedupe key kept; anything longer is refused rather than truncated.
MAX_KEY_LENGTH = 512


@dataclass(frozen=True)
class Accepted:
    """What stage 8 decided: the status code and the JSON body for the sender."""

    status: int
    body: dict[str, object]
    outcome: str
    event_id: str
    response: web.Response | None = None
    event_type: str | None = None


class Ingress:
    """Handles every request on the ingress listener for the current config."""

    def __init__(
        self,
        config: Config,
        store: IngressStore,
        limiter: Limiter,
        client: DeliveryClient,
        metrics: Metrics,
        *,
        clock: Callable[[], float] = time.time,
        on_accepted: Callable[[], None] = lambda: None,
    ) -> None:
        self.config = config
        self.store = store
        self.metrics = metrics
        self.client = client
        self.clock = clock
        self.on_accepted = on_accepted
        limits_in_store = store.decides_limits(limiter)
        # By path: stage 1 finds the source and everything decided about it in one look-up.
        self.plans = {
            source.path: plan_source(
                source,
                limiter,
                limits_in_store=limits_in_store,
                on_limiter_failure=self._limiter_failure_counter(source.name),
            )
            for source in config.sources.values()
        }

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Run the stages for one request; every answer carries ``X-Request-ID``."""
        headers_arrived(request.transport)
        request_id = request_id_of(request.headers.get("X-Request-ID"))
        started = time.monotonic()
        source: SourceConfig | None = None
        event_id: str | None = None
        event_type: str | None = None
        try:
            if request.version < HttpVersion10:
                # A request line without a version (HTTP/0.9): a proxy in front may frame the
                # bytes differently; answer and close rather than guess.
                raise InvalidRequest("the request line has no HTTP version")
            plan = self._route(request)
            source = plan.source
            response = await self._process(request, plan, request_id)
            outcome, event_id = response.outcome, response.event_id
            event_type = response.event_type
            answer: web.StreamResponse = response.response or json_response(
                response.status, response.body, request_id
            )
        except RequestError as error:
            outcome = error.code
            answer = error_response(error, request_id)
            if request.version < HttpVersion10:
                answer.force_close()
        except asyncio.CancelledError:
            # aiohttp cancels the handler of a sender that hung up: one line, no traceback,
            # nothing acknowledged (a cancelled store call is never half-done).
            self._observe(request_id, source, None, ClientClosed.code, ClientClosed.status, started)
            raise
        except Exception:  # the one place a bug must still get a JSON answer
            # Nothing was acknowledged, so the sender retries; the traceback goes to the log.
            log.exception("unexpected error", extra={"request_id": request_id})
            outcome = InternalError.code
            answer = error_response(InternalError(), request_id)
        self._observe(request_id, source, event_id, outcome, answer.status, started, event_type)
        # The answer goes out next: a kept-alive connection's next request gets its own header
        # deadline (every request on the ingress listener comes through here).
        response_started(request.transport)
        return answer

    def _observe(
        self,
        request_id: str,
        source: SourceConfig | None,
        event_id: str | None,
        outcome: str,
        status: int,
        started: float,
        event_type: str | None = None,
    ) -> None:
        """The request's metric and its one log line (a warning, with the event's type, for
        an event no route takes: a typo in a route's ``types`` must show)."""
        if source is not None:
            self.metrics.observe_request(source.name, outcome, time.monotonic() - started)
        fields: dict[str, object] = {
            "request_id": request_id,
            "source": source.name if source else None,
            "event_id": event_id,
            "outcome": outcome,
            "status": status,
        }
        level = logging.INFO
        if outcome == "unrouted":
            level = logging.WARNING
            fields["type"] = event_type
        log_fields(log, level, "request", fields)

    # -- stages -----------------------------------------------------------------------------

    def _route(self, request: web.Request) -> SourcePlan:
        """Stage 1: a source listens on this path, for POST only."""
        path = request.path.rstrip("/") or "/"
        plan = self.plans.get(path)
        if plan is None:
            raise UnknownSource()
        if request.method != "POST":
            raise MethodNotAllowed(headers={"Allow": "POST"})
        return plan

    async def _process(self, request: web.Request, plan: SourcePlan, request_id: str) -> Accepted:
        source = plan.source
        server = self.config.server
        # Stage 2: the client address, through trusted proxies only (design.md 5.2).
        proxies = server.trusted_proxies
        forwarded = request.headers.getall("X-Forwarded-For", ()) if proxies else ()
        allowed, ip_key = plan.peer(client_ip(request.remote, forwarded, proxies))
        if not allowed:
            raise IpNotAllowed()
        # Stage 3: per-IP limit before any byte of the body is read (protects CPU). When the
        # whole body is already here (a webhook's usually comes with its headers), reading it
        # costs nothing and the limit's own round trip costs more than stages 4-7 together:
        # then stage 8's store call decides it first, before the per-source limit and before
        # anything is stored, and a request refused on the way there is counted on its own
        # before its refusal. Every answer is the one the stage order gives.
        deferred: AcceptLimit | None = None
        per_ip = source.rate_limit.per_ip
        if per_ip is not None:
            if plan.ip_limit_in_accept and request.content.is_eof():
                deferred = AcceptLimit(ip_key, per_ip)
            else:
                await self._limit(plan, ip_key, per_ip)
        try:
            event, now = await self._stages_4_to_7(plan, request, request_id)
        except RequestError as refusal:
            if deferred is not None:
                await self._limit(plan, deferred.key, deferred.rule)  # stage 3 comes first
            if isinstance(refusal, VerificationError):
                # Counted once stage 3 has let the request through, wherever it was decided.
                self.metrics.signature_failures.labels(source.name).inc()
            raise
        # Stage 8.
        if source.delivery == "sync":
            return await self._forward_sync(plan, event, now)
        return await self._enqueue(plan, event, now, first=deferred)

    async def _stages_4_to_7(
        self, plan: SourcePlan, request: web.Request, request_id: str
    ) -> tuple[Event, float]:
        """The body, the provider's verdict, the per-source limit and the event; and the time
        the request was verified at."""
        source = plan.source
        server = self.config.server
        # Stage 4: the body, within size and time limits.
        body = await read_body(request, server.max_body_bytes, read_timeout=server.body_timeout)
        # Stage 5: the provider's verdict; raw bytes, never decoded first. Each header it reads
        # occurs once and is text, so what it verifies is what every later stage reads.
        now = self.clock()
        check_single(request.headers, source.verifier.reads, VerificationError)
        source.verifier.verify(body, request.headers, source.secrets, now)
        # Stage 6: per-source limit, counted on authentic requests only (decided by stage 8's
        # store call where the plan's ``accept_limit`` has it, before anything is stored).
        if source.rate_limit.per_source is not None and plan.accept_limit is None:
            await self._limit(plan, plan.limit_key, source.rate_limit.per_source)
        # Stage 7: parse and extract.
        return self._extract(plan, body, request.headers, request_id, now), now

    async def _limit(self, plan: SourcePlan, key: str, rule: RateRule) -> None:
        """Stages 3 and 6: one GCRA hit; a refusal is a 429 with Retry-After and RateLimit-*."""
        decision = await plan.limits.hit(key, rule, self.clock())
        if not decision.allowed:
            raise RateLimited(headers=rate_limit_headers(decision))

    def _limiter_failure_counter(self, source: str) -> Callable[[StoreError], None]:
        counter = self.metrics.rate_limit_store_errors.labels(source)
        return lambda _exc: counter.inc()

    def _extract(
        self,
        plan: SourcePlan,
        body: bytes,
        headers: CIMultiDictProxy[str],
        request_id: str,
        now: float,
        origin: Origin = "webhook",
    ) -> Event:
        """Stage 7: event id, type, subject, time, dedupe key; ``require``d fields."""
        source = plan.source
        check_single(headers, plan.read_headers, InvalidBody)
        check_text(headers, plan.kept_headers)
        payload = Payload(body, headers)
        extractors = source.event
        if plan.needs_json:
            payload.json()  # 400 invalid_body once, before any field is looked at
        # Every absent field in one answer: a sender fixes its body in one go.
        missing = [required.spelled for required in source.require if not payload.has(required)]
        dedupe_key = payload.get(source.dedupe.key)
        if not dedupe_key:
            key = source.dedupe.key
            absent = payload.missing_parts(key) if key.kind == "list" else [key.spelled]
            missing += [part for part in absent or [key.spelled] if part not in missing]
        if missing:
            raise MissingField(missing)
        assert dedupe_key is not None
        event_id = payload.get(extractors.id) if extractors.id else None
        if not event_id:
            # No id of its own: the dedupe key identifies the event (stable across resends).
            event_id = (
                dedupe_key if source.dedupe.key.kind != "sha256" else f"sha256-{dedupe_key[:32]}"
            )
        if len(event_id) > MAX_KEY_LENGTH or len(dedupe_key) > MAX_KEY_LENGTH:
            raise InvalidBody(f"event id or dedupe key is longer than {MAX_KEY_LENGTH} characters")
        # The id travels as the destination's webhook-id header, which cannot be escaped.
        if has_control(event_id):
            raise InvalidBody("the event id holds a control character")
        type_ = payload.get(extractors.type) if extractors.type else None
        subject = payload.get(extractors.subject) if extractors.subject else None
        time_ = payload.get(extractors.time) if extractors.time else None
        for value in (event_id, dedupe_key, type_, subject, time_):
            # A JSON "\udcff" escape parses to a lone surrogate, which no store can keep.
            if value is not None and not is_text(value):
                raise InvalidBody("an extracted value is not valid Unicode text")
        # Only shown by the dashboard: one that is not valid text is left out, never refused.
        body_status = body_status_of(payload.body_status())
        if body_status is not None and not is_text(body_status):
            body_status = None
        payment = source.payment.read(payload, type_) if source.payment is not None else None
        kept: list[tuple[str, str]] = []
        content_type = headers.get("Content-Type")
        if content_type:
            kept.append(("Content-Type", content_type))
        for name in source.forward_headers:
            for value in headers.getall(name, []):
                kept.append((name, value))
        return Event(
            id=event_id,
            source=source.name,
            type=type_,
            subject=subject,
            time=time_,
            dedupe_key=dedupe_key,
            body=body,
            headers=tuple(kept),
            request_id=request_id,
            received_at=now,
            body_status=body_status,
            payment=payment,
            origin=origin,
        )

    def read_recovered(
        self, source: str, body: bytes, request_id: str, now: float
    ) -> tuple[SourcePlan, Event]:
        """An event a reconciliation run recovered (design.md 5.8), read exactly as a webhook
        with that body (a JSON body, no other header) is: ``RequestError`` for one that stage 7
        refuses. Its origin is ``reconciled``."""
        plan = next(p for p in self.plans.values() if p.source.name == source)
        headers = CIMultiDictProxy(CIMultiDict({"Content-Type": "application/json"}))
        return plan, self._extract(plan, body, headers, request_id, now, origin="reconciled")

    async def admit(self, plan: SourcePlan, event: Event, now: float) -> Accepted:
        """Stage 8 of queued mode for an event read outside a request (a recovered one):
        dedupe, payment state, persist and enqueue, as ``handle`` does."""
        return await self._enqueue(plan, event, now)

    async def _enqueue(
        self, plan: SourcePlan, event: Event, now: float, *, first: AcceptLimit | None = None
    ) -> Accepted:
        """Stage 8, queued: one atomic dedupe + persist + enqueue, then 202; ``first``: the
        per-IP limit, when the store call decides it (``_process``).

        An event no route takes is never silent (design.md 3): it is stored as ``unrouted`` and
        answered so, with its own outcome, or refused with 422 under ``on_unrouted: reject``.
        """
        source = plan.source
        destinations = plan.destinations_for(event.type)
        if not destinations and source.on_unrouted == "reject":
            if first is not None:
                await self._limit(plan, first.key, first.rule)  # stage 3 comes first
            raise UnroutedRefused(
                f"no route of source {source.name} takes event type {event.type!r}"
            )
        limit = plan.accept_limit
        try:
            result = await self.store.accept(
                event, destinations, source.dedupe.window, now, limit=limit, first=first
            )
        except LimitReached as refused:
            raise RateLimited(headers=rate_limit_headers(refused.decision)) from None
        except StoreError as exc:
            log.warning("store unavailable", extra={"source": source.name, "error": str(exc)})
            if first is not None and isinstance(exc, StoreUnreachable):
                # The per-IP limit could not be decided either: its on_store_error answers,
                # as it would have at stage 3 (deny: 429; allow: on to the store, 503).
                decision = plan.limits.failed(exc, first.rule, self.clock())
                if not decision.allowed:
                    raise RateLimited(headers=rate_limit_headers(decision)) from exc
            raise Unavailable() from exc
        if result.status == "duplicate":
            return Accepted(
                200, {"id": result.event_id, "status": "duplicate"}, "duplicate", result.event_id
            )
        if result.mark is not None:
            self.metrics.payment_anomalies.labels(source.name, result.mark).inc()
            log_fields(
                log,
                logging.WARNING,
                f"payment event {result.mark}",
                {
                    "source": source.name,
                    "event_id": event.id,
                    "type": event.type,
                    "payment_key": None if event.payment is None else event.payment.key,
                    "mark": result.mark,
                    "delivered": not result.held,
                },
            )
        if result.held:
            # Stored, not delivered (order: enforce): the sender has done its part.
            held: dict[str, object] = {"id": event.id, "status": result.mark}
            return Accepted(source.ack_status, held, "accepted", event.id)
        if not destinations:
            body: dict[str, object] = {"id": event.id, "status": "unrouted"}
            return Accepted(source.ack_status, body, "unrouted", event.id, event_type=event.type)
        self.on_accepted()
        return Accepted(
            source.ack_status, {"id": event.id, "status": "queued"}, "accepted", event.id
        )

    async def _forward_sync(self, plan: SourcePlan, event: Event, now: float) -> Accepted:
        """Stage 8, sync: forward inline under a claim (``delivery.sync``), answer as it did."""
        source = plan.source
        destinations = plan.destinations_for(event.type)
        if not destinations:
            # Nothing to forward to: record it like a queued event with no routes.
            return await self._enqueue(plan, event, now)
        destination = self.config.destinations[destinations[0]]
        try:
            forwarded = await forward_sync(
                self.store,
                self.client,
                self.metrics,
                event,
                destination,
                source.dedupe.window,
                now,
                clock=self.clock,
                limit=plan.accept_limit,
            )
        except LimitReached as refused:
            raise RateLimited(headers=rate_limit_headers(refused.decision)) from None
        if forwarded is None:
            return Accepted(200, {"id": event.id, "status": "duplicate"}, "duplicate", event.id)
        # The destination's own answer (2xx, or a 4xx the sender should see) passes through.
        response = web.Response(status=forwarded.status, body=forwarded.body)
        if forwarded.content_type:
            response.headers["Content-Type"] = forwarded.content_type
        response.headers["X-Request-ID"] = event.request_id
        # A bounded label: the destination's 4xx passed back, by class.
        outcome = "forwarded" if forwarded.ok else f"destination_{forwarded.status // 100}xx"
        return Accepted(forwarded.status, {}, outcome, event.id, response=response)
