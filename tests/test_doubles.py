"""The provider doubles (tests/doubles.py, tests/node): each answers what its control file says,
pages as the real API pages, refuses what the real one refuses, and misbehaves on demand. All
through real sockets with aiohttp; the Rafiki signature is made here with rfc8785 and hmac, as
the gateway makes it."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import random
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
import rfc8785

from tests.doubles import (
    Double,
    DoubleError,
    payments_listing,
    rafiki_admin,
    rafiki_event,
    stripe_event,
    stripe_events,
)

MiB = 1024 * 1024


@pytest.fixture
async def http() -> Any:
    """One client session, every request bounded (the helpers below never follow a redirect)."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
        yield session


# -- the payments service listing -------------------------------------------------------------


def payment(pending_id: str, status: str = "paid", **extra: Any) -> dict[str, Any]:
    return {
        "pendingId": pending_id,
        "offerId": f"offer-{pending_id}",
        "status": status,
        "buyerWalletAddressUrl": "https://wallet.example/alice",
        **extra,
    }


async def get_json(http: aiohttp.ClientSession, url: str, **kwargs: Any) -> tuple[int, Any]:
    async with http.get(url, allow_redirects=False, **kwargs) as response:
        return response.status, await response.json()


async def test_payments_listing_answers_its_control_file_and_each_change(tmp_path, http):
    first = [
        payment("p1", outgoingPaymentId="https://wallet.example/op/1"),
        payment("p2", "pending"),
    ]
    async with payments_listing(tmp_path, payments=first) as double:
        assert await get_json(http, double.listing_url) == (200, {"payments": first})

        second = [payment("p3", "failed", incomingPaymentId="https://wallet.example/ip/3")]
        double.set(payments=second)
        assert await get_json(http, double.listing_url) == (200, {"payments": second})

        stats = await double.stats()
    assert stats | {"recent": None} == {
        "requests": 2,
        "served": 2,
        "refused": 0,
        "pages": 2,
        "items": 3,
        "misbehaved": 0,
        "followed": 0,
        "hanging": 0,
        "recent": None,
    }
    assert [r["status"] for r in stats["recent"]] == [200, 200]


async def test_payments_listing_requires_its_bearer_token(tmp_path, http):
    async with payments_listing(
        tmp_path, payments=[payment("p1")], token="listing-token"
    ) as double:
        async with http.get(double.listing_url) as response:
            assert response.status == 401
            assert response.headers["WWW-Authenticate"] == 'Bearer realm="payments"'
            assert await response.json() == {"error": "unauthorized"}
        for authorization in ("Bearer wrong-token", "Bearer listing-token2", "listing-token"):
            status, _ = await get_json(
                http, double.listing_url, headers={"Authorization": authorization}
            )
            assert status == 401, authorization
        # RFC 6750: the scheme's case does not matter.
        for scheme in ("Bearer", "bearer"):
            status, body = await get_json(
                http, double.listing_url, headers={"Authorization": f"{scheme} listing-token"}
            )
            assert (status, body) == (200, {"payments": [payment("p1")]})
        stats = await double.stats()
    assert (stats["refused"], stats["served"]) == (4, 2)


async def test_payments_listing_without_a_token_is_open_and_has_one_route(tmp_path, http):
    async with payments_listing(tmp_path, payments=[payment("p1")]) as double:
        assert (await get_json(http, double.listing_url))[0] == 200
        assert (await get_json(http, f"{double.url}/payments"))[0] == 404
        async with http.post(double.listing_url, json={}) as response:
            assert response.status == 405
            assert response.headers["Allow"] == "GET"

        async def two_mib() -> Any:
            for _ in range(32):
                yield b"x" * 65536

        async with http.post(double.listing_url, data=two_mib()) as response:
            assert response.status == 413


# -- Rafiki's Admin API ------------------------------------------------------------------------

EVENTS_QUERY = """
query WebhookEvents(
  $first: Int, $after: String, $sortOrder: SortOrder, $filter: WebhookEventFilter
) {
  webhookEvents(first: $first, after: $after, sortOrder: $sortOrder, filter: $filter) {
    edges { cursor node { id type data createdAt } }
    pageInfo { endCursor startCursor hasNextPage hasPreviousPage }
  }
}
"""


