"""Commands that talk to a running gateway's admin API (``--admin URL``, the token from
``$GATEWAY_ADMIN_TOKEN``): events, replay, dead letters, redrive, retry-now, payments."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from gateway.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, load_args
from gateway.errors import CommandError, ConfigError

# -- admin API clients -----------------------------------------------------------------------------


class AdminFailed(CommandError):
    """The admin API refused the request or could not be reached."""


def _admin_url(args: argparse.Namespace) -> str:
    if args.admin:
        return str(args.admin).rstrip("/")
    try:
        listen = load_args(args).server.admin_listen
    except (ConfigError, OSError):
        return "http://127.0.0.1:9090"
    host = "127.0.0.1" if listen.host in ("0.0.0.0", "::") else listen.host  # noqa: S104
    return f"http://{f'[{host}]' if ':' in host else host}:{listen.port}"


async def admin_call(
    args: argparse.Namespace,
    method: str,
    path: str,
    payload: object | None = None,
    *,
    raw: bool = False,
) -> object:
    """Call the admin API; its JSON answer (``raw``: its text), or ``AdminFailed`` saying
    why not."""
    import aiohttp

    token = os.environ.get("GATEWAY_ADMIN_TOKEN")
    if not token:
        raise AdminFailed("set GATEWAY_ADMIN_TOKEN to the gateway's admin.token")
    url = _admin_url(args) + path
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                method, url, json=payload, headers={"Authorization": f"Bearer {token}"}
            ) as response,
        ):
            text = await response.text()
            try:
                data = json.loads(text)
            except ValueError:
                data = None
            if response.status >= 400:
                message = data.get("message") if isinstance(data, dict) else text[:200]
                if response.status == 401:
                    message = (
                        f"{message} (GATEWAY_ADMIN_TOKEN must be the gateway's admin.token;"
                        " for make run it is in .env.dev)"
                    )
                raise AdminFailed(f"{response.status}: {message}")
            return text if raw else data
    except aiohttp.ClientError as exc:
        raise AdminFailed(f"could not reach the admin API at {url}: {exc}") from exc


def print_table(rows: list[dict[str, object]], columns: Sequence[str], *, indent: str = "") -> None:
    cells = [[str(row.get(c) if row.get(c) is not None else "-") for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    print(indent + "  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in cells:
        print(indent + "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def query(**params: str | None) -> str:
    from urllib.parse import urlencode

    given = {k: v for k, v in params.items() if v}
    return "?" + urlencode(given) if given else ""


def print_json(data: object) -> None:
    """``--json``: the admin API's document, as one JSON document on stdout (for scripts)."""
    print(json.dumps(data, indent=2, ensure_ascii=False))


def _next_page(data: dict[str, Any]) -> None:
    if data.get("next_cursor"):
        print(f"(more: --cursor {data['next_cursor']})", file=sys.stderr)


def _body_text(event: dict[str, Any]) -> str:
    """The stored body as people read it: JSON pretty-printed, other text as it is, bytes
    that are not UTF-8 as the base64 the API gives."""
    if "body" not in event:
        return f"(not UTF-8 text; base64) {event.get('body_base64', '')}"
    text = str(event["body"])
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text


def _print_event(event: dict[str, Any]) -> None:
    """One event for people: its fields, headers and body, then each delivery with every
    attempt."""
    for name in ("id", "source", "type", "subject", "status", "received_at", "request_id"):
        print(f"{name + ':':<12} {event.get(name) if event.get(name) is not None else '-'}")
    for name, value in event.get("headers", []):
        print(f"{'header:':<12} {name}: {value}")
    print("\nbody:")
    for line in _body_text(event).splitlines():
        print(f"  {line}")
    for delivery in event.get("deliveries", []):
        print(
            f"\ndelivery {delivery['id']} to {delivery['destination']}: {delivery['state']}"
            f" after {delivery['attempts_made']} attempt(s)"
        )
        if delivery.get("next_attempt_at"):
            print(f"  next attempt at {delivery['next_attempt_at']}")
        if delivery.get("dead_reason"):
            print(f"  dead: {delivery['dead_reason']}")
        if delivery["attempts"]:
            print_table(
                delivery["attempts"],
                ("number", "started_at", "status", "latency_ms", "error"),
                indent="  ",
            )


def cmd_events(args: argparse.Namespace) -> int:
    """List events, or show one with every attempt (``events show ID``)."""
    from urllib.parse import quote

    if args.action == "show":
        if not args.event_id:
            print("usage: webhook-gateway events show ID", file=sys.stderr)
            return EXIT_USAGE
        path = f"/admin/events/{quote(args.event_id, safe='')}" + query(source=args.source)
        event = asyncio.run(admin_call(args, "GET", path))
        assert isinstance(event, dict)
        if args.json:
            print_json(event)
        else:
            _print_event(event)
        return EXIT_OK
    if args.action is not None:
        print(f"unknown events action {args.action!r} (use: events show ID)", file=sys.stderr)
        return EXIT_USAGE
    path = "/admin/events" + query(
        source=args.source,
        status=args.status,
        type=args.type,
        q=args.q,
        limit=str(args.limit),
        cursor=args.cursor,
    )
    data = asyncio.run(admin_call(args, "GET", path))
    assert isinstance(data, dict)
    if args.json:
        print_json(data)
        return EXIT_OK
    print_table(
        data["events"],
        ("id", "source", "type", "subject", "status", "attempts", "received_at"),
    )
    _next_page(data)
    return EXIT_OK


