"""A source's ``reconcile:`` block (design.md 5.8), checked key by key.

``every``, ``grace``, ``recover``, ``lookback``, and ``from`` naming the provider's listing by
``kind``: ``http-list`` (any JSON listing: ``url``, ``headers``, ``timeout``, ``items``,
``key``, ``state: {field, map}``, ``events`` per state), ``rafiki`` (``url`` of the Admin
GraphQL API, ``secret``, ``tenant_id``, ``timeout``) or ``stripe`` (``api_key``, ``url``,
``timeout``). A recovered event is read as a webhook with that body, so the source's dedupe
key must come from the body (a header could never match), and the source must keep payments.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.config.model import (
    HttpListFrom,
    ProviderFrom,
    RafikiFrom,
    ReconcileConfig,
    StripeFrom,
)
from gateway.config.reader import Reader, boolean, http_url, parse_duration, secret
from gateway.extract import Extractor, parse_extractor
from gateway.payments.rules import PaymentRules
from gateway.payments.states import STATES, State
from gateway.secret import Secret

_KEYS = {"every", "grace", "recover", "lookback", "from"}
_FROM_KEYS = {
    "http-list": {"kind", "url", "headers", "timeout", "items", "key", "state", "events"},
    "rafiki": {"kind", "url", "secret", "tenant_id", "timeout"},
    "stripe": {"kind", "api_key", "url", "timeout"},
}
#: Stripe keeps events for 30 days: a run looks no further back.
STRIPE_LOOKBACK = 30 * 86400.0


def parse_reconcile(
    reader: Reader,
    raw: object,
    *,
    dedupe_key: Extractor,
    window: float,
    payment: PaymentRules | None,
) -> ReconcileConfig | None:
    """The source's reconciliation, ``None`` without one; problems reported by key."""
    if raw is None or raw is False:
        return None
    with reader.at("reconcile"):
        before = len(reader.problems)
        data = reader.mapping(raw, _KEYS)
        if not isinstance(raw, dict):
            return None
        if dedupe_key.reads_header:
            reader.problem(
                reader.key(),
                f"the source's dedupe key {dedupe_key} reads a header: an event recovered from"
                " the provider's listing has no headers, so it could never match its webhook"
                " (dedupe on the body, e.g. dedupe: {key: [/type, /pendingId]})",
            )
        if payment is None:
            reader.problem(
                reader.key(),
                "reconciliation compares payments: the source needs a payment: block",
            )
        every_raw = data.get("every", "5m")
        every = None if every_raw in (None, False, "never") else _duration(reader, data, "every")
        grace = reader.field(data, "grace", parse_duration, 120.0)
        recover = reader.field(data, "recover", boolean, True)
        provider = None
        if "from" not in data:
            reader.problem(reader.key("from"), "required: the provider's listing (kind: ...)")
        else:
            with reader.at("from"):
                provider = _provider(reader, data["from"])
        default_lookback = window
        if isinstance(provider, StripeFrom):
            default_lookback = min(window, STRIPE_LOOKBACK)
        lookback = reader.field(data, "lookback", parse_duration, default_lookback)
        if isinstance(provider, StripeFrom) and lookback > STRIPE_LOOKBACK:
            reader.problem(reader.key("lookback"), "Stripe keeps events for 30 days at most")
        if len(reader.problems) > before or provider is None:
            return None
    return ReconcileConfig(
        provider=provider, every=every, grace=grace, recover=recover, lookback=lookback
    )


def _duration(reader: Reader, data: Mapping[str, Any], name: str) -> float | None:
    value = reader.field(data, name, parse_duration, None)
    if value is not None and value <= 0:
        reader.problem(reader.key(name), "must be longer than zero")
        return None
    return value