_last_t = 0


def rafiki_signature(secret: str, body: Any, at_ms: int | None = None) -> str:
    """Rafiki's admin API signature: t=<ms>, v1=HMAC-SHA256(secret, t + "." + RFC 8785 JSON).

    Rafiki refuses a signature it has seen, so two equal requests signed in one millisecond
    would be one refused: each signature here takes a t of its own."""
    global _last_t
    if at_ms is None:
        at = _last_t = max(int(time.time() * 1000), _last_t + 1)
    else:
        at = at_ms
    digest = hmac.new(secret.encode(), f"{at}.".encode() + rfc8785.dumps(body), hashlib.sha256)
    return f"t={at}, v1={digest.hexdigest()}"


def events_body(**variables: Any) -> dict[str, Any]:
    defaults = {"first": 100, "after": None, "sortOrder": "DESC", "filter": None}
    return {"query": EVENTS_QUERY, "variables": defaults | variables}


async def graphql(
    http: aiohttp.ClientSession,
    double: Any,
    body: Any,
    *,
    headers: Mapping[str, str | None] | None = None,
    data: bytes | None = None,
    timeout: aiohttp.ClientTimeout | None = None,
) -> tuple[int, Any]:
    """POST a body to the double, signed for its tenant unless ``headers`` say otherwise. The
    bytes sent are not the canonical form the signature covers (indented, keys unsorted)."""
    sent: dict[str, str | None] = {
        "Content-Type": "application/json",
        "tenant-id": double.tenant,
        "signature": rafiki_signature(double.secret, body),
    }
    sent.update(headers or {})
    present = {name: value for name, value in sent.items() if value is not None}
    payload = json.dumps(body, indent=2).encode() if data is None else data
    async with http.post(
        double.graphql_url, data=payload, headers=present, allow_redirects=False, timeout=timeout
    ) as response:
        return response.status, await response.json()


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


BASE = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def rafiki_events(
    count: int, *, types: tuple[str, ...] = ("incoming_payment.completed",)
) -> list[dict[str, Any]]:
    """``count`` events a second apart (id n is the n-th oldest), shuffled."""
    events = [
        rafiki_event(
            f"ev-{n:04d}",
            types[n % len(types)],
            iso(BASE + timedelta(seconds=n)),
            {"id": f"ip-{n}", "metadata": {"description": "café ☕", "n": n}},
        )
        for n in range(count)
    ]
    random.Random(count).shuffle(events)
    return events


async def all_pages(http, double, **variables: Any) -> list[dict[str, Any]]:
    pages, after = [], None
    while True:
        status, body = await graphql(http, double, events_body(after=after, **variables))
        assert status == 200, body
        page = body["data"]["webhookEvents"]
        pages.append(page)
        if not page["pageInfo"]["hasNextPage"]:
            return pages
        after = page["pageInfo"]["endCursor"]


async def test_rafiki_pages_250_events_100_at_a_time_newest_first(tmp_path, http):
    events = rafiki_events(250)
    async with rafiki_admin(tmp_path, events=events) as double:
        pages = await all_pages(http, double, first=100)
        stats = await double.stats()
    assert [len(page["edges"]) for page in pages] == [100, 100, 50]
    ids = [edge["node"]["id"] for page in pages for edge in page["edges"]]
    assert ids == [f"ev-{n:04d}" for n in reversed(range(250))]
    by_id = {event["id"]: event for event in events}
    assert all(
        edge["node"] == by_id[edge["node"]["id"]] for page in pages for edge in page["edges"]
    )
    assert [page["pageInfo"]["hasPreviousPage"] for page in pages] == [False, True, True]
    assert [page["pageInfo"]["hasNextPage"] for page in pages] == [True, True, False]
    for page in pages:
        assert page["pageInfo"]["startCursor"] == page["edges"][0]["cursor"]
        assert page["pageInfo"]["endCursor"] == page["edges"][-1]["cursor"]
    assert (stats["pages"], stats["items"], stats["refused"]) == (3, 250, 0)
    assert [r["detail"]["variables"]["first"] for r in stats["recent"]] == [100, 100, 100]


