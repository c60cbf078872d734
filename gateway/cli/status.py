"""``webhook-gateway status-token SOURCE KEY [--ttl 15m]``: mint a buyer's status token
(design.md 5.10) with the config's ``status.secret``, as the marketplace does for the page it
redirects a buyer to; for trying a stream with curl or a browser."""

from __future__ import annotations

import argparse
import math
import sys
import time

from gateway import times
from gateway.cli.common import EXIT_OK, load_args
from gateway.config.reader import parse_duration
from gateway.errors import CommandError
from gateway.status.token import mint

#: Longest --ttl: a token is a bearer capability; a page needs minutes, not days.
MAX_TTL = 7 * 86400.0


def ttl(text: str) -> float:
    """A ``--ttl`` value: a duration (``15m``) longer than zero, at most ``MAX_TTL``."""
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not 0 < seconds <= MAX_TTL:
        raise argparse.ArgumentTypeError(f"{text!r}: a ttl is longer than 0 and at most 7d")
    return seconds


def cmd_status_token(args: argparse.Namespace) -> int:
    """Print a status token for the payment ``SOURCE KEY``, valid for ``--ttl``."""
    config = load_args(args)
    if config.status is None:
        raise CommandError("status streams are off: the config has no status: block")
    source = config.sources.get(args.source)
    if source is None or source.payment is None:
        keeping = sorted(name for name, s in config.sources.items() if s.payment is not None)
        raise CommandError(
            f"no source named {args.source!r} keeps payments"
            f" (sources with payments: {', '.join(keeping) or 'none'})"
        )
    expiry = math.ceil(time.time() + args.ttl)
    print(mint(config.status.secret.encode(), args.source, args.key, expiry))
    print(f"valid until {times.rfc3339(expiry)}", file=sys.stderr)
    return EXIT_OK
