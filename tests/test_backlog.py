"""A backlog drains when its destination comes back, by itself or by retry-now (design.md 3).

Over real sockets: the marketplace refuses with 503 until five events have failed twice and
wait an hour for their third attempt; then it answers 200 again, and either one new event's
success or an operator's retry-now makes all of them arrive within seconds, not an hour.
"""

from __future__ import annotations

import pytest

from gateway.app import create_admin_app
from tests.support import AUTH, admin_json, payment_body, sign_payment
from tests.waiting import eventually

#: The second attempt comes 0.2 s after the first; the third an hour later.
RETRY = {"schedule": ["200ms", "1h"], "max_age": "72h", "jitter": 0}
BACKED_OFF = [f"msg_backlog_{n}" for n in range(5)]


async def _send(client, msg_id: str) -> None:
    body = payment_body()
    response = await client.post(
        "/hooks/payments", data=body, headers=sign_payment(body, msg_id=msg_id)
    )
    assert response.status == 202


async def _deliveries(admin) -> list[dict]:
    """The backed-off events' deliveries, as the admin API shows them."""
    views = [await admin_json(admin, f"/admin/events/{m}") for m in BACKED_OFF]
    return [delivery for view in views for delivery in view["deliveries"]]


async def _outage(with_admin, market):
    """Five events that failed twice and wait an hour for their third attempt."""
    market.status = 503
    client, admin = await with_admin(destination={"retry": RETRY})
    for msg_id in BACKED_OFF:
        await _send(client, msg_id)
    await eventually(
        lambda: _deliveries(admin),
        "five deliveries that failed twice, waiting out the hour",
        until=lambda ds: all(d["attempts_made"] == 2 and d["state"] == "due" for d in ds),
    )
    assert len(market.received) == 10
    market.status = 200
    return client, admin


async def _delivered_ids(market, count: int) -> set[str]:
    """Wait (15 s at most) until ``count`` distinct events were answered 200."""
    return await market.wait_until(
        lambda received: {r.headers["webhook-id"] for r in received[10:]},
        f"{count} events answered 200",
        until=lambda ok: len(ok) >= count,
    )


@pytest.fixture
def with_admin(make_gateway, aiohttp_client):
    async def factory(**overrides):
        client, _ = await make_gateway(**overrides)
        admin = await aiohttp_client(create_admin_app(client.server.app))
        return client, admin

    return factory


async def test_one_success_releases_the_backlog(with_admin, marketplace):
    market, _ = marketplace
    client, _ = await _outage(with_admin, market)
    await _send(client, "msg_back")
    assert await _delivered_ids(market, 6) == {*BACKED_OFF, "msg_back"}
    # Each released delivery kept its attempt count: the third attempt, not a first.
    attempts = {
        r.headers["webhook-id"]: r.headers["X-Gateway-Attempt"] for r in market.received[10:]
    }
    assert attempts == {**dict.fromkeys(BACKED_OFF, "3"), "msg_back": "1"}


async def test_retry_now_releases_the_backlog(with_admin, marketplace):
    market, _ = marketplace
    _, admin = await _outage(with_admin, market)
    response = await admin.post("/admin/destinations/marketplace/retry-now", headers=AUTH)
    assert response.status == 200
    assert await response.json() == {"destination": "marketplace", "retried": 5}
    assert await _delivered_ids(market, 5) == set(BACKED_OFF)
    response = await admin.post("/admin/destinations/nowhere/retry-now", headers=AUTH)
    assert response.status == 404
    assert (await response.json())["error"] == "not_found"


async def test_failures_before_the_backlog_drains_keep_each_backoff(with_admin, marketplace):
    market, _ = marketplace
    _, admin = await _outage(with_admin, market)
    market.status = 503  # still down: retry-now makes them due, they fail and wait again
    response = await admin.post("/admin/destinations/marketplace/retry-now", headers=AUTH)
    assert (await response.json())["retried"] == 5
    await market.wait_for(15)
    # The third attempt failed: the schedule has no fourth step, so each is dead-lettered
    # from its own count rather than started over.
    deliveries = await eventually(
        lambda: _deliveries(admin),
        "the five deliveries dead-lettered",
        until=lambda ds: all(d["state"] == "dead" for d in ds),
    )
    assert {d["attempts_made"] for d in deliveries} == {3}
