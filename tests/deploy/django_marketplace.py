"""A stand-in for the marketplace's Django app, serving the decorator of
docs/integrate-marketplace.md on a real socket (wsgiref), for the tests.

usage: python -m tests.deploy.django_marketplace PROJECT_DIR
PROJECT_DIR holds ``jobs/webhooks.py`` (the documented decorator); GATEWAY_WEBHOOK_SECRET comes
from the environment. Prints the port it listens on, then serves until killed. Every request a
view handles is appended to PROJECT_DIR/handled.jsonl.

When PROJECT_DIR also holds ``jobs/payment_status.py`` and its template (the documented finish
page), ``/payments/finished`` serves it with GATEWAY_STATUS_SECRET and GATEWAY_STATUS_URL from
the environment, and ``/payments/start/<pending_id>`` stands in for the marketplace's own
start of a payment: it keeps the payment's id in the buyer's session.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

urlpatterns: list[Any] = []  # filled in by main(); ROOT_URLCONF is this module
PROJECT: Path
#: The repository's root, where ``python -m tests.deploy.django_marketplace`` runs.
_REPO = Path(__file__).resolve().parents[2]
#: Offers the marketplace knows; any other answers 404, as the real view does.
OFFERS = {"42", "43"}


def _record(request: Any, view: str) -> None:
    entry = {"view": view, "webhook-id": request.headers.get("webhook-id"), "body": None}
    entry["body"] = request.body.decode()
    with (PROJECT / "handled.jsonl").open("a") as out:
        out.write(json.dumps(entry) + "\n")


def payment_webhook(request: Any) -> Any:
    """The marketplace's payments view, as it is today: type, pendingId, offerId, status."""
    from django.http import JsonResponse

    try:
        data = json.loads(request.body)
    except ValueError:
        return JsonResponse({"error": "invalid JSON"}, status=400)
    if not all(key in data for key in ("type", "pendingId", "offerId", "status")):
        return JsonResponse({"error": "missing field"}, status=400)
    if str(data["offerId"]) not in OFFERS:
        return JsonResponse({"error": "unknown offer"}, status=404)
    _record(request, "payments")
    return JsonResponse({"ok": True})


def rafiki_webhook(request: Any) -> Any:
    """The marketplace's Rafiki view: an {id, type, data} event."""
    from django.http import JsonResponse

    data = json.loads(request.body)
    if not {"id", "type", "data"} <= set(data):
        return JsonResponse({"error": "missing field"}, status=400)
    _record(request, "rafiki")
    return JsonResponse({"ok": True})


def start_payment(request: Any, pending_id: str) -> Any:
    """What the marketplace does when a buyer starts paying: it keeps the pending id."""
    from django.http import JsonResponse

    request.session["pending_payment_id"] = pending_id
    return JsonResponse({"started": pending_id})


@contextlib.asynccontextmanager
async def running(project: Path, env: dict[str, str]) -> AsyncIterator[str]:
    """This app serving ``project`` in a process of its own, with ``env`` (PATH is added):
    its base URL, until the block ends."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.deploy.django_marketplace",
        str(project),
        cwd=_REPO,
        env={**env, "PATH": "/usr/bin:/bin"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None and process.stderr is not None
        async with asyncio.timeout(30):
            line = await process.stdout.readline()
        assert line.strip().isdigit(), (line + await process.stderr.read()).decode()
        yield f"http://127.0.0.1:{int(line)}"
    finally:
        process.kill()
        await process.wait()


def main() -> int:
    """Configure Django in-process, decorate the views, serve on a free port."""
    global PROJECT
    PROJECT = Path(sys.argv[1])
    sys.path.insert(0, str(PROJECT))
    import django
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        SECRET_KEY="django-insecure-test-only",
        ALLOWED_HOSTS=["127.0.0.1", "localhost"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=["django.contrib.staticfiles"],
        MIDDLEWARE=[
            "django.middleware.security.SecurityMiddleware",
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.common.CommonMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
        ],
        # Sessions in a signed cookie: no database for the stand-in.
        SESSION_ENGINE="django.contrib.sessions.backends.signed_cookies",
        STATIC_URL="/static/",
        TEMPLATES=[
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "DIRS": [str(PROJECT / "templates")],
            }
        ],
        CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
        GATEWAY_WEBHOOK_SECRET=os.environ["GATEWAY_WEBHOOK_SECRET"],
        GATEWAY_STATUS_SECRET=os.environ.get("GATEWAY_STATUS_SECRET", ""),
        GATEWAY_STATUS_URL=os.environ.get("GATEWAY_STATUS_URL", ""),
    )
    django.setup()
    from django.core.wsgi import get_wsgi_application
    from django.urls import path
    from jobs.webhooks import from_gateway  # the documented decorator

    urlpatterns.extend(
        [
            path("api/webhooks/payments", from_gateway(payment_webhook)),
            path("api/webhooks/rafiki", from_gateway(rafiki_webhook)),
        ]
    )
    if (PROJECT / "jobs" / "payment_status.py").exists():
        from jobs.payment_status import payment_finished  # the documented finish page

        urlpatterns.extend(
            [
                path("payments/start/<str:pending_id>", start_payment),
                path("payments/finished", payment_finished),
            ]
        )
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = make_server("127.0.0.1", 0, get_wsgi_application(), handler_class=Quiet)
    print(server.server_port, flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
