"""Money, exactly: an integer of minor units with its scale and currency (design.md 5.7).

An amount is read from the JSON text of a body, never through a float: a value with a
``scale`` is an integer of minor units (Open Payments' ``{"value": "1999", "assetScale": 2}``
is 19.99), and one without is a decimal of major units whose digits give the scale
(``"19.99"`` or the JSON number ``19.99``: 1999 at scale 2, every digit kept). Amounts of
different currencies are never added together; ``Decimal`` is used to read and to show them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

#: Most digits an amount may have, and the largest scale: bounds what a sender can make the
#: gateway store or format (a 10^-30 fraction of any currency is past every real one).
MAX_DIGITS = 40
MAX_SCALE = 30
#: Longest currency code or asset code kept (ISO 4217 codes have 3 letters; assets may be
#: longer names).
MAX_CURRENCY = 16

_INTEGER = re.compile(r"-?[0-9]+")
_DECIMAL = re.compile(r"-?[0-9]+(\.[0-9]+)?")


class AmountError(ValueError):
    """A value that is not an amount this gateway can keep exactly; the message says why."""


@dataclass(frozen=True, slots=True)
class Amount:
    """``value`` minor units of ``currency`` at ``scale`` (1999, 2, "EUR" is 19.99 EUR)."""

    value: int
    scale: int
    currency: str

    @property
    def decimal(self) -> str:
        """The amount in major units, with exactly ``scale`` digits after the point."""
        sign = "-" if self.value < 0 else ""
        digits = str(abs(self.value)).rjust(self.scale + 1, "0")
        if not self.scale:
            return sign + digits
        return f"{sign}{digits[: -self.scale]}.{digits[-self.scale :]}"

    def to_json(self) -> dict[str, object]:
        """The admin API's form: value as text (minor units), scale, currency, decimal."""
        return {
            "value": str(self.value),
            "scale": self.scale,
            "currency": self.currency,
            "decimal": self.decimal,
        }

    @classmethod
    def from_json(cls, data: object) -> Amount:
        """Inverse of ``to_json`` (the ``decimal`` is derived, so it is not read)."""
        if not isinstance(data, dict):
            raise AmountError("a stored amount is an object")
        return cls(int(str(data["value"])), int(str(data["scale"])), str(data["currency"]))


def minor_units(raw: object, scale: int, currency: str) -> Amount:
    """An amount from an integer of minor units: a JSON integer (read exactly, as ``int`` or
    an integral ``Decimal``) or a string of digits."""
    value: int
    if isinstance(raw, bool):
        raise AmountError("a value in minor units is an integer, not true or false")
    if isinstance(raw, int):
        value = raw
    elif isinstance(raw, Decimal):
        if not raw.is_finite() or raw != raw.to_integral_value():
            raise AmountError(f"{raw} is not a whole number of minor units")
        value = int(raw)
    elif isinstance(raw, str) and _INTEGER.fullmatch(raw.strip()):
        value = int(raw.strip())
    else:
        raise AmountError("a value in minor units is an integer or a string of digits")
    return _checked(value, scale, currency)


def major_units(raw: object, currency: str) -> Amount:
    """An amount from a decimal of major units: a JSON number (read from its text, as a
    ``Decimal`` or an ``int``) or a string like ``"19.99"``; its digits give the scale."""
    number: Decimal
    if isinstance(raw, bool):
        raise AmountError("an amount is a number, not true or false")
    if isinstance(raw, int):
        number = Decimal(raw)
    elif isinstance(raw, Decimal):
        number = raw
    elif isinstance(raw, str) and _DECIMAL.fullmatch(raw.strip()):
        number = Decimal(raw.strip())
    else:
        raise AmountError("an amount is a number or a string like 19.99")
    if not number.is_finite():
        raise AmountError("an amount is a finite number")
    sign, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)  # finite
    if len(digits) > MAX_DIGITS or abs(exponent) > MAX_DIGITS:
        raise AmountError(f"an amount has at most {MAX_DIGITS} digits")
    value = int("".join(map(str, digits)) or "0")
    if exponent >= 0:
        value, scale = value * 10**exponent, 0
    else:
        scale = -exponent
    return _checked(-value if sign else value, scale, currency)


def scale_of(raw: object) -> int:
    """An amount's scale: a whole number from 0 to ``MAX_SCALE`` (JSON integer or digits)."""
    if isinstance(raw, bool):
        raise AmountError("a scale is a whole number")
    text = str(raw).strip() if isinstance(raw, int | str | Decimal) else ""
    try:
        scale = int(Decimal(text)) if text and Decimal(text) == int(Decimal(text)) else -1
    except (InvalidOperation, ValueError):
        scale = -1
    if not 0 <= scale <= MAX_SCALE:
        raise AmountError(f"a scale is a whole number from 0 to {MAX_SCALE}")
    return scale


def currency_of(raw: object) -> str:
    """A currency or asset code: non-empty text of printable characters, kept as given."""
    if not isinstance(raw, str) or not raw.strip() or len(raw) > MAX_CURRENCY:
        raise AmountError(f"a currency is a code of 1 to {MAX_CURRENCY} characters")
    if not raw.isprintable():
        raise AmountError("a currency is printable text")
    return raw.strip()


def _checked(value: int, scale: int, currency: str) -> Amount:
    if len(str(abs(value))) > MAX_DIGITS:
        raise AmountError(f"an amount has at most {MAX_DIGITS} digits")
    if not 0 <= scale <= MAX_SCALE:
        raise AmountError(f"a scale is a whole number from 0 to {MAX_SCALE}")
    return Amount(value, scale, currency)
