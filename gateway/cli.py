"""The ``webhook-gateway`` command line (design.md 8).

Exit status: 0 success, 1 a refused or failed operation, 2 a usage error. Messages go to stderr
and name what to fix.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from gateway import times
from gateway.config import load_config
from gateway.config.model import Config, SourceConfig
from gateway.errors import CommandError, ConfigError
from gateway.ids import ulid

DEFAULT_CONFIG = "config.yaml"


class SigningError(CommandError):
    """The source's provider cannot sign the given body (e.g. Rafiki's extra fields)."""


EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _config_path(args: argparse.Namespace) -> Path:
    return Path(args.config or os.environ.get("WEBHOOK_GATEWAY_CONFIG") or DEFAULT_CONFIG)


def _load(args: argparse.Namespace) -> Config:
    return load_config(_config_path(args))


def _report_config_error(path: Path, exc: ConfigError) -> int:
    print(f"config {path} is not valid:", file=sys.stderr)
    for problem in exc.problems:
        print(f"  {problem}", file=sys.stderr)
    return EXIT_FAILED


#: The payments service's ``status`` for each event type it sends (the marketplace answers 400
#: to any other status).
PAYMENT_TYPES = {"paid": "payment.completed", "failed": "payment.failed"}


def sample_payment(offer: str, status: str, now: float) -> dict[str, object]:
    """The body the payments service POSTs when a payment settles (design.md 1): ``status`` is
    ``paid`` (``payment.completed``, with the outgoing payment's URL) or ``failed``
    (``payment.failed``, without one); ``offerId`` is the marketplace's numeric offer id and
    ``pendingId`` a ULID, as the service makes them."""
    payment: dict[str, object] = {
        "type": PAYMENT_TYPES[status],
        "pendingId": ulid(now),
        "offerId": int(offer),
        "status": status,
    }
    if status == "paid":
        payment["outgoingPaymentId"] = f"https://wallet.example/outgoing-payments/{uuid.uuid4()}"
    payment["timestamp"] = times.rfc3339(now)
    return payment


def sample_body(source: SourceConfig, now: float, offer: str = "1", status: str = "paid") -> bytes:
    """A test payment event as the source's senders would send it (the provider's envelope)."""
    return source.verifier.sample_body(sample_payment(offer, status, now), str(uuid.uuid4()))


def _body(args: argparse.Namespace, source: SourceConfig, now: float) -> bytes:
    if args.file is None:
        return sample_body(source, now, args.offer, args.status)
    if args.file == "-":
        return sys.stdin.buffer.read()
    return Path(args.file).read_bytes()


def _source(config: Config, name: str) -> SourceConfig:
    if name not in config.sources:
        known = ", ".join(sorted(config.sources))
        raise LookupError(f"no source named {name!r} in the config (sources: {known})")
    return config.sources[name]


def _signed_headers(source: SourceConfig, body: bytes, now: float) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if source.secrets:
        try:
            headers.update(source.verifier.sign(body, source.secrets[0], now))
        except ValueError as exc:
            raise SigningError(f"cannot sign this body for source {source.name}: {exc}") from exc
    return headers


def cmd_check_config(args: argparse.Namespace) -> int:
    """Validate the config and print it with secrets redacted."""
    path = _config_path(args)
    try:
        config = load_config(path)
    except ConfigError as exc:
        return _report_config_error(path, exc)
    yaml.safe_dump(dict(config.redacted), sys.stdout, sort_keys=False, allow_unicode=True)
    print(
        f"config {path} is valid: {len(config.sources)} source(s), "
        f"{len(config.destinations)} destination(s)",
        file=sys.stderr,
    )
    return EXIT_OK


def cmd_sign(args: argparse.Namespace) -> int:
    """Print the headers the source's provider expects for a body, for curl."""
    config = _load(args)
    source = _source(config, args.source)
    now = time.time()
    body = _body(args, source, now)
    headers = _signed_headers(source, body, now)
    if args.curl:
        # One line of quoted arguments: a value may hold spaces (Rafiki's "t=..., v1=...").
        print(" ".join(f"-H {shlex.quote(f'{name}: {value}')}" for name, value in headers.items()))
    else:
        for name, value in headers.items():
            print(f"{name}: {value}")
    if args.file is None:
        print(f"\n{body.decode()}", file=sys.stderr)
    return EXIT_OK


