"""A stand-in marketplace for trying the gateway locally: verifies and prints what arrives.

It verifies the gateway's signature with the ``standardwebhooks`` package, as the Django
marketplace does, and answers 200 (or 401 when the signature is wrong).
"""

from __future__ import annotations

import json
import os
import sys

from aiohttp import web
from standardwebhooks import Webhook, WebhookVerificationError


async def receive(request: web.Request) -> web.Response:
    """Verify one delivery and print its CloudEvents attributes and body."""
    body = await request.read()
    try:
        Webhook(os.environ["MARKETPLACE_WEBHOOK_SECRET"]).verify(body, dict(request.headers))
    except WebhookVerificationError as exc:
        print(f"REFUSED (signature): {exc}", flush=True)
        return web.json_response({"error": "invalid signature"}, status=401)
    attributes = {k: v for k, v in request.headers.items() if k.lower().startswith("ce-")}
    print(
        json.dumps(
            {
                "webhook-id": request.headers.get("webhook-id"),
                "attempt": request.headers.get("X-Gateway-Attempt"),
                **attributes,
                "body": body.decode("utf-8", "replace"),
            }
        ),
        flush=True,
    )
    return web.json_response({"ok": True})


def main() -> int:
    """Serve ``POST /api/webhooks/payments`` on 127.0.0.1:8000."""
    if "MARKETPLACE_WEBHOOK_SECRET" not in os.environ:
        print("set MARKETPLACE_WEBHOOK_SECRET (. ./.env.dev)", file=sys.stderr)
        return 2
    app = web.Application()
    app.router.add_post("/api/webhooks/payments", receive)
    web.run_app(app, host="127.0.0.1", port=8000, print=lambda _: print("marketplace on :8000"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
