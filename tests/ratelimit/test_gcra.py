"""The pure GCRA: rate parsing, rule checks, the hand-worked table and its invariants."""

from __future__ import annotations

import random

import pytest

from gateway.ratelimit import Decision, Rate, RateRule, decide, to_micros

from . import gcra_table as table


def test_hand_worked_table() -> None:
    rule = table.rule()
    tat: int | None = None
    for row in table.ROWS:
        got = decide(tat, to_micros(table.now(row)), rule)
        assert got == table.expected(row), row.note
        tat = got.new_tat_us


@pytest.mark.parametrize(
    ("text", "count", "period", "canonical"),
    [
        ("100/s", 100, 1, "100/s"),
        ("600/m", 600, 60, "600/m"),
        ("10/h", 10, 3600, "10/h"),
        ("1000/d", 1000, 86400, "1000/d"),
        ("5/10s", 5, 10, "5/10s"),
        (" 7 / 2m ", 7, 120, "7/2m"),
        ("3/60s", 3, 60, "3/m"),
    ],
)
def test_rate_parse(text: str, count: int, period: int, canonical: str) -> None:
    rate = Rate.parse(text)
    assert rate == Rate(count, period)
    assert str(rate) == canonical
    assert Rate.parse(str(rate)) == rate


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("100", "not of the form <count>/<period>"),
        ("100/x", "not of the form <count>/<period>"),
        ("100 per second", "not of the form <count>/<period>"),
        ("-1/s", "not of the form <count>/<period>"),
        ("1.5/s", "not of the form <count>/<period>"),
        ("", "not of the form <count>/<period>"),
        ("0/s", "allows no requests at all"),
        ("5/0s", "period of zero"),
        ("2000000/s", "faster than one request per microsecond"),
    ],
)
def test_rate_parse_refuses(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Rate.parse(text)


def test_rate_parse_refuses_non_string() -> None:
    with pytest.raises(ValueError, match="must be a string"):
        Rate.parse(100)  # type: ignore[arg-type]


def test_interval_rounds_up_so_the_rate_is_never_exceeded() -> None:
    assert Rate.parse("100/s").interval_us == 10_000
    assert Rate.parse("3/s").interval_us == 333_334
    assert Rate.parse("10/h").interval_us == 360_000_000


@pytest.mark.parametrize("burst", [0, -1, True, 1.5, "3"])
def test_rule_refuses_bad_burst(burst: object) -> None:
    with pytest.raises(ValueError, match="burst must be a whole number"):
        RateRule(Rate(1), burst)  # type: ignore[arg-type]


def test_rule_refuses_a_window_beyond_exact_double_arithmetic() -> None:
    with pytest.raises(ValueError, match="spans more than"):
        RateRule(Rate(1, 86400), 20_000)


def test_rule_parse() -> None:
    rule = RateRule.parse("50/s", 100)
    assert rule == RateRule(Rate(50, 1), 100)
    assert rule.window_us == 2_000_000


def test_burst_means_that_many_at_once() -> None:
    for burst in (1, 2, 7, 200):
        rule = RateRule.parse("100/s", burst)
        tat = None
        verdicts = []
        for _ in range(burst + 3):
            decision = decide(tat, 5_000_000, rule)
            verdicts.append(decision.allowed)
            tat = decision.new_tat_us
        assert verdicts == [True] * burst + [False] * 3


def test_refusal_does_not_move_the_tat() -> None:
    rule = RateRule.parse("1/s", 1)
    first = decide(None, 0, rule)
    for now in (0, 100_000, 999_999):
        refused = decide(first.new_tat_us, now, rule)
        assert not refused.allowed
        assert refused.new_tat_us == first.new_tat_us
        assert refused.retry_after == (1_000_000 - now) / 1_000_000


def test_invariants_on_random_clocks_including_backwards() -> None:
    """Whatever the clock does: remaining in [0, burst-1], waits within the window, and no
    more than ``burst`` plus one per elapsed T in any stretch where the clock only goes forward."""
    rng = random.Random(20240601)
    for _ in range(200):
        rule = RateRule(Rate(rng.randint(1, 50), rng.choice([1, 10, 60])), rng.randint(1, 10))
        interval, window = rule.interval_us, rule.window_us
        tat: int | None = None
        now = 10**15
        run_start, run_allowed = now, 0
        for _ in range(60):
            step = rng.choice([0, 0, 1, interval // 3, interval, -interval, -5 * window])
            now += step if step >= 0 else rng.randint(step, 0)
            if step < 0:
                run_start, run_allowed = now, 0
            decision = decide(tat, now, rule)
            assert 0 <= decision.remaining < rule.burst
            assert 0 <= round(decision.reset_after * 1_000_000) <= window
            if decision.allowed:
                run_allowed += 1
                assert decision.retry_after == 0
                assert decision.new_tat_us - now <= window
            else:
                assert decision.remaining == 0
                assert 0 < round(decision.retry_after * 1_000_000) <= interval
            # Since the clock last went back, at most one full burst plus one per T elapsed.
            assert run_allowed <= rule.burst + (now - run_start) // interval + 1
            tat = decision.new_tat_us


def test_steady_sender_at_the_rate_is_never_refused() -> None:
    rule = RateRule.parse("4/s", 1)
    tat = None
    for i in range(1000):
        decision = decide(tat, i * rule.interval_us, rule)
        assert decision.allowed, i
        tat = decision.new_tat_us


def test_decision_is_a_frozen_value() -> None:
    decision = decide(None, 0, RateRule.parse("1/s", 1))
    assert decision == Decision(True, 1_000_000, 1, 0, 0.0, 1.0)
    with pytest.raises(AttributeError):
        decision.allowed = False  # type: ignore[misc]