def _default_url(config: Config, source: SourceConfig) -> str:
    host = config.server.listen.host
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - a wildcard bind: talk to loopback
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{config.server.listen.port}{source.path}"


async def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    import aiohttp

    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=headers, allow_redirects=False) as response,
    ):
        return response.status, await response.text()


def cmd_send(args: argparse.Namespace) -> int:
    """Sign and POST a test event to a running gateway; print the answer."""
    config = _load(args)
    source = _source(config, args.source)
    now = time.time()
    body = _body(args, source, now)
    url = args.url or _default_url(config, source)
    try:
        status, text = asyncio.run(_post(url, body, _signed_headers(source, body, now)))
    except OSError as exc:
        print(f"could not reach {url}: {exc}. Is the gateway running (make run)?", file=sys.stderr)
        return EXIT_FAILED
    print(f"{status} {text}")
    return EXIT_OK if status < 400 else EXIT_FAILED


def cmd_run(args: argparse.Namespace) -> int:
    """Serve ingress, admin and delivery workers until SIGTERM."""
    from gateway.logs import setup_logging
    from gateway.runner import run

    path = _config_path(args)
    try:
        config = load_config(path)
    except ConfigError as exc:
        return _report_config_error(path, exc)
    setup_logging(config.server.log_level)
    return run(config, path)


# -- admin API clients -----------------------------------------------------------------------------


class AdminFailed(CommandError):
    """The admin API refused the request or could not be reached."""


def _admin_url(args: argparse.Namespace) -> str:
    if args.admin:
        return str(args.admin).rstrip("/")
    try:
        listen = _load(args).server.admin_listen
    except (ConfigError, OSError):
        return "http://127.0.0.1:9090"
    host = "127.0.0.1" if listen.host in ("0.0.0.0", "::") else listen.host  # noqa: S104
    return f"http://{f'[{host}]' if ':' in host else host}:{listen.port}"


async def _admin_call(
    args: argparse.Namespace, method: str, path: str, payload: object | None = None
) -> object:
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
            return data
    except aiohttp.ClientError as exc:
        raise AdminFailed(f"could not reach the admin API at {url}: {exc}") from exc


