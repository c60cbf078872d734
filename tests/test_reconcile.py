"""Reconciliation (design.md 5.8) against the provider doubles of tests/node, over real sockets:
the payments service's listing, Rafiki's Admin GraphQL API and Stripe's events. Each kind: a
dry run recovers nothing; a run recovers exactly what the gateway lacks, delivered once and
signed by the gateway with ``X-Gateway-Origin: reconciled``; the late webhook is a duplicate;
a second run finds everything matched."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.app import STORE, create_admin_app
from gateway.appkeys import METRICS
from gateway.config.model import SourceConfig
from gateway.errors import ConfigError
from gateway.secret import Secret
from tests.doubles import (
    PaymentsListing,
    payments_listing,
    rafiki_admin,
    rafiki_event,
    stripe_event,
    stripe_events,
)
from tests.support import (
    ADMIN_TOKEN,
    AUTH,
    Received,
    build_config,
    config_dict,
    payment_body,
    payments_source,
    sign_payment,
    sqlite_url,
)

LISTING_TOKEN = "listing-token-0123456789"
RAFIKI_WEBHOOK_SECRET = "rafiki-webhook-secret-0123456789"
STRIPE_WEBHOOK_SECRET = "whsec_stripe_test_0123456789abcdef"
DEDUPE = {"key": ["/type", "/pendingId"], "window": "72h"}
COMPLETED_TEMPLATE = {
    "type": "payment.completed",
    "pendingId": "/pendingId",
    "offerId": "/offerId",
    "status": "paid",
    "outgoingPaymentId": "/outgoingPaymentId",
    "timestamp": "$now",
}
FAILED_TEMPLATE = {
    "type": "payment.failed",
    "pendingId": "/pendingId",
    "offerId": "/offerId",
    "status": "failed",
    "timestamp": "$now",
}


def http_list_source(url: str, **reconcile: Any) -> dict[str, Any]:
    """The payments source of design.md 5.8, reconciled against the payments service's list."""
    return payments_source(
        dedupe=DEDUPE,
        reconcile={
            "every": "never",
            "grace": "0s",
            "from": {
                "kind": "http-list",
                "url": url,
                "headers": {"Authorization": f"Bearer {LISTING_TOKEN}"},
                "timeout": "2s",
                "items": "/payments",
                "key": "/pendingId",
                "state": {
                    "field": "/status",
                    "map": {"pending": "pending", "paid": "completed", "failed": "failed"},
                },
                "events": {"completed": COMPLETED_TEMPLATE, "failed": FAILED_TEMPLATE},
            },
            **reconcile,
        },
    )


def listed(pending_id: str, status: str = "paid") -> dict[str, Any]:
    """One payment as the payments service's ``GET /payments/pending`` lists it."""
    item: dict[str, Any] = {
        "pendingId": pending_id,
        "offerId": f"offer-{pending_id}",
        "status": status,
        "buyerWalletAddressUrl": "https://wallet.example/alice",
        "incomingPaymentId": f"https://wallet.example/incoming/{pending_id}",
    }
    if status == "paid":
        item["outgoingPaymentId"] = f"https://wallet.example/outgoing/{pending_id}"
    return item


async def run(admin: Any, source: str, *, dry_run: bool = False) -> dict[str, Any]:
    """``POST /admin/reconciliation/{source}/run``, answered 200 with the run."""
    query = "?dry_run=1" if dry_run else ""
    response = await admin.post(f"/admin/reconciliation/{source}/run{query}", headers=AUTH)
    payload: dict[str, Any] = await response.json()
    assert response.status == 200, payload
    return payload


def counts(**given: int) -> dict[str, int]:
    """A run's counts: every result, 0 unless given."""
    results = ("matched", "open", "recovered", "missing", "mismatch", "unknown_to_provider")
    return {result: given.get(result, 0) for result in results}


def reconciled(received: list[Received]) -> list[Received]:
    return [r for r in received if r.headers.get("X-Gateway-Origin") == "reconciled"]


async def stored_ids(client: Any) -> set[str]:
    """Every event id the store holds (to show nothing else was taken in)."""
    page, _ = await client.app[STORE].list_events(limit=500)
    return {summary.id for summary in page}


@pytest.fixture
async def listing(tmp_path: Path) -> Any:
    async with payments_listing(tmp_path, token=LISTING_TOKEN) as double:
        yield double


async def _gateway(make_gateway: Any, aiohttp_client: Any, sources: dict[str, Any]) -> Any:
    client, config = await make_gateway(sources=sources)
    admin = await aiohttp_client(create_admin_app(client.server.app))
    return client, config, admin


# -- the payments service's listing (http-list) ----------------------------------------------


async def test_http_list_dry_run_then_recovery_then_duplicate_then_all_matched(
    make_gateway, marketplace, aiohttp_client, listing: PaymentsListing
):
    market, _ = marketplace
    source = http_list_source(listing.listing_url)
    client, _, admin = await _gateway(make_gateway, aiohttp_client, {"payments": source})
    # The gateway got pend-a's webhook; pend-b's and pend-d's were lost; pend-c is pending.
    body = payment_body(pendingId="pend-a", offerId="offer-pend-a", status="paid")
    assert (await client.post("/hooks/payments", data=body, headers=sign_payment(body))).ok
    await market.wait_for(1)
    listing.set(
        payments=[listed("pend-a"), listed("pend-b"), listed("pend-c", "pending"),
                  listed("pend-d", "failed")]
    )  # fmt: skip
    before = await stored_ids(client)

    dry = await run(admin, "payments", dry_run=True)
    assert (dry["ok"], dry["dry_run"], dry["counts"]) == (
        True, True, counts(matched=1, open=1, missing=2)
    )  # fmt: skip
    assert {(i["key"], i["result"], i["reason"]) for i in dry["items"]} == {
        ("pend-b", "missing", "dry run"),
        ("pend-d", "missing", "dry run"),
    }
    # Nothing taken in, nothing flagged.
    assert await stored_ids(client) == before
    flagged = await (await admin.get("/admin/payments?attention=missing", headers=AUTH)).json()
    assert flagged["payments"] == []

    done = await run(admin, "payments")
    assert done["counts"] == counts(matched=1, open=1, recovered=2), done
    recovered = {i["key"]: i["event_id"] for i in done["items"] if i["result"] == "recovered"}
    assert set(recovered) == {"pend-b", "pend-d"}
    await market.wait_for(3)
    arrived = reconciled(market.received)
    assert len(arrived) == 2 and all(r.verified for r in arrived), "signed by the gateway"
    bodies = {json.loads(r.body)["pendingId"]: json.loads(r.body) for r in arrived}
    assert bodies["pend-b"]["type"] == "payment.completed"
    assert bodies["pend-b"]["outgoingPaymentId"] == "https://wallet.example/outgoing/pend-b"
    assert bodies["pend-d"] == {**bodies["pend-d"], "type": "payment.failed", "status": "failed"}
    assert "outgoingPaymentId" not in bodies["pend-d"], "a pointer the item lacks is left out"
    view = await client.app[STORE].get_event(recovered["pend-b"])
    assert view is not None and view.event.origin == "reconciled"
    payment = await (await admin.get("/admin/payments/payments/pend-b", headers=AUTH)).json()
    assert payment["payment"]["state"] == "completed"
    assert [e["origin"] for e in payment["events"]] == ["reconciled"]

    # The webhook that was lost arrives after all: the marketplace already has it.
    late = payment_body(pendingId="pend-b", offerId="offer-pend-b", status="paid")
    response = await client.post("/hooks/payments", data=late, headers=sign_payment(late))
    assert (response.status, await response.json()) == (
        200, {"id": recovered["pend-b"], "status": "duplicate"}
    )  # fmt: skip

    again = await run(admin, "payments")
    assert again["counts"] == counts(matched=3, open=1), again
    assert again["items"] == []
    # Every delivery is done, so the marketplace's count is final: each payment once.
    await _wait_delivered(client)
    assert len(market.received) == 3

    overview = await (await admin.get("/admin/reconciliation", headers=AUTH)).json()
    [entry] = overview["sources"]
    assert entry["last_run"]["id"] == again["id"]
    assert [r["id"] for r in entry["runs"]] == [again["id"], done["id"], dry["id"]]
    detail = await (
        await admin.get(f"/admin/reconciliation/runs/{done['id']}", headers=AUTH)
    ).json()
    assert {i["key"] for i in detail["items"]} == {"pend-b", "pend-d"}
    assert detail["items"][0]["payment"].startswith("/admin/payments/payments/pend-")
    metrics = client.app[METRICS].exposition().decode()
    assert 'webhook_gateway_reconcile_runs_total{result="success",source="payments"} 3.0' in metrics
    assert 'webhook_gateway_reconcile_recovered_total{source="payments"} 2.0' in metrics
    assert 'webhook_gateway_reconcile_items{result="matched",source="payments"} 3.0' in metrics
    assert 'webhook_gateway_reconcile_last_success_timestamp_seconds{source="payments"}' in metrics


