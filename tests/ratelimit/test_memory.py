"""The in-process limiter: the table, refusals that cost nothing, and bounded memory."""

from __future__ import annotations

from gateway.ratelimit import Limiter, MemoryLimiter, RateRule

from . import gcra_table as table

HOUR = RateRule.parse("1/h", 1)


async def test_hand_worked_table() -> None:
    limiter = MemoryLimiter()
    assert isinstance(limiter, Limiter)
    for row in table.ROWS:
        got = await limiter.hit("ip:203.0.113.9", table.rule(), table.now(row))
        assert got == table.expected(row), row.note


async def test_keys_are_independent() -> None:
    limiter = MemoryLimiter()
    assert (await limiter.hit("a", HOUR, 0)).allowed
    assert not (await limiter.hit("a", HOUR, 0)).allowed
    assert (await limiter.hit("b", HOUR, 0)).allowed


async def test_refused_requests_do_not_consume() -> None:
    """A sender hammered with refusals recovers exactly as fast as one that waited quietly."""
    rule = RateRule.parse("2/s", 2)
    quiet, hammered = MemoryLimiter(), MemoryLimiter()
    for limiter in (quiet, hammered):
        for _ in range(2):
            assert (await limiter.hit("k", rule, 0.0)).allowed
    for i in range(1, 50):
        assert not (await hammered.hit("k", rule, i / 100)).allowed
    assert await quiet.hit("k", rule, 0.5) == await hammered.hit("k", rule, 0.5)
    assert (await hammered.hit("k", rule, 0.5)).allowed is False
    assert (await hammered.hit("k", rule, 1.0)).allowed


async def test_a_flood_of_distinct_keys_stays_bounded() -> None:
    limiter = MemoryLimiter(max_keys=100)
    for i in range(10_000):
        assert (await limiter.hit(f"ip:10.0.{i // 256}.{i % 256}", HOUR, 0.0)).allowed
        assert len(limiter) <= 100


async def test_keys_with_a_full_bucket_are_dropped_first() -> None:
    limiter = MemoryLimiter(max_keys=10)
    second = RateRule.parse("1/s", 1)
    for i in range(5):
        await limiter.hit(f"slow{i}", HOUR, 0.0)
    for i in range(5):
        await limiter.hit(f"fast{i}", second, 0.0)
    # Ten seconds on, the fast keys are full again (state-free); the slow ones are not.
    await limiter.hit("new", HOUR, 10.0)
    assert len(limiter) == 6
    for i in range(5):
        assert not (await limiter.hit(f"slow{i}", HOUR, 10.0)).allowed


async def test_when_all_keys_are_live_the_least_recently_seen_are_forgotten() -> None:
    limiter = MemoryLimiter(max_keys=4)
    for key in "abcd":
        await limiter.hit(key, HOUR, 0.0)
    # "a" knocks again and is refused: seen most recently, so it is not the one forgotten.
    assert not (await limiter.hit("a", HOUR, 1.0)).allowed
    await limiter.hit("e", HOUR, 1.0)  # five keys: shrink to three quarters of four
    assert len(limiter) == 3
    assert (await limiter.hit("b", HOUR, 1.0)).allowed  # forgotten: a fresh burst
    assert not (await limiter.hit("a", HOUR, 1.0)).allowed
    assert not (await limiter.hit("e", HOUR, 1.0)).allowed


def test_hit_now_is_the_same_decision_without_a_loop() -> None:
    limiter = MemoryLimiter()
    assert limiter.hit_now("k", HOUR, 0.0).allowed
    assert not limiter.hit_now("k", HOUR, 1.0).allowed
