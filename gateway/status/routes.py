"""``GET /status/{source}/{key}`` on the ingress listener (design.md 5.10): a WebSocket when the
request asks to upgrade, Server-Sent Events otherwise; off (answered as any other path of the
ingress listener) without a ``status:`` block.

Before anything starts, and so before any upgrade, each refusal a JSON error as the ingress
answers them:

1. the token (401 ``invalid_token``): this payment's, unexpired, compared in constant time;
2. the source keeps payments (404 ``unknown_source``);
3. an ``Origin`` in ``status.allow_origins`` (403 ``origin_not_allowed``); a request without
   one is no page's (a browser sends it on every WebSocket handshake and every cross-origin
   EventSource), and its token is all it needs;
4. a WebSocket upgrade that is well formed (400 ``invalid_request``);
5. room under the caps (503 ``too_many_streams``) and the payment's first reading (503
   ``unavailable`` while the store cannot be read).

Then the payment's message at once and one on every change (``gateway.status.message``), a
heartbeat every ``StatusTiming.heartbeat`` seconds, when the hub says it is due (a WebSocket
ping, answered by every browser, and a page that did not answer the previous one by then is
gone; an SSE comment line), until the payment is final (terminal and confirmed), the
token expires, a reload revokes it, the page leaves, the page reads too slowly (a write that
takes longer than ``StatusTiming.write_timeout``) or the gateway stops. A WebSocket ends
with the close code of ``CLOSE_CODES``; an SSE response just ends (a page closes its
EventSource on a final message; after expiry its reconnection is refused 401, which ends it).

CORS: every answer to an allowed ``Origin`` carries ``Access-Control-Allow-Origin`` with it
(``Vary: Origin`` always); a preflight from one is answered 204, from another 403.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from aiohttp import WSMsgType, hdrs, web

from gateway.appkeys import CLOCK, METRICS, RUNTIME, STORE
from gateway.config.model import Config, StatusConfig
from gateway.errors import (
    InvalidRequest,
    InvalidToken,
    OriginNotAllowed,
    RequestError,
    TooManyStreams,
    Unavailable,
    UnknownSource,
)
from gateway.http.answers import error_response, request_id_of
from gateway.http.clientip import client_ip
from gateway.ingress.deadline import headers_arrived, response_started
from gateway.logs import log_fields
from gateway.status.hub import HEARTBEAT, POLL_INTERVAL, StatusHub, Watch
from gateway.status.message import encode, is_final, status_message
from gateway.status.token import verify

log = logging.getLogger("gateway.status")

PATH = "/status/{source}/{key:.+}"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: WebSocket close code and reason for each way a stream ends (RFC 6455 section 7.4; 4401 is
#: of the private range, read as "401": the token no longer opens this stream, get a new page).
CLOSE_CODES = {
    "final": (1000, "final"),
    "expired": (4401, "token expired"),
    "revoked": (4401, "token revoked"),
    "stopping": (1001, "gateway stopping"),
    "slow": (1013, "too slow, reconnect"),
    "unavailable": (1013, "store unavailable, reconnect"),
    "client": (1000, ""),
}
_NOTHING = object()
#: Biggest message a page may send on its WebSocket (it has nothing to say; pings are tiny).
MAX_INBOUND = 4096


@dataclass(frozen=True)
class StatusTiming:
    """The status streams' intervals, passed to ``create_app`` (tests shorten them)."""

    heartbeat: float = HEARTBEAT
    write_timeout: float = 10.0
    poll_interval: float = POLL_INTERVAL
    #: How long a new stream waits for its payment's first reading before a 503.
    first_reading: float = 10.0


HUB = web.AppKey("status_hub", StatusHub)
TIMING = web.AppKey("status_timing", StatusTiming)


def add_status(app: web.Application, fallback: Handler, timing: StatusTiming) -> None:
    """Register the status routes (before the ingress's catch-all) and the hub. With status
    off, requests to them go to ``fallback``, the ingress, as any other path would."""
    hub = StatusHub(
        lambda: app.get(STORE),
        lambda: app[RUNTIME].config.status,
        poll_interval=timing.poll_interval,
        heartbeat=timing.heartbeat,
    )
    app[HUB] = hub
    app[TIMING] = timing

    async def stop(_: web.Application) -> None:
        await hub.stop()

    app.on_shutdown.append(stop)

    async def get(request: web.Request) -> web.StreamResponse:
        if request.app[RUNTIME].config.status is None:
            return await fallback(request)
        return await _stream(request)

    async def options(request: web.Request) -> web.StreamResponse:
        settings = request.app[RUNTIME].config.status
        if settings is None:
            return await fallback(request)
        return _preflight(request, settings)

    app.router.add_route("GET", PATH, get)
    app.router.add_route("OPTIONS", PATH, options)


