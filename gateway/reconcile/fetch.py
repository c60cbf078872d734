"""Asking a provider what it knows (design.md 5.8): one listing, read whole or refused.

A provider that fails in any way fails the run with the reason, and nothing of it is
recovered: an answer that is not 2xx, a redirect (never followed), one that is not JSON, one
larger than ``MAX_ANSWER`` bytes, a listing of more than ``MAX_PAGES`` pages, a request that
takes longer than the source's ``timeout``, or one that cannot connect. What a listing yields
is plain data: the items of an ``http-list``, or the webhook bodies (``{id, type, data}`` for
Rafiki, the event objects for Stripe) with their creation times.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import aiohttp

from gateway.config.model import HttpListFrom, RafikiFrom, StripeFrom
from gateway.extract import resolve_pointer
from gateway.jsontext import dumpb
from gateway.providers.jcs import canonicalize, loads
from gateway.reconcile.template import compact_json

#: The largest answer read (bytes, as received); a larger one fails the run.
MAX_ANSWER = 10 * 1024 * 1024
#: The most pages one listing may take; more fails the run (a provider paging forever).
MAX_PAGES = 1000
#: Items a Rafiki or Stripe page asks for (both allow 100 at most).
PAGE_SIZE = 100

RAFIKI_QUERY = (
    "query WebhookEvents($first: Int, $after: String, $sortOrder: SortOrder,"
    " $filter: WebhookEventFilter) { webhookEvents(first: $first, after: $after,"
    " sortOrder: $sortOrder, filter: $filter) { edges { cursor node { id type data createdAt } }"
    " pageInfo { endCursor hasNextPage } } }"
)


class ProviderError(Exception):
    """The provider could not be asked, or answered what no listing is; the message says
    which (it never holds a secret)."""


@dataclass(frozen=True)
class Listed:
    """One webhook the provider says it sent: its body, as the sender posts it, and when."""

    body: bytes
    created_at: float


async def get_json(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    seconds: float,
    body: bytes | None = None,
) -> Any:
    """One request; its JSON answer, or ``ProviderError`` with why not."""
    try:
        async with session.request(
            method,
            url,
            data=body,
            headers=headers,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=seconds),
        ) as response:
            if 300 <= response.status < 400:
                raise ProviderError(f"redirect (HTTP {response.status}) not followed")
            if not 200 <= response.status < 300:
                raise ProviderError(f"HTTP {response.status}")
            declared = response.content_length
            if declared is not None and declared > MAX_ANSWER:
                raise ProviderError(f"the answer is larger than {MAX_ANSWER // 1048576} MiB")
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.content.iter_chunked(65536):
                size += len(chunk)
                if size > MAX_ANSWER:
                    raise ProviderError(f"the answer is larger than {MAX_ANSWER // 1048576} MiB")
                chunks.append(chunk)
    except TimeoutError:
        raise ProviderError(f"no answer within {seconds:g} s") from None
    except aiohttp.ClientError as exc:
        raise ProviderError(f"request failed: {type(exc).__name__}: {exc}") from None
    try:
        # Numbers as Decimal: an amount read from a listing keeps every digit.
        return json.loads(b"".join(chunks), parse_float=Decimal)
    except (ValueError, RecursionError):
        raise ProviderError("the answer is not JSON") from None


async def fetch_http_list(session: aiohttp.ClientSession, source: HttpListFrom) -> list[Any]:
    """The items of an ``http-list`` (``source.items`` in its one answer)."""
    headers = {"Accept": "application/json", **{k: v.value for k, v in source.headers}}
    answer = await get_json(session, "GET", source.url, headers=headers, seconds=source.timeout)
    try:
        items = resolve_pointer(answer, source.items.tokens)
    except KeyError:
        items = None
    if not isinstance(items, list):
        where = source.items.name or "the top"
        raise ProviderError(f"the answer has no list at {where}")
    return items


def rafiki_signature(secret: str, body: bytes, now_ms: int) -> str:
    """Rafiki's Admin API signature of a request body: ``t=<ms>, v1=<hex HMAC-SHA256 of
    t + "." + the RFC 8785 JSON of the body>``."""
    payload = f"{now_ms}.".encode() + canonicalize(loads(body))
    digest = hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()
    return f"t={now_ms}, v1={digest}"


async def fetch_rafiki(
    session: aiohttp.ClientSession,
    source: RafikiFrom,
    types: Sequence[str],
    since: float,
) -> list[Listed]:
    """Rafiki's webhook events of these types created since ``since``, newest first, through
    the Admin GraphQL API's ``webhookEvents`` (``PAGE_SIZE`` a page)."""
    listed: list[Listed] = []
    after: str | None = None
    for _ in range(MAX_PAGES):
        variables: dict[str, Any] = {
            "first": PAGE_SIZE,
            "after": after,
            "sortOrder": "DESC",
            "filter": {"type": {"in": list(types)}},
        }
        body = dumpb({"query": RAFIKI_QUERY, "variables": variables})
        headers = {
            "Content-Type": "application/json",
            "tenant-id": source.tenant_id,
            "signature": rafiki_signature(source.secret.value, body, int(time.time() * 1000)),
        }
        answer = await get_json(
            session, "POST", source.url, headers=headers, seconds=source.timeout, body=body
        )
        if isinstance(answer, dict) and answer.get("errors"):
            raise ProviderError(f"GraphQL error: {_first_message(answer['errors'])}")
        try:
            connection = answer["data"]["webhookEvents"]
            edges, info = connection["edges"], connection["pageInfo"]
        except (KeyError, TypeError):
            raise ProviderError("the answer is not a webhookEvents connection") from None
        older = False
        for edge in edges:
            node = edge.get("node") if isinstance(edge, dict) else None
            if not isinstance(node, dict) or "id" not in node or "type" not in node:
                raise ProviderError("a webhook event has no id or type")
            created = _iso_time(node.get("createdAt"))
            if created < since:
                older = True
                continue
            event = {"id": node["id"], "type": node["type"], "data": node.get("data") or {}}
            listed.append(Listed(compact_json(event).encode(), created))
        if older or not info.get("hasNextPage"):
            return listed
        after = info.get("endCursor")
        if not after:
            raise ProviderError("the answer says there is a next page but gives no cursor")
    raise ProviderError(f"more than {MAX_PAGES} pages")


