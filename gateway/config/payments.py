"""A source's ``payment:`` block (design.md 5.7), checked key by key.

``payment: false`` turns a provider's payments off (a ``rafiki`` source has them by default),
``payment: {}`` takes the provider's defaults, and each key given replaces that default:
``key`` and ``reference`` are extractors; ``amount`` is an extractor of an Open Payments amount
object, a list of them (the first present), or ``{value, currency, scale}`` whose parts are
extractors or constants; ``states`` maps event types to the state each reports; ``types``
(glob patterns) says which event types are about payments; ``order`` is ``enforce`` or
``record``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.config.reader import Reader, choice
from gateway.extract import Extractor, parse_extractor
from gateway.payments.amounts import AmountError, currency_of, scale_of
from gateway.payments.rules import AmountRule, Order, PaymentRules
from gateway.payments.states import STATES, State

_KEYS = {"key", "reference", "amount", "states", "types", "order"}


def parse_payment(
    reader: Reader, raw: object, defaults: PaymentRules | None, provider: str
) -> PaymentRules | None:
    """The source's payment rules, ``None`` without payments; problems reported by key."""
    if raw is False:
        return None
    if raw is None:
        return defaults
    if raw is True:
        raw = {}
    with reader.at("payment"):
        data = reader.mapping(raw, _KEYS)
        if not isinstance(raw, dict):
            return None
        key = reader.field(data, "key", _pointer, defaults.key if defaults else None)
        if key is None and "key" not in data:
            reader.problem(
                reader.key("key"),
                f"required: provider {provider} has no payment defaults (e.g. key: /pendingId)",
            )
        reference = reader.field(
            data, "reference", _pointer, defaults.reference if defaults else None
        )
        amount = defaults.amount if defaults else None
        if "amount" in data:
            with reader.at("amount"):
                amount = _amount(reader, data["amount"])
        states: Mapping[str, State] = defaults.states if defaults else {}
        if "states" in data:
            states = _states(reader, data["states"])
        types = defaults.types if defaults else ("*",)
        if "types" in data:
            types = reader.list_of(data, "types", str) or ("*",)
        order: Order = reader.field(
            data, "order", choice("enforce", "record"), defaults.order if defaults else "enforce"
        )
    if key is None:
        return None
    return PaymentRules(key, reference, amount, states, types, order)


def _pointer(value: object) -> Extractor:
    """A payment field's extractor: a JSON pointer or ``header:NAME``."""
    return parse_extractor(str(value))


def _is_extractor(value: object) -> bool:
    return isinstance(value, str) and value.startswith(("/", "body:", "header:"))


def _amount(reader: Reader, raw: object) -> AmountRule | None:
    if isinstance(raw, str):
        return AmountRule(objects=(_pointer(raw),))
    if isinstance(raw, list):
        objects = []
        for index, item in enumerate(raw):
            try:
                objects.append(_pointer(item))
            except ValueError as exc:
                reader.problem(reader.key(index), str(exc))
        if not objects:
            reader.problem(reader.key(), "name at least one amount object, e.g. /data/amount")
            return None
        return AmountRule(objects=tuple(objects))
    data = reader.mapping(raw, {"value", "currency", "scale"})
    if not isinstance(raw, dict):
        return None
    value = reader.field(data, "value", _pointer, None)
    if value is None:
        reader.problem(reader.key("value"), "required: where the amount's value is (a pointer)")
    currency = reader.field(data, "currency", _currency, None)
    if currency is None and "currency" not in data:
        reader.problem(reader.key("currency"), "required: a pointer or a code such as EUR")
    scale = reader.field(data, "scale", _scale, None)
    if value is None or currency is None:
        return None
    return AmountRule(value=value, currency=currency, scale=scale)


def _currency(value: object) -> Extractor | str:
    if _is_extractor(value):
        return _pointer(value)
    try:
        return currency_of(value)
    except AmountError as exc:
        raise ValueError(str(exc)) from None


def _scale(value: object) -> Extractor | int:
    if _is_extractor(value):
        return _pointer(value)
    try:
        return scale_of(value)
    except AmountError as exc:
        raise ValueError(str(exc)) from None


def _states(reader: Reader, raw: object) -> dict[str, State]:
    states: dict[str, State] = {}
    with reader.at("states"):
        data: dict[str, Any] = reader.mapping(
            raw, set(map(str, raw)) if isinstance(raw, dict) else set()
        )
        for event_type, state in data.items():
            if state not in STATES:
                reader.problem(reader.key(event_type), f"a state is one of: {', '.join(STATES)}")
                continue
            states[event_type] = state
    return states
