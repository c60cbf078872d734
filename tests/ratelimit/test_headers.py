"""Retry-After and RateLimit-* headers built from a decision."""

from __future__ import annotations

import pytest

from gateway.ratelimit import Decision, rate_limit_headers, retry_after_seconds


def refused(retry_after: float, reset_after: float) -> Decision:
    return Decision(False, 0, 200, 0, retry_after, reset_after)


def test_allowed_has_no_retry_after() -> None:
    headers = rate_limit_headers(Decision(True, 0, 200, 57, 0.0, 1.43))
    assert headers == {
        "RateLimit-Limit": "200",
        "RateLimit-Remaining": "57",
        "RateLimit-Reset": "2",
    }


def test_refused_carries_all_four() -> None:
    assert rate_limit_headers(refused(2.0, 3.0)) == {
        "RateLimit-Limit": "200",
        "RateLimit-Remaining": "0",
        "RateLimit-Reset": "3",
        "Retry-After": "2",
    }


@pytest.mark.parametrize(
    ("retry_after", "header"),
    [
        (0.0, "1"),
        (0.000001, "1"),
        (0.5, "1"),
        (1.0, "1"),
        (1.000001, "2"),
        (59.2, "60"),
        (3600.0, "3600"),
    ],
)
def test_retry_after_rounds_up_and_is_at_least_one(retry_after: float, header: str) -> None:
    assert rate_limit_headers(refused(retry_after, retry_after))["Retry-After"] == header
    assert retry_after_seconds(refused(retry_after, retry_after)) == int(header)


@pytest.mark.parametrize(("reset_after", "header"), [(0.0, "0"), (0.01, "1"), (2.0, "2")])
def test_reset_rounds_up(reset_after: float, header: str) -> None:
    decision = Decision(True, 0, 5, 4, 0.0, reset_after)
    assert rate_limit_headers(decision)["RateLimit-Reset"] == header