async def fetch_stripe(
    session: aiohttp.ClientSession, source: StripeFrom, types: Sequence[str], since: float
) -> list[Listed]:
    """Stripe's events of these types created since ``since``: ``GET /v1/events`` with
    ``created[gte]``, paged by ``starting_after`` while ``has_more``."""
    listed: list[Listed] = []
    after: str | None = None
    headers = {"Authorization": f"Bearer {source.api_key.value}", "Accept": "application/json"}
    for _ in range(MAX_PAGES):
        query: list[tuple[str, str]] = [
            ("limit", str(PAGE_SIZE)),
            ("created[gte]", str(int(since))),
        ]
        query += [("types[]", t) for t in types]
        if after is not None:
            query.append(("starting_after", after))
        url = f"{source.url}/v1/events?{urlencode(query)}"
        answer = await get_json(session, "GET", url, headers=headers, seconds=source.timeout)
        if not isinstance(answer, dict) or not isinstance(answer.get("data"), list):
            raise ProviderError("the answer is not a list of events")
        for event in answer["data"]:
            if not isinstance(event, dict) or not isinstance(event.get("id"), str):
                raise ProviderError("an event has no id")
            created = event.get("created")
            when = float(created) if isinstance(created, int | float) else 0.0
            listed.append(Listed(compact_json(event).encode(), when))
        if not answer.get("has_more") or not answer["data"]:
            return listed
        after = answer["data"][-1]["id"]
    raise ProviderError(f"more than {MAX_PAGES} pages")


def _first_message(errors: object) -> str:
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        return str(errors[0].get("message", "unknown"))[:200]
    return "unknown"


def _iso_time(value: object) -> float:
    """An ISO 8601 time as Unix seconds; ``ProviderError`` for anything else."""
    if not isinstance(value, str):
        raise ProviderError("a webhook event has no createdAt")
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise ProviderError(f"createdAt {value[:40]!r} is not an ISO 8601 time") from None
