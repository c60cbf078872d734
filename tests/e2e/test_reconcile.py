"""Reconciliation across processes (design.md 5.8): gateway processes on one Redis run one
reconciliation of a source at a time, never recover a payment twice, and a process killed in
the middle of a run holds the source up for one lease at most."""

from __future__ import annotations

import asyncio
import collections
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.reconcile.runner import LEASE
from tests.doubles import payments_listing
from tests.e2e.gateway_process import e2e_config, wait_drained
from tests.support import AUTH, payments_source
from tests.waiting import eventually

TOKEN = "listing-token-e2e"
PAYMENTS = 30


def _source(url: str, every: str) -> dict[str, Any]:
    template = {"type": "payment.completed", "pendingId": "/pendingId", "offerId": "/offerId",
                "status": "paid", "timestamp": "$now"}  # fmt: skip
    return payments_source(
        dedupe={"key": ["/type", "/pendingId"], "window": "72h"},
        reconcile={
            "every": every,
            "grace": "0s",
            "from": {
                "kind": "http-list",
                "url": url,
                "headers": {"Authorization": f"Bearer {TOKEN}"},
                "items": "/payments",
                "key": "/pendingId",
                "state": {"field": "/status", "map": {"pending": "pending", "paid": "completed"}},
                "events": {"completed": template},
            },
        },
    )


def _paid(count: int) -> list[dict[str, Any]]:
    return [
        {"pendingId": f"pend-{n:03d}", "offerId": f"offer-{n}", "status": "paid"}
        for n in range(count)
    ]


def _delivered(received: list[Any]) -> collections.Counter[str]:
    """How many times each payment reached the marketplace."""
    return collections.Counter(json.loads(r.body)["pendingId"] for r in received)


async def _post_run(session: aiohttp.ClientSession, gateway: Any) -> tuple[int, Any]:
    url = gateway.admin_url("/admin/reconciliation/payments/run")
    async with session.post(url, headers=AUTH) as response:
        return response.status, await response.json()


@pytest.fixture
def pair(redis_url: str, gateways: Any, destinations: Any, tmp_path: Path) -> Any:
    """``pair(every)``: the marketplace, the listing of ``PAYMENTS`` paid payments the gateway
    never heard of, and two gateway processes on one Redis reconciling against it ``every``."""

    @asynccontextmanager
    async def start(every: str) -> AsyncIterator[tuple[Any, Any, Any, Any]]:
        market = destinations()
        await market.start()
        async with payments_listing(tmp_path, token=TOKEN, payments=_paid(PAYMENTS)) as listing:
            config = e2e_config(
                store_url=redis_url,
                destinations={"marketplace": market.url},
                sources={"payments": _source(listing.listing_url, every)},
            )
            a, b = gateways(config, name="a"), gateways(config, name="b")
            await asyncio.gather(a.start(), b.start())
            yield market, listing, a, b

    return start


async def test_two_processes_run_one_at_a_time_and_recover_each_payment_once(pair, redis_url):
    async with pair("never") as (market, listing, a, b):
        logs = lambda: a.log_tail() + b.log_tail()  # noqa: E731
        # A slow provider, so both requests arrive while one run is asking it.
        listing.set(delay_ms=800)
        async with aiohttp.ClientSession() as session:
            for round_ in range(2):
                answers = await asyncio.gather(_post_run(session, a), _post_run(session, b))
                statuses = sorted(status for status, _ in answers)
                assert statuses == [200, 409], (answers, logs())
                [run] = [body for status, body in answers if status == 200]
                [busy] = [body for status, body in answers if status == 409]
                assert busy["error"] == "in_progress"
                wanted = {"recovered": PAYMENTS} if round_ == 0 else {"matched": PAYMENTS}
                assert {k: v for k, v in run["counts"].items() if v} == wanted, run
        await market.market.wait_for(PAYMENTS)
        await wait_drained(redis_url, logs=logs())
        assert set(_delivered(market.market.received).values()) == {1}, "each payment exactly once"
        assert len(_delivered(market.market.received)) == PAYMENTS


async def test_scheduled_runs_on_two_processes_recover_each_payment_once(pair, redis_url):
    async with pair("1s") as (market, _listing, a, b):
        logs = lambda: a.log_tail() + b.log_tail()  # noqa: E731
        await market.market.wait_until(
            _delivered, f"{PAYMENTS} payments delivered", until=lambda d: len(d) == PAYMENTS
        )

        # Several more runs go by on both (matched each time) before the count is read.
        async def runs() -> int:
            total = 0.0
            for gateway in (a, b):
                total += await gateway.metric(
                    "webhook_gateway_reconcile_runs_total", source="payments", result="success"
                )
            return int(total)

        await eventually(runs, "four successful runs", until=lambda n: n >= 4, why=logs)
        await wait_drained(redis_url, logs=logs())
        assert set(_delivered(market.market.received).values()) == {1}, "each payment exactly once"
        recovered = sum(
            [await g.metric("webhook_gateway_reconcile_recovered_total", source="payments")
             for g in (a, b)]
        )  # fmt: skip
        assert recovered == PAYMENTS
        # Every process shows the last run wherever it ran: all matched.
        for gateway in (a, b):
            matched = await gateway.metric(
                "webhook_gateway_reconcile_items", source="payments", result="matched"
            )
            assert matched == PAYMENTS, gateway.name


async def test_a_process_killed_mid_run_holds_the_source_up_for_one_lease_at_most(pair, redis_url):
    async with pair("never") as (market, listing, a, b):
        logs = lambda: a.log_tail() + b.log_tail()  # noqa: E731
        listing.set(delay_ms=3000)
        async with aiohttp.ClientSession() as session:
            started = asyncio.create_task(_post_run(session, a))

            async def asked() -> int:
                return int((await listing.stats())["requests"])

            await eventually(asked, "a's run to ask the provider", until=lambda n: n >= 1)
            await a.kill()
            await asyncio.gather(started, return_exceptions=True)
            listing.set(delay_ms=None)
            # The dead process's lease stands until it runs out; then b's run goes ahead.
            status, run = await _post_run(session, b)
            assert (status, run.get("error")) == (409, "in_progress"), run

            async def retried() -> tuple[int, Any]:
                return await _post_run(session, b)

            status, run = await eventually(
                retried,
                "b's run once a's lease ran out",
                until=lambda answer: answer[0] == 200,
                timeout=LEASE + 15,
                interval=1.0,
                why=logs,
            )
        assert run["counts"]["recovered"] == PAYMENTS, run
        await market.market.wait_until(
            _delivered, f"{PAYMENTS} payments delivered", until=lambda d: len(d) == PAYMENTS
        )
        await wait_drained(redis_url, logs=logs())
        assert set(_delivered(market.market.received).values()) == {1}
