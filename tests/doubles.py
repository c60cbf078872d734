"""Doubles of the provider APIs reconciliation reads, started from pytest: the Node.js servers in
tests/node playing the marketplace's payments listing (payments_listing.mjs), Rafiki's Admin
GraphQL API (rafiki_admin.mjs) and Stripe's List all events (stripe_events.mjs).

Each ``async with`` starts one with ``node SCRIPT CONTROL_FILE [options]``, waits (bounded) for
its ``{"port": N}`` line, and on exit terminates it by PID (killed if it does not stop). What a
double answers is its control file, read again on every request: ``set`` and ``control``
rewrite it atomically (a temporary file renamed over it), so a test changes the records or
makes the double misbehave between two runs. ``stats()`` reads its counts (``GET /__stats``).

Like ``tests.support.run_node``: a missing Node.js or npm package fails the test with what to
run, never skips it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from tests.support import NODE_DIR

#: How long a double may take to print its port, and to stop once terminated.
START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0

#: The misbehaviours every double makes ("endless" only the paged ones); "status:NNN" also.
BEHAVIOURS = frozenset({"normal", "invalid_json", "huge", "redirect", "hang", "endless"})
_STATUS = re.compile(r"status:[1-5][0-9][0-9]")

#: Defaults a test can take as they are (each double also takes its own).
RAFIKI_SECRET = "rafiki-admin-test-secret"
RAFIKI_TENANT = "438fa74a-fa7d-4317-9ced-dde32ece1787"
STRIPE_KEY = "sk_test_doubles0123456789abcdef"


class DoubleError(RuntimeError):
    """A double could not be started: Node.js or its packages are missing, or it failed."""


def _write_json_atomically(path: Path, data: Mapping[str, Any]) -> None:
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    temporary.write_text(json.dumps(data))
    os.replace(temporary, path)


def _check_behaviour(name: str, paged: bool, behaviour: Any) -> None:
    """Refuse a behaviour the double does not make (it would answer 500)."""
    if behaviour is None or _STATUS.fullmatch(str(behaviour)):
        return
    if behaviour not in BEHAVIOURS or (behaviour == "endless" and not paged):
        raise ValueError(f"{name} has no behaviour {behaviour!r}")


@dataclass
class Double:
    """One running double: where it listens, its control file, its process."""

    name: str
    url: str
    control_path: Path
    log_path: Path
    process: asyncio.subprocess.Process
    paged: bool

    def current(self) -> dict[str, Any]:
        """The control file as it is now."""
        data: dict[str, Any] = json.loads(self.control_path.read_text())
        return data

    def control(self, data: Mapping[str, Any]) -> None:
        """Replace the whole control file."""
        _check_behaviour(self.name, self.paged, data.get("behaviour"))
        _write_json_atomically(self.control_path, data)

    def set(self, **fields: Any) -> None:
        """Change some fields of the control file and keep the others; ``None`` removes one
        (``set(behaviour=None)``: back to normal)."""
        data = self.current()
        for key, value in fields.items():
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value
        self.control(data)

    async def stats(self) -> dict[str, Any]:
        """The double's counts: requests, served, refused, pages, items, misbehaved, followed,
        hanging, and the recent requests (method, url, status, behaviour, detail)."""
        timeout = aiohttp.ClientTimeout(total=5)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(f"{self.url}/__stats") as response,
        ):
            response.raise_for_status()
            data: dict[str, Any] = await response.json()
            return data

    def log(self) -> str:
        """What the double wrote on stderr."""
        return self.log_path.read_text(errors="replace")


@dataclass
class PaymentsListing(Double):
    """The marketplace's payments service listing (``GET /payments/pending``)."""

    token: str | None = None

    @property
    def listing_url(self) -> str:
        """The URL the gateway's http-list reconciliation reads."""
        return f"{self.url}/payments/pending"


@dataclass
class RafikiAdmin(Double):
    """Rafiki's backend Admin GraphQL API (webhookEvents), signed with ``secret`` for ``tenant``."""

    secret: str = RAFIKI_SECRET
    tenant: str = RAFIKI_TENANT

    @property
    def graphql_url(self) -> str:
        """The Admin API's endpoint."""
        return f"{self.url}/graphql"


@dataclass
class StripeEvents(Double):
    """Stripe's List all events (``GET /v1/events``), answering the secret key ``key``."""

    key: str = STRIPE_KEY

    @property
    def events_url(self) -> str:
        """The list endpoint (``url`` is what the gateway's ``url`` option takes)."""
        return f"{self.url}/v1/events"


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        raise DoubleError("Node.js is not installed: run make test (it installs nodejs and npm)")
    if not (NODE_DIR / "node_modules" / "json-canonicalize").is_dir():
        raise DoubleError("npm packages missing: run npm ci in tests/node (make test does)")
    return node


