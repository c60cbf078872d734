"""What each sender counts as success (design.md 3 ``ack_status``), tried with a real Rafiki-like
sender: Node.js and axios with ``validateStatus: (status) => status === 200``."""

from __future__ import annotations

import json
import uuid
from typing import Any

from gateway.app import STORE
from tests.support import delivered_once, run_node

RAFIKI_SECRET = "rafiki-test-secret-0123456789"


def _rafiki_source(**overrides: Any) -> dict[str, Any]:
    source: dict[str, Any] = {
        "path": "/hooks/rafiki",
        "provider": "rafiki",
        "secrets": [RAFIKI_SECRET],
        "event": {"subject": "/data/metadata/offerId"},
        "routes": [{"destination": "marketplace", "types": ["incoming_payment.*"]}],
    }
    source.update(overrides)
    return source


def _event() -> str:
    return json.dumps(
        {
            "id": str(uuid.uuid4()),
            "type": "incoming_payment.completed",
            "data": {
                "id": f"https://rafiki.example/incoming-payments/{uuid.uuid4()}",
                "receivedAmount": {"value": "2500", "assetCode": "USD", "assetScale": 2},
                "completed": True,
                "metadata": {"offerId": "42"},
            },
        }
    )


async def _send(client: Any, event: str, attempts: int = 1) -> dict[str, Any]:
    url = str(client.make_url("/hooks/rafiki"))
    result: dict[str, Any] = await run_node(
        "rafiki_sender.mjs", url, RAFIKI_SECRET, event, str(attempts)
    )
    return result


async def test_a_rafiki_node_sees_its_first_post_delivered(make_gateway, marketplace):
    market, _ = marketplace
    client, config = await make_gateway(sources={"rafiki": _rafiki_source()})
    assert config.sources["rafiki"].ack_status == 200
    event = _event()
    event_id = json.loads(event)["id"]

    first = await _send(client, event)
    assert first["delivered"], first
    assert first["attempts"] == [
        {"attempt": 1, "status": 200, "body": {"id": event_id, "status": "queued"}}
    ]
    await market.wait_for(1)
    assert market.received[0].headers["webhook-id"] == event_id
    assert market.received[0].headers["ce-subject"] == "42"

    # Rafiki sends an event again when it thinks delivery failed; it is a duplicate, still 200.
    again = await _send(client, event)
    assert again["attempts"] == [
        {"attempt": 1, "status": 200, "body": {"id": event_id, "status": "duplicate"}}
    ]
    store = client.app[STORE]
    events, _ = await store.list_events()
    assert [e.id for e in events] == [event_id]
    # Its one delivery went out once and nothing is left to send: the marketplace has it all.
    await delivered_once(store, event_id)
    assert [r.headers["webhook-id"] for r in market.received] == [event_id]


async def test_a_202_would_look_failed_to_the_same_sender(make_gateway, marketplace):
    # The control: with ack_status 202 the sender logs a failure and sends the event again,
    # which is what a Rafiki node did before ack_status. Nothing is delivered twice.
    market, _ = marketplace
    client, _ = await make_gateway(sources={"rafiki": _rafiki_source(ack_status=202)})
    event = _event()
    result = await _send(client, event, attempts=3)
    statuses = [a["status"] for a in result["attempts"]]
    assert statuses == [202, 200], result
    assert "status code 202" in result["attempts"][0]["error"]
    assert result["attempts"][1]["body"]["status"] == "duplicate"
    store = client.app[STORE]
    events, _ = await store.list_events()
    assert [e.id for e in events] == [json.loads(event)["id"]]
    # Its one delivery went out once and nothing is left to send: the marketplace has it all.
    await delivered_once(store, events[0].id)
    assert [r.headers["webhook-id"] for r in market.received] == [events[0].id]
