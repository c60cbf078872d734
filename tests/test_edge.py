"""Edge hardening over real sockets: each class of attack or odd input found from outside gets
a clear 4xx (never a 5xx), and nothing of it reaches the destination (design.md 2, 3, 4)."""

from __future__ import annotations

import asyncio
import json
from unittest import mock

import pytest
from aiohttp.streams import StreamReader
from aiohttp.test_utils import make_mocked_request

from gateway.app import METRICS, STORE
from gateway.errors import ClientClosed
from gateway.http.text import has_control
from gateway.ingress.body import read_body
from tests.support import ADMIN_TOKEN, payment_body, payments_source, sign_payment
from tests.waiting import eventually

SYNC = {"payments": payments_source(delivery="sync")}


async def raw(client, head: bytes, body: bytes = b"", *, wait: float = 5.0) -> tuple[int, dict]:
    """Send bytes aiohttp's client would refuse to write; the status and JSON answer."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(head + body)
        await writer.drain()
        async with asyncio.timeout(wait):
            data = await reader.read()
    finally:
        writer.close()
    status_line, _, rest = data.partition(b"\r\n")
    payload = rest.partition(b"\r\n\r\n")[2]
    return int(status_line.split()[1]), json.loads(payload) if payload else {}


def request_head(headers: list[tuple[str, bytes]], body: bytes, path: str = "/hooks/payments"):
    lines = [f"POST {path} HTTP/1.1".encode(), b"Host: gateway", b"Connection: close"]
    lines += [name.encode() + b": " + value for name, value in headers]
    lines.append(f"Content-Length: {len(body)}".encode())
    return b"\r\n".join(lines) + b"\r\n\r\n"


def signed(body: bytes, msg_id: str) -> list[tuple[str, bytes]]:
    return [(k, v.encode()) for k, v in sign_payment(body, msg_id=msg_id).items()]


async def nothing_stored_beyond(client, ids: set[str]) -> None:
    events, _ = await client.app[STORE].list_events()
    assert {e.id for e in events} == ids


async def test_a_second_webhook_id_cannot_replay_past_dedupe(make_gateway, marketplace):
    market, _ = marketplace
    client, _ = await make_gateway()
    body = payment_body()
    headers = signed(body, "msg_original")
    status, _ = await raw(client, request_head(headers, body), body)
    assert status == 202
    await market.wait_for(1)
    # The captured request again, with a second webhook-id placed first.
    replayed = [("webhook-id", b"msg_attacker"), *headers]
    status, answer = await raw(client, request_head(replayed, body), body)
    assert (status, answer["error"]) == (401, "invalid_signature")
    assert "more than once" in answer["message"]
    await nothing_stored_beyond(client, {"msg_original"})
    assert len(market.received) == 1


@pytest.mark.parametrize("header", ["webhook-id", "webhook-signature", "webhook-timestamp"])
async def test_undecodable_bytes_in_signature_headers_are_401(make_gateway, marketplace, header):
    client, _ = await make_gateway()
    body = payment_body()
    headers = [(k, b"\xff\xfe" + v if k == header else v) for k, v in signed(body, "msg_x")]
    status, answer = await raw(client, request_head(headers, body), body)
    assert (status, answer["error"]) == (401, "invalid_signature")
    await nothing_stored_beyond(client, set())
    assert marketplace[0].received == []


async def test_undecodable_bytes_in_an_extracted_header_are_400(make_gateway, marketplace):
    source = payments_source(event={"type": "header:X-Event-Type", "subject": "/offerId"})
    client, _ = await make_gateway(sources={"payments": source})
    body = payment_body()
    headers = [*signed(body, "msg_y"), ("X-Event-Type", b"payment.\xff")]
    status, answer = await raw(client, request_head(headers, body), body)
    assert (status, answer["error"]) == (400, "invalid_body")
    await nothing_stored_beyond(client, set())


@pytest.mark.parametrize("field", ["type", "offerId", "pendingId", "status"])
async def test_a_lone_surrogate_in_an_extracted_field_is_400(make_gateway, marketplace, field):
    client, _ = await make_gateway()
    event = json.loads(payment_body())
    event[field] = "payment.x"
    body = json.dumps(event).replace("payment.x", "payment.\\udcff").encode()
    response = await client.post("/hooks/payments", data=body, headers=sign_payment(body))
    answer = await response.json()
    # /pendingId is the payment's key and /offerId its reference: stored, so refused. /status
    # is kept for the dashboard only, and left out (never refused) when it is not valid text.
    expected = (400, "invalid_body") if field != "status" else (202, None)
    assert (response.status, answer.get("error")) == expected


@pytest.mark.parametrize("sources", [None, SYNC], ids=["queued", "sync"])
async def test_control_characters_in_a_subject_are_delivered_percent_encoded(
    make_gateway, marketplace, sources
):
    market, _ = marketplace
    client, _ = await make_gateway(**({"sources": sources} if sources else {}))
    body = payment_body(offerId="42\r\nX-Injected: 1", type="payment.completed ✓")
    response = await client.post("/hooks/payments", data=body, headers=sign_payment(body))
    assert response.status in (200, 202), await response.text()
    await market.wait_for(1)
    received = market.received[0]
    assert received.headers["ce-subject"] == "42%0D%0AX-Injected:%201"
    assert received.headers["ce-type"] == "payment.completed%20%E2%9C%93"
    assert "X-Injected" not in received.headers
    assert received.verified and received.body == body


async def test_an_event_id_with_a_control_character_is_400(make_gateway, marketplace):
    source = payments_source(event={"id": "/pendingId", "type": "/type"})
    client, _ = await make_gateway(sources={"payments": source})
    body = payment_body(pendingId="p-1\u0007")
    response = await client.post("/hooks/payments", data=body, headers=sign_payment(body))
    assert (response.status, (await response.json())["error"]) == (400, "invalid_body")
    await nothing_stored_beyond(client, set())


async def test_a_request_line_without_a_version_is_400_and_closed(make_gateway, marketplace):
    client, _ = await make_gateway()
    body = payment_body()
    lines = [b"POST /hooks/payments"] + [k.encode() + b": " + v for k, v in signed(body, "m0")]
    head = b"\r\n".join([*lines, f"Content-Length: {len(body)}".encode()]) + b"\r\n\r\n"
    status, answer = await raw(client, head, body)
    assert (status, answer["error"]) == (400, "invalid_request")
    await nothing_stored_beyond(client, set())
    assert marketplace[0].received == []


@pytest.mark.parametrize("leave", ["reset", "half-close"])
async def test_a_sender_leaving_mid_body_is_client_closed_without_a_traceback(
    make_gateway, marketplace, caplog, leave
):
    client, _ = await make_gateway()
    body = payment_body()
    head = request_head(signed(body, "msg_gone"), body)
    _reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(head + body[:10])
    await writer.drain()
    await asyncio.sleep(0.1)
    if leave == "reset":
        writer.transport.abort()
    else:  # FIN short of the declared length, the connection still open for the answer
        writer.write_eof()
    metrics = client.app[METRICS]
    child = metrics.requests.labels("payments", "client_closed")
    await eventually(
        child._value.get,
        "the request counted as client_closed",
        until=lambda count: count >= 1,
        interval=0.02,
    )
    assert not [r for r in caplog.records if r.exc_info], "logged once, without a traceback"
    await nothing_stored_beyond(client, set())
    writer.close()


async def test_a_sender_leaving_after_its_whole_body_arrived_is_client_closed():
    # Seen in the pinned benchmark as a 500 with a traceback: wrk closed its connections at the
    # end of a phase while requests whose bodies had all arrived waited for a rate-limit call.
    # The timing cannot be forced over a socket, so the stream is put in that state directly.
    stream = StreamReader(mock.Mock(_reading_paused=False), 2**16, loop=asyncio.get_running_loop())
    stream.feed_data(b"{}")
    stream.feed_eof()
    stream.set_exception(ConnectionResetError("Connection lost"))
    request = make_mocked_request("POST", "/", headers={"Content-Length": "2"}, payload=stream)
    with pytest.raises(ClientClosed):
        await read_body(request, 100, read_timeout=1.0)


async def test_the_admin_api_answers_400_never_500_to_odd_input(with_admin_app):
    _client, admin = with_admin_app
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    for path in ("/admin/events?limit=²", "/admin/events?limit=-1", "/admin/dead-letters?limit=x"):
        response = await admin.get(path, headers=auth)
        assert response.status == 400, path
    for payload in (
        {"ids": ["\udcff"]},
        {"ids": ["x" * 600]},
        {"ids": ["a"] * 1001},
        {"ids": [1, 2]},
        {"ids": []},
    ):
        response = await admin.post(
            "/admin/dead-letters/redrive",
            data=json.dumps(payload).encode(),
            headers={**auth, "Content-Type": "application/json"},
        )
        assert response.status == 400, payload
    # Undecodable bytes in the token are a 401 like any wrong token.
    head = (
        b"GET /admin/events HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
        b"Authorization: Bearer \xff\xfe\r\n\r\n"
    )
    status, answer = await raw(admin, head)
    assert (status, answer["error"]) == (401, "unauthorized")


@pytest.fixture
async def with_admin_app(make_gateway, aiohttp_client):
    from gateway.app import create_admin_app

    client, _ = await make_gateway()
    admin = await aiohttp_client(create_admin_app(client.server.app))
    return client, admin


def test_a_control_character_is_c0_but_tab_del_or_c1():
    for code in range(0x300):
        expected = (code < 0x20 and code != 0x09) or 0x7F <= code <= 0x9F
        assert has_control(f"id-{chr(code)}-x") is expected, hex(code)
    assert not has_control("msg_2Kf8s9dLq0p café ✓ \u2028")
