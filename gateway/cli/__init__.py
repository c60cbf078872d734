"""The ``webhook-gateway`` command line (design.md 8).

Exit status: 0 success, 1 a refused or failed operation, 2 a usage error. Messages go to stderr
and name what to fix. ``local`` holds the commands that need no running gateway, ``admin`` those
that talk to one's admin API; this module parses the arguments and dispatches.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from gateway.analytics.report import BUCKETS
from gateway.cli.admin import (
    cmd_dead_letters,
    cmd_events,
    cmd_payments,
    cmd_redrive,
    cmd_replay,
    cmd_retry_now,
)
from gateway.cli.analytics import cmd_analytics
from gateway.cli.common import EXIT_FAILED, config_path, report_config_error
from gateway.cli.local import PAYMENT_TYPES, cmd_check_config, cmd_run, cmd_send, cmd_sign
from gateway.cli.reconcile import cmd_reconcile
from gateway.cli.status import cmd_status_token, ttl
from gateway.errors import CommandError, ConfigError
from gateway.payments.states import STATES
from gateway.store.records import ATTENTIONS, EVENT_STATUSES


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
    events.add_argument("--status", choices=EVENT_STATUSES, help="only these")
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
    payments = admin_command(
        "payments", "list payments, or 'payments show SOURCE KEY' for one with its events"
    )
    payments.add_argument("action", nargs="?", help="'show' to show one payment")
    payments.add_argument("payment_source", nargs="?", metavar="SOURCE", help="(with show)")
    payments.add_argument("key", nargs="?", metavar="KEY", help="the payment's key (with show)")
    payments.add_argument("--source", help="only this source")
    payments.add_argument("--state", choices=STATES, help="only payments in this state")
    payments.add_argument("--q", help="a payment key or reference prefix to search for")
    payments.add_argument("--attention", choices=ATTENTIONS, help="only payments needing it")
    payments.add_argument("--limit", type=_page_size, default=50, help="page size (1-500)")
    payments.add_argument("--cursor", help="the next page, as a previous list printed it")
    payments.add_argument("--json", action="store_true", help="print the API's JSON document")
    reconcile = admin_command(
        "reconcile",
        "reconcile SOURCE with its provider now, or '--report' on the runs kept",
    )
    reconcile.add_argument("source", nargs="?", metavar="SOURCE", help="a source with reconcile")
    reconcile.add_argument(
        "--dry-run", action="store_true", help="compare and report; recover and flag nothing"
    )
    reconcile.add_argument("--report", action="store_true", help="the runs of every source")
    reconcile.add_argument("--since", default="24h", help="with --report: how far back (24h)")
    reconcile.add_argument("--json", action="store_true", help="print the API's JSON document")
    reconcile.add_argument("--csv", action="store_true", help="CSV: the items, or the runs")
    analytics = admin_command(
        "analytics", "payments by state, money per currency, success and delivery, per bucket"
    )
    analytics.add_argument(
        "--from", dest="start", help="RFC 3339 time, or a duration back from now (default 7d)"
    )
    analytics.add_argument("--to", dest="end", help="RFC 3339 time, or a duration (default now)")
    analytics.add_argument("--bucket", choices=BUCKETS, help="default: by the range")
    analytics.add_argument("--source", help="only this source")
    analytics.add_argument("--json", action="store_true", help="print the API's JSON document")
    analytics.add_argument("--csv", action="store_true", help="print the API's CSV")
    token = with_config(
        sub.add_parser("status-token", help="mint a buyer's status token for one payment")
    )
    token.add_argument("source", metavar="SOURCE", help="a source that keeps payments")
    token.add_argument("key", metavar="KEY", help="the payment's key")
    token.add_argument(
        "--ttl", type=ttl, default=15 * 60.0, help="how long it is valid (default 15m)"
    )
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
    "payments": cmd_payments,
    "reconcile": cmd_reconcile,
    "analytics": cmd_analytics,
    "status-token": cmd_status_token,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``webhook-gateway`` and ``python -m gateway``."""
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        return report_config_error(config_path(args), exc)
    except (LookupError, OSError, CommandError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