def _print_table(
    rows: list[dict[str, object]], columns: Sequence[str], *, indent: str = ""
) -> None:
    cells = [[str(row.get(c) if row.get(c) is not None else "-") for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    print(indent + "  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in cells:
        print(indent + "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _query(**params: str | None) -> str:
    from urllib.parse import urlencode

    given = {k: v for k, v in params.items() if v}
    return "?" + urlencode(given) if given else ""


def _print_json(data: object) -> None:
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
            _print_table(
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
        path = f"/admin/events/{quote(args.event_id, safe='')}" + _query(source=args.source)
        event = asyncio.run(_admin_call(args, "GET", path))
        assert isinstance(event, dict)
        if args.json:
            _print_json(event)
        else:
            _print_event(event)
        return EXIT_OK
    if args.action is not None:
        print(f"unknown events action {args.action!r} (use: events show ID)", file=sys.stderr)
        return EXIT_USAGE
    path = "/admin/events" + _query(
        source=args.source,
        status=args.status,
        type=args.type,
        q=args.q,
        limit=str(args.limit),
        cursor=args.cursor,
    )
    data = asyncio.run(_admin_call(args, "GET", path))
    assert isinstance(data, dict)
    if args.json:
        _print_json(data)
        return EXIT_OK
    _print_table(
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
    path = f"/admin/events/{quote(args.event_id, safe='')}/replay" + _query(source=args.source)
    data = asyncio.run(_admin_call(args, "POST", path, payload))
    assert isinstance(data, dict)
    print(f"replayed {data['event_id']}: {_deliveries(len(data['deliveries']))}, new and due now")
    for delivery in data["deliveries"]:
        print(f"  {delivery}")
    return EXIT_OK


def cmd_dead_letters(args: argparse.Namespace) -> int:
    """List dead letters with why they died."""
    path = "/admin/dead-letters" + _query(
        destination=args.destination, limit=str(args.limit), cursor=args.cursor
    )
    data = asyncio.run(_admin_call(args, "GET", path))
    assert isinstance(data, dict)
    if args.json:
        _print_json(data)
        return EXIT_OK
    _print_table(
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
    data = asyncio.run(_admin_call(args, "POST", "/admin/dead-letters/redrive", payload))
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
    data = asyncio.run(_admin_call(args, "POST", path, {}))
    assert isinstance(data, dict)
    print(f"{data['destination']}: {_deliveries(data['retried'])} waiting out a backoff now due")
    return EXIT_OK


def _offer_id(text: str) -> str:
    """The marketplace looks an offer up by ``int(offerId)``: only digits reach a real offer."""
    if not (text.isascii() and text.isdigit()):
        raise argparse.ArgumentTypeError(f"{text!r} is not a numeric offer id")
    return text


def _page_size(text: str) -> int:
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= 500):
        raise argparse.ArgumentTypeError(f"{text!r} is not a page size from 1 to 500")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every command."""
    parser = argparse.ArgumentParser(
        prog="webhook-gateway", description="Inbound webhook gateway: verify, dedupe, forward."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument(
            "--config", help="config file (default: $WEBHOOK_GATEWAY_CONFIG or ./config.yaml)"
        )
        return p

    with_config(sub.add_parser("run", help="serve ingress, admin and delivery workers"))
    with_config(sub.add_parser("check-config", help="validate and print the effective config"))

    def with_sample(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("source", help="source name from the config")
        p.add_argument("--file", help="body file ('-' for stdin; default: a sample payment event)")
        p.add_argument(
            "--offer", type=_offer_id, default="1", help="sample's offerId (digits; default 1)"
        )
        p.add_argument(
            "--status",
            choices=sorted(PAYMENT_TYPES),
            default="paid",
            help="sample's status: paid (payment.completed) or failed (payment.failed)",
        )
        return p

    sign = with_sample(
        with_config(sub.add_parser("sign", help="print the signature headers for a body"))
    )
    sign.add_argument(
        "--curl",
        action="store_true",
        help="print them as quoted -H arguments for curl, on one line (use with eval)",
    )
    send = with_sample(with_config(sub.add_parser("send", help="sign and POST a test event")))
    send.add_argument("--url", help="gateway URL (default: the source's path on server.listen)")

    def admin_command(name: str, help_text: str) -> argparse.ArgumentParser:
        p = with_config(sub.add_parser(name, help=help_text))
        p.add_argument("--admin", help="admin API URL (default: server.admin_listen of the config)")
        return p

    events = admin_command("events", "list events, or 'events show ID' for one with attempts")
    events.add_argument("action", nargs="?", help="'show' to show one event")
    events.add_argument("event_id", nargs="?", help="event id (with show)")
    events.add_argument("--source", help="only this source")
    events.add_argument(
        "--status", choices=("queued", "delivered", "dead_lettered", "unrouted"), help="only these"
    )
    events.add_argument("--type", help="only this event type")
    events.add_argument("--q", help="an event id or subject prefix to search for")
    events.add_argument("--limit", type=_page_size, default=50, help="page size (1-500)")
    events.add_argument("--cursor", help="the next page, as a previous list printed it")
    events.add_argument("--json", action="store_true", help="print the API's JSON document")
    replay = admin_command("replay", "deliver a stored event again")
    replay.add_argument("event_id")
    replay.add_argument("--source", help="the event's source, when ids repeat across sources")
    replay.add_argument("--destination", action="append", help="only this destination (repeatable)")
    dead = admin_command("dead-letters", "list dead letters")
    dead.add_argument("--destination", help="only this destination")
    dead.add_argument("--limit", type=_page_size, default=50, help="page size (1-500)")
    dead.add_argument("--cursor", help="the next page, as a previous list printed it")
    dead.add_argument("--json", action="store_true", help="print the API's JSON document")
    redrive = admin_command("redrive", "make dead letters due again")
    redrive.add_argument("--all", action="store_true", help="every dead letter")
    redrive.add_argument(
        "ids", nargs="*", metavar="EVENT_ID", help="events whose dead deliveries to redrive"
    )
    retry = admin_command(
        "retry-now", "deliver a destination's backlog now (deliveries waiting out a backoff)"
    )
    retry.add_argument("destination", help="destination name from the config")
    return parser


COMMANDS = {
    "run": cmd_run,
    "check-config": cmd_check_config,
    "sign": cmd_sign,
    "send": cmd_send,
    "events": cmd_events,
    "replay": cmd_replay,
    "dead-letters": cmd_dead_letters,
    "redrive": cmd_redrive,
    "retry-now": cmd_retry_now,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``webhook-gateway`` and ``python -m gateway``."""
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        return _report_config_error(_config_path(args), exc)
    except (LookupError, OSError, CommandError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
