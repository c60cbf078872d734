"""Waking the delivering processes of a shared Redis when another process queued an event.

A process answers a sender and wakes its own delivery worker at once; a process that delivers
nothing (``server.delivery_concurrency: 0``, an ingress-only replica) has no worker to wake,
and the processes that deliver for it would find its events only at their next poll
(``server.delivery_poll_interval``, a second by default). ``RedisWakeups`` closes that gap
with Redis Pub/Sub: an ingress-only process ``announce``s on one channel after it queued
events, and every delivering process ``listen``s there and wakes its worker.

A wake-up is a hint, never the record: the event is already durable and leased by polling if
a message is lost (a listener reconnecting, Redis restarting), so a failure here is logged,
never raised to a sender. Announcements are coalesced: at most one ``PUBLISH`` every
``interval`` seconds per process, and one more at the end of the window if events were queued
during it, so a burst of accepts costs a handful of messages, and the last event of a burst
still wakes a worker within ``interval``.

Pub/Sub channels are shared by every database of a Redis server, so the channel is named after
the database. On a Redis Cluster a message published on any master reaches the subscribers of
every node, so the same works there.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import RedisError

log = logging.getLogger("gateway.store")

#: Shortest time between two announcements of one process (seconds).
ANNOUNCE_INTERVAL = 0.005
#: How long a listener that lost its connection waits before it subscribes again (seconds).
RESUBSCRIBE_AFTER = 1.0
#: How often a listener's read returns with nothing, so it sees cancellation and a dead link.
READ_TIMEOUT = 1.0


def channel_of(client: Redis | RedisCluster) -> str:
    """The wake-up channel of the database ``client`` uses (a cluster has only database 0)."""
    db = (
        0
        if isinstance(client, RedisCluster)
        else client.connection_pool.connection_kwargs.get("db", 0)
    )
    return f"wg:wake:{db}"


class RedisWakeups:
    """Announce queued events to the delivering processes of one Redis database; listen."""

    def __init__(
        self,
        client: Redis | RedisCluster,
        *,
        interval: float = ANNOUNCE_INTERVAL,
        publish: Callable[[str], Awaitable[object]] | None = None,
    ) -> None:
        """``publish``: how an announcement is sent (default: the client's ``PUBLISH``; the
        store passes its batched calls, which cost a fraction of a command of its own)."""
        self._client = client
        self.channel = channel_of(client)
        self._interval = interval
        self._send = publish or self._publish_command
        self._publishing: asyncio.Task[None] | None = None
        self._again = False

    def announce(self) -> None:
        """Tell the delivering processes that events were queued (coalesced, never raises)."""
        if self._publishing is not None:
            self._again = True
            return
        self._publishing = asyncio.ensure_future(self._publish())

    async def _publish(self) -> None:
        try:
            while True:
                self._again = False
                try:
                    await self._send(self.channel)
                except (RedisError, OSError) as exc:
                    log.debug("wake-up not published: %s", exc)
                await asyncio.sleep(self._interval)
                if not self._again:
                    return
        finally:
            self._publishing = None

    async def _publish_command(self, channel: str) -> None:
        await self._client.publish(channel, b"")

    async def listen(self, on_wake: Callable[[], None]) -> None:
        """Call ``on_wake`` for every announcement, until cancelled; resubscribe after a
        lost connection (the worker's polling covers the gap)."""
        reported = False  # one warning per outage, not one per try
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                reported = False
                while True:
                    message = await pubsub.get_message(timeout=READ_TIMEOUT)
                    if message is not None:
                        on_wake()
            except (RedisError, OSError) as exc:
                if not reported:
                    reported = True
                    log.warning(
                        "wake-ups from other processes stopped, delivery polls meanwhile: %s",
                        exc,
                    )
            finally:
                await pubsub.aclose()
            await asyncio.sleep(RESUBSCRIBE_AFTER)

    async def close(self) -> None:
        """Let an announcement in flight finish (before the client closes)."""
        task = self._publishing
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)