async def _wait_delivered(client: Any) -> None:
    from tests.waiting import eventually

    store = client.app[STORE]

    async def pending() -> int:
        depth = await store.queue_depth()
        return sum(n for (_, state), n in depth.items() if state in ("due", "leased"))

    await eventually(pending, "every delivery done", until=lambda n: n == 0)


async def test_report_only_flags_missing_until_the_webhook_arrives(
    make_gateway, marketplace, aiohttp_client, listing: PaymentsListing
):
    market, _ = marketplace
    source = http_list_source(listing.listing_url, recover=False)
    client, _, admin = await _gateway(make_gateway, aiohttp_client, {"payments": source})
    listing.set(payments=[listed("pend-x")])
    result = await run(admin, "payments")
    assert result["counts"] == counts(missing=1)
    [item] = result["items"]
    assert (item["key"], item["reason"], item["gateway_state"]) == (
        "pend-x",
        "recover: false",
        None,
    )
    assert (await admin.get(item["payment"], headers=AUTH)).status == 200
    assert await stored_ids(client) == set()
    page = await (await admin.get("/admin/payments?attention=missing", headers=AUTH)).json()
    assert [(p["key"], p["state"]) for p in page["payments"]] == [("pend-x", "pending")]
    # The payment's own webhook clears the flag.
    body = payment_body(pendingId="pend-x", offerId="offer-pend-x", status="paid")
    assert (await client.post("/hooks/payments", data=body, headers=sign_payment(body))).ok
    await market.wait_for(1)
    page = await (await admin.get("/admin/payments?source=payments", headers=AUTH)).json()
    assert [(p["key"], p["state"], p["attention"]) for p in page["payments"]] == [
        ("pend-x", "completed", None)
    ]
    assert (await run(admin, "payments"))["counts"] == counts(matched=1)


async def test_a_different_final_state_is_a_mismatch_and_an_unlisted_one_unknown(
    make_gateway, marketplace, aiohttp_client, listing: PaymentsListing
):
    market, _ = marketplace
    source = http_list_source(listing.listing_url)
    client, _, admin = await _gateway(make_gateway, aiohttp_client, {"payments": source})
    for pending_id in ("pend-m", "pend-u"):
        body = payment_body(pendingId=pending_id, offerId=f"offer-{pending_id}", status="paid")
        assert (await client.post("/hooks/payments", data=body, headers=sign_payment(body))).ok
    await market.wait_for(2)
    # The provider says pend-m failed, and does not list pend-u at all.
    listing.set(payments=[listed("pend-m", "failed")])
    result = await run(admin, "payments")
    assert result["counts"] == counts(mismatch=1, unknown_to_provider=1), result
    assert {(i["key"], i["result"], i["provider_state"], i["gateway_state"])
            for i in result["items"]} == {
        ("pend-m", "mismatch", "failed", "completed"),
        ("pend-u", "unknown_to_provider", None, "completed"),
    }  # fmt: skip
    assert len(market.received) == 2, "nothing recovered over a final state the gateway has"