def _deliveries(count: int) -> str:
    return f"{count} deliver{'y' if count == 1 else 'ies'}"


def cmd_replay(args: argparse.Namespace) -> int:
    """Deliver a stored event again to its routes (or ``--destination``)."""
    from urllib.parse import quote

    payload = {"destinations": args.destination} if args.destination else {}
    path = f"/admin/events/{quote(args.event_id, safe='')}/replay" + query(source=args.source)
    data = asyncio.run(admin_call(args, "POST", path, payload))
    assert isinstance(data, dict)
    print(f"replayed {data['event_id']}: {_deliveries(len(data['deliveries']))}, new and due now")
    for delivery in data["deliveries"]:
        print(f"  {delivery}")
    return EXIT_OK


def cmd_dead_letters(args: argparse.Namespace) -> int:
    """List dead letters with why they died."""
    path = "/admin/dead-letters" + query(
        destination=args.destination, limit=str(args.limit), cursor=args.cursor
    )
    data = asyncio.run(admin_call(args, "GET", path))
    assert isinstance(data, dict)
    if args.json:
        print_json(data)
        return EXIT_OK
    print_table(
        data["dead_letters"],
        ("delivery_id", "event_id", "destination", "attempts_made", "dead_at", "reason"),
    )
    _next_page(data)
    return EXIT_OK


def cmd_redrive(args: argparse.Namespace) -> int:
    """Make dead letters due again: ``--all``, or those of the given event ids (a dead
    letter's delivery id works too); an id that names no dead letter fails the command."""
    if args.all == bool(args.ids):
        print("usage: webhook-gateway redrive (--all | EVENT_ID...)", file=sys.stderr)
        return EXIT_USAGE
    payload = {"all": True} if args.all else {"ids": args.ids}
    data = asyncio.run(admin_call(args, "POST", "/admin/dead-letters/redrive", payload))
    assert isinstance(data, dict)
    print(f"redriven: {_deliveries(data['redriven'])} due again now")
    unmatched = data.get("unmatched") or []
    for given in unmatched:
        print(f"error: no dead letter for {given!r} (not an event or delivery id here,"
              " or nothing of it is dead)", file=sys.stderr)  # fmt: skip
    return EXIT_FAILED if unmatched else EXIT_OK


def cmd_retry_now(args: argparse.Namespace) -> int:
    """Deliver a destination's backlog now instead of at each delivery's next retry."""
    from urllib.parse import quote

    path = f"/admin/destinations/{quote(args.destination, safe='')}/retry-now"
    data = asyncio.run(admin_call(args, "POST", path, {}))
    assert isinstance(data, dict)
    print(f"{data['destination']}: {_deliveries(data['retried'])} waiting out a backoff now due")
    return EXIT_OK


def _amount(payment: dict[str, Any]) -> str | None:
    amount = payment.get("amount")
    return None if not amount else f"{amount['decimal']} {amount['currency']}"


def _payment_rows(payments: list[dict[str, Any]]) -> list[dict[str, object]]:
    return [
        {
            **p,
            "amount": _amount(p),
            "confirmed": "yes" if p["delivered"] else "no",
        }
        for p in payments
    ]


def cmd_payments(args: argparse.Namespace) -> int:
    """List payments, or show one with its events (``payments show SOURCE KEY``)."""
    from urllib.parse import quote

    if args.action == "show":
        if not args.payment_source or not args.key:
            print("usage: webhook-gateway payments show SOURCE KEY", file=sys.stderr)
            return EXIT_USAGE
        path = f"/admin/payments/{quote(args.payment_source, safe='')}/{quote(args.key, safe='')}"
        data = asyncio.run(admin_call(args, "GET", path))
        assert isinstance(data, dict)
        if args.json:
            print_json(data)
        else:
            _print_payment(data)
        return EXIT_OK
    if args.action is not None:
        print(f"unknown payments action {args.action!r} (use: payments show SOURCE KEY)",
              file=sys.stderr)  # fmt: skip
        return EXIT_USAGE
    path = "/admin/payments" + query(
        source=args.source,
        state=args.state,
        q=args.q,
        attention=args.attention,
        limit=str(args.limit),
        cursor=args.cursor,
    )
    data = asyncio.run(admin_call(args, "GET", path))
    assert isinstance(data, dict)
    if args.json:
        print_json(data)
        return EXIT_OK
    print_table(
        _payment_rows(data["payments"]),
        ("source", "key", "reference", "state", "amount", "confirmed", "attention", "updated_at"),
    )
    _next_page(data)
    return EXIT_OK


def _print_payment(data: dict[str, Any]) -> None:
    """One payment for people: where it stands, then each event with its mark and status."""
    payment = data["payment"]
    shown = {**payment, "amount": _amount(payment), "confirmed": payment["delivered"]}
    for name in ("source", "key", "reference", "state", "amount", "confirmed", "attention",
                 "first_seen", "updated_at"):  # fmt: skip
        value = shown.get(name)
        print(f"{name + ':':<12} {value if value is not None else '-'}")
    print()
    print_table(
        [{**e, "deliveries": len(e["deliveries"]), "mark": e.get("mark")} for e in data["events"]],
        ("id", "type", "received_at", "status", "origin", "mark", "deliveries"),
    )
