"""docs/integrate-marketplace.md, the buyer's page: its Django finish page (the token minting
and the template, read from the page) served by a real Django, and the stream it links to
opened at a real gateway, which reports the payment until it is final and confirmed."""

from __future__ import annotations

import html
import re
import time
import uuid

import aiohttp
import pytest

from gateway.app import create_app
from gateway.status.routes import StatusTiming
from harness.redis_server import free_port
from tests.deploy.django_marketplace import running
from tests.deploy.files import doc_code_block
from tests.status_support import STATUS_SECRET, status_block, ws_rest, ws_until
from tests.support import (
    MARKETPLACE_SECRET,
    build_config,
    config_dict,
    payment_body,
    sign_payment,
    sqlite_url,
)

PAGE = "integrate-marketplace.md"


@pytest.fixture
async def finish_page(tmp_path):
    """The documented finish page in a Django project on a free port, pointing at a gateway
    that will listen on a port chosen now: (Django's base URL, the gateway's port)."""
    project = tmp_path / "marketplace"
    for name in (
        "jobs/webhooks.py",
        "jobs/payment_status.py",
        "templates/jobs/payment_finished.html",
    ):
        path = project / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(doc_code_block(PAGE, name))
    (project / "jobs" / "__init__.py").write_text("")
    gateway_port = free_port()
    env = {
        "GATEWAY_WEBHOOK_SECRET": MARKETPLACE_SECRET,
        "GATEWAY_STATUS_SECRET": STATUS_SECRET,
        "GATEWAY_STATUS_URL": f"http://127.0.0.1:{gateway_port}",
    }
    async with running(project, env) as base_url:
        yield base_url, gateway_port


async def test_the_finish_page_links_to_a_stream_of_the_buyers_own_payment(
    finish_page, marketplace, aiohttp_server, tmp_path
):
    django, gateway_port = finish_page
    market, server = marketplace
    market.delay = 0.5
    data = config_dict(
        str(server.make_url("/api/webhooks/payments")), store_url=sqlite_url(tmp_path)
    )
    data["status"] = status_block(allow_origins=[django])
    timing = StatusTiming(poll_interval=0.05)
    gateway = await aiohttp_server(
        create_app(build_config(data), status_timing=timing), port=gateway_port
    )
    pending = f"01J{uuid.uuid4().hex[:23].upper()}"
    jar = aiohttp.CookieJar(unsafe=True)  # keeps the session cookie of 127.0.0.1
    async with aiohttp.ClientSession(cookie_jar=jar) as buyer:
        async with buyer.get(f"{django}/payments/finished") as response:
            assert response.status == 404  # no payment started: no token for anything
        async with buyer.get(f"{django}/payments/start/{pending}") as response:
            assert response.status == 200
        minted_at = time.time()
        async with buyer.get(f"{django}/payments/finished") as response:
            assert response.status == 200, await response.text()
            page = await response.text()
        assert '<script src="/static/jobs/payment-status.js" defer></script>' in page
        found = re.search(r'data-status-url="([^"]+)"', page)
        assert found is not None, page
        url = html.unescape(found[1])
        base = f"http://127.0.0.1:{gateway_port}/status/payments/{pending}?token=v1."
        assert url.startswith(base), url
        expiry = int(url.split("token=")[1].split(".")[1])
        assert minted_at + 900 - 2 <= expiry <= time.time() + 900 + 1

        ws_url = url.replace("http://", "ws://", 1)
        async with buyer.ws_connect(ws_url, origin=django) as ws:
            [first] = await ws_until(ws, lambda m: True)
            assert (first["key"], first["state"]) == (pending, "unknown")
            body = payment_body(pendingId=pending)
            async with buyer.post(
                str(gateway.make_url("/hooks/payments")), data=body, headers=sign_payment(body)
            ) as response:
                assert response.status == 202
            seen = await ws_until(ws, lambda m: m["confirmed"])
            assert [(m["state"], m["confirmed"]) for m in seen] == [
                ("completed", False),
                ("completed", True),
            ]
            assert await ws_rest(ws) == []
            assert ws.close_code == 1000
        # The page's token opens that payment only.
        other = url.replace(f"/payments/{pending}?", "/payments/someone-else?")
        async with buyer.get(other, headers={"Origin": django}) as response:
            assert response.status == 401
