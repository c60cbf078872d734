"""docs/integrate-marketplace.md: its Django decorator, read from the page into a Django project
in tmp_path, serving real deliveries from a real gateway (payments and Rafiki events)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import aiohttp
import pytest

from gateway.app import STORE, create_admin_app, create_app
from tests.deploy.django_marketplace import running
from tests.deploy.files import doc_code_block
from tests.support import (
    ADMIN_TOKEN,
    MARKETPLACE_SECRET,
    build_config,
    config_dict,
    payment_body,
    payments_source,
    run_node,
    sign_payment,
    sqlite_url,
)
from tests.waiting import eventually

RAFIKI_SECRET = "rafiki-test-secret-0123456789"


@pytest.fixture
async def django_site(tmp_path):
    """The marketplace's Django app on a free port: (base URL, project folder)."""
    project = tmp_path / "marketplace"
    (project / "jobs").mkdir(parents=True)
    (project / "jobs" / "__init__.py").write_text("")
    (project / "jobs" / "webhooks.py").write_text(
        doc_code_block("integrate-marketplace.md", "jobs/webhooks.py")
    )
    async with running(project, {"GATEWAY_WEBHOOK_SECRET": MARKETPLACE_SECRET}) as base_url:
        yield base_url, project


def _handled(project: Path) -> list[dict]:
    path = project / "handled.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def _wait_handled(project: Path, count: int) -> list[dict]:
    def handled() -> list[dict] | None:
        lines = _handled(project)
        return lines if len(lines) >= count else None

    return await eventually(handled, f"{count} payments handled by the view")


@pytest.fixture
async def gateway(aiohttp_client, django_site, tmp_path):
    """A gateway whose payments and Rafiki routes deliver to the Django app."""
    base, _ = django_site
    data = config_dict(f"{base}/api/webhooks/payments", store_url=sqlite_url(tmp_path))
    data["destinations"]["marketplace-rafiki"] = {
        **data["destinations"]["marketplace"],
        "url": f"{base}/api/webhooks/rafiki",
    }
    data["sources"] = {
        "payments": payments_source(),
        "rafiki": {
            "path": "/hooks/rafiki",
            "provider": "rafiki",
            "secrets": [RAFIKI_SECRET],
            "event": {"subject": "/data/metadata/offerId"},
            "routes": [{"destination": "marketplace-rafiki", "types": ["incoming_payment.*"]}],
        },
    }
    return await aiohttp_client(create_app(build_config(data)))


async def test_the_decorated_view_gets_each_payment_once_and_answers_as_before(
    gateway, django_site, aiohttp_client
):
    _, project = django_site
    body = payment_body(offerId=42, status="paid")
    response = await gateway.post("/hooks/payments", data=body, headers=sign_payment(body))
    assert response.status == 202
    event_id = (await response.json())["id"]

    [handled] = await _wait_handled(project, 1)
    assert handled == {"view": "payments", "webhook-id": event_id, "body": body.decode()}

    # A replay sends the event again with the same webhook-id: the decorator answers it 200
    # without running the view a second time, and the gateway counts it delivered.
    admin = await aiohttp_client(create_admin_app(gateway.server.app))
    replay = await admin.post(
        f"/admin/events/{event_id}/replay", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert replay.status in (200, 202), await replay.text()
    store = gateway.app[STORE]

    async def both_delivered() -> bool:
        view = await store.get_event(event_id)
        return len(view.deliveries) == 2 and all(d.state == "delivered" for d in view.deliveries)

    await eventually(both_delivered, "the replay delivered")
    assert len(_handled(project)) == 1

    # The view's own answers reach the gateway unchanged: an unknown offer is a 404,
    # dead-lettered at once.
    unknown = payment_body(offerId=99, status="paid")
    response = await gateway.post("/hooks/payments", data=unknown, headers=sign_payment(unknown))
    unknown_id = (await response.json())["id"]

    async def dead() -> bool:
        return (await store.get_event(unknown_id)).deliveries[0].state == "dead"

    await eventually(dead, "the unknown offer dead-lettered")
    assert (await store.get_event(unknown_id)).deliveries[0].attempts[-1].status == 404


async def test_a_rafiki_event_forwarded_by_the_gateway_passes_the_same_decorator(
    gateway, django_site
):
    _, project = django_site
    event = {
        "id": str(uuid.uuid4()),
        "type": "incoming_payment.completed",
        "data": {"id": "https://rafiki.example/incoming-payments/1", "metadata": {"offerId": "42"}},
    }
    result = await run_node(
        "rafiki_sender.mjs",
        str(gateway.make_url("/hooks/rafiki")),
        RAFIKI_SECRET,
        json.dumps(event),
    )
    assert result["delivered"], result
    [handled] = await _wait_handled(project, 1)
    assert handled["view"] == "rafiki"
    assert handled["webhook-id"] == event["id"]
    assert json.loads(handled["body"]) == event


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"webhook-id": "msg_1", "webhook-timestamp": "1700000000", "webhook-signature": "v1,AAAA"},
        {"webhook-id": "msg_1", "webhook-timestamp": "{now}", "webhook-signature": "garbage"},
        "signed by the payments secret",
    ],
    ids=["unsigned", "stale", "malformed", "wrong-secret"],
)
async def test_anything_the_gateway_did_not_sign_is_refused_401(django_site, headers):
    import time

    base, project = django_site
    body = payment_body(offerId=42)
    if headers == "signed by the payments secret":
        headers = sign_payment(body)  # valid Standard Webhooks, but not the gateway's secret
    else:
        headers = {k: v.replace("{now}", str(int(time.time()))) for k, v in headers.items()}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{base}/api/webhooks/payments", data=body, headers=headers) as response,
    ):
        assert response.status == 401
        assert await response.json() == {"error": "invalid signature"}
    assert _handled(project) == []