async def test_a_run_while_one_is_going_on_is_409_in_progress(
    make_gateway, aiohttp_client, listing: PaymentsListing
):
    source = http_list_source(listing.listing_url)
    _, _, admin = await _gateway(make_gateway, aiohttp_client, {"payments": source})
    listing.set(payments=[listed("pend-s", "pending")], delay_ms=1500)
    first = asyncio.create_task(run(admin, "payments"))
    await _until_requested(listing, 1)
    response = await admin.post("/admin/reconciliation/payments/run", headers=AUTH)
    assert response.status == 409
    assert (await response.json())["error"] == "in_progress"
    assert response.headers["Retry-After"]
    overview = await (await admin.get("/admin/reconciliation", headers=AUTH)).json()
    running = overview["sources"][0]["running"]
    assert running["by"].endswith(f":{os.getpid()}") and running["since"].endswith("Z")
    assert (await first)["counts"] == counts(open=1)
    overview = await (await admin.get("/admin/reconciliation", headers=AUTH)).json()
    assert overview["sources"][0]["running"] is None
    # The lease is given back: the next run goes ahead.
    listing.set(delay_ms=None)
    assert (await run(admin, "payments"))["ok"]


async def _until_requested(double: Any, count: int) -> None:
    from tests.waiting import eventually

    async def requests() -> int:
        return int((await double.stats())["requests"])

    await eventually(requests, f"{count} request(s) at the double", until=lambda n: n >= count)


async def test_admin_refuses_bad_requests_clearly(
    make_gateway, aiohttp_client, listing: PaymentsListing
):
    _, _, admin = await _gateway(
        make_gateway,
        aiohttp_client,
        {"payments": http_list_source(listing.listing_url), "plain": payments_source(path="/p")},
    )
    for method, path, status in (
        ("POST", "/admin/reconciliation/nope/run", 404),
        ("POST", "/admin/reconciliation/plain/run", 404),
        ("POST", "/admin/reconciliation/payments/run?dry_run=maybe", 400),
        ("GET", "/admin/reconciliation/runs/0000000000000-deadbeef", 404),
        ("GET", "/admin/reconciliation?limit=0", 400),
        ("GET", "/admin/reconciliation?since=yesterday", 400),
        ("GET", "/admin/reconciliation/runs/" + "x" * 300, 404),
    ):
        response = await admin.request(method, path, headers=AUTH)
        payload = await response.json()
        assert response.status == status, (path, payload)
        assert payload["message"], path
    assert (await admin.post("/admin/reconciliation/payments/run")).status == 401
    overview = await (await admin.get("/admin/reconciliation", headers=AUTH)).json()
    assert [(s["source"], s["kind"], s["last_run"]) for s in overview["sources"]] == [
        ("payments", "http-list", None)
    ]


# -- a failing provider fails the run and recovers nothing ------------------------------------


@pytest.mark.parametrize(
    ("behaviour", "reason"),
    [
        ("status:500", "HTTP 500"),
        ("status:401", "HTTP 401"),
        ("invalid_json", "not JSON"),
        ("huge", "larger than 10 MiB"),
        ("redirect", "redirect"),
        ("hang", "no answer within 2 s"),
    ],
)
async def test_a_failing_listing_fails_the_run_and_recovers_nothing(
    make_gateway, marketplace, aiohttp_client, listing: PaymentsListing, behaviour, reason
):
    market, _ = marketplace
    source = http_list_source(listing.listing_url)
    client, _, admin = await _gateway(make_gateway, aiohttp_client, {"payments": source})
    listing.set(payments=[listed("pend-h")], behaviour=behaviour)
    result = await run(admin, "payments")
    assert (result["ok"], result["counts"], result["items"]) == (False, {}, [])
    assert reason in result["error"]
    assert await stored_ids(client) == set() and market.received == []
    if behaviour == "redirect":
        assert (await listing.stats())["followed"] == 0, "a redirect is never followed"
    ready = await admin.get("/readyz")
    assert ready.status == 200, "a failing provider leaves the gateway healthy"
    metrics = client.app[METRICS].exposition().decode()
    assert 'webhook_gateway_reconcile_runs_total{result="failure",source="payments"} 1.0' in metrics
    assert 'webhook_gateway_reconcile_last_success_timestamp_seconds{source="payments"} 0.0' in (
        metrics
    )
    # The provider recovers: the next run recovers the payment.
    listing.set(behaviour=None)
    assert (await run(admin, "payments"))["counts"] == counts(recovered=1)