async def test_rafiki_orders_ascending_and_filters_by_type(tmp_path, http):
    types = ("incoming_payment.completed", "outgoing_payment.failed", "wallet_address.not_found")
    async with rafiki_admin(tmp_path, events=rafiki_events(30, types=types)) as double:
        pages = await all_pages(
            http,
            double,
            first=4,
            sortOrder="ASC",
            filter={"type": {"in": ["incoming_payment.completed", "outgoing_payment.failed"]}},
        )
    ids = [edge["node"]["id"] for page in pages for edge in page["edges"]]
    assert ids == [f"ev-{n:04d}" for n in range(30) if n % 3 != 2]
    assert len(pages) == 5


async def test_rafiki_cursors_hold_their_place_when_events_change(tmp_path, http):
    async with rafiki_admin(tmp_path, events=rafiki_events(10)) as double:
        status, body = await graphql(http, double, events_body(first=4))
        page = body["data"]["webhookEvents"]
        # A newer event arrives and an old one is gone before the next page is asked for.
        events = [e for e in rafiki_events(10) if e["id"] != "ev-0003"]
        events.append(
            rafiki_event("ev-new", "incoming_payment.completed", iso(BASE + timedelta(hours=1)))
        )
        double.set(events=events)
        status, body = await graphql(
            http, double, events_body(first=4, after=page["pageInfo"]["endCursor"])
        )
    assert status == 200, body
    ids = [edge["node"]["id"] for edge in body["data"]["webhookEvents"]["edges"]]
    assert ids == ["ev-0005", "ev-0004", "ev-0002", "ev-0001"]


async def test_rafiki_first_defaults_to_20_and_more_than_100_is_a_graphql_error(tmp_path, http):
    async with rafiki_admin(tmp_path, events=rafiki_events(120)) as double:
        status, body = await graphql(http, double, events_body(first=None))
        assert status == 200
        assert len(body["data"]["webhookEvents"]["edges"]) == 20
        status, body = await graphql(http, double, events_body(first=100))
        assert len(body["data"]["webhookEvents"]["edges"]) == 100

        status, body = await graphql(http, double, events_body(first=101))
        assert status == 200
        assert body["data"] is None
        assert body["errors"][0]["message"] == "Pagination index error"
        assert body["errors"][0]["path"] == ["webhookEvents"]
        stats = await double.stats()
    assert (stats["served"], stats["refused"]) == (2, 1)


async def test_rafiki_answers_only_the_fields_asked_under_their_aliases(tmp_path, http):
    query = """{ page: webhookEvents(first: 2, sortOrder: ASC) {
        items: edges { node { id __typename } } pageInfo { hasNextPage } } }"""
    async with rafiki_admin(tmp_path, events=rafiki_events(3)) as double:
        status, body = await graphql(http, double, {"query": query})
    assert (status, body) == (
        200,
        {
            "data": {
                "page": {
                    "items": [
                        {"node": {"id": "ev-0000", "__typename": "WebhookEvent"}},
                        {"node": {"id": "ev-0001", "__typename": "WebhookEvent"}},
                    ],
                    "pageInfo": {"hasNextPage": True},
                }
            }
        },
    )


async def test_rafiki_lists_only_its_tenants_events(tmp_path, http):
    events = rafiki_events(3)
    events[0] = {**events[0], "tenantId": "another-tenant"}
    async with rafiki_admin(tmp_path, events=events) as double:
        status, body = await graphql(http, double, events_body())
    assert status == 200, body
    listed = {edge["node"]["id"] for edge in body["data"]["webhookEvents"]["edges"]}
    assert listed == {e["id"] for e in events[1:]}