def _cors(origin: str | None, settings: StatusConfig) -> dict[str, str]:
    """The CORS headers of an answer: the origin named back only when it is allowed."""
    if origin is not None and origin in settings.allow_origins:
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
    return {"Vary": "Origin"}


def _preflight(request: web.Request, settings: StatusConfig) -> web.Response:
    """A CORS preflight: 204 for an allowed origin, 403 for any other."""
    request_id = request_id_of(request.headers.get("X-Request-ID"))
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is None or origin not in settings.allow_origins:
        answer = error_response(OriginNotAllowed(), request_id)
        answer.headers["Vary"] = "Origin"
        return answer
    return web.Response(
        status=204,
        headers={
            **_cors(origin, settings),
            "Access-Control-Allow-Methods": "GET",
            "Access-Control-Max-Age": "600",
            "X-Request-ID": request_id,
        },
    )


def _check(
    request: web.Request, config: Config, settings: StatusConfig, now: float
) -> tuple[int, str | None]:
    """Checks 1 to 3: the token's expiry and the request's ``Origin``; raises a refusal."""
    source, key = request.match_info["source"], request.match_info["key"]
    tokens = request.query.getall("token", [])
    if len(tokens) > 1:
        raise InvalidToken("give one status token, not several", "malformed")
    expiry = verify(tokens[0] if tokens else None, settings.secret.encode(), source, key, now)
    known = config.sources.get(source)
    if known is None or known.payment is None:
        raise UnknownSource("no source keeps payments under this name")
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is not None and origin not in settings.allow_origins:
        raise OriginNotAllowed()
    return expiry, origin


def _reason(error: RequestError) -> str:
    """The refusal's label for ``webhook_gateway_status_refusals_total``."""
    if isinstance(error, InvalidToken):
        return f"token_{error.reason}"
    if isinstance(error, TooManyStreams):
        return error.reason
    if isinstance(error, OriginNotAllowed):
        return "origin"
    if isinstance(error, UnknownSource):
        return "unknown_source"
    if isinstance(error, InvalidRequest):
        return "bad_upgrade"
    return "unavailable"


async def _stream(request: web.Request) -> web.StreamResponse:
    """The checks, then the stream over the transport the request asked for."""
    headers_arrived(request.transport)
    app = request.app
    config = app[RUNTIME].config
    settings = config.status
    assert settings is not None  # routed here only while status is on
    request_id = request_id_of(request.headers.get("X-Request-ID"))
    timing, clock, metrics = app[TIMING], app[CLOCK], app[METRICS]
    source, key = request.match_info["source"], request.match_info["key"]
    cors = _cors(request.headers.get(hdrs.ORIGIN), settings)
    ws: web.WebSocketResponse | None = None
    try:
        expiry, origin = _check(request, config, settings, clock())
        if "websocket" in request.headers.get(hdrs.UPGRADE, "").lower():
            ws = web.WebSocketResponse(
                autoping=False,  # the pings are the hub's, the pongs counted here
                timeout=timing.write_timeout,
                compress=False,  # messages are tiny; a zlib context per stream is not
                max_msg_size=MAX_INBOUND,
            )
            if not ws.can_prepare(request).ok:
                raise InvalidRequest("the WebSocket upgrade request is malformed")
        forwarded = request.headers.getall("X-Forwarded-For", [])
        ip = client_ip(request.remote, forwarded, config.server.trusted_proxies)

        def recheck(new: StatusConfig | None) -> str | None:
            return _still_allowed(new, request, origin, clock())

        watch = app[HUB].open((source, key), str(ip), settings, recheck)
    except RequestError as error:
        return _refuse(request, error, request_id, cors)
    try:
        if not await _first_reading(watch, timing.first_reading):
            return _refuse(request, Unavailable("the store cannot be read"), request_id, cors)
        transport = "sse" if ws is None else "websocket"
        started = time.monotonic()
        metrics.status_streams.labels(transport).inc()
        # Unless it ends otherwise, the page left (a server that cancels the handler of a
        # client that hung up ends it here, by cancellation).
        reason = "client"
        try:
            if ws is None:
                response: web.StreamResponse = web.StreamResponse(
                    headers={
                        "Content-Type": "text/event-stream",
                        "Cache-Control": "no-store",
                        "X-Accel-Buffering": "no",
                        "X-Request-ID": request_id,
                        **cors,
                    }
                )
                channel: _Channel = _Sse(request, response, watch, timing)
                reason = await _serve(request, channel, watch, expiry)
            else:
                ws.headers["X-Request-ID"] = request_id
                response = ws
                channel = _WebSocket(request, ws, watch, timing)
                reason = await _serve(request, channel, watch, expiry)
        finally:
            metrics.status_streams.labels(transport).dec()
            metrics.status_ends.labels(reason).inc()
            seconds = round(time.monotonic() - started, 3)
            fields = {"source": source, "key": key, "transport": transport, "reason": reason}
            log_fields(log, logging.INFO, "status stream ended", {**fields, "seconds": seconds})
        return response
    finally:
        app[HUB].close(watch)