async def test_a_listing_without_the_list_or_with_a_bad_item_fails_the_run(
    make_gateway, aiohttp_client, listing: PaymentsListing
):
    client, _, admin = await _gateway(
        make_gateway, aiohttp_client, {"payments": http_list_source(listing.listing_url)}
    )
    listing.control({"payments": {"not": "a list"}})
    result = await run(admin, "payments")
    assert (result["ok"], result["error"]) == (False, "the answer has no list at /payments")
    listing.control({"payments": [listed("pend-ok"), "text"]})
    result = await run(admin, "payments")
    assert (result["ok"], result["error"]) == (False, "an item of the listing is not an object")
    assert await stored_ids(client) == set()


# -- Rafiki's Admin API -----------------------------------------------------------------------


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat(timespec="milliseconds")


def _incoming(kind: str, payment_id: str, value: str) -> dict[str, Any]:
    return {
        "id": payment_id,
        "walletAddressId": "https://rafiki.example/accounts/market",
        "receivedAmount": {"value": value, "assetCode": "EUR", "assetScale": 2},
        "completed": kind.endswith("completed"),
    }


def rafiki_source(double: Any, *, secret: str | None = None) -> dict[str, Any]:
    """A rafiki source (its payment defaults) reconciled against the Admin API double."""
    return {
        "path": "/hooks/rafiki",
        "provider": "rafiki",
        "secrets": [RAFIKI_WEBHOOK_SECRET],
        "routes": [{"destination": "marketplace", "types": ["incoming_payment.*"]}],
        "reconcile": {
            "every": "never",
            "grace": "0s",
            "from": {
                "kind": "rafiki",
                "url": double.graphql_url,
                "secret": secret or double.secret,
                "tenant_id": double.tenant,
            },
        },
    }


async def test_rafiki_recovers_what_its_webhooks_lost_over_pages_of_signed_requests(
    make_gateway, marketplace, aiohttp_client, tmp_path
):
    market, _ = marketplace
    now = time.time()
    events: list[dict[str, Any]] = []
    ids = {name: f"https://rafiki.example/incoming-payments/{uuid.uuid4()}" for name in "abcd"}
    for n, name in enumerate("abcd"):
        events.append(
            rafiki_event(str(uuid.uuid4()), "incoming_payment.created", _iso(now - 600 + n),
                         _incoming("created", ids[name], "0"))
        )  # fmt: skip
        if name != "d":  # d is still open at Rafiki
            events.append(
                rafiki_event(str(uuid.uuid4()), "incoming_payment.completed",
                             _iso(now - 300 + n), _incoming("completed", ids[name], "1999"))
            )  # fmt: skip
    # Open payments enough for three pages of 100.
    for n in range(230):
        events.append(
            rafiki_event(str(uuid.uuid4()), "incoming_payment.created", _iso(now - 900 + n),
                         _incoming("created", f"https://rafiki.example/ip/{n}", "0"))
        )  # fmt: skip
    async with rafiki_admin(tmp_path, events=events) as double:
        rafiki = rafiki_source(double)
        client, config, admin = await _gateway(make_gateway, aiohttp_client, {"rafiki": rafiki})
        source = config.sources["rafiki"]
        by_id = {e["id"]: e for e in events}
        # The gateway got a's two webhooks and b's first; c's were all lost.
        got = [events[0]["id"], events[1]["id"], events[2]["id"]]
        for event_id in got:
            await _post_rafiki(client, source, by_id[event_id])
        await market.wait_for(3)

        dry = await run(admin, "rafiki", dry_run=True)
        assert dry["counts"] == counts(matched=1, open=231, missing=2), dry
        assert (await double.stats())["refused"] == 0, double.log()

        done = await run(admin, "rafiki")
        assert done["counts"] == counts(matched=1, open=231, recovered=2), done
        stats = await double.stats()
        assert stats["refused"] == 0 and stats["pages"] >= 6, stats  # 3 pages a run
        # b's completed; c's created and completed, in that order.
        await market.wait_for(6)
        arrived = [json.loads(r.body) for r in reconciled(market.received)]
        assert all(r.verified for r in market.received)
        recovered_ids = [event["id"] for event in arrived]
        assert sorted(recovered_ids) == sorted([events[3]["id"], events[4]["id"], events[5]["id"]])
        c_types = [e["type"] for e in arrived if e["data"]["id"] == ids["c"]]
        assert c_types == ["incoming_payment.created", "incoming_payment.completed"]

        # Rafiki's retry of c's completed webhook comes in late: a duplicate.
        late = await _post_rafiki(client, source, by_id[events[5]["id"]])
        assert late == (200, {"id": events[5]["id"], "status": "duplicate"})
        again = await run(admin, "rafiki")
        assert again["counts"] == counts(matched=3, open=231), again
        await _wait_delivered(client)
        assert len(market.received) == 6


