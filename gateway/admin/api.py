"""The admin API under ``/admin``: events, attempts, replay, dead letters, redrive (design.md 5.5),
and what the dashboard reads: payments (design.md 5.7), a payment with its events, last-hour
figures.

Every route needs ``Authorization: Bearer <admin.token>`` or the dashboard's session cookie
(``gateway.admin.auth``); a POST carried by the cookie must also name the request's own
origin in ``Origin`` (else 403 ``forbidden``). Without a configured token the API answers 404
(disabled) while health and metrics stay up. Errors have the ingress's shape,
``{"error", "message", "request_id"}``. Times are RFC 3339 UTC strings.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web

from gateway import times
from gateway.admin.auth import admin_guard
from gateway.admin.openapi import DOCUMENT
from gateway.appkeys import CLOCK, GATEWAY, RUNTIME, STORE
from gateway.errors import (
    EventNotFound,
    InvalidRequest,
    NotFound,
    StoreError,
    Unavailable,
    Unrouted,
)
from gateway.http.answers import json_answer
from gateway.http.text import is_text
from gateway.payments.states import STATES
from gateway.store.protocols import Store
from gateway.store.records import (
    ATTENTIONS,
    EVENT_STATUSES,
    Attempt,
    DeadLetter,
    DeliveryView,
    EventSummary,
    EventView,
    PaymentView,
)
from gateway.store.stats import COUNTERS, WINDOW_MINUTES, minute_of

_C = TypeVar("_C", bound=str)
MAX_LIMIT = 500
#: Longest cursor accepted (a payments cursor carries a payment key, which may be long).
MAX_CURSOR = 8192
#: Seconds /admin/stats waits for the store before calling it unreachable.
STATS_TIMEOUT = 2.0
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def rfc3339(seconds: float | None) -> str | None:
    """Unix seconds as an RFC 3339 UTC string with milliseconds (``None`` stays ``None``)."""
    return None if seconds is None else times.rfc3339(seconds)


def attempt_json(attempt: Attempt) -> dict[str, Any]:
    """One attempt: time, status, latency, error, response excerpt."""
    return {
        "number": attempt.number,
        "started_at": rfc3339(attempt.started_at),
        "status": attempt.status,
        "latency_ms": round(attempt.latency * 1000, 3),
        "error": attempt.error,
        "response_excerpt": attempt.response_excerpt,
    }


def delivery_json(delivery: DeliveryView) -> dict[str, Any]:
    """One delivery with every attempt."""
    return {
        "id": delivery.id,
        "destination": delivery.destination,
        "state": delivery.state,
        "attempts_made": delivery.attempts_made,
        "created_at": rfc3339(delivery.created_at),
        "next_attempt_at": rfc3339(delivery.next_attempt_at),
        "dead_reason": delivery.dead_reason,
        "dead_at": rfc3339(delivery.dead_at),
        "attempts": [attempt_json(a) for a in delivery.attempts],
    }


def summary_json(summary: EventSummary) -> dict[str, Any]:
    """One line of the event list."""
    return {
        "id": summary.id,
        "source": summary.source,
        "type": summary.type,
        "subject": summary.subject,
        "received_at": rfc3339(summary.received_at),
        "status": summary.status,
        "mode": summary.mode,
        "body_status": summary.body_status,
        "attempts": summary.attempts,
    }


def payment_json(payment: PaymentView) -> dict[str, Any]:
    """One payment (design.md 5.7): state, money, whether the marketplace has it."""
    return {
        "source": payment.source,
        "key": payment.key,
        "reference": payment.reference,
        "state": payment.state,
        "amount": None if payment.amount is None else payment.amount.to_json(),
        "events": payment.events,
        "delivered": payment.delivered,
        "attention": payment.attention,
        "first_seen": rfc3339(payment.first_seen),
        "updated_at": rfc3339(payment.updated_at),
    }


def event_json(view: EventView) -> dict[str, Any]:
    """An event with its payload, headers kept, deliveries and attempts."""
    event = view.event
    body: dict[str, Any]
    try:
        body = {"body": event.body.decode("utf-8")}
    except UnicodeDecodeError:
        body = {"body_base64": base64.b64encode(event.body).decode()}
    return {
        "id": event.id,
        "source": event.source,
        "type": event.type,
        "subject": event.subject,
        "time": event.time,
        "dedupe_key": event.dedupe_key,
        "request_id": event.request_id,
        "received_at": rfc3339(event.received_at),
        "body_status": event.body_status,
        "status": view.status,
        "mode": view.mode,
        "origin": event.origin,
        "payment_key": view.payment_key,
        "mark": view.mark,
        "headers": [list(pair) for pair in event.headers],
        **body,
        "deliveries": [delivery_json(d) for d in view.deliveries],
    }


def dead_letter_json(dead: DeadLetter) -> dict[str, Any]:
    """One dead letter with the last attempt made."""
    return {
        "delivery_id": dead.delivery_id,
        "event_id": dead.event_id,
        "source": dead.source,
        "destination": dead.destination,
        "attempts_made": dead.attempts_made,
        "dead_at": rfc3339(dead.dead_at),
        "reason": dead.reason,
        "last_attempt": attempt_json(dead.last_attempt) if dead.last_attempt else None,
    }


# -- plumbing -------------------------------------------------------------------------------------


def store_of(request: web.Request) -> Store:
    """The store of the gateway the admin application reads (503 while it starts)."""
    store = request.app[GATEWAY].get(STORE)
    if store is None:
        raise Unavailable("the gateway is starting")
    return store


def _limit(request: web.Request) -> int:
    text = request.query.get("limit", "50")
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_LIMIT:
        raise InvalidRequest(f"limit must be 1..{MAX_LIMIT}")
    return int(text)


#: Longest id, name or cursor a parameter may carry (ingress refuses longer event ids too).
MAX_PARAMETER = 512
#: Most ids one redrive or replay may name.
MAX_IDS = 1000


def _text(value: object, what: str, longest: int = MAX_PARAMETER) -> str:
    """A parameter or body field that must be a short string of valid Unicode text."""
    if not isinstance(value, str) or not value or len(value) > longest:
        raise InvalidRequest(f"{what} must be a string of 1 to {longest} characters")
    if not is_text(value):
        raise InvalidRequest(f"{what} is not valid UTF-8 text")
    return value


def _param(request: web.Request, name: str, longest: int = MAX_PARAMETER) -> str | None:
    """An optional query parameter, checked like every other text."""
    value = request.query.get(name)
    return None if value is None else _text(value, name, longest)


def _names(value: object, what: str) -> list[str]:
    """A JSON list of ids or names, each checked, at most ``MAX_IDS`` of them."""
    if not isinstance(value, list) or not value or len(value) > MAX_IDS:
        raise InvalidRequest(f"{what} must be a list of 1 to {MAX_IDS} strings")
    return [_text(item, what) for item in value]


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        data = json.loads(await request.read() or b"{}")
    except (ValueError, RecursionError) as exc:
        raise InvalidRequest("the request body is not valid JSON") from exc
    if not isinstance(data, dict):
        raise InvalidRequest("the request body must be a JSON object")
    return data


def _now(request: web.Request) -> float:
    clock = request.app[GATEWAY].get(CLOCK, time.time)
    return clock()


def _wake_workers(request: web.Request) -> None:
    request.app[GATEWAY][RUNTIME].wake.set()


# -- routes ---------------------------------------------------------------------------------------


async def list_events(request: web.Request) -> web.Response:
    """``GET /admin/events?source=&status=&type=&q=&limit=&cursor=``, newest first.

    ``q`` matches the start of the event id or of the subject.
    """
    status = request.query.get("status") or None
    if status is not None and status not in EVENT_STATUSES:
        raise InvalidRequest(f"status must be one of {', '.join(EVENT_STATUSES)}")
    events, cursor = await store_of(request).list_events(
        source=_param(request, "source"),
        status=status,
        limit=_limit(request),
        cursor=_param(request, "cursor", MAX_CURSOR),
        type=_param(request, "type"),
        q=_param(request, "q"),
    )
    payload = {"events": [summary_json(e) for e in events], "next_cursor": cursor}
    return json_answer(200, payload)


async def show_event(request: web.Request) -> web.Response:
    """``GET /admin/events/{id}[?source=]``: the event with every delivery and attempt."""
    view = await store_of(request).get_event(
        _text(request.match_info["event_id"], "event id"), _param(request, "source")
    )
    if view is None:
        raise NotFound()
    return json_answer(200, event_json(view))


async def replay_event(request: web.Request) -> web.Response:
    """``POST /admin/events/{id}/replay``: new deliveries, never swallowed by dedupe.

    Body (optional): ``{"destinations": [...]}``; by default the destinations the event's type
    is routed to by the current config.
    """
    event_id = _text(request.match_info["event_id"], "event id")
    source = _param(request, "source")
    store = store_of(request)
    data = await _body(request)
    config = request.app[GATEWAY][RUNTIME].config
    destinations = data.get("destinations")
    if destinations is None:
        view = await store.get_event(event_id, source)
        if view is None:
            raise NotFound()
        routed = config.sources.get(view.event.source)
        destinations = list(routed.destinations_for(view.event.type)) if routed else []
        source = view.event.source
        if not destinations:
            raise Unrouted()
    destinations = _names(destinations, "destinations")
    unknown = sorted(set(destinations) - set(config.destinations))
    if unknown:
        raise InvalidRequest(f"unknown destination(s): {', '.join(unknown)}")
    try:
        ids = await store.replay(event_id, destinations, _now(request), source=source)
    except EventNotFound as exc:
        raise NotFound() from exc
    _wake_workers(request)
    return json_answer(202, {"event_id": event_id, "deliveries": ids})


async def list_dead_letters(request: web.Request) -> web.Response:
    """``GET /admin/dead-letters?destination=&limit=&cursor=``, most recently dead first."""
    dead, cursor = await store_of(request).list_dead_letters(
        destination=_param(request, "destination"),
        limit=_limit(request),
        cursor=_param(request, "cursor", MAX_CURSOR),
    )
    payload = {"dead_letters": [dead_letter_json(d) for d in dead], "next_cursor": cursor}
    return json_answer(200, payload)


async def redrive(request: web.Request) -> web.Response:
    """``POST /admin/dead-letters/redrive`` with ``{"ids": [...]}`` or ``{"all": true}``.

    Each id is a dead letter's delivery id or an event id (every dead delivery of that
    event). The answer counts the deliveries made due and lists, under ``unmatched``, the ids
    that named no dead letter, so a typo is never taken for success.
    """
    data = await _body(request)
    ids = data.get("ids")
    store = store_of(request)
    now = _now(request)
    if data.get("all") is True and ids is None:
        count = await store.redrive(None, now)
        _wake_workers(request)
        return json_answer(200, {"redriven": count, "unmatched": []})
    if not isinstance(ids, list):
        raise InvalidRequest('send {"ids": ["..."]} or {"all": true}')
    count, unmatched = 0, []
    for given in dict.fromkeys(_names(ids, "ids")):
        moved = await store.redrive([given], now)
        if not moved:
            view = await store.get_event(given)
            dead = [d.id for d in view.deliveries if d.state == "dead"] if view else []
            moved = await store.redrive(dead, now) if dead else 0
        if moved:
            count += moved
        else:
            unmatched.append(given)
    if count:
        _wake_workers(request)
    return json_answer(200, {"redriven": count, "unmatched": unmatched})


async def retry_now(request: web.Request) -> web.Response:
    """``POST /admin/destinations/{name}/retry-now``: the destination's deliveries waiting
    out a backoff are due now (their attempt counts kept), as when it comes back by itself."""
    name = _text(request.match_info["name"], "destination")
    if name not in request.app[GATEWAY][RUNTIME].config.destinations:
        raise NotFound(f"no destination named {name!r} is configured")
    count = await store_of(request).retry_now(name, _now(request))
    _wake_workers(request)
    return json_answer(200, {"destination": name, "retried": count})


def _choice(request: web.Request, name: str, allowed: tuple[_C, ...]) -> _C | None:
    """An optional query parameter that must be one of ``allowed``."""
    value = request.query.get(name) or None
    if value is None:
        return None
    for option in allowed:
        if value == option:
            return option
    raise InvalidRequest(f"{name} must be one of {', '.join(allowed)}")


async def list_payments(request: web.Request) -> web.Response:
    """``GET /admin/payments?source=&state=&q=&attention=&limit=&cursor=``: payments, latest
    update first; ``q`` matches the start of a payment's key or of its reference."""
    payments, cursor = await store_of(request).list_payments(
        source=_param(request, "source"),
        state=_choice(request, "state", STATES),
        q=_param(request, "q"),
        attention=_choice(request, "attention", ATTENTIONS),
        limit=_limit(request),
        cursor=_param(request, "cursor", MAX_CURSOR),
    )
    payload = {"payments": [payment_json(p) for p in payments], "next_cursor": cursor}
    return json_answer(200, payload)