def _provider(reader: Reader, raw: object) -> ProviderFrom | None:
    if not isinstance(raw, dict):
        reader.problem(reader.key(), "expected a mapping with a kind")
        return None
    kind = str(raw.get("kind", ""))
    if kind not in _FROM_KEYS:
        reader.problem(reader.key("kind"), f"one of: {', '.join(_FROM_KEYS)}")
        return None
    data = reader.mapping(raw, _FROM_KEYS[kind])
    timeout = reader.field(data, "timeout", parse_duration, 30.0)
    if kind == "rafiki":
        url = _required(reader, data, "url", http_url)
        key = _required(reader, data, "secret", secret)
        tenant = _required(reader, data, "tenant_id", _text)
        if url is None or key is None or tenant is None:
            return None
        return RafikiFrom(url=url, secret=key, tenant_id=tenant, timeout=timeout)
    if kind == "stripe":
        api_key = _required(reader, data, "api_key", secret)
        url = reader.field(data, "url", http_url, "https://api.stripe.com")
        if api_key is None:
            return None
        return StripeFrom(api_key=api_key, url=url.rstrip("/"), timeout=timeout)
    return _http_list(reader, data, timeout)


def _http_list(reader: Reader, data: dict[str, Any], timeout: float) -> HttpListFrom | None:
    url = _required(reader, data, "url", http_url)
    headers: list[tuple[str, Secret]] = []
    raw_headers = data.get("headers") or {}
    if not isinstance(raw_headers, dict):
        reader.problem(reader.key("headers"), "expected a mapping of header names to values")
    else:
        for name, value in raw_headers.items():
            try:
                headers.append((_text(name), secret(value)))
            except ValueError as exc:
                reader.problem(reader.key("headers", str(name)), str(exc))
    items = reader.field(data, "items", _pointer_or_root, Extractor("body", ""))
    key = _required(reader, data, "key", _pointer)
    state_field: Extractor | None = None
    state_map: dict[str, State] = {}
    if "state" not in data:
        reader.problem(reader.key("state"), "required: {field: /status, map: {paid: completed}}")
    else:
        with reader.at("state"):
            sd = reader.mapping(data["state"], {"field", "map"})
            state_field = _required(reader, sd, "field", _pointer)
            raw_map = sd.get("map")
            if raw_map is not None and not isinstance(raw_map, dict):
                reader.problem(reader.key("map"), "expected a mapping of listing states")
                raw_map = {}
            for name, state in (raw_map or {}).items():
                if state not in STATES:
                    reader.problem(
                        reader.key("map", str(name)), f"a state is one of: {', '.join(STATES)}"
                    )
                else:
                    state_map[str(name)] = state
    events: dict[State, dict[str, Any]] = {}
    raw_events = data.get("events") or {}
    if not isinstance(raw_events, dict):
        reader.problem(reader.key("events"), "expected a mapping of states to event templates")
    else:
        for state, template in raw_events.items():
            if state not in STATES:
                reader.problem(reader.key("events", str(state)), f"one of: {', '.join(STATES)}")
            elif not isinstance(template, dict) or not template:
                reader.problem(
                    reader.key("events", str(state)), "expected the webhook body as a mapping"
                )
            else:
                events[state] = template
    if url is None or key is None or state_field is None:
        return None
    return HttpListFrom(
        url=url,
        headers=tuple(headers),
        timeout=timeout,
        items=items,
        key=key,
        state=state_field,
        state_map=state_map,
        events=events,
    )


def _required(reader: Reader, data: Mapping[str, Any], name: str, parse: Any) -> Any:
    if name not in data:
        reader.problem(reader.key(name), "required")
        return None
    return reader.field(data, name, parse, None)


def _text(value: object) -> str:
    if not isinstance(value, str | int) or isinstance(value, bool) or not str(value).strip():
        raise ValueError("expected text")
    return str(value)


def _pointer(value: object) -> Extractor:
    extractor = parse_extractor(str(value))
    if extractor.kind != "body":
        raise ValueError("a JSON pointer into the listing's item, such as /pendingId")
    return extractor


def _pointer_or_root(value: object) -> Extractor:
    """Where the list is in the answer: a JSON pointer (``""`` or ``/``: the answer itself)."""
    text = str(value)
    if text in ("", "/"):
        return Extractor("body", "")
    return _pointer(text)
