"""The last hour's figures as the store's counters give them (gateway/store/stats.py)."""

from __future__ import annotations

import pytest

from gateway.store.stats import Stats, minute_of

NOW = 1_796_000_000.0


def hour(**counts: int) -> Stats:
    """Stats with every count in the current minute and no latencies."""
    return Stats(now=NOW, minutes={minute_of(NOW): counts}, latency={})


def test_success_is_the_share_of_finished_deliveries_that_were_delivered():
    # A retry is an attempt, not an outcome: that delivery has not finished yet.
    assert hour(delivered=3, retried=1, dead_lettered=1).success_ratio() == pytest.approx(0.75)
    assert hour(delivered=2, retried=5).success_ratio() == 1.0
    assert hour(dead_lettered=2, retried=1).success_ratio() == 0.0


def test_success_is_none_until_a_delivery_finishes():
    assert hour().success_ratio() is None
    assert hour(accepted=4, retried=3).success_ratio() is None


def test_success_counts_only_the_window():
    old = minute_of(NOW) - 60  # one minute before the hour the figures cover
    stats = Stats(
        now=NOW,
        minutes={old: {"dead_lettered": 9}, minute_of(NOW): {"delivered": 1}},
        latency={},
    )
    assert stats.success_ratio() == 1.0