def _prepare(tmp_path: Path, name: str, control: Mapping[str, Any]) -> tuple[Path, Path, int]:
    stem = f"{name}-{uuid.uuid4().hex[:8]}"
    control_path = tmp_path / f"{stem}.json"
    log_path = tmp_path / f"{stem}.log"
    _write_json_atomically(control_path, control)
    return control_path, log_path, os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with suppress(ProcessLookupError):
            process.terminate()
        try:
            async with asyncio.timeout(STOP_TIMEOUT):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()


@asynccontextmanager
async def _running(
    name: str, tmp_path: Path, control: Mapping[str, Any], args: Iterable[str]
) -> AsyncIterator[tuple[str, Path, Path, asyncio.subprocess.Process]]:
    node = _node()
    control_path, log_path, log_fd = _prepare(tmp_path, name, control)
    try:
        process = await asyncio.create_subprocess_exec(
            node,
            str(NODE_DIR / f"{name}.mjs"),
            str(control_path),
            *args,
            cwd=NODE_DIR,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=log_fd,
        )
    finally:
        os.close(log_fd)
    try:
        assert process.stdout is not None
        try:
            async with asyncio.timeout(START_TIMEOUT):
                line = await process.stdout.readline()
            port = int(json.loads(line)["port"])
        except (TimeoutError, ValueError, KeyError, TypeError) as err:
            await _stop(process)
            raise DoubleError(
                f"{name} did not start (exit {process.returncode}): "
                f"{log_path.read_text(errors='replace').strip() or 'no output'}"
            ) from err
        yield f"http://127.0.0.1:{port}", control_path, log_path, process
    finally:
        await _stop(process)


def _control(key: str, items: Iterable[Mapping[str, Any]], behaviour: str | None) -> dict[str, Any]:
    control: dict[str, Any] = {key: list(items)}
    if behaviour is not None:
        control["behaviour"] = behaviour
    return control


@asynccontextmanager
async def payments_listing(
    tmp_path: Path,
    *,
    payments: Iterable[Mapping[str, Any]] = (),
    token: str | None = None,
    behaviour: str | None = None,
) -> AsyncIterator[PaymentsListing]:
    """The payments service listing ``payments``; with ``token``, ``Authorization: Bearer``
    is required."""
    name = "payments_listing"
    _check_behaviour(name, False, behaviour)
    args = [] if token is None else ["--token", token]
    control = _control("payments", payments, behaviour)
    async with _running(name, tmp_path, control, args) as (url, control_path, log_path, process):
        yield PaymentsListing(name, url, control_path, log_path, process, False, token=token)


@asynccontextmanager
async def rafiki_admin(
    tmp_path: Path,
    *,
    events: Iterable[Mapping[str, Any]] = (),
    secret: str = RAFIKI_SECRET,
    tenant: str = RAFIKI_TENANT,
    behaviour: str | None = None,
) -> AsyncIterator[RafikiAdmin]:
    """Rafiki's Admin API listing ``events`` ({id, type, data, createdAt}) as webhookEvents,
    to requests signed with ``secret`` for ``tenant``."""
    name = "rafiki_admin"
    _check_behaviour(name, True, behaviour)
    args = ["--secret", secret, "--tenant", tenant]
    control = _control("events", events, behaviour)
    async with _running(name, tmp_path, control, args) as (url, control_path, log_path, process):
        yield RafikiAdmin(
            name, url, control_path, log_path, process, True, secret=secret, tenant=tenant
        )


@asynccontextmanager
async def stripe_events(
    tmp_path: Path,
    *,
    events: Iterable[Mapping[str, Any]] = (),
    key: str = STRIPE_KEY,
    behaviour: str | None = None,
) -> AsyncIterator[StripeEvents]:
    """Stripe's ``GET /v1/events`` listing ``events`` (full event objects) to the secret ``key``."""
    name = "stripe_events"
    _check_behaviour(name, True, behaviour)
    args = ["--key", key]
    control = _control("events", events, behaviour)
    async with _running(name, tmp_path, control, args) as (url, control_path, log_path, process):
        yield StripeEvents(name, url, control_path, log_path, process, True, key=key)


def rafiki_event(
    event_id: str, event_type: str, created_at: str, data: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A Rafiki webhook event as webhookEvents lists it (``createdAt`` ISO 8601)."""
    return {"id": event_id, "type": event_type, "data": dict(data or {}), "createdAt": created_at}


def stripe_event(
    event_id: str, event_type: str, created: int, data_object: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A Stripe event object (https://docs.stripe.com/api/events/object), ``created`` in Unix
    seconds."""
    return {
        "id": event_id,
        "object": "event",
        "api_version": "2024-06-20",
        "created": created,
        "data": {"object": dict(data_object or {})},
        "livemode": False,
        "pending_webhooks": 0,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }
