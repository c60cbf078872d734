"""delivery.client: POSTs over kept connections to real servers, and every way one goes wrong."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import uvloop
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.delivery.client import USER_AGENT, DeliveryClient, HttpError
from harness.redis_server import free_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Destination:
    """An aiohttp destination that records what it got and on which connection."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.connections: set[int] = set()
        self.hold: asyncio.Event | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        self.connections.add(id(request.transport))
        body = await request.read()
        self.requests.append((request.path_qs, dict(request.headers), body))
        if self.hold is not None:
            await self.hold.wait()
        if request.path == "/chunked":
            response = web.StreamResponse(status=202, headers={"Content-Type": "text/plain"})
            response.enable_chunked_encoding()
            await response.prepare(request)
            await response.write(b"chunk one, ")
            await response.write(b"chunk two")
            await response.write_eof()
            return response
        return web.json_response({"got": len(body)}, status=201)


@pytest.fixture
async def destination(aiohttp_server) -> tuple[Destination, str]:
    target = Destination()
    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", target.handle)
    server = await aiohttp_server(app)
    return target, f"http://127.0.0.1:{server.port}"


@pytest.fixture
async def client() -> AsyncIterator[DeliveryClient]:
    made = DeliveryClient(limit=4)
    yield made
    await made.close()


@contextlib.asynccontextmanager
async def raw_destination(handle: Handler) -> AsyncIterator[tuple[str, DeliveryClient]]:
    """A server of hand-written answers and a client for it; each connection the server
    takes is closed when its handler ends, and both are closed after."""

    async def closing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handle(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client dropped the connection: what some tests ask for
        finally:
            writer.close()

    server = await asyncio.start_server(closing, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = DeliveryClient()
    try:
        yield f"http://127.0.0.1:{port}", client
    finally:
        await client.close()
        server.close()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return head + await reader.readexactly(length)


async def test_a_post_arrives_whole_and_its_answer_comes_back(destination, client) -> None:
    target, url = destination
    answer = await client.post(
        f"{url}/hooks/in?x=1&y=%2F",
        b'{"a":1}',
        {"Content-Type": "application/json", "X-Id": "e1"},
        give_up_after=5,
    )
    assert (answer.status, answer.content_type) == (201, "application/json; charset=utf-8")
    assert answer.body == b'{"got": 7}'
    path, headers, body = target.requests[0]
    assert (path, body) == ("/hooks/in?x=1&y=%2F", b'{"a":1}')
    assert headers["X-Id"] == "e1"
    assert headers["User-Agent"] == USER_AGENT
    assert headers["Host"] == url.removeprefix("http://")


async def test_posts_one_after_another_share_one_connection(destination, client) -> None:
    target, url = destination
    for n in range(20):
        answer = await client.post(f"{url}/h", str(n).encode(), {}, give_up_after=5)
        assert answer.status == 201
    assert len(target.requests) == 20
    assert len(target.connections) == 1


async def test_a_connection_idle_past_keepalive_is_not_used_again(destination) -> None:
    target, url = destination
    client = DeliveryClient(keepalive=0.1)
    try:
        await client.post(f"{url}/h", b"a", {}, give_up_after=5)
        await asyncio.sleep(0.2)
        await client.post(f"{url}/h", b"b", {}, give_up_after=5)
        await client.post(f"{url}/h", b"c", {}, give_up_after=5)
    finally:
        await client.close()
    assert len(target.connections) == 2


async def test_at_most_limit_run_at_once_and_a_wait_for_a_slot_counts_in_the_time(
    destination, client
) -> None:
    target, url = destination
    target.hold = asyncio.Event()
    held = [
        asyncio.create_task(client.post(f"{url}/h", b"x", {}, give_up_after=5)) for _ in range(4)
    ]
    while len(target.requests) < 4:
        await asyncio.sleep(0.01)
    with pytest.raises(TimeoutError):
        await client.post(f"{url}/h", b"late", {}, give_up_after=0.2)
    target.hold.set()
    assert [answer.status for answer in await asyncio.gather(*held)] == [201] * 4
    assert len(target.requests) == 4  # the one that timed out waiting was never sent
    assert len(target.connections) == 4


async def test_a_chunked_answer_is_read_and_its_connection_kept(destination, client) -> None:
    target, url = destination
    first = await client.post(f"{url}/chunked", b"x", {}, give_up_after=5)
    second = await client.post(f"{url}/chunked", b"x", {}, give_up_after=5)
    assert first.body == second.body == b"chunk one, chunk two"
    assert len(target.connections) == 1


async def test_a_kept_connection_the_server_closed_is_replaced_and_the_post_sent_once() -> None:
    received: list[bytes] = []

    async def answer_once_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        # Answers keep-alive, then closes as servers do when a connection idles too long.
        received.append(await read_request(reader))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()

    async with raw_destination(answer_once_then_close) as (url, client):
        for n in range(3):
            answer = await client.post(f"{url}/h", str(n).encode(), {}, give_up_after=5)
            assert (answer.status, answer.body) == (200, b"ok")
            await asyncio.sleep(0.05)  # the close reaches the client while it is idle
        assert [request.rsplit(b"\r\n", 1)[-1] for request in received] == [b"0", b"1", b"2"]


async def test_a_reused_connection_closed_as_the_post_goes_out_is_sent_again_anew() -> None:
    received: list[bytes] = []

    async def close_after_the_first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        received.append(await read_request(reader))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        # Reads the next request and closes without a byte of answer: the race of a server
        # closing a kept connection just as a request goes out on it.
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    async with raw_destination(close_after_the_first) as (url, client):
        assert (await client.post(f"{url}/h", b"a", {}, give_up_after=5)).status == 200
        assert (await client.post(f"{url}/h", b"b", {}, give_up_after=5)).status == 200
        assert [request.rsplit(b"\r\n", 1)[-1] for request in received] == [b"a", b"b"]


async def test_a_new_connection_closed_without_an_answer_is_an_error_not_a_resend() -> None:
    seen = 0

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal seen
        await read_request(reader)
        seen += 1
        writer.close()

    async with raw_destination(hang_up) as (url, client):
        with pytest.raises(HttpError, match="closed without an answer"):
            await client.post(f"{url}/h", b"a", {}, give_up_after=5)
        assert seen == 1


async def test_an_answer_cut_short_is_an_error_and_is_not_sent_again() -> None:
    seen = 0

    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal seen
        while True:
            await read_request(reader)
            seen += 1
            if seen == 1:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
                continue
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
            await writer.drain()
            writer.close()
            return

    async with raw_destination(cut) as (url, client):
        await client.post(f"{url}/h", b"a", {}, give_up_after=5)
        with pytest.raises(HttpError, match="before the answer was complete"):
            await client.post(f"{url}/h", b"b", {}, give_up_after=5)
        assert seen == 2


async def test_garbage_for_an_answer_is_an_error_naming_it() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        await writer.drain()

    async with raw_destination(garbage) as (url, client):
        with pytest.raises(HttpError, match=r"not a readable HTTP answer.*SSH-2\.0"):
            await client.post(f"{url}/h", b"a", {}, give_up_after=5)


async def test_a_destination_that_never_answers_times_out_and_its_connection_is_dropped() -> None:
    closed = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await reader.read()  # until the client drops the connection
        closed.set()

    async with raw_destination(silent) as (url, client):
        with pytest.raises(TimeoutError):
            await client.post(f"{url}/h", b"a", {}, give_up_after=0.2)
        await asyncio.wait_for(closed.wait(), 5)


async def test_a_refused_connection_is_an_error_naming_the_address(client) -> None:
    port = free_port()
    with pytest.raises(HttpError, match=f"cannot connect to 127.0.0.1:{port}"):
        await client.post(f"http://127.0.0.1:{port}/h", b"a", {}, give_up_after=5)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://example.test/h", "not an http or https URL"),
        ("http:///h", "names no host"),
        ("http://example.test:99999/h", "not a usable URL"),
    ],
)
async def test_a_url_that_cannot_be_used_is_an_error(client, url: str, why: str) -> None:
    with pytest.raises(HttpError, match=why):
        await client.post(url, b"a", {}, give_up_after=5)


async def test_a_header_that_would_split_the_request_is_an_error_and_nothing_is_sent(
    destination, client
) -> None:
    target, url = destination
    with pytest.raises(HttpError, match="cannot be written"):
        await client.post(f"{url}/h", b"a", {"X-A": "1\r\nX-Evil: 2"}, give_up_after=5)
    assert target.requests == []


async def test_user_info_in_the_url_is_sent_as_basic_auth_and_a_given_agent_kept(
    destination, client
) -> None:
    target, url = destination
    with_user = url.replace("http://", "http://market%40place:s%3Acret@")
    await client.post(f"{with_user}/h", b"a", {"User-Agent": "their-agent"}, give_up_after=5)
    _, headers, _ = target.requests[0]
    assert headers["Authorization"] == "Basic bWFya2V0QHBsYWNlOnM6Y3JldA=="  # market@place:s:cret
    assert headers["User-Agent"] == "their-agent"
    assert "@" not in headers["Host"]


async def test_after_close_nothing_is_sent(destination) -> None:
    target, url = destination
    client = DeliveryClient()
    await client.post(f"{url}/h", b"a", {}, give_up_after=5)
    await client.close()
    with pytest.raises(HttpError, match="closed"):
        await client.post(f"{url}/h", b"b", {}, give_up_after=5)
    assert len(target.requests) == 1


def _certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_https_is_verified_against_the_trusted_certificates(aiohttp_server, tmp_path) -> None:
    cert, key = _certificate(tmp_path)
    serving = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    serving.load_cert_chain(cert, key)
    target = Destination()
    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", target.handle)
    server = await aiohttp_server(app, ssl=serving)
    url = f"https://127.0.0.1:{server.port}/h"

    trusting = DeliveryClient(ssl_context=ssl.create_default_context(cafile=str(cert)))
    default = DeliveryClient()
    try:
        assert (await trusting.post(url, b"a", {}, give_up_after=5)).status == 201
        assert (await trusting.post(url, b"b", {}, give_up_after=5)).status == 201
        assert len(target.connections) == 1
        with pytest.raises(HttpError, match=r"cannot connect.*CERTIFICATE_VERIFY_FAILED"):
            await default.post(url, b"c", {}, give_up_after=5)
        assert len(target.requests) == 2
    finally:
        await trusting.close()
        await default.close()


def test_on_uvloop_posts_share_a_connection_a_stale_one_is_replaced_and_time_runs_out() -> None:
    """The gateway runs on uvloop, whose transports are not asyncio's: the same, there."""

    async def scenario() -> None:
        received: list[bytes] = []

        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                request = await read_request(reader)
                received.append(request)
                if request.endswith(b"silent"):
                    await reader.read()
                    return
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
                if request.endswith(b"last"):
                    return  # closed, as an idle connection is

        async with raw_destination(answer) as (url, client):
            for body in (b"1", b"2", b"last"):
                assert (await client.post(f"{url}/h", body, {}, give_up_after=5)).body == b"ok"
            await asyncio.sleep(0.05)
            assert (await client.post(f"{url}/h", b"anew", {}, give_up_after=5)).status == 200
            with pytest.raises(TimeoutError):
                await client.post(f"{url}/h", b"silent", {}, give_up_after=0.2)
        assert [r.rsplit(b"\r\n", 1)[-1] for r in received] == [
            b"1",
            b"2",
            b"last",
            b"anew",
            b"silent",
        ]

    uvloop.run(scenario())
