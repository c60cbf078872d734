"""Test helpers: config builders, the fake marketplace, senders that sign with standardwebhooks."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from aiohttp import web
from standardwebhooks import Webhook

from gateway.config import Config, load_config_text
from gateway.store import EventView, Store
from tests.waiting import TIMEOUT, eventually, gave_up

T = TypeVar("T")

#: ``make soak`` sets WEBHOOK_GATEWAY_SOAK=1: the fault scenarios run their long versions and the
#: property tests ten times the examples. ``make test`` runs the short ones, never none.
SOAK = os.environ.get("WEBHOOK_GATEWAY_SOAK", "") not in ("", "0")

# Test-only secrets (fixed so failures are reproducible).
PAYMENTS_SECRET = "whsec_" + base64.b64encode(b"payments-test-secret-0123456789ab").decode()
OLD_PAYMENTS_SECRET = "whsec_" + base64.b64encode(b"payments-old-secret-0123456789abc").decode()
MARKETPLACE_SECRET = "whsec_" + base64.b64encode(b"marketplace-test-secret-012345678").decode()
ADMIN_TOKEN = "test-admin-token"
#: The admin API's bearer header for ``ADMIN_TOKEN``.
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
ENV = {
    "PAYMENTS_WEBHOOK_SECRET": PAYMENTS_SECRET,
    "MARKETPLACE_WEBHOOK_SECRET": MARKETPLACE_SECRET,
    "GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN,
    # config.yaml's status block (the buyer's live status, design.md 5.10).
    "STATUS_TOKEN_SECRET": "status-test-secret-0123456789abcdef0123456789",
}


def payments_source(**overrides: Any) -> dict[str, Any]:
    """The payments source of design.md 6, with overrides."""
    source: dict[str, Any] = {
        "path": "/hooks/payments",
        "provider": "standard-webhooks",
        "secrets": ["${PAYMENTS_WEBHOOK_SECRET}"],
        "tolerance": "5m",
        "allow_ips": ["127.0.0.1/32", "::1/128", "10.0.0.0/8"],
        "dedupe": {"key": "header:webhook-id", "window": "72h"},
        "event": {"type": "/type", "subject": "/offerId", "time": "/timestamp"},
        "require": ["/type", "/pendingId", "/offerId", "/status"],
        # One payment per pendingId, found by it or by the offer (design.md 5.7).
        "payment": {
            "key": "/pendingId",
            "reference": "/offerId",
            "states": {"payment.completed": "completed", "payment.failed": "failed"},
        },
        "delivery": "queued",
        "routes": [{"destination": "marketplace", "types": ["payment.*"]}],
    }
    source.update(overrides)
    return source


def config_dict(
    destination_url: str,
    *,
    store_url: str,
    sources: dict[str, Any] | None = None,
    destination: dict[str, Any] | None = None,
    server: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A whole config as plain data: one marketplace destination and the payments source."""
    dest: dict[str, Any] = {
        "url": destination_url,
        "signing_secret": "${MARKETPLACE_WEBHOOK_SECRET}",
        "timeout": "5s",
        "retry": {"schedule": ["1s", "2s"], "max_age": "1h", "jitter": 0},
    }
    dest.update(destination or {})
    return {
        "server": {"listen": "127.0.0.1:0", "admin_listen": "127.0.0.1:0", **(server or {})},
        "store": {"url": store_url},
        "admin": {"token": "${GATEWAY_ADMIN_TOKEN}"},
        "destinations": {"marketplace": dest},
        "sources": sources or {"payments": payments_source()},
    }


def build_config(data: dict[str, Any], env: dict[str, str] | None = None) -> Config:
    """Load a config from plain data through the real YAML loader."""
    return load_config_text(yaml.safe_dump(data), environ={**ENV, **(env or {})})


def payment_body(**fields: Any) -> bytes:
    """A payments-service event body, as the Node service would send it."""
    event = {
        "type": "payment.completed",
        "pendingId": f"pending-{uuid.uuid4().hex[:10]}",
        "offerId": "offer-42",
        "status": "completed",
        "outgoingPaymentId": f"https://wallet.example/op/{uuid.uuid4()}",
        "timestamp": "2026-11-26T10:00:00.000Z",
    }
    event.update(fields)
    return json.dumps(event).encode()


def sign_payment(
    body: bytes,
    *,
    msg_id: str | None = None,
    secret: str = PAYMENTS_SECRET,
    at: float | None = None,
) -> dict[str, str]:
    """Headers the payments service puts on ``body``, signed by the standardwebhooks library."""
    from datetime import UTC, datetime

    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    moment = datetime.fromtimestamp(time.time() if at is None else at, tz=UTC)
    signature = Webhook(secret).sign(msg_id, moment, body.decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": signature,
        "Content-Type": "application/json",
    }


@dataclass
class Received:
    """One request the fake marketplace received."""

    body: bytes
    headers: dict[str, str]
    verified: bool


