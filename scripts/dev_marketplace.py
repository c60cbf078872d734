"""A stand-in marketplace for trying the gateway locally: verifies and prints what arrives.

It serves every path the docs and configs deliver to (payments events and Rafiki's), verifies
the gateway's signature on each with the ``standardwebhooks`` package, as the Django
marketplace does, and answers 200 (or 401 when the signature is wrong). The port is
``MARKETPLACE_PORT`` (default 8000), on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import sys

from aiohttp import web
from standardwebhooks import Webhook, WebhookVerificationError

#: Where the gateway delivers: config.yaml's destination (payments events) and the Rafiki
#: destination of docs/integrate-marketplace.md. Each is verified the same way.
PATHS = ("/api/webhooks/payments", "/api/webhooks/rafiki")
DEFAULT_PORT = 8000


async def receive(request: web.Request) -> web.Response:
    """Verify one delivery and print its path, CloudEvents attributes and body."""
    body = await request.read()
    try:
        Webhook(os.environ["MARKETPLACE_WEBHOOK_SECRET"]).verify(body, dict(request.headers))
    except WebhookVerificationError as exc:
        print(f"REFUSED (signature) {request.path}: {exc}", flush=True)
        return web.json_response({"error": "invalid signature"}, status=401)
    attributes = {k: v for k, v in request.headers.items() if k.lower().startswith("ce-")}
    print(
        json.dumps(
            {
                "path": request.path,
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
    """Serve ``POST`` on each of ``PATHS`` at 127.0.0.1:$MARKETPLACE_PORT (default 8000)."""
    if "MARKETPLACE_WEBHOOK_SECRET" not in os.environ:
        print("set MARKETPLACE_WEBHOOK_SECRET (. ./.env.dev)", file=sys.stderr)
        return 2
    try:
        port = int(os.environ.get("MARKETPLACE_PORT", DEFAULT_PORT))
    except ValueError:
        print("MARKETPLACE_PORT must be a port number", file=sys.stderr)
        return 2
    app = web.Application()
    for path in PATHS:
        app.router.add_post(path, receive)
    served = ", ".join(f"POST {path}" for path in PATHS)
    web.run_app(
        app,
        host="127.0.0.1",
        port=port,
        print=lambda _: print(f"marketplace on 127.0.0.1:{port}: {served}", flush=True),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