async def _post_rafiki(client: Any, source: SourceConfig, event: dict[str, Any]) -> tuple:
    body = json.dumps({k: event[k] for k in ("id", "type", "data")}).encode()
    headers = source.verifier.sign(body, Secret(RAFIKI_WEBHOOK_SECRET), time.time())
    response = await client.post(
        "/hooks/rafiki", data=body, headers={**headers, "Content-Type": "application/json"}
    )
    return response.status, await response.json()


async def test_rafiki_paging_forever_fails_the_run_after_1000_pages(
    make_gateway, marketplace, aiohttp_client, tmp_path
):
    market, _ = marketplace
    async with rafiki_admin(tmp_path, behaviour="endless") as double:
        rafiki = rafiki_source(double)
        client, _, admin = await _gateway(make_gateway, aiohttp_client, {"rafiki": rafiki})
        result = await run(admin, "rafiki")
        assert (result["ok"], result["error"]) == (False, "more than 1000 pages")
        stats = await double.stats()
        assert (stats["pages"], stats["refused"]) == (1000, 0)
        assert await stored_ids(client) == set() and market.received == []


async def test_rafiki_refusing_the_signature_fails_the_run(make_gateway, aiohttp_client, tmp_path):
    async with rafiki_admin(tmp_path, secret="the-secret-rafiki-has") as double:
        rafiki = rafiki_source(double, secret="another-secret")
        _, _, admin = await _gateway(make_gateway, aiohttp_client, {"rafiki": rafiki})
        result = await run(admin, "rafiki")
        assert result["ok"] is False and "HTTP 401" in result["error"], result
        assert "another-secret" not in json.dumps(result)


# -- Stripe's events --------------------------------------------------------------------------


def _intent(intent_id: str, status: str) -> dict[str, Any]:
    return {
        "id": intent_id,
        "object": "payment_intent",
        "amount": 1999,
        "currency": "eur",
        "status": status,
        "metadata": {"order": f"order-{intent_id}"},
    }


STRIPE_PAYMENT = {
    "key": "/data/object/id",
    "reference": "/data/object/metadata/order",
    "amount": {"value": "/data/object/amount", "currency": "/data/object/currency", "scale": 2},
    "states": {
        "payment_intent.created": "pending",
        "payment_intent.succeeded": "completed",
        "payment_intent.payment_failed": "failed",
    },
}


def stripe_source(double: Any, *, api_key: str | None = None) -> dict[str, Any]:
    """A stripe source with payments of payment intents, reconciled against the events double."""
    return {
        "path": "/hooks/stripe",
        "provider": "stripe",
        "secrets": [STRIPE_WEBHOOK_SECRET],
        "payment": STRIPE_PAYMENT,
        "routes": [{"destination": "marketplace", "types": ["payment_intent.*"]}],
        "reconcile": {
            "every": "never",
            "grace": "0s",
            "from": {"kind": "stripe", "url": double.url, "api_key": api_key or double.key},
        },
    }