@pytest.mark.parametrize(
    ("query", "variables", "status", "message"),
    [
        ("{ __typename }", {}, 200, "the query asks for no webhookEvents"),
        ("{ assets { edges { cursor } } }", {}, 400, 'Cannot query field "assets" on type "Query"'),
        ("{ webhookEvents { edges { node { amount } } } }", {}, 400, 'Cannot query field "amount"'),
        ("{ webhookEvents { edges } }", {}, 400, "must have a selection of subfields"),
        ("{ webhookEvents(limit: 5) { edges { cursor } } }", {}, 400, 'Unknown argument "limit"'),
        (
            "{ webhookEvents(first: $n) { edges { cursor } } }",
            {"n": 1},
            400,
            'Variable "$n" is not defined',
        ),
        (
            "query($n: Int) { webhookEvents { edges { cursor } } }",
            {},
            400,
            'Variable "$n" is never used',
        ),
        (
            "query($n: String) { webhookEvents(first: $n) { edges { cursor } } }",
            {"n": "5"},
            400,
            'Variable "$n" of type "String" used in position expecting type "Int"',
        ),
        (
            "query($n: Int) { webhookEvents(first: $n) { edges { cursor } } }",
            {"n": "5"},
            400,
            "Int cannot represent",
        ),
        (
            '{ webhookEvents(sortOrder: "ASC") { edges { cursor } } }',
            {},
            400,
            "SortOrder cannot represent",
        ),
        ("{ webhookEvents { edges { cursor } }", {}, 400, "Syntax Error"),
        ("mutation { webhookEvents { edges { cursor } } }", {}, 400, "queries only"),
        ("{ webhookEvents { ...Page } }", {}, 400, "Fragments are not supported"),
        ('{ webhookEvents(after: "nope") { edges { cursor } } }', {}, 200, "invalid cursor"),
    ],
)
async def test_rafiki_reads_the_query_as_a_graphql_server(
    tmp_path, http, query, variables, status, message
):
    async with rafiki_admin(tmp_path, events=rafiki_events(2)) as double:
        answer = await graphql(http, double, {"query": query, "variables": variables})
        stats = await double.stats()
    assert answer[0] == status
    assert message in answer[1]["errors"][0]["message"]
    assert (stats["refused"], stats["pages"]) == (1, 0)


def now_ms() -> int:
    return int(time.time() * 1000)


def signed_otherwise(double: Any, body: Any) -> dict[str, dict[str, str | None]]:
    """Headers of a request each refused for one reason."""
    other_body = events_body(first=99)
    return {
        "no signature": {"signature": None},
        "no tenant": {"tenant-id": None},
        "another tenant": {"tenant-id": "2b5a7f0e-0000-4000-8000-000000000000"},
        "another secret": {"signature": rafiki_signature("another-secret", body)},
        "another body": {"signature": rafiki_signature(double.secret, other_body)},
        "stale t": {"signature": rafiki_signature(double.secret, body, now_ms() - 301_000)},
        "future t": {"signature": rafiki_signature(double.secret, body, now_ms() + 301_000)},
        "t in seconds": {"signature": rafiki_signature(double.secret, body, int(time.time()))},
        "no space": {"signature": rafiki_signature(double.secret, body).replace(", ", ",")},
        "v2": {"signature": rafiki_signature(double.secret, body).replace("v1=", "v2=")},
        "upper hex": {
            "signature": rafiki_signature(double.secret, body)
            .upper()
            .replace("T=", "t=")
            .replace("V1=", "v1=")
        },
    }


@pytest.mark.parametrize(
    "reason",
    [
        "no signature",
        "no tenant",
        "another tenant",
        "another secret",
        "another body",
        "stale t",
        "future t",
        "t in seconds",
        "no space",
        "v2",
        "upper hex",
    ],
)
async def test_rafiki_refuses_a_request_not_signed_as_rafiki_checks(tmp_path, http, reason):
    body = events_body()
    async with rafiki_admin(tmp_path, events=rafiki_events(2)) as double:
        status, answer = await graphql(
            http, double, body, headers=signed_otherwise(double, body)[reason]
        )
        stats = await double.stats()
    assert status == 401, answer
    assert answer["message"] == "Unauthorized"
    assert (stats["refused"], stats["served"]) == (1, 0)


async def test_rafiki_refuses_a_replayed_signature(tmp_path, http):
    body = events_body()
    async with rafiki_admin(tmp_path, events=rafiki_events(2)) as double:
        headers = {"signature": rafiki_signature(double.secret, body)}
        assert (await graphql(http, double, body, headers=headers))[0] == 200
        status, answer = await graphql(http, double, body, headers=headers)
        assert (status, answer["reason"]) == (401, "signature already used")
        # The same request signed again (a fresh t) is a new signature.
        assert (await graphql(http, double, body))[0] == 200
        stats = await double.stats()
    assert (stats["served"], stats["refused"]) == (2, 1)


