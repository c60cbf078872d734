"""RFC 8785 canonicalization, against the rfc8785 library and the RFC's own examples."""

from __future__ import annotations

import json
import math
import random
import struct
from typing import Any

import pytest
import rfc8785

from gateway.providers.jcs import CanonicalizationError, canonicalize, format_number, loads

# RFC 8785 Appendix B: IEEE 754 bit patterns and the text ECMAScript writes for them.
APPENDIX_B = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


def _double(bits: str) -> float:
    value: float = struct.unpack(">d", bytes.fromhex(bits))[0]
    return value


@pytest.mark.parametrize(("bits", "expected"), APPENDIX_B, ids=[b for b, _ in APPENDIX_B])
def test_rfc8785_appendix_b_numbers(bits: str, expected: str) -> None:
    assert format_number(_double(bits)) == expected
    assert canonicalize(_double(bits)) == expected.encode()


@pytest.mark.parametrize("bits", ["7fffffffffffffff", "7ff0000000000000", "fff0000000000000"])
def test_nan_and_infinity_have_no_canonical_form(bits: str) -> None:
    with pytest.raises(CanonicalizationError):
        canonicalize(_double(bits))


def test_rfc8785_section_3_2_2_example() -> None:
    text = (
        b'{\n  "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],\n'
        b'  "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",\n'
        b'  "literals": [null, true, false]\n}'
    )
    expected = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )
    assert canonicalize(loads(text)) == expected.encode()


def test_rfc8785_section_3_2_3_sorting_example() -> None:
    text = (
        '{"\\u20ac": "Euro Sign", "\\r": "Carriage Return", "\\ufb33": "Hebrew Letter Dalet With '
        'Dagesh", "1": "One", "\\ud83d\\ude00": "Emoji: Grinning Face", "\\u0080": "Control '
        'Character", "\\u00f6": "Latin Small Letter O With Diaeresis"}'
    )
    names = list(json.loads(text))
    canonical = json.loads(canonicalize(loads(text.encode())))
    order = list(canonical)
    assert order == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]
    assert sorted(order) == sorted(names)


def test_large_integers_follow_javascript_doubles() -> None:
    # JSON.parse makes 12345678901234567890 the double 12345678901234567168, which
    # Number.prototype.toString writes as 12345678901234567000.
    text = b"[12345678901234567890, 9007199254740993, -0, 1E2, 100000000000000000000000]"
    assert canonicalize(loads(text)) == b"[12345678901234567000,9007199254740992,0,100,1e+23]"
    assert canonicalize(2**64) == b"18446744073709552000"
    assert canonicalize(-(2**53)) == b"-9007199254740992"


@pytest.mark.parametrize(
    "text",
    [
        b'{"a": 1, "a": 2}',
        b'{"a": {"b": 1, "b": 1}}',
        b"[NaN]",
        b"[Infinity]",
        b"[-Infinity]",
        b"[1e400]",
        b'["\\ud800"]',
        b'{"\\udc00": 1}',
        b'"caf\xe9"',
        b"\xef\xbb\xbf{}",
        b"{'a': 1}",
        b"",
        b"[" * 100_000,
        b"[" + b"9" * 5000 + b"]",
    ],
    ids=[
        "duplicate-name",
        "nested-duplicate",
        "nan",
        "infinity",
        "minus-infinity",
        "overflow",
        "lone-high-surrogate",
        "lone-low-surrogate-name",
        "latin-1",
        "utf-8-bom",
        "single-quotes",
        "empty",
        "too-deep",
        "integer-beyond-any-double",
    ],
)
def test_refused_input(text: bytes) -> None:
    with pytest.raises(CanonicalizationError):
        canonicalize(loads(text))


@pytest.mark.parametrize(
    "value",
    [float("nan"), {1: "x"}, {"a": b"bytes"}, object(), "\ud800", 10**400],
    ids=["nan", "int-name", "bytes", "object", "lone-surrogate", "huge-int"],
)
def test_refused_values(value: object) -> None:
    with pytest.raises(CanonicalizationError):
        canonicalize(value)


# Seeded random documents, compared with the rfc8785 library byte for byte.

_ALPHABETS = [
    [chr(c) for c in range(0x00, 0x80)],
    [chr(c) for c in range(0x80, 0x800)],
    [chr(c) for c in (0x2028, 0x2029, 0xFEFF, 0xFFFD, 0xFB33, 0xE000, 0x20AC)],
    [chr(c) for c in (0x1F600, 0x10000, 0x10FFFF, 0x1D11E)],
]


def _string(rng: random.Random) -> str:
    return "".join(rng.choice(rng.choice(_ALPHABETS)) for _ in range(rng.randrange(0, 12)))


def _number(rng: random.Random) -> float | int:
    kind = rng.randrange(6)
    if kind == 0:
        return rng.randint(-(2**53) + 1, 2**53 - 1)
    if kind == 1:
        return rng.randint(-1000, 1000)
    if kind == 2:
        return round(rng.uniform(-1e6, 1e6), rng.randrange(0, 8))
    if kind == 3:
        return rng.choice([1.0, -1.0, 0.5]) * 10.0 ** rng.randrange(-30, 30)
    while True:  # any finite double, subnormals included
        value: float = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
        if math.isfinite(value):
            return value


def _value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(7 if depth < 4 else 5)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind in (1, 2):
        return _number(rng)
    if kind in (3, 4):
        return _string(rng)
    if kind == 5:
        return [_value(rng, depth + 1) for _ in range(rng.randrange(0, 5))]
    return {_string(rng): _value(rng, depth + 1) for _ in range(rng.randrange(0, 6))}


def test_random_values_match_rfc8785_library() -> None:
    rng = random.Random(8785)
    for _ in range(3000):
        value = _value(rng)
        assert canonicalize(value) == rfc8785.dumps(value), value


def test_random_json_texts_match_rfc8785_library() -> None:
    # Through our parser too: numbers become doubles, layout and escapes do not matter.
    rng = random.Random(20200601)
    for _ in range(2000):
        value = _value(rng)
        text = json.dumps(value, indent=rng.choice([None, 1, 3]), ensure_ascii=rng.random() < 0.5)
        assert canonicalize(loads(text.encode())) == rfc8785.dumps(value), text


def test_random_doubles_match_rfc8785_library() -> None:
    rng = random.Random(754)
    for _ in range(50_000):
        value = _number(rng)
        assert format_number(float(value)) == rfc8785.dumps(float(value)).decode(), value