def _still_allowed(
    settings: StatusConfig | None, request: web.Request, origin: str | None, now: float
) -> str | None:
    """After a reload: ``None`` if the stream's token and origin pass the new ``status``
    block, else why it ends."""
    if settings is None:
        return "revoked"
    source, key = request.match_info["source"], request.match_info["key"]
    token = request.query.get("token")
    try:
        verify(token, settings.secret.encode(), source, key, now)
    except InvalidToken as exc:
        return "expired" if exc.reason == "expired" else "revoked"
    if origin is not None and origin not in settings.allow_origins:
        return "revoked"
    return None


def _refuse(
    request: web.Request, error: RequestError, request_id: str, cors: dict[str, str]
) -> web.Response:
    """A refusal before the stream starts: counted, logged, answered as JSON."""
    reason = _reason(error)
    request.app[METRICS].status_refusals.labels(reason).inc()
    fields = {"request_id": request_id, "outcome": reason, "status": error.status}
    log_fields(log, logging.INFO, "status stream refused", fields)
    answer = error_response(error, request_id)
    answer.headers.update(cors)
    response_started(request.transport)
    return answer


async def _first_reading(watch: Watch, within: float) -> bool:
    """Wait for the payment's first reading; ``False`` if the store could not give one."""
    try:
        async with asyncio.timeout(within):
            while not watch.read and watch.ended is None:
                watch.changed.clear()
                await watch.changed.wait()
    except TimeoutError:
        return False
    return watch.read


class _Channel(Protocol):
    """One transport of a stream."""

    async def start(self) -> None:
        """Send the answer's head (the upgrade, or the SSE response's headers)."""

    async def send(self, message: bytes) -> None:
        """Send one message (raises ``TimeoutError`` past the write timeout)."""

    async def beat(self) -> None:
        """Send a heartbeat (raises ``ConnectionResetError`` if the page is known gone)."""

    def gone(self) -> bool:
        """Whether the page went away."""

    async def end(self, reason: str) -> None:
        """End the stream for ``reason``."""

    def release(self) -> None:
        """Stop what the channel runs in the background (however the stream ended)."""


async def _serve(request: web.Request, channel: _Channel, watch: Watch, expiry: int) -> str:
    """Start the stream and follow the payment until it ends; why it ended."""
    try:
        try:
            await channel.start()
            reason = await _follow(channel, watch, expiry, request.app[CLOCK])
        except TimeoutError:
            reason = "slow"
        except ConnectionResetError:
            reason = "client"
        await channel.end(reason)
        return reason
    finally:
        channel.release()


async def _follow(channel: _Channel, watch: Watch, expiry: int, clock: Callable[[], float]) -> str:
    """Send the payment's message whenever it differs from the last one sent, and a heartbeat
    whenever the hub says one is due; why it ends."""
    source, key = watch.key
    sent: bytes | None = None
    # The reading last looked at: each reading is a new object, so a wake for a heartbeat
    # (most of an idle stream's wakes) builds no message.
    seen: object = _NOTHING
    while True:
        if watch.ended is not None:
            return watch.ended
        watch.changed.clear()
        if watch.view is not seen:
            seen = watch.view
            message = encode(status_message(source, key, watch.view))
            if message != sent:
                await channel.send(message)
                sent = message
            if is_final(watch.view):
                return "final"
        remaining = expiry - clock()
        if remaining <= 0:
            return "expired"
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(remaining):
                await watch.changed.wait()
        if channel.gone():
            return "client"
        if watch.beat_due:
            watch.beat_due = False
            await channel.beat()


class _Sse:
    """Server-Sent Events: ``data: <json>`` per message, a comment line per heartbeat. Nothing
    tells the handler that its page left: the hub's sweep asks ``gone`` (``StatusHub``)."""

    def __init__(
        self,
        request: web.Request,
        response: web.StreamResponse,
        watch: Watch,
        timing: StatusTiming,
    ):
        self._request = request
        self._response = response
        self._watch = watch
        self._timeout = timing.write_timeout

    async def start(self) -> None:
        """Send the headers, and how long a page waits before it reconnects."""
        async with asyncio.timeout(self._timeout):
            await self._response.prepare(self._request)
            await self._response.write(b"retry: 3000\n\n")
        self._watch.gone = self.gone

    async def send(self, message: bytes) -> None:
        """One event with the message as its data (compact JSON: one line)."""
        async with asyncio.timeout(self._timeout):
            await self._response.write(b"data: " + message + b"\n\n")

    async def beat(self) -> None:
        """A comment line: keeps proxies from closing an idle stream."""
        async with asyncio.timeout(self._timeout):
            await self._response.write(b": heartbeat\n\n")

    def gone(self) -> bool:
        """Whether the connection is closing."""
        transport = self._request.transport
        return transport is None or transport.is_closing()

    async def end(self, reason: str) -> None:
        """End the response; a slow or departed page's connection is dropped."""
        if reason in ("slow", "client"):
            self._response.force_close()
            if self._request.transport is not None:
                self._request.transport.abort()
            return
        with contextlib.suppress(ConnectionResetError, TimeoutError):
            async with asyncio.timeout(self._timeout):
                await self._response.write_eof()
        response_started(self._request.transport)

    def release(self) -> None:
        """Nothing runs in the background."""


class _WebSocket:
    """A WebSocket: one text frame per message, a ping per heartbeat; what the page sends is
    read for its pongs, its pings (answered) and its close, and otherwise ignored."""

    def __init__(
        self, request: web.Request, ws: web.WebSocketResponse, watch: Watch, timing: StatusTiming
    ):
        self._request = request
        self._ws = ws
        self._watch = watch
        self._timeout = timing.write_timeout
        self._reader: asyncio.Task[None] | None = None
        #: Whether the page answered the last ping (or none was sent yet).
        self._answered = True

    async def start(self) -> None:
        """The upgrade, then a reader that wakes the stream when the page leaves."""
        async with asyncio.timeout(self._timeout):
            await self._ws.prepare(self._request)
        self._reader = asyncio.create_task(self._read(), name="status-ws-reader")
        self._reader.add_done_callback(lambda _: self._watch.changed.set())

    async def _read(self) -> None:
        async for message in self._ws:
            if message.type is WSMsgType.PONG:
                self._answered = True
            elif message.type is WSMsgType.PING:
                await self._ws.pong(message.data)

    async def send(self, message: bytes) -> None:
        """One text frame."""
        async with asyncio.timeout(self._timeout):
            await self._ws.send_str(message.decode())

    async def beat(self) -> None:
        """A ping; a page that left the previous one unanswered for a whole heartbeat is
        gone."""
        if not self._answered:
            raise ConnectionResetError("the page did not answer the last ping")
        self._answered = False
        async with asyncio.timeout(self._timeout):
            await self._ws.ping()

    def gone(self) -> bool:
        """Whether the page closed, or stopped answering pings."""
        return self._ws.closed or (self._reader is not None and self._reader.done())

    async def end(self, reason: str) -> None:
        """Close with the reason's code; a slow page's connection is dropped."""
        code, text = CLOSE_CODES[reason]
        try:
            if reason == "slow":
                raise TimeoutError
            if not self._ws.closed:
                async with asyncio.timeout(self._timeout):
                    await self._ws.close(code=code, message=text.encode())
        except (TimeoutError, ConnectionResetError):
            if self._request.transport is not None:
                self._request.transport.abort()

    def release(self) -> None:
        """Stop reading the page's frames."""
        if self._reader is not None:
            self._reader.cancel()