async def test_rafiki_signature_covers_the_canonical_json_not_the_bytes(tmp_path, http):
    body = events_body(
        filter={"type": {"in": ["incoming_payment.completed", "café ☕"]}}, first=1e1
    )
    # Python writes 1e1 as 10.0, RFC 8785 (and JSON.parse then canonicalize) as 10.
    reordered = json.dumps(dict(reversed(list(body.items()))), ensure_ascii=True).encode()
    async with rafiki_admin(tmp_path, events=rafiki_events(12)) as double:
        status, answer = await graphql(http, double, body, data=reordered)
    assert status == 200, answer
    assert len(answer["data"]["webhookEvents"]["edges"]) == 10


async def test_rafiki_wants_json_posted_to_a_graphql_path(tmp_path, http):
    body = events_body()
    async with rafiki_admin(tmp_path) as double:
        url = double.graphql_url
        async with http.post(
            f"{double.url}/admin/graphql",
            json=body,
            headers={
                "tenant-id": double.tenant,
                "signature": rafiki_signature(double.secret, body),
            },
        ) as response:
            assert response.status == 200  # any path ending in /graphql
        async with http.get(url) as response:
            assert response.status == 405
        assert (await graphql(http, double, body, headers={"Content-Type": "text/plain"}))[0] == 400
        assert (await graphql(http, double, body, data=b"{not json"))[0] == 400
        assert (await get_json(http, f"{double.url}/graphql/x"))[0] == 404


# -- Stripe's events list ----------------------------------------------------------------------


def stripe_list(
    count: int, *, now: int | None = None, types: tuple[str, ...] = ("payment_intent.succeeded",)
) -> list[dict[str, Any]]:
    """``count`` events, two per second (a tie on created, broken by id), shuffled; event n is
    the n-th oldest."""
    start = (now or int(time.time())) - 3600
    events = [
        stripe_event(
            f"evt_{n:04d}",
            types[n % len(types)],
            start + n // 2,
            {"id": f"pi_{n}", "object": "payment_intent"},
        )
        for n in range(count)
    ]
    random.Random(count).shuffle(events)
    return events