def signed_by_gateway(body: bytes, headers: dict[str, str]) -> bool:
    """Whether a delivery carries the gateway's signature, checked as the marketplace checks
    it (the standardwebhooks library with the destination's signing secret)."""
    try:
        Webhook(MARKETPLACE_SECRET).verify(body, headers)
    except Exception:
        return False
    return True


@dataclass
class Marketplace:
    """The marketplace backend: verifies the gateway's signature with standardwebhooks."""

    status: int = 200
    delay: float = 0.0
    answer: bytes = b'{"ok":true}'
    received: list[Received] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = dict(request.headers)
        self.received.append(Received(body, headers, signed_by_gateway(body, headers)))
        self.arrived.set()
        if self.delay:
            await asyncio.sleep(self.delay)
        return web.Response(status=self.status, body=self.answer, content_type="application/json")

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/api/webhooks/payments", self.handle)
        return app

    async def wait_until(
        self,
        check: Callable[[list[Received]], T],
        what: str,
        *,
        until: Callable[[T], object] = bool,
        timeout: float = TIMEOUT,
    ) -> T:
        """Wait until ``check(received)`` satisfies ``until`` (that value), woken by each
        arrival rather than polling; fail as ``eventually`` does after ``timeout`` seconds."""
        bound = asyncio.timeout(timeout)
        try:
            async with bound:
                while not until(value := check(self.received)):
                    self.arrived.clear()
                    await self.arrived.wait()
        except TimeoutError:
            if not bound.expired():
                raise
            ids = [r.headers.get("webhook-id") for r in self.received]
            raise gave_up(what, timeout, value, f"webhook-ids received: {ids[:10]}") from None
        return value

    async def wait_for(self, count: int, timeout: float = TIMEOUT) -> None:
        """Wait until ``count`` requests have arrived (bounded, for queued delivery)."""
        await self.wait_until(
            len,
            f"{count} requests at the marketplace",
            until=lambda n: n >= count,
            timeout=timeout,
        )


def sqlite_url(tmp_path: Path) -> str:
    """A SQLite store URL in the test's temporary directory."""
    return f"sqlite:///{tmp_path / 'gateway.db'}"


#: Node.js senders (tests/node): real npm packages playing the payments service and Rafiki.
NODE_DIR = Path(__file__).resolve().parent / "node"


async def run_node(
    script: str, *args: str, timeout: float = 60.0, env: dict[str, str] | None = None
) -> Any:
    """Run ``tests/node/<script>`` with Node.js, without blocking the loop; its JSON output.

    ``env`` adds variables to the inherited environment.

    ``make test`` installs Node.js and the packages (``npm ci`` in tests/node); a missing one
    fails the test with what to run, never skips it.
    """
    import os
    import shutil

    node = shutil.which("node")
    assert node, "Node.js is not installed: run make test (it installs nodejs and npm)"
    assert (NODE_DIR / "node_modules").is_dir(), "npm packages missing: run npm ci in tests/node"
    process = await asyncio.create_subprocess_exec(
        node,
        str(NODE_DIR / script),
        *args,
        cwd=NODE_DIR,
        env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode == 0, err.decode(errors="replace")
    return json.loads(out)


async def delivered_once(store: Store, event_id: str, *, attempts: int = 1) -> EventView:
    """Wait until every delivery of ``event_id`` is delivered, then show that nothing more
    of it can ever be sent: each delivery took exactly ``attempts`` attempts, and no delivery
    in the store is due or leased (a duplicate enqueued, a retry or a replay would be).

    This is how a test proves that something did *not* arrive, without sleeping first."""

    async def delivered() -> EventView | None:
        view = await store.get_event(event_id)
        if view is None or not view.deliveries:
            return None
        return view if all(d.state == "delivered" for d in view.deliveries) else None

    view = await eventually(delivered, f"every delivery of {event_id} delivered")
    assert view is not None
    assert [len(d.attempts) for d in view.deliveries] == [attempts] * len(view.deliveries), view
    depth = await store.queue_depth()
    pending = {key: n for key, n in depth.items() if key[1] in ("due", "leased") and n}
    assert not pending, f"deliveries still to be sent: {pending}"
    return view


async def admin_json(admin: Any, path: str) -> Any:
    """GET ``path`` from an admin API test client with the token: its JSON, ``None`` unless
    it answered 200."""
    response = await admin.get(path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    return await response.json() if response.status == 200 else None


async def wait_admin(admin: Any, path: str, until: Callable[[Any], object], what: str) -> Any:
    """Wait until the admin API's JSON at ``path`` satisfies ``until``; that JSON."""
    return await eventually(
        lambda: admin_json(admin, path), what, until=lambda data: data is not None and until(data)
    )


async def wait_status(admin: Any, event_id: str, status: str) -> Any:
    """Wait until the admin API shows event ``event_id`` with ``status``; its JSON."""
    return await wait_admin(
        admin,
        f"/admin/events/{event_id}",
        lambda data: data["status"] == status,
        f"event {event_id} to be {status}",
    )
