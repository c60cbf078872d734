"""``webhook-gateway analytics``: payments by state, money per currency, success and delivery
per bucket (design.md 5.9, 8), from a running gateway's admin API.

``--from`` and ``--to`` take an RFC 3339 time or a duration back from now (``7d``, ``24h``);
``--bucket`` is ``hour``, ``day`` or ``week`` (the API picks one by the range when it is not
given); ``--csv`` prints the API's CSV, ``--json`` its document.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

from gateway import times
from gateway.cli.admin import admin_call, print_json, print_table, query
from gateway.cli.common import EXIT_OK, EXIT_USAGE
from gateway.config.reader import parse_duration

COLUMNS = ("start", "first_seen", "completed", "failed", "expired", "cancelled", "success",
           "ttc_p50_s", "delivered", "dead", "completed_amounts")  # fmt: skip


def _when(text: str | None, now: float) -> str | None:
    """An RFC 3339 time as given, or a duration back from ``now`` as one."""
    if text is None:
        return None
    try:
        times.parse_rfc3339(text)
    except ValueError:
        return times.rfc3339(now - parse_duration(text))
    return text


def _row(start: str, b: dict[str, Any]) -> dict[str, object]:
    ratio, ttc = b["success_ratio"], b["time_to_completion"]
    amounts = ", ".join(f"{value} {currency}" for currency, value in b["completed_amounts"].items())
    return {
        "start": start,
        **b["payments"],
        "success": None if ratio is None else f"{ratio:.1%}",
        "ttc_p50_s": None if ttc is None else ttc["p50"],
        "delivered": b["deliveries"]["delivered"],
        "dead": b["deliveries"]["dead_lettered"],
        "completed_amounts": amounts or None,
    }


def cmd_analytics(args: argparse.Namespace) -> int:
    """Print the analytics of a range: a table of buckets and the totals, or CSV, or JSON."""
    if args.json and args.csv:
        print("usage: --json and --csv do not go together", file=sys.stderr)
        return EXIT_USAGE
    now = time.time()
    try:
        start, end = _when(args.start, now), _when(args.end, now)
    except ValueError as exc:
        print(f"usage: --from/--to: {exc} (an RFC 3339 time or a duration like 7d)",
              file=sys.stderr)  # fmt: skip
        return EXIT_USAGE
    params = query(**{"from": start, "to": end, "bucket": args.bucket, "source": args.source})
    if args.csv:
        text = asyncio.run(admin_call(args, "GET", "/admin/analytics.csv" + params, raw=True))
        sys.stdout.write(str(text))
        return EXIT_OK
    data = asyncio.run(admin_call(args, "GET", "/admin/analytics" + params))
    assert isinstance(data, dict)
    if args.json:
        print_json(data)
        return EXIT_OK
    print(f"{data['source'] or 'all sources'}, {data['from']} to {data['to']}, by {data['bucket']}")
    rows = [_row(b["start"], b) for b in data["buckets"]]
    rows.append(_row("total", data["totals"]))
    print_table(rows, COLUMNS)
    return EXIT_OK
