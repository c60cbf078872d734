"""The payments this process's status streams watch, kept current from the store's change log
(design.md 5.10).

Every accept and every delivery outcome is written to the change log (``LiveReads.changes``)
by whichever process or replica made it, and each entry names its event's payment. One
``StatusHub`` per process reads the log every ``poll_interval`` seconds while any stream is
open (idle otherwise), collects the payments its streams watch among the entries, re-reads
each of those once (``LiveReads.find_payments``, however many streams watch it) and hands the
reading to their ``Watch``es. A new stream's first reading is made by the same loop, so no
stream is ever handed a reading older than one it already has.

A ``Watch`` keeps the latest reading only: a page that reads slowly is sent the state as it
is when it can take it, never a backlog, so memory does not grow with a slow reader.

Heartbeats are handed out here too, ``heartbeat`` seconds after a stream opened and every
``heartbeat`` seconds after: one timer for the process, at most ``_BEATS_PER_PASS`` streams
woken per loop turn (a thousand pages that opened in the same second beat a few at a time,
never all in one turn, which would hold up every request behind them), each stream at its
own point of the interval rather than at whole seconds.

Caps: ``open`` refuses a stream beyond ``status.max_streams`` in this process, or beyond
``status.max_streams_per_ip`` from one client address (``TooManyStreams``). After a config
reload each stream's ``recheck`` runs against the new ``status`` block, and a stream it no
longer allows (a rotated secret, an origin taken off the list, status turned off) ends.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable, Sequence

from gateway.config.model import StatusConfig
from gateway.errors import StoreError, TooManyStreams, Unavailable
from gateway.store.follow import log_end, read_after
from gateway.store.protocols import LiveReads
from gateway.store.records import Change, PaymentView

log = logging.getLogger("gateway.status")

Key = tuple[str, str]
#: Whether a stream is still allowed under a (reloaded) ``status`` block: ``None`` if it is,
#: else why it ends.
Recheck = Callable[[StatusConfig | None], str | None]

POLL_INTERVAL = 0.25
#: Seconds between looks at whether the pages of streams that are not told (SSE: aiohttp does
#: not cancel a handler whose client left) are still there: one sweep for all of them, so a
#: reloaded page does not hold its slot until its next heartbeat fails, and a thousand idle
#: streams cost one timer, not a thousand.
SWEEP = 1.0
#: Payments read per call.
_BATCH = 500
#: Seconds between a stream's heartbeats (design.md 5.10).
HEARTBEAT = 15.0
#: Streams told to beat per pass, at most, and the seconds between passes while more are due.
_BEATS_PER_PASS = 4
_CATCH_UP = 0.005


class Watch:
    """One open stream's view of its payment: the latest reading (conflated), and why the
    stream must end, once it must."""

    __slots__ = (
        "beat_due", "changed", "closed", "ended", "gone", "ip", "key", "read", "recheck", "view"
    )  # fmt: skip

    def __init__(self, key: Key, ip: str, recheck: Recheck) -> None:
        self.key = key
        self.ip = ip
        self.recheck = recheck
        #: Whether the page went away, for a transport that is not told (set once the stream
        #: starts; the hub looks every ``SWEEP`` seconds).
        self.gone: Callable[[], bool] | None = None
        self.view: PaymentView | None = None
        #: Whether a first reading arrived (``view`` ``None`` then means "not seen yet").
        self.read = False
        self.ended: str | None = None
        #: Whether a heartbeat is due (the hub sets it; the stream sends one and clears it).
        self.beat_due = False
        #: Whether the hub forgot the stream (it ended).
        self.closed = False
        #: Set on every new reading, when a heartbeat is due and when the stream must end.
        self.changed = asyncio.Event()

    def offer(self, view: PaymentView | None) -> None:
        """A new reading of the payment; only the latest is kept."""
        self.view = view
        self.read = True
        self.changed.set()

    def beat(self) -> None:
        """A heartbeat is due."""
        self.beat_due = True
        self.changed.set()

    def end(self, reason: str) -> None:
        """The stream must end (the first reason given stands)."""
        if self.ended is None:
            self.ended = reason
        self.changed.set()


class StatusHub:
    """Follows the change log for the payments watched in this process, and holds the caps."""

    def __init__(
        self,
        store: Callable[[], LiveReads | None],
        settings: Callable[[], StatusConfig | None],
        *,
        poll_interval: float = POLL_INTERVAL,
        heartbeat: float = HEARTBEAT,
    ) -> None:
        self._store = store
        self._settings = settings
        self.poll_interval = poll_interval
        self.heartbeat = heartbeat
        #: (when, stream) in the order they fall due: every stream beats at the same interval.
        self._beats: collections.deque[tuple[float, Watch]] = collections.deque()
        self._watches: dict[Key, set[Watch]] = {}
        self._per_ip: collections.Counter[str] = collections.Counter()
        self._open = 0
        #: Payments to read at the next turn: changed, or watched by a new stream.
        self._dirty: set[Key] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._beater: asyncio.Task[None] | None = None
        self._beats_wake = asyncio.Event()
        self._closed = False

    @property
    def open_streams(self) -> int:
        """How many streams are open in this process."""
        return self._open

    def open(self, key: Key, ip: str, settings: StatusConfig, recheck: Recheck) -> Watch:
        """Watch the payment ``key`` for a new stream from ``ip``; its first reading follows
        at once. ``TooManyStreams`` beyond a cap, ``Unavailable`` while stopping."""
        if self._closed:
            raise Unavailable("the gateway is stopping")
        if self._open >= settings.max_streams:
            raise TooManyStreams("this gateway holds all the status streams it may", "max_streams")
        if self._per_ip[ip] >= settings.max_streams_per_ip:
            raise TooManyStreams("too many status streams are open from this address", "per_ip")
        watch = Watch(key, ip, recheck)
        self._watches.setdefault(key, set()).add(watch)
        self._per_ip[ip] += 1
        self._open += 1
        self._dirty.add(key)
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="status-hub")
            self._beater = asyncio.create_task(self._beat(), name="status-heartbeats")
        self._wake.set()
        self._beats.append((asyncio.get_running_loop().time() + self.heartbeat, watch))
        self._beats_wake.set()
        return watch

    def close(self, watch: Watch) -> None:
        """Forget a stream that ended."""
        watches = self._watches.get(watch.key)
        if watches is None or watch not in watches:
            return
        watches.discard(watch)
        watch.closed = True
        if not watches:
            del self._watches[watch.key]
        self._per_ip[watch.ip] -= 1
        if self._per_ip[watch.ip] <= 0:
            del self._per_ip[watch.ip]
        self._open -= 1

    async def stop(self) -> None:
        """End every stream (the gateway is stopping) and stop following the log."""
        self._closed = True
        for watches in list(self._watches.values()):
            for watch in list(watches):
                watch.end("stopping")
        for task in (self._task, self._beater):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _run(self) -> None:
        """Read the log from its end on while streams are open; read what changed."""
        last: str | None = None
        settings = self._settings()
        resync = False
        loop = asyncio.get_running_loop()
        swept = loop.time()
        while True:
            self._wake.clear()
            if not self._watches:
                # Nobody watches: take up the log's end afresh when the next stream opens
                # (its first reading is made then, so nothing before matters).
                last = None
                await self._wake.wait()
                continue
            if (current := self._settings()) is not settings:
                settings = current
                self._recheck(current)
            if loop.time() - swept >= SWEEP:
                swept = loop.time()
                self._sweep()
            store = self._store()
            if store is not None:
                try:
                    if last is None:
                        last = await log_end(store)
                    last = await read_after(store, last, self._mark)
                    if resync:
                        # Entries may have been missed while the store failed (the log is
                        # capped): read every watched payment once more.
                        self._dirty.update(self._watches)
                        resync = False
                    await self._read(store)
                except StoreError as exc:
                    log.warning("status streams: the store failed: %s", exc)
                    resync = True
                    self._fail_first_readings()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_interval):
                    await self._wake.wait()

    async def _beat(self) -> None:
        """Tell the streams whose heartbeat is due, ``_BEATS_PER_PASS`` per pass at most."""
        loop = asyncio.get_running_loop()
        while True:
            if not self._beats:
                self._beats_wake.clear()
                await self._beats_wake.wait()
                continue
            now = loop.time()
            told = 0
            while self._beats and self._beats[0][0] <= now and told < _BEATS_PER_PASS:
                _, watch = self._beats.popleft()
                if watch.closed:
                    continue
                watch.beat()
                told += 1
                self._beats.append((now + self.heartbeat, watch))
            if self._beats:
                await asyncio.sleep(max(self._beats[0][0] - now, _CATCH_UP))

    def _mark(self, change: Change) -> None:
        """Mark the payment a log entry names, if a stream watches it."""
        key = change.payment
        if key is not None and key in self._watches:
            self._dirty.add(key)

    async def _read(self, store: LiveReads) -> None:
        """Read each marked payment once and hand it to the streams watching it."""
        while self._dirty:
            batch = list(self._dirty)[:_BATCH]
            self._dirty.difference_update(batch)
            keys: Sequence[Key] = [key for key in batch if key in self._watches]
            if not keys:
                continue
            try:
                views = await store.find_payments(keys)
            except StoreError:
                self._dirty.update(keys)
                raise
            for key, view in zip(keys, views, strict=True):
                for watch in self._watches.get(key, ()):
                    watch.offer(view)

    def _fail_first_readings(self) -> None:
        """Streams still waiting for their first reading cannot get one: end them (they
        are answered 503 before they start)."""
        for watches in self._watches.values():
            for watch in watches:
                if not watch.read:
                    watch.end("unavailable")

    def _sweep(self) -> None:
        """End the streams whose page went away."""
        for watches in self._watches.values():
            for watch in watches:
                if watch.gone is not None and watch.gone():
                    watch.end("client")

    def _recheck(self, settings: StatusConfig | None) -> None:
        """After a reload: end the streams the new ``status`` block no longer allows."""
        for watches in list(self._watches.values()):
            for watch in list(watches):
                reason = watch.recheck(settings)
                if reason is not None:
                    watch.end(reason)
