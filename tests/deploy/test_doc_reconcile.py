"""docs/reconcile.md: the two source configs it shows, loaded as written and run against the
doubles of the payments service's listing and of Rafiki's Admin API."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import yaml

from gateway.app import create_admin_app
from tests.deploy.files import doc_code_block
from tests.doubles import payments_listing, rafiki_admin, rafiki_event
from tests.support import AUTH


def _sources(name: str) -> dict[str, Any]:
    sources: dict[str, Any] = yaml.safe_load(doc_code_block("reconcile.md", name))["sources"]
    return sources


async def _run(admin: Any, source: str) -> dict[str, Any]:
    response = await admin.post(f"/admin/reconciliation/{source}/run", headers=AUTH)
    assert response.status == 200, await response.text()
    run: dict[str, Any] = await response.json()
    assert run["ok"], run
    return run


async def test_the_payments_service_config_recovers_a_lost_payment_after_its_grace(
    make_gateway, marketplace, aiohttp_client, tmp_path
):
    market, _ = marketplace
    offset = [0.0]

    def clock() -> float:
        return time.time() + offset[0]

    paid = {"pendingId": "01JD6Y8Q7X3M4N5P6R7S8T9V0W", "offerId": 42, "status": "paid",
            "buyerWalletAddressUrl": "https://wallet.example/alice",
            "outgoingPaymentId": "https://wallet.example/outgoing-payments/0b6c"}  # fmt: skip
    async with payments_listing(tmp_path, token="listing-token", payments=[paid]) as listing:
        client, _ = await make_gateway(
            sources=_sources("payments.yaml"),
            clock=clock,
            env={
                "PAYMENTS_LISTING_URL": listing.listing_url,
                "PAYMENTS_API_TOKEN": "listing-token",
            },
        )
        admin = await aiohttp_client(create_admin_app(client.server.app))
        first = await _run(admin, "payments")
        assert first["counts"]["open"] == 1, "paid less than grace ago: its webhook may be coming"
        offset[0] = 150.0  # the next run, past the 2 minutes of grace
        second = await _run(admin, "payments")
        assert second["counts"]["recovered"] == 1, second
        await market.wait_for(1)
        [received] = market.received
        body = json.loads(received.body)
        assert received.verified and received.headers["X-Gateway-Origin"] == "reconciled"
        assert {k: body[k] for k in ("type", "pendingId", "offerId", "status")} == {
            "type": "payment.completed",
            "pendingId": paid["pendingId"],
            "offerId": 42,
            "status": "paid",
        }
        assert body["outgoingPaymentId"] == paid["outgoingPaymentId"]
        datetime.fromisoformat(body["timestamp"])  # $now: an RFC 3339 time


async def test_the_rafiki_config_recovers_a_completed_payment(
    make_gateway, marketplace, aiohttp_client, tmp_path
):
    market, _ = marketplace
    payment_id = f"https://rafiki.example/incoming-payments/{uuid.uuid4()}"
    ten_minutes_ago = datetime.fromtimestamp(time.time() - 600, tz=UTC).isoformat()
    data = {"id": payment_id, "walletAddressId": "https://rafiki.example/accounts/market",
            "receivedAmount": {"value": "1999", "assetCode": "EUR", "assetScale": 2}}  # fmt: skip
    events = [rafiki_event(str(uuid.uuid4()), "incoming_payment.completed", ten_minutes_ago, data)]
    async with rafiki_admin(tmp_path, events=events) as double:
        client, _ = await make_gateway(
            sources=_sources("rafiki.yaml"),
            env={
                "RAFIKI_WEBHOOK_SECRET": "rafiki-webhook-secret",
                "RAFIKI_ADMIN_URL": double.graphql_url,
                "RAFIKI_ADMIN_SECRET": double.secret,
                "RAFIKI_TENANT_ID": double.tenant,
            },
        )
        admin = await aiohttp_client(create_admin_app(client.server.app))
        run = await _run(admin, "rafiki")
        assert run["counts"]["recovered"] == 1, run
        await market.wait_for(1)
        body = json.loads(market.received[0].body)
        assert (body["id"], body["data"]["id"]) == (events[0]["id"], payment_id)
        payment = await (await admin.get("/admin/payments?source=rafiki", headers=AUTH)).json()
        [row] = payment["payments"]
        assert (row["state"], row["amount"]["decimal"]) == ("completed", "19.99")
