"""Payments through the request path (design.md 5.7), over real sockets: the payment read from
each event, its state moving forward, a late or a conflicting event held back and counted."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest

from gateway.app import STORE, create_admin_app
from gateway.appkeys import METRICS
from gateway.config.model import SourceConfig
from gateway.errors import ConfigError
from gateway.secret import Secret
from tests.support import (
    AUTH,
    build_config,
    config_dict,
    payment_body,
    payments_source,
    sign_payment,
    sqlite_url,
)

RAFIKI_SECRET = "rafiki-test-secret-0123456789"
LIST_DEDUPE = {"key": ["/type", "/pendingId"], "window": "72h"}


def _rafiki_source() -> dict[str, Any]:
    return {
        "path": "/hooks/rafiki",
        "provider": "rafiki",
        "secrets": [RAFIKI_SECRET],
        "routes": [{"destination": "marketplace", "types": ["incoming_payment.*"]}],
    }


def _rafiki_event(kind: str, payment_id: str, received: str) -> bytes:
    return json.dumps(
        {
            "id": str(uuid.uuid4()),
            "type": kind,
            "data": {
                "id": payment_id,
                "walletAddressId": "https://rafiki.example/accounts/market",
                "receivedAmount": {"value": received, "assetCode": "EUR", "assetScale": 2},
                "completed": kind.endswith("completed"),
            },
        },
        separators=(",", ":"),
    ).encode()


async def _post_rafiki(client, source: SourceConfig, body: bytes):
    headers = source.verifier.sign(body, Secret(RAFIKI_SECRET), time.time())
    response = await client.post(
        "/hooks/rafiki", data=body, headers={**headers, "Content-Type": "application/json"}
    )
    return response.status, await response.json()


async def test_a_rafiki_payment_moves_forward_and_a_late_event_is_held(
    make_gateway, marketplace, aiohttp_client
):
    market, _ = marketplace
    client, config = await make_gateway(sources={"rafiki": _rafiki_source()})
    admin = await aiohttp_client(create_admin_app(client.server.app))
    source = config.sources["rafiki"]
    payment_id = f"https://rafiki.example/incoming-payments/{uuid.uuid4()}"
    created = _rafiki_event("incoming_payment.created", payment_id, "0")
    assert await _post_rafiki(client, source, created) == (
        200,
        {"id": json.loads(created)["id"], "status": "queued"},
    )
    completed = _rafiki_event("incoming_payment.completed", payment_id, "1999")
    assert (await _post_rafiki(client, source, completed))[0] == 200
    await market.wait_for(2)
    # The same "created" sent again late, under a new id: stored, answered 200, held back.
    late = _rafiki_event("incoming_payment.created", payment_id, "0")
    status, answer = await _post_rafiki(client, source, late)
    assert (status, answer["status"]) == (200, "superseded")
    page = await (await admin.get("/admin/payments", headers=AUTH)).json()
    [payment] = page["payments"]
    assert (payment["key"], payment["state"], payment["events"]) == (payment_id, "completed", 3)
    assert payment["amount"] == {"value": "1999", "scale": 2, "currency": "EUR", "decimal": "19.99"}
    # A Rafiki payment id is a URL: its slashes travel in the path, encoded or not.
    for path in (payment_id, payment_id.replace("/", "%2F")):
        detail = await admin.get(f"/admin/payments/rafiki/{path}", headers=AUTH)
        assert detail.status == 200, path
    events = (await detail.json())["events"]
    assert [(e["type"], e["mark"], e["status"]) for e in events] == [
        ("incoming_payment.created", None, "delivered"),
        ("incoming_payment.completed", None, "delivered"),
        ("incoming_payment.created", "superseded", "held"),
    ]
    metrics = client.app[METRICS].exposition().decode()
    assert (
        'webhook_gateway_payment_anomalies_total{kind="superseded",source="rafiki"} 1.0' in metrics
    )
    assert 'webhook_gateway_payment_anomalies_total{kind="conflict",source="rafiki"} 0.0' in metrics
    assert len(market.received) == 2  # the held one was never sent: it has no delivery at all
    view = await client.app[STORE].get_event(answer["id"])
    assert view is not None and view.deliveries == ()


async def test_a_conflicting_terminal_state_is_held_and_flagged(make_gateway, marketplace):
    market, _ = marketplace
    client, _ = await make_gateway()
    done = payment_body(pendingId="pend-c", type="payment.completed", status="paid")
    response = await client.post("/hooks/payments", data=done, headers=sign_payment(done))
    assert response.status == 202
    failed = payment_body(pendingId="pend-c", type="payment.failed", status="failed")
    response = await client.post("/hooks/payments", data=failed, headers=sign_payment(failed))
    assert (response.status, (await response.json())["status"]) == (202, "conflict")
    await market.wait_for(1)
    page, _ = await client.app[STORE].list_payments(attention="conflict")
    assert [(p.key, p.state) for p in page] == [("pend-c", "completed")]
    assert [r.headers["ce-type"] for r in market.received] == ["payment.completed"]


async def test_a_list_dedupe_key_dedupes_per_payment_and_type(make_gateway, marketplace):
    client, _ = await make_gateway(sources={"payments": payments_source(dedupe=LIST_DEDUPE)})
    body = payment_body(pendingId="pend-d")
    headers = sign_payment(body, msg_id="msg_first")
    first = await client.post("/hooks/payments", data=body, headers=headers)
    assert (first.status, (await first.json())["id"]) == (202, "msg_first")
    # The payments service sends it again under a new webhook-id: the same payment and type.
    again = await client.post("/hooks/payments", data=body, headers=sign_payment(body))
    assert (again.status, await again.json()) == (200, {"id": "msg_first", "status": "duplicate"})
    view = await client.app[STORE].get_event("msg_first")
    assert view is not None and view.event.dedupe_key == "payment.completed:pend-d"
    other = payment_body(pendingId="pend-d", type="payment.failed", status="failed")
    response = await client.post("/hooks/payments", data=other, headers=sign_payment(other))
    assert response.status == 202
    lacking = json.loads(payment_body())
    del lacking["pendingId"], lacking["type"]
    raw = json.dumps(lacking).encode()
    response = await client.post("/hooks/payments", data=raw, headers=sign_payment(raw))
    assert response.status == 422
    assert (await response.json())["missing"] == ["/type", "/pendingId"]


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        ('"19.99"', ("1999", 2)),
        ("19.99", ("1999", 2)),
        ("12345678901234567890.123456789", ("12345678901234567890123456789", 9)),
        ("1e2", ("100", 0)),
    ],
)
async def test_a_decimal_amount_keeps_every_digit(make_gateway, marketplace, amount, expected):
    rules = {
        "key": "/pendingId",
        "reference": "/offerId",
        "amount": {"value": "/amount", "currency": "EUR"},
    }
    client, _ = await make_gateway(sources={"payments": payments_source(payment=rules)})
    body = payment_body(pendingId="pend-a").replace(
        b'"status"', b'"amount": ' + amount.encode() + b', "status"'
    )
    response = await client.post("/hooks/payments", data=body, headers=sign_payment(body))
    assert response.status == 202, await response.text()
    found = await client.app[STORE].get_payment("payments", "pend-a")
    assert found is not None and found[0].amount is not None
    assert (str(found[0].amount.value), found[0].amount.scale) == expected


async def test_an_amount_that_cannot_be_read_exactly_is_400(make_gateway, marketplace):
    rules = {"key": "/pendingId", "amount": {"value": "/amount", "currency": "/currency"}}
    client, _ = await make_gateway(sources={"payments": payments_source(payment=rules)})
    for extra in (b'"amount": "ten", "currency": "EUR"', b'"amount": 10'):
        body = payment_body().replace(b'"status"', extra + b', "status"')
        response = await client.post("/hooks/payments", data=body, headers=sign_payment(body))
        assert response.status == 400, extra
        assert (await response.json())["error"] == "invalid_body"
    assert (await client.app[STORE].list_events())[0] == []


def test_payment_config_is_checked_key_by_key(tmp_path):
    def load(**overrides: Any):
        data = config_dict("http://127.0.0.1:9/x", store_url=sqlite_url(tmp_path))
        data["sources"]["payments"] = payments_source(**overrides)
        return build_config(data)

    with pytest.raises(ConfigError) as info:
        load(
            payment={
                "reference": "offerId",
                "states": {"payment.completed": "paid"},
                "order": "sometimes",
                "amount": {"value": "/amount"},
            }
        )
    keys = sorted(p.key for p in info.value.problems)
    assert keys == [
        "sources.payments.payment.amount.currency",
        "sources.payments.payment.key",
        "sources.payments.payment.order",
        "sources.payments.payment.reference",
        "sources.payments.payment.states.payment.completed",
    ]
    assert load(payment=False).sources["payments"].payment is None
    data = config_dict("http://127.0.0.1:9/x", store_url=sqlite_url(tmp_path))
    data["sources"] = {"rafiki": _rafiki_source()}
    rafiki = build_config(data).sources["rafiki"]
    assert rafiki.payment is not None and rafiki.payment.key.name == "/data/id"
    data["sources"]["rafiki"]["payment"] = False
    assert build_config(data).sources["rafiki"].payment is None
    data["sources"]["rafiki"]["payment"] = {"order": "record"}
    kept = build_config(data).sources["rafiki"].payment
    assert kept is not None and (kept.order, kept.key.name) == ("record", "/data/id")
