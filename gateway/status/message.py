"""What a buyer's page is told of its payment (design.md 5.10), and when it has heard all.

Six fields and nothing else: the page holds a capability for one payment, and a payment's
reference, events, bodies and headers are the marketplace's business, not the buyer's.
Pure: a ``PaymentView`` (or ``None``: not seen yet) in, JSON bytes out.
"""

from __future__ import annotations

from gateway.jsontext import dumpb
from gateway.payments.states import TERMINAL
from gateway.store.records import PaymentView
from gateway.times import rfc3339

#: The fields of every message, in order.
FIELDS = ("source", "key", "state", "amount", "confirmed", "updated_at")
#: The state of a payment the gateway has not seen yet.
UNKNOWN = "unknown"


def status_message(source: str, key: str, view: PaymentView | None) -> dict[str, object]:
    """The message for the payment ``(source, key)`` as ``view`` has it: its state, its
    amount (``{value, scale, currency, decimal}``, exact) and whether the marketplace has
    taken its last event (``confirmed``)."""
    if view is None:
        return dict(zip(FIELDS, (source, key, UNKNOWN, None, False, None), strict=True))
    amount = None if view.amount is None else view.amount.to_json()
    values = (source, key, view.state, amount, view.delivered, rfc3339(view.updated_at))
    return dict(zip(FIELDS, values, strict=True))


def encode(message: dict[str, object]) -> bytes:
    """A message as compact JSON, the text every transport sends."""
    return dumpb(message)


def is_final(view: PaymentView | None) -> bool:
    """Whether nothing more will change for the page: the payment is in a terminal state and
    the marketplace has taken it (the stream ends here)."""
    return view is not None and view.state in TERMINAL and view.delivered