def bearer(double: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {double.key}"}


async def stripe_get(
    http, double, params: Any = (), *, headers: dict[str, str] | None = None, **kwargs: Any
):
    async with http.get(
        double.events_url,
        params=params,
        headers=bearer(double) if headers is None else headers,
        allow_redirects=False,
        **kwargs,
    ) as response:
        return response.status, await response.json()


async def test_stripe_pages_newest_first_with_starting_after(tmp_path, http):
    events = stripe_list(25)
    async with stripe_events(tmp_path, events=events) as double:
        pages, params = [], {"limit": "10"}
        while True:
            status, page = await stripe_get(http, double, params)
            assert status == 200, page
            assert (page["object"], page["url"]) == ("list", "/v1/events")
            pages.append(page)
            if not page["has_more"]:
                break
            params = {"limit": "10", "starting_after": page["data"][-1]["id"]}
        stats = await double.stats()
    assert [len(p["data"]) for p in pages] == [10, 10, 5]
    assert [p["has_more"] for p in pages] == [True, True, False]
    listed = [event for p in pages for event in p["data"]]
    # Newest first: by created, then (a tie) by id, both descending.
    assert [e["id"] for e in listed] == [f"evt_{n:04d}" for n in reversed(range(25))]
    assert listed == sorted(events, key=lambda e: (e["created"], e["id"]), reverse=True)
    assert (stats["pages"], stats["items"]) == (3, 25)
    assert [r["detail"]["startingAfter"] for r in stats["recent"]] == [None, "evt_0015", "evt_0005"]


async def test_stripe_limit_defaults_to_10_and_ending_before_pages_back(tmp_path, http):
    async with stripe_events(tmp_path, events=stripe_list(25)) as double:
        status, page = await stripe_get(http, double)
        assert [e["id"] for e in page["data"]] == [f"evt_{n:04d}" for n in range(24, 14, -1)]
        status, back = await stripe_get(http, double, {"limit": "3", "ending_before": "evt_0010"})
        assert status == 200, back
        assert [e["id"] for e in back["data"]] == ["evt_0013", "evt_0012", "evt_0011"]
        assert back["has_more"] is True


async def test_stripe_filters_by_created_and_types(tmp_path, http):
    now = int(time.time())
    types = ("payment_intent.succeeded", "payment_intent.payment_failed", "charge.refunded")
    events = stripe_list(30, now=now, types=types)
    async with stripe_events(tmp_path, events=events) as double:
        since = now - 3600 + 10  # events 20..29
        status, page = await stripe_get(http, double, {"created[gte]": str(since), "limit": "100"})
        assert sorted(e["id"] for e in page["data"]) == [f"evt_{n:04d}" for n in range(20, 30)]
        asked = (await double.stats())["recent"][-1]["detail"]
        assert (asked["created"], asked["limit"]) == ([["gte", since]], 100)

        params = [
            ("types[]", "payment_intent.succeeded"),
            ("types[]", "charge.refunded"),
            ("limit", "100"),
        ]
        status, page = await stripe_get(http, double, params)
        assert sorted(e["id"] for e in page["data"]) == [
            f"evt_{n:04d}" for n in range(30) if n % 3 != 1
        ]

        status, page = await stripe_get(http, double, {"type": "payment_intent.*", "limit": "100"})
        assert sorted(e["id"] for e in page["data"]) == [
            f"evt_{n:04d}" for n in range(30) if n % 3 != 2
        ]

        status, page = await stripe_get(
            http, double, {"created[lt]": str(since), "created[gte]": str(since - 1)}
        )
        assert status == 200, page
        assert sorted(e["id"] for e in page["data"]) == ["evt_0018", "evt_0019"]


async def test_stripe_lists_the_last_30_days_only(tmp_path, http):
    now = int(time.time())
    events = [
        stripe_event("evt_old", "charge.succeeded", now - 31 * 86400),
        stripe_event("evt_new", "charge.succeeded", now - 29 * 86400),
    ]
    async with stripe_events(tmp_path, events=events) as double:
        status, page = await stripe_get(http, double, {"created[gte]": "0"})
    assert status == 200, page
    assert [e["id"] for e in page["data"]] == ["evt_new"]


@pytest.mark.parametrize(
    ("params", "param", "message"),
    [
        ({"limit": "0"}, "limit", "greater than or equal to 1"),
        ({"limit": "101"}, "limit", "less than or equal to 100"),
        ({"limit": "ten"}, "limit", "Invalid integer: ten"),
        ({"created[gte]": "2026-01-01"}, "created[gte]", "Invalid integer"),
        ({"created[since]": "1"}, "created[since]", "Received unknown parameter"),
        ({"page": "2"}, "page", "Received unknown parameter"),
        ({"starting_after": "evt_nope"}, "starting_after", "No such event: 'evt_nope'"),
        (
            {"starting_after": "evt_0001", "ending_before": "evt_0002"},
            "starting_after",
            "only specify one",
        ),
        ({"type": "a", "types[]": "b"}, "type", "only specify one"),
    ],
)
async def test_stripe_refuses_bad_parameters_with_400(tmp_path, http, params, param, message):
    async with stripe_events(tmp_path, events=stripe_list(3)) as double:
        status, body = await stripe_get(http, double, params)
        stats = await double.stats()
    assert status == 400
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["param"] == param
    assert message in body["error"]["message"]
    assert (stats["refused"], stats["pages"]) == (1, 0)


@pytest.mark.parametrize(
    ("authorization", "message"),
    [
        (None, "You did not provide an API key"),
        ("Bearer ", "You did not provide an API key"),
        ("Bearer sk_test_doubles0123456789abcdeX", "Invalid API Key provided: sk_test_"),
        ("Bearer sk_live_doubles0123456789abcdef", "Invalid API Key provided"),
        ("Token sk_test_doubles0123456789abcdef", "You did not provide an API key"),
    ],
)
async def test_stripe_refuses_a_missing_or_wrong_key(tmp_path, http, authorization, message):
    async with stripe_events(tmp_path, events=stripe_list(3)) as double:
        headers = {} if authorization is None else {"Authorization": authorization}
        status, body = await stripe_get(http, double, headers=headers)
        stats = await double.stats()
    assert status == 401
    assert body["error"]["type"] == "invalid_request_error"
    assert message in body["error"]["message"]
    assert "0123456789abcde" not in body["error"]["message"]  # the key is shown masked
    assert (stats["refused"], stats["served"]) == (1, 0)


async def test_stripe_takes_the_key_as_bearer_or_basic_user(tmp_path, http):
    async with stripe_events(tmp_path, events=stripe_list(3)) as double:
        basic = base64.b64encode(f"{double.key}:".encode()).decode()
        assert (await stripe_get(http, double, headers={"Authorization": f"Basic {basic}"}))[
            0
        ] == 200
        assert (await stripe_get(http, double))[0] == 200
        async with http.post(double.events_url, headers=bearer(double)) as response:
            assert response.status == 404
            assert (
                "Unrecognized request URL (POST: /v1/events)"
                in (await response.json())["error"]["message"]
            )


# -- misbehaviours, the same for every double --------------------------------------------------


def payments_request(http, double, timeout=None):
    return http.get(
        double.listing_url,
        headers={"Authorization": "Bearer t0ken"},
        allow_redirects=False,
        timeout=timeout,
    )


def rafiki_request(http, double, timeout=None):
    body = events_body()
    headers = {
        "Content-Type": "application/json",
        "tenant-id": double.tenant,
        "signature": rafiki_signature(double.secret, body),
    }
    return http.post(
        double.graphql_url,
        data=json.dumps(body),
        headers=headers,
        allow_redirects=False,
        timeout=timeout,
    )


def stripe_request(http, double, timeout=None):
    return http.get(
        double.events_url, headers=bearer(double), allow_redirects=False, timeout=timeout
    )


DOUBLES = {
    "payments_listing": (
        lambda tmp_path: payments_listing(tmp_path, payments=[payment("p1")], token="t0ken"),
        payments_request,
    ),
    "rafiki_admin": (
        lambda tmp_path: rafiki_admin(tmp_path, events=rafiki_events(3)),
        rafiki_request,
    ),
    "stripe_events": (
        lambda tmp_path: stripe_events(tmp_path, events=stripe_list(3)),
        stripe_request,
    ),
}
each_double = pytest.mark.parametrize("kind", list(DOUBLES))


@each_double
async def test_status_behaviour_answers_that_status(tmp_path, http, kind):
    start, request = DOUBLES[kind]
    async with start(tmp_path) as double:
        double.set(behaviour="status:503")
        async with request(http, double) as response:
            assert response.status == 503
            assert response.content_type == "application/json"
            await response.json()
        double.set(behaviour=None)
        async with request(http, double) as response:
            assert response.status == 200
        stats = await double.stats()
    assert (stats["misbehaved"], stats["served"]) == (1, 1)
    assert [r["status"] for r in stats["recent"]] == [503, 200]


@each_double
async def test_invalid_json_behaviour_answers_200_that_is_not_json(tmp_path, http, kind):
    start, request = DOUBLES[kind]
    async with start(tmp_path) as double:
        double.set(behaviour="invalid_json")
        async with request(http, double) as response:
            assert response.status == 200
            assert response.content_type == "application/json"
            text = await response.read()
    with pytest.raises(ValueError):
        json.loads(text)


@each_double
async def test_huge_behaviour_streams_more_than_10_mib_of_json(tmp_path, http, kind):
    start, request = DOUBLES[kind]
    async with start(tmp_path) as double:
        double.set(behaviour="huge")
        async with request(http, double) as response:
            assert response.status == 200
            assert "Content-Length" not in response.headers  # only counting tells the size
            chunks = [chunk async for chunk in response.content.iter_chunked(1 << 16)]
        # A client that stops reading at its limit does not upset the double.
        async with request(http, double) as response:
            await response.content.readexactly(10 * MiB + 1)
        double.set(behaviour=None)
        async with request(http, double) as response:
            assert response.status == 200
    body = b"".join(chunks)
    assert len(body) > 10 * MiB
    assert isinstance(json.loads(body), dict)


@each_double
async def test_redirect_behaviour_answers_302_and_counts_a_client_that_follows(
    tmp_path, http, kind
):
    start, request = DOUBLES[kind]
    async with start(tmp_path) as double:
        double.set(behaviour="redirect")
        async with request(http, double) as response:
            assert response.status == 302
            location = response.headers["Location"]
        assert location == f"{double.url}/__redirected"
        assert (await double.stats())["followed"] == 0
        async with http.get(location) as response:
            assert response.status == 200
        assert (await double.stats())["followed"] == 1

        double.set(behaviour="redirect", redirect_to="http://192.0.2.1/elsewhere")
        async with request(http, double) as response:
            assert response.headers["Location"] == "http://192.0.2.1/elsewhere"


@each_double
async def test_hang_behaviour_never_answers(tmp_path, http, kind):
    start, request = DOUBLES[kind]
    async with start(tmp_path) as double:
        double.set(behaviour="hang")
        began = time.monotonic()
        with pytest.raises(TimeoutError):
            async with request(http, double, aiohttp.ClientTimeout(total=0.5)):
                pass
        assert 0.4 < time.monotonic() - began < 5
        stats = await double.stats()
        assert (stats["misbehaved"], stats["served"]) == (1, 0)

        # A request held open does not keep the double from stopping.
        async def held() -> None:
            async with request(http, double, aiohttp.ClientTimeout(total=30)) as response:
                await response.read()

        task = asyncio.create_task(held())
        async with asyncio.timeout(5):
            while (await double.stats())["misbehaved"] < 2:
                await asyncio.sleep(0.02)
        process = double.process
    assert process.returncode is not None
    with pytest.raises(aiohttp.ClientError):
        await task


async def endless_pages(http, double, kind, count):
    cursors, after = [], None
    for _ in range(count):
        if kind == "rafiki_admin":
            status, body = await graphql(http, double, events_body(first=100, after=after))
            page = body["data"]["webhookEvents"]
            more, after = page["pageInfo"]["hasNextPage"], page["pageInfo"]["endCursor"]
        else:
            params = {"limit": "100"} | ({"starting_after": after} if after else {})
            status, page = await stripe_get(http, double, params)
            more, after = page["has_more"], page["data"][-1]["id"]
        assert (status, more) == (200, True)
        cursors.append(after)
    return cursors


@pytest.mark.parametrize("kind", ["rafiki_admin", "stripe_events"])
async def test_endless_behaviour_always_has_a_next_page_with_a_fresh_cursor(tmp_path, http, kind):
    start, _ = DOUBLES[kind]
    async with start(tmp_path) as double:
        double.set(behaviour="endless")
        cursors = await endless_pages(http, double, kind, 25)
        stats = await double.stats()
    assert len(set(cursors)) == 25
    assert stats["pages"] == 25


async def test_a_behaviour_a_double_does_not_make_is_refused(tmp_path, http):
    async with payments_listing(tmp_path) as double:
        with pytest.raises(ValueError, match="endless"):
            double.set(behaviour="endless")
        with pytest.raises(ValueError, match="hnag"):
            double.set(behaviour="hnag")
        # Written past the check, the double answers 500 and says why.
        double.control_path.write_text(json.dumps({"payments": [], "behaviour": "hnag"}))
        status, body = await get_json(http, double.listing_url)
        assert (status, body) == (500, {"error": 'unknown behaviour "hnag"'})
        assert 'unknown behaviour "hnag"' in double.log()
    with pytest.raises(ValueError, match="hnag"):
        async with rafiki_admin(tmp_path, behaviour="hnag"):
            pass


async def test_a_double_that_cannot_start_fails_with_its_reason(tmp_path):
    with pytest.raises(DoubleError, match=r"usage: node stripe_events\.mjs"):
        async with stripe_events(tmp_path, key="pk_test_publishable"):
            pass


async def test_each_double_stops_when_its_block_ends(tmp_path):
    processes = []
    for start, _ in DOUBLES.values():
        async with start(tmp_path) as double:
            assert isinstance(double, Double)
            processes.append(double.process)
            assert double.process.returncode is None
    assert all(process.returncode is not None for process in processes)