async def show_payment(request: web.Request) -> web.Response:
    """``GET /admin/payments/{source}/{key}``: the payment and every event of it in the order
    received, each with its origin, its mark and its deliveries."""
    source = _text(request.match_info["source"], "source")
    key = _text(request.match_info["key"], "payment key")
    found = await store_of(request).get_payment(source, key)
    if found is None:
        raise NotFound("no such payment")
    payment, views = found
    return json_answer(
        200, {"payment": payment_json(payment), "events": [event_json(v) for v in views]}
    )


async def show_stats(request: web.Request) -> web.Response:
    """``GET /admin/stats``: last-hour figures, events per minute, queue depth, store health.

    An unreachable store answers 200 with ``store_reachable: false`` and no figures, so the
    dashboard can say so.
    """
    store = store_of(request)
    now = _now(request)
    try:
        async with asyncio.timeout(STATS_TIMEOUT):
            stats = await store.stats(now)
            depth = await store.queue_depth()
    except (StoreError, TimeoutError):
        return json_answer(200, {"store_reachable": False, "now": rfc3339(now)})
    config = request.app[GATEWAY][RUNTIME].config
    destinations = sorted(set(config.destinations) | {d for d, _ in depth})
    p50, p99 = stats.latency_percentile(0.5), stats.latency_percentile(0.99)
    first = minute_of(now) - WINDOW_MINUTES + 1
    payload = {
        "store_reachable": True,
        "now": rfc3339(now),
        "last_hour": {
            **{name: stats.total(name) for name in COUNTERS},
            "success_ratio": stats.success_ratio(),
            "latency_p50_ms": p50,
            "latency_p99_ms": p99,
        },
        "per_minute": {
            "start": rfc3339(first * 60.0),
            **{name: stats.series(name) for name in COUNTERS},
        },
        "queue_depth": {
            d: {state: depth.get((d, state), 0) for state in ("due", "leased", "dead")}
            for d in destinations
        },
    }
    return json_answer(200, payload)


async def openapi(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 document of this API."""
    return json_answer(200, DOCUMENT)


def add_routes(app: web.Application) -> None:
    """Register the admin API on the admin application."""
    app.middlewares.append(admin_guard)
    app.router.add_get("/admin/openapi.json", openapi)
    app.router.add_get("/admin/events", list_events)
    app.router.add_get("/admin/events/{event_id}", show_event)
    app.router.add_post("/admin/events/{event_id}/replay", replay_event)
    app.router.add_get("/admin/dead-letters", list_dead_letters)
    app.router.add_post("/admin/dead-letters/redrive", redrive)
    app.router.add_post("/admin/destinations/{name}/retry-now", retry_now)
    app.router.add_get("/admin/payments", list_payments)
    # A payment key may hold slashes (a Rafiki payment id is a URL).
    app.router.add_get("/admin/payments/{source}/{key:.+}", show_payment)
    app.router.add_get("/admin/stats", show_stats)
