"""RFC 8785 JSON Canonicalization Scheme (JCS), for schemes that sign re-serialized JSON.

Rafiki signs ``canonicalize({id, type, data})`` computed in JavaScript, so the bytes we must
rebuild are the ones an ECMAScript engine would produce (RFC 8785 section 3.2):

* numbers are IEEE 754 doubles printed by ECMAScript ``Number.prototype.toString``
  (ECMA-262 "Number::toString", RFC 8785 3.2.2.3); an integer beyond 2**53 is the double it
  parses to, as ``JSON.parse`` would make it;
* strings escape only ``"``, ``\\`` and U+0000..U+001F, using the short forms where JSON has
  them (RFC 8785 3.2.2.2); everything else is written as UTF-8;
* object members are sorted by the UTF-16 code units of their names (RFC 8785 3.2.3).

Input that has no canonical form is refused with ``CanonicalizationError``: NaN and infinities,
lone surrogates (RFC 8785 3.2.2.2 says they MUST cause an error), and, when parsing, duplicate
member names (RFC 8785 requires I-JSON, RFC 7493 2.3), since two parsers could read different
values from the same bytes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence

__all__ = ["CanonicalizationError", "canonicalize", "format_number", "loads"]

# Integers up to 2**53 are exact doubles, so Python's decimal text is exactly what ECMAScript
# prints for them.
_SAFE_INTEGER = 2**53

_SHORT_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}
_ESCAPES = {chr(c): _SHORT_ESCAPES.get(chr(c), f"\\u{c:04x}") for c in range(0x20)}
_ESCAPES.update(_SHORT_ESCAPES)
_ESCAPE_TABLE = str.maketrans(_ESCAPES)


class CanonicalizationError(ValueError):
    """The value has no RFC 8785 canonical form (or the text is not acceptable JSON)."""


def _refuse_constant(name: str) -> object:
    raise CanonicalizationError(f"{name} is not a JSON number")


def _unique_members(pairs: list[tuple[str, object]]) -> dict[str, object]:
    members: dict[str, object] = {}
    for name, value in pairs:
        if name in members:
            raise CanonicalizationError(f"duplicate member name {name!r}")
        members[name] = value
    return members


def loads(data: bytes) -> object:
    """Parse UTF-8 JSON as ``JSON.parse`` would for JCS: every number becomes a double."""
    try:
        text = data.decode("utf-8")
        # parse_int=float: JSON has one number type and JavaScript reads it as a double, so a
        # large integer must round exactly as the signer's engine rounded it.
        return json.loads(
            text,
            parse_int=float,
            parse_float=float,
            parse_constant=_refuse_constant,
            object_pairs_hook=_unique_members,
        )
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise CanonicalizationError(f"not valid JSON: {exc}") from exc


def format_number(value: float) -> str:
    """A double as ECMAScript ``Number.prototype.toString()`` writes it (RFC 8785 3.2.2.3)."""
    if math.isnan(value) or math.isinf(value):
        raise CanonicalizationError(f"{value} has no JSON form")
    if value == 0:
        return "0"  # ECMAScript prints -0 as "0" too
    if value < 0:
        return "-" + format_number(-value)
    # repr() gives the shortest digit string that reads back as the same double, choosing the
    # nearest one on ties, which is exactly the "k as small as possible" digit string s of
    # ECMA-262 Number::toString. Only the layout around the digits differs.
    mantissa, _, exponent_text = repr(value).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    # value == 0.<digits> * 10**point; drop zeros that carry no digit.
    point = len(whole) + (int(exponent_text) if exponent_text else 0)
    significant = digits.lstrip("0")
    point -= len(digits) - len(significant)
    digits = significant.rstrip("0")
    k, n = len(digits), point  # the k and n of ECMA-262 Number::toString
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return "0." + "0" * -n + digits
    exponent = n - 1
    sign = "+" if exponent >= 0 else "-"
    head = digits if k == 1 else digits[0] + "." + digits[1:]
    return f"{head}e{sign}{abs(exponent)}"


def _string(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise CanonicalizationError("string contains a lone surrogate") from exc
    return '"' + value.translate(_ESCAPE_TABLE) + '"'


def _utf16_order(item: tuple[str, object]) -> bytes:
    # Big-endian UTF-16 bytes compare in the same order as the code units they encode.
    return item[0].encode("utf-16-be")


def _serialize(value: object, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, int):
        if -_SAFE_INTEGER <= value <= _SAFE_INTEGER:
            out.append(str(value))
        else:
            try:
                out.append(format_number(float(value)))
            except OverflowError as exc:
                raise CanonicalizationError("integer is too large for a double") from exc
    elif isinstance(value, float):
        out.append(format_number(value))
    elif isinstance(value, Mapping):
        members = list(value.items())
        for name, _ in members:
            if not isinstance(name, str):
                raise CanonicalizationError("object member names must be strings")
            _string(name)  # refuse lone surrogates before sorting by UTF-16
        out.append("{")
        for index, (name, member) in enumerate(sorted(members, key=_utf16_order)):
            if index:
                out.append(",")
            out.append(_string(name))
            out.append(":")
            _serialize(member, out)
        out.append("}")
    elif isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _serialize(item, out)
        out.append("]")
    else:
        raise CanonicalizationError(f"{type(value).__name__} is not a JSON value")


def canonicalize(value: object) -> bytes:
    """The RFC 8785 canonical UTF-8 bytes of a JSON value (dict, list, str, number, bool, None)."""
    out: list[str] = []
    try:
        _serialize(value, out)
    except RecursionError as exc:
        raise CanonicalizationError("value is nested too deeply") from exc
    return "".join(out).encode("utf-8")
