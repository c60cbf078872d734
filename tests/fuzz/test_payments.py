"""Properties of payments (design.md 5.7): money keeps every digit however it is written, and a
payment ends in the same state whatever order its events arrive in."""

from __future__ import annotations

import json
from decimal import Context, Decimal

from hypothesis import given
from hypothesis import strategies as st

from gateway.extract import Extractor, Payload
from gateway.payments.amounts import Amount, major_units, minor_units
from gateway.payments.rules import AmountRule
from gateway.payments.states import RANK, TERMINAL, advance

from .settings import fuzz

DIGITS = st.text("0123456789", min_size=1, max_size=28)  # with FRACTION: 40 digits at most
FRACTION = st.text("0123456789", min_size=0, max_size=12)
#: Enough digits that comparing two amounts here never rounds (the default keeps 28).
EXACT = Context(prec=100)


def _read(document: str, rule: AmountRule) -> Amount | None:
    return rule.read(Payload(document.encode(), {}))


@fuzz(300)
@given(DIGITS, FRACTION, st.booleans(), st.booleans())
def test_a_decimal_amount_keeps_every_digit(whole, fraction, negative, as_string):
    if not as_string:
        whole = whole.lstrip("0") or "0"  # a JSON number has no leading zero
    text = ("-" if negative else "") + whole + (f".{fraction}" if fraction else "")
    value = json.dumps(text) if as_string else text
    rule = AmountRule(value=Extractor("body", "/v"), currency="EUR")
    amount = _read(f'{{"v": {value}}}', rule)
    assert amount is not None
    # Exactly the number written: its digits, and as many decimals as were written.
    assert Decimal(amount.value).scaleb(-amount.scale, EXACT) == Decimal(text)
    assert amount.scale == len(fraction)
    assert Decimal(amount.decimal) == Decimal(text)
    assert amount.decimal.lstrip("-").replace(".", "").lstrip("0") == (
        (whole + fraction).lstrip("0")
    )


@fuzz(300)
@given(st.integers(min_value=-(10**39), max_value=10**39), st.integers(0, 30), st.booleans())
def test_minor_units_are_kept_as_the_integer_written(value, scale, as_string):
    raw = json.dumps(str(value)) if as_string else str(value)
    document = f'{{"a": {{"value": {raw}, "assetScale": {scale}, "assetCode": "XRP"}}}}'
    amount = _read(document, AmountRule(objects=(Extractor("body", "/a"),)))
    assert amount == Amount(value, scale, "XRP")
    assert Decimal(amount.decimal) == Decimal(value).scaleb(-scale, EXACT)


@fuzz(100)
@given(st.integers(min_value=10**15, max_value=10**30))
def test_a_float_never_stands_in_for_the_number(value):
    # 10**15 and up is where a double starts dropping digits of x.01.
    amount = major_units(Decimal(f"{value}.01"), "EUR")
    assert (amount.value, amount.scale) == (value * 100 + 1, 2)
    assert minor_units(Decimal(value), 0, "EUR").value == value


LIFECYCLE = ["pending", "processing"]


@fuzz(300)
@given(
    st.lists(st.sampled_from(LIFECYCLE), max_size=4),
    st.sampled_from(sorted(TERMINAL)),
    st.randoms(use_true_random=False),
)
def test_any_order_of_a_lifecycle_ends_in_its_terminal_state(steps, terminal, rng):
    events = [*steps, terminal]
    rng.shuffle(events)
    state = None
    for reported in events:
        before = state
        state, mark = advance(state, reported)  # type: ignore[arg-type]
        if mark is not None:
            assert mark == "superseded" and state == before
    assert state == terminal


@fuzz(300)
@given(
    st.lists(st.sampled_from([*LIFECYCLE, *sorted(TERMINAL)]), min_size=1, max_size=8),
)
def test_a_state_never_moves_back_and_the_first_terminal_one_stays(events):
    state = None
    first_terminal = next((e for e in events if e in TERMINAL), None)
    for reported in events:
        before = state
        state, mark = advance(state, reported)  # type: ignore[arg-type]
        assert before is None or RANK[state] >= RANK[before]
        if mark == "conflict":
            assert reported in TERMINAL and reported != state
    if first_terminal is not None:
        assert state == first_terminal
