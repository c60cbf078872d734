"""``GET /admin/stream``: the store's change log as Server-Sent Events (design.md 5.6, live).

Every accepted event and every delivery outcome is written to the store's change log
(``Store.changes``): on SQLite in the same transaction as the change, on Redis right after the
script that made it (one stream for every partition; ``gateway.store.redis``, "Change log"),
so the log holds what every process and replica did. One ``ChangeFeed`` per process polls it
(a primary-key range on SQLite, ``XRANGE`` on the Redis stream; both cheap) and hands each
entry to the streams open in this process:

* each message has ``event: accepted`` or ``event: delivery``, ``id:`` (the log's id, which a
  client sends back as ``Last-Event-ID`` to resume) and JSON ``data:``;
* a comment line every ``HEARTBEAT`` seconds keeps proxies from closing an idle stream;
* each stream has a buffer of ``BUFFER`` messages: a client that falls that far behind, or
  whose socket takes longer than ``WRITE_TIMEOUT`` to take a message, is dropped (it
  reconnects with ``Last-Event-ID``), so memory never grows with a slow reader;
* at most ``max_streams`` streams are open per process; one more is answered 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from aiohttp import web

from gateway.appkeys import GATEWAY, STORE
from gateway.errors import StoreError, Unavailable
from gateway.store.follow import log_end, read_after
from gateway.store.records import Change, change_order

log = logging.getLogger("gateway.admin")

POLL_INTERVAL = 0.25
HEARTBEAT = 15.0
BUFFER = 256
WRITE_TIMEOUT = 10.0
MAX_STREAMS = 32
#: Entries a resuming client is sent from the log at most (older ones are not replayed).
BACKLOG = 1000
_TICK = 1.0


class Subscriber:
    """One open stream's bounded buffer; ``dropped`` once it overflowed."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Change | None] = asyncio.Queue(BUFFER)
        self.dropped = False

    def offer(self, change: Change | None) -> None:
        """Buffer a change (``None``: the feed is closing); overflowing drops the stream."""
        if self.dropped:
            return
        try:
            self.queue.put_nowait(change)
        except asyncio.QueueFull:
            self.dropped = True
            # Room for the wake-up: the reader sees ``dropped`` and ends the stream.
            self.queue.get_nowait()
            self.queue.put_nowait(None)


class ChangeFeed:
    """Polls the store's change log for this process and fans it out to the open streams;
    idle while none is open."""

    def __init__(self, app: web.Application, max_streams: int = MAX_STREAMS) -> None:
        self._app = app
        self.max_streams = max_streams
        self._subscribers: set[Subscriber] = set()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        #: Set once the poll knows where the log ends; from then on it hands every later entry
        #: to the open streams.
        self.started = asyncio.Event()

    @property
    def open_streams(self) -> int:
        """How many streams are open in this process."""
        return len(self._subscribers)

    def subscribe(self) -> Subscriber:
        """A new stream's buffer (the poll starts with the first one)."""
        if self._closed:
            raise Unavailable("the gateway is stopping")
        if len(self._subscribers) >= self.max_streams:
            raise Unavailable("too many live streams are open", retry_after=5)
        subscriber = Subscriber()
        self._subscribers.add(subscriber)
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="change-feed")
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Forget a stream that ended."""
        self._subscribers.discard(subscriber)

    async def close(self) -> None:
        """Stop polling and end every open stream."""
        self._closed = True
        for subscriber in list(self._subscribers):
            subscriber.offer(None)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _offer(self, change: Change) -> None:
        for subscriber in list(self._subscribers):
            subscriber.offer(change)

    async def _run(self) -> None:
        """Read the log from its latest entry on, every ``POLL_INTERVAL`` seconds."""
        last: str | None = None
        while True:
            if not self._subscribers:
                # Nobody listens: stop reading the log, and take up its end afresh when the
                # next stream opens (that stream reads what it missed from the log itself).
                last = None
                self.started.clear()
                await asyncio.sleep(POLL_INTERVAL)
                continue
            store = self._app[GATEWAY].get(STORE)
            try:
                if store is not None and last is None:
                    last = await log_end(store)
                    self.started.set()
                if store is not None and last is not None:
                    last = await read_after(store, last, self._offer)
            except StoreError as exc:
                log.warning("change feed: the store failed: %s", exc)
            await asyncio.sleep(POLL_INTERVAL)


FEED = web.AppKey("change_feed", ChangeFeed)


def _message(change: Change) -> bytes:
    data = json.dumps(change.data, separators=(",", ":"))
    return f"id: {change.id}\nevent: {change.kind}\ndata: {data}\n\n".encode()


async def stream(request: web.Request) -> web.StreamResponse:
    """``GET /admin/stream``: Server-Sent Events of accepted events and delivery outcomes."""
    feed = request.app[FEED]
    subscriber = feed.subscribe()
    try:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        # Where this client starts: after what it saw last, or after the log's latest entry.
        # Entries from there to wherever the feed stands are read from the log below; the
        # feed brings the rest, and what both bring is sent once (ids are ordered).
        sent = request.headers.get("Last-Event-ID") or None
        store = request.app[GATEWAY].get(STORE)
        if store is None:
            raise Unavailable("the gateway is starting")
        if sent is None or change_order(sent) < (0, 0):
            latest = await store.changes(None, 1)
            sent = latest[0].id if latest else "0-0"
        await response.prepare(request)
        await response.write(b"retry: 1000\n: connected\n\n")
        async with asyncio.timeout(WRITE_TIMEOUT):
            await feed.started.wait()
        for past in await store.changes(sent, BACKLOG):
            await _send(response, past)
            sent = past.id
        idle = 0.0
        while not subscriber.dropped:
            try:
                async with asyncio.timeout(_TICK):
                    change = await subscriber.queue.get()
            except TimeoutError:
                # aiohttp does not cancel a handler whose client left, so look every tick:
                # a reloaded page must not hold its slot until the next heartbeat fails.
                if request.transport is None or request.transport.is_closing():
                    break
                idle += _TICK
                if idle >= HEARTBEAT:
                    idle = 0.0
                    async with asyncio.timeout(WRITE_TIMEOUT):
                        await response.write(b": keepalive\n\n")
                continue
            if change is None:
                break
            if change_order(change.id) <= change_order(sent):
                continue  # already sent from the log's backlog
            await _send(response, change)
            sent = change.id
    except (ConnectionResetError, TimeoutError, StoreError) as exc:
        if not response.prepared:
            raise Unavailable("the store is unreachable") from exc
        # Else the client went away, was too slow, or the store failed: it reconnects.
    finally:
        feed.unsubscribe(subscriber)
    return response


async def _send(response: web.StreamResponse, change: Change) -> None:
    async with asyncio.timeout(WRITE_TIMEOUT):
        await response.write(_message(change))


def add_stream(app: web.Application, max_streams: int = MAX_STREAMS) -> None:
    """Register ``/admin/stream`` and its feed on the admin application."""
    feed = ChangeFeed(app, max_streams)
    app[FEED] = feed

    async def stop(_: web.Application) -> None:
        await feed.close()

    app.on_shutdown.append(stop)
    app.router.add_get("/admin/stream", stream)