async def test_stripe_recovers_the_events_it_gave_up_on(
    make_gateway, marketplace, aiohttp_client, tmp_path
):
    market, _ = marketplace
    now = int(time.time())
    events = [
        stripe_event("evt_a_ok", "payment_intent.succeeded", now - 500, _intent("pi_a", "succeeded")),
        stripe_event("evt_b_ok", "payment_intent.succeeded", now - 400, _intent("pi_b", "succeeded")),
        stripe_event("evt_c_no", "payment_intent.payment_failed", now - 300,
                     _intent("pi_c", "requires_payment_method")),
        # A refund is no payment event of this source: not asked for.
        stripe_event("evt_refund", "charge.refunded", now - 200, {"id": "ch_1"}),
    ]  # fmt: skip
    events += [
        stripe_event(f"evt_open_{n:03d}", "payment_intent.created", now - 1000 + n,
                     _intent(f"pi_open_{n:03d}", "requires_payment_method"))
        for n in range(150)
    ]  # fmt: skip
    async with stripe_events(tmp_path, events=events) as double:
        stripe = stripe_source(double)
        client, config, admin = await _gateway(make_gateway, aiohttp_client, {"stripe": stripe})
        source = config.sources["stripe"]
        body = json.dumps(events[0]).encode()
        headers = source.verifier.sign(body, Secret(STRIPE_WEBHOOK_SECRET), time.time())
        response = await client.post(
            "/hooks/stripe", data=body, headers={**headers, "Content-Type": "application/json"}
        )
        assert response.status == 202, await response.text()
        await market.wait_for(1)

        dry = await run(admin, "stripe", dry_run=True)
        assert dry["counts"] == counts(matched=1, open=150, missing=2), dry
        done = await run(admin, "stripe")
        assert done["counts"] == counts(matched=1, open=150, recovered=2), done
        await market.wait_for(3)
        arrived = {json.loads(r.body)["id"] for r in reconciled(market.received)}
        assert arrived == {"evt_b_ok", "evt_c_no"}
        stats = await double.stats()
        assert stats["refused"] == 0 and stats["pages"] >= 4, stats
        asked = [r["detail"] for r in stats["recent"] if r.get("detail")]
        assert any(d.get("startingAfter") for d in asked), "paged by starting_after"
        assert all(d["created"][0][0] == "gte" for d in asked), "from created[gte]"
        payment = await (await admin.get("/admin/payments/stripe/pi_b", headers=AUTH)).json()
        assert payment["payment"]["amount"]["decimal"] == "19.99"

        body = json.dumps(events[1]).encode()
        headers = source.verifier.sign(body, Secret(STRIPE_WEBHOOK_SECRET), time.time())
        late = await client.post(
            "/hooks/stripe", data=body, headers={**headers, "Content-Type": "application/json"}
        )
        assert (await late.json())["status"] == "duplicate"
        again = await run(admin, "stripe")
        assert again["counts"] == counts(matched=3, open=150), again
        await _wait_delivered(client)
        assert len(market.received) == 3


async def test_stripe_refusing_the_key_fails_the_run(make_gateway, aiohttp_client, tmp_path):
    async with stripe_events(tmp_path) as double:
        stripe = stripe_source(double, api_key="sk_test_wrong")
        _, _, admin = await _gateway(make_gateway, aiohttp_client, {"stripe": stripe})
        result = await run(admin, "stripe")
        assert result["ok"] is False and result["error"] == "HTTP 401", result


# -- config ------------------------------------------------------------------------------------


def test_config_refuses_reconcile_on_a_header_dedupe_key(tmp_path):
    source = http_list_source("http://127.0.0.1:1/payments/pending")
    source["dedupe"] = {"key": "header:webhook-id", "window": "72h"}
    data = config_dict("http://127.0.0.1:1/x", store_url=sqlite_url(tmp_path),
                       sources={"payments": source})  # fmt: skip
    with pytest.raises(ConfigError) as info:
        build_config(data)
    [problem] = [str(p) for p in info.value.problems]
    assert problem.startswith("sources.payments.reconcile: ")
    assert "header:webhook-id" in problem and "reads a header" in problem


def test_config_names_every_bad_reconcile_key(tmp_path):
    source = payments_source(
        dedupe=DEDUPE,
        reconcile={
            "every": "soon",
            "from": {
                "kind": "http-list",
                "url": "ftp://x",
                "key": "pendingId",
                "state": {"field": "/status", "map": {"paid": "done"}},
                "events": {"finished": {"type": "x"}},
                "extra": 1,
            },
        },
    )
    data = config_dict("http://127.0.0.1:1/x", store_url=sqlite_url(tmp_path),
                       sources={"payments": source})  # fmt: skip
    with pytest.raises(ConfigError) as info:
        build_config(data)
    keys = {str(p).split(":")[0] for p in info.value.problems}
    assert {
        "sources.payments.reconcile.every",
        "sources.payments.reconcile.from.url",
        "sources.payments.reconcile.from.key",
        "sources.payments.reconcile.from.state.map.paid",
        "sources.payments.reconcile.from.events.finished",
        "sources.payments.reconcile.from.extra",
    } <= keys, keys


