"""A source's ``payment:`` block: how its events name a payment, and what they say of it.

``PaymentRules.read`` takes an event's payload and type and answers the payment it belongs to
(``PaymentFacts``: the key, the marketplace's reference, the state the event reports, the
amount it carries) or ``None`` for an event that is not about a payment (no key, or a type the
rules leave out). Decided per config; read per request; pure.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from gateway.errors import InvalidBody
from gateway.extract import Extractor, Payload
from gateway.http.text import is_text
from gateway.payments.amounts import (
    Amount,
    AmountError,
    currency_of,
    major_units,
    minor_units,
    scale_of,
)
from gateway.payments.states import State

Order = Literal["enforce", "record"]
#: Longest payment key or reference kept; a longer one is refused rather than cut.
MAX_KEY = 512


@dataclass(frozen=True, slots=True)
class AmountRule:
    """Where an event keeps its amount: Open Payments amount objects (``{value, assetCode,
    assetScale}``, the first present of ``objects``), or ``value`` with a ``currency`` and an
    optional ``scale``, each an extractor or a constant."""

    objects: tuple[Extractor, ...] = ()
    value: Extractor | None = None
    currency: Extractor | str | None = None
    scale: Extractor | int | None = None

    def read(self, payload: Payload) -> Amount | None:
        """The event's amount, ``None`` when it carries none; ``InvalidBody`` when it carries
        one that cannot be read exactly."""
        try:
            if self.objects:
                return self._object(payload)
            return self._parts(payload)
        except AmountError as exc:
            raise InvalidBody(f"the payment amount is not valid: {exc}") from None

    def _object(self, payload: Payload) -> Amount | None:
        for pointer in self.objects:
            found = payload.number_exact(pointer)
            if found is None:
                continue
            if not isinstance(found, dict):
                raise AmountError(f"{pointer.spelled} is not an amount object")
            if found.get("value") is None:
                raise AmountError(f"{pointer.spelled} has no value")
            scale = scale_of(found.get("assetScale"))
            return minor_units(found["value"], scale, currency_of(found.get("assetCode")))
        return None

    def _parts(self, payload: Payload) -> Amount | None:
        assert self.value is not None
        raw = payload.number_exact(self.value)
        if raw is None:
            return None
        currency = currency_of(self._given(payload, self.currency, "currency"))
        if self.scale is None:
            return major_units(raw, currency)
        return minor_units(raw, scale_of(self._given(payload, self.scale, "scale")), currency)

    @staticmethod
    def _given(payload: Payload, part: Extractor | str | int | None, what: str) -> object:
        if isinstance(part, Extractor):
            value = payload.number_exact(part)
            if value is None:
                raise AmountError(f"the {what} ({part.spelled}) is missing")
            return value
        if part is None:
            raise AmountError(f"no {what} is configured")
        return part


@dataclass(frozen=True, slots=True)
class PaymentFacts:
    """What one event says of its payment."""

    key: str
    reference: str | None
    state: State | None  # the state the event reports; None: its type maps to none
    amount: Amount | None
    order: Order


@dataclass(frozen=True, slots=True)
class PaymentRules:
    """A source's ``payment:`` block, with the provider's defaults filled in."""

    key: Extractor
    reference: Extractor | None = None
    amount: AmountRule | None = None
    #: event type -> the state an event of that type reports
    states: Mapping[str, State] = field(default_factory=dict)
    #: Glob patterns of the event types that are about payments (others stay plain events).
    types: tuple[str, ...] = ("*",)
    order: Order = "enforce"

    def applies_to(self, event_type: str | None) -> bool:
        """Whether an event of this type is about a payment."""
        if event_type is None:
            return "*" in self.types
        return any(fnmatch.fnmatchcase(event_type, pattern) for pattern in self.types)

    def read(self, payload: Payload, event_type: str | None) -> PaymentFacts | None:
        """The payment an event belongs to and what it says of it, or ``None``."""
        if not self.applies_to(event_type):
            return None
        key = payload.get(self.key)
        if not key:
            return None
        reference = payload.get(self.reference) if self.reference is not None else None
        if len(key) > MAX_KEY or (reference is not None and len(reference) > MAX_KEY):
            raise InvalidBody(f"a payment key or reference is longer than {MAX_KEY} characters")
        if not is_text(key) or (reference is not None and not is_text(reference)):
            # A JSON "\udcff" escape parses to a lone surrogate, which no store can keep.
            raise InvalidBody("an extracted value is not valid Unicode text")
        state = self.states.get(event_type) if event_type is not None and self.states else None
        amount = self.amount.read(payload) if self.amount is not None else None
        return PaymentFacts(key, reference, state, amount, self.order)
