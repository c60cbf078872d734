"""Commands that need no running gateway: run, check-config, sign, send."""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
import time
import uuid
from pathlib import Path

import yaml

from gateway import times
from gateway.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    SigningError,
    config_path,
    load_args,
    report_config_error,
)
from gateway.config import load_config
from gateway.config.model import Config, SourceConfig
from gateway.errors import ConfigError
from gateway.ids import ulid

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
    path = config_path(args)
    try:
        config = load_config(path)
    except ConfigError as exc:
        return report_config_error(path, exc)
    yaml.safe_dump(dict(config.redacted), sys.stdout, sort_keys=False, allow_unicode=True)
    print(
        f"config {path} is valid: {len(config.sources)} source(s), "
        f"{len(config.destinations)} destination(s)",
        file=sys.stderr,
    )
    return EXIT_OK


def cmd_sign(args: argparse.Namespace) -> int:
    """Print the headers the source's provider expects for a body, for curl."""
    config = load_args(args)
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
    config = load_args(args)
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

    path = config_path(args)
    try:
        config = load_config(path)
    except ConfigError as exc:
        return report_config_error(path, exc)
    setup_logging(config.server.log_level)
    return run(config, path)
