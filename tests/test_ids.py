"""ULIDs as the payments service makes its pendingId (https://github.com/ulid/spec)."""

from __future__ import annotations

import pytest

from gateway.ids import ulid


def test_the_time_part_matches_the_spec_example():
    # The spec encodes 1469918176385 ms as 01ARYZ6S41.
    assert ulid(1469918176.385, bytes(10)) == "01ARYZ6S41" + "0" * 16
    assert ulid(0, b"\xff" * 10) == "0" * 10 + "Z" * 16


def test_ulids_sort_by_time_and_differ_within_a_millisecond():
    made = [ulid(1_796_000_000 + i / 10) for i in range(50)]
    assert made == sorted(made)
    assert len({ulid(1_796_000_000.0) for _ in range(100)}) == 100


def test_randomness_must_be_80_bits():
    with pytest.raises(ValueError, match="10 random bytes"):
        ulid(0, bytes(9))
