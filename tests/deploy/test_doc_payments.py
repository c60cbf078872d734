"""docs/integrate-payments.md: the TypeScript module it shows, type-checked, compiled and run in
Node.js with the real axios and standardwebhooks packages, against a real gateway."""

from __future__ import annotations

import json
import secrets

from tests.deploy.files import doc_code_block
from tests.support import MARKETPLACE_SECRET, NODE_DIR, PAYMENTS_SECRET, run_node

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _ulid() -> str:
    return "01J" + "".join(secrets.choice(CROCKFORD) for _ in range(23))


def _module_dir(tmp_path):
    """The documented module in a folder of its own that sees tests/node's packages."""
    (tmp_path / "gatewayWebhook.ts").write_text(
        doc_code_block("integrate-payments.md", "gatewayWebhook.ts")
    )
    (tmp_path / "package.json").write_text('{"type": "module"}\n')
    (tmp_path / "node_modules").symlink_to(NODE_DIR / "node_modules", target_is_directory=True)
    return tmp_path / "gatewayWebhook.ts"


async def _send(module, url: str, events: list[dict], secret: str = PAYMENTS_SECRET) -> list:
    out = await run_node(
        "doc_payments_sender.mjs",
        str(module),
        json.dumps(events),
        env={"GATEWAY_WEBHOOK_URL": url, "PAYMENTS_WEBHOOK_SECRET": secret},
    )
    assert "diagnostics" not in out, "\n".join(out["diagnostics"])
    return out["results"]


async def test_documented_sender_reaches_the_marketplace_through_the_gateway(
    make_gateway, marketplace, tmp_path
):
    market, _ = marketplace
    client, _ = await make_gateway()
    module = _module_dir(tmp_path)
    paid = {
        "type": "payment.completed",
        "pendingId": _ulid(),
        "offerId": 42,
        "status": "paid",
        "outgoingPaymentId": "https://wallet.example/outgoing-payments/7d0c1f0e",
        "timestamp": "2026-11-26T10:00:00.000Z",
    }
    failed = {
        "type": "payment.failed",
        "pendingId": _ulid(),
        "offerId": 43,
        "status": "failed",
        "timestamp": "2026-11-26T10:01:00.000Z",
    }
    url = str(client.make_url("/hooks/payments"))
    results = await _send(module, url, [paid, failed, paid])

    answers = [r.get("answer") or r for r in results]
    assert [a.get("status") for a in answers] == ["queued", "queued", "duplicate"], results
    assert answers[0]["id"] == f"msg_{paid['pendingId']}_payment.completed"
    assert answers[2]["id"] == answers[0]["id"]

    await market.wait_for(2)
    by_type = {json.loads(r.body)["type"]: r for r in market.received}
    assert set(by_type) == {"payment.completed", "payment.failed"}
    for event in (paid, failed):
        received = by_type[event["type"]]
        assert received.verified, "the gateway's own signature verifies at the marketplace"
        assert json.loads(received.body) == event  # the body the service sent, as sent
        assert received.headers["webhook-id"] == f"msg_{event['pendingId']}_{event['type']}"
        assert received.headers["ce-subject"] == str(event["offerId"])
    assert "outgoingPaymentId" not in json.loads(by_type["payment.failed"].body)
    assert len(market.received) == 2


async def test_documented_sender_with_another_secret_is_refused(
    make_gateway, marketplace, tmp_path
):
    market, _ = marketplace
    client, _ = await make_gateway()
    event = {
        "type": "payment.failed",
        "pendingId": _ulid(),
        "offerId": 7,
        "status": "failed",
        "timestamp": "2026-11-26T10:01:00.000Z",
    }
    url = str(client.make_url("/hooks/payments"))
    [result] = await _send(_module_dir(tmp_path), url, [event], secret=MARKETPLACE_SECRET)
    assert result["status"] == 401
    assert result["body"]["error"] == "invalid_signature"
    assert market.received == []