# -- the command line -------------------------------------------------------------------------


async def _cli(admin: Any, *args: str, token: str = ADMIN_TOKEN) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        *args,
        "--admin",
        str(admin.make_url("")).rstrip("/"),
        env={**os.environ, "GATEWAY_ADMIN_TOKEN": token},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_cli_runs_reports_and_exports(
    make_gateway, marketplace, aiohttp_client, listing: PaymentsListing
):
    market, _ = marketplace
    source = http_list_source(listing.listing_url)
    _, _, admin = await _gateway(make_gateway, aiohttp_client, {"payments": source})
    listing.set(payments=[listed("pend-1"), listed("pend-2", "pending")])

    code, out, err = await _cli(admin, "reconcile", "payments", "--dry-run")
    assert code == 0, err
    assert out.startswith("dry run ") and "matched 0, open 1, recovered 0, missing 1" in out
    assert "pend-1" in out and "dry run" in out

    code, out, err = await _cli(admin, "reconcile", "payments", "--csv")
    assert code == 0, err
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["run_id", "source", "key", "provider_state", "gateway_state", "result",
                       "event_id", "reason"]  # fmt: skip
    assert [(r[2], r[5]) for r in rows[1:]] == [("pend-1", "recovered")]
    await market.wait_for(1)

    code, out, err = await _cli(admin, "reconcile", "payments", "--json")
    assert code == 0, err
    assert json.loads(out)["counts"]["matched"] == 1

    listing.set(payments=[listed("pend-1"), listed("pend-3", "failed")], behaviour=None)
    listing.set(behaviour="status:503")
    code, out, err = await _cli(admin, "reconcile", "payments")
    assert code == 1 and "HTTP 503" in err, (out, err)
    listing.set(behaviour=None)

    code, out, err = await _cli(admin, "reconcile", "--report")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("reconciliation since ")
    header, row = lines[1].split(), lines[2].split()
    assert header == ["SOURCE", "RUNS", "FAILED", "RECOVERED", "LAST_RUN", "LAST",
                      "NEEDS_ATTENTION"]  # fmt: skip
    assert (row[0], row[1], row[2], row[3], row[5], row[6]) == (
        "payments", "4", "1", "1", "failed", "0"
    )  # fmt: skip

    code, out, err = await _cli(admin, "reconcile", "--report", "--csv", "--since", "1h")
    assert code == 0, err
    runs = list(csv.DictReader(io.StringIO(out)))
    assert [(r["ok"], r["dry_run"], r["recovered"]) for r in runs] == [
        ("False", "False", "0"), ("True", "False", "0"), ("True", "False", "1"),
        ("True", "True", "0"),
    ]  # fmt: skip

    for args, code_wanted, said in (
        (("reconcile",), 2, "usage"),
        (("reconcile", "payments", "--report"), 2, "usage"),
        (("reconcile", "payments", "--json", "--csv"), 2, "usage"),
        (("reconcile", "--report", "--since", "soon"), 2, "--since"),
        (("reconcile", "nope"), 1, "no source named 'nope'"),
    ):
        code, out, err = await _cli(admin, *args)
        assert (code, said in err) == (code_wanted, True), (args, out, err)
    code, _, err = await _cli(admin, "reconcile", "payments", token="wrong")
    assert code == 1 and "GATEWAY_ADMIN_TOKEN" in err


def test_an_items_payment_path_is_escaped():
    from gateway.admin.reconcile import item_json
    from gateway.store.records import ReconcileItem

    item = ReconcileItem("https://w.example/p?x=1#y", "completed", None, "missing")
    assert item_json(item, "payments")["payment"] == (
        "/admin/payments/payments/https%3A%2F%2Fw.example%2Fp%3Fx%3D1%23y"
    )
