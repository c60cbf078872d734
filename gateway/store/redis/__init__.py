"""The shared store: Redis or Redis Cluster, for replicas on many hosts (design.md 5.4, 7).

URLs: ``redis[s]://``, ``redis[s]+cluster://`` and ``redis[s]+sentinel://``, each turned into
its client by ``gateway.redisio.connect``. Connecting is lazy: opening the store does not need
Redis up; ``ping`` (``/readyz``) says whether it is. With Sentinel, every new connection first
asks a Sentinel for the current master, so after a failover the store (and the rate limiter
sharing its client) reconnects to the promoted replica by itself: calls fail with
``StoreError`` while no master is known, then work again.

The package follows the store's roles: ``core`` (the client, the partition check, the calls
every part makes), ``ingress`` (accept, claim, commit, release), ``queue`` (leases and their
outcomes, backlog release), ``operator`` (replay, redrive, prune), ``views`` (the reads of the
admin API and the dashboard, merged over the partitions); ``keys`` names every key and says
which partition holds what, ``scripts`` loads the Lua scripts of ``lua/`` (every change of more
than one key is one of them), ``codec`` writes and reads the values, and ``wakeups`` carries
wake-ups between processes over Pub/Sub. ``RedisStore`` is all the roles together.

Change log (the live stream, design.md 5.6): one capped stream, ``wg:{q}:changes``, for the
whole store. Its ids are the order a client resumes from with ``Last-Event-ID``, across
processes and replicas; streams per partition would live on different masters, whose ids
come from different clocks and interleave, so no single id could say where a client stands.
With more than one partition, the entry is appended (``log.lua``) right after the script that
made the change answers, not inside it (that script may only touch its partition's slot): a
crash between the two loses that live message, never the event or its outcome, which the views
read from the partitions. With one partition the log shares the partition's hash tag, so
``accept.lua`` appends the entries of a new event itself, after all its other writes.

Backoff marks: ``wg:{q}:backoff`` (beside the change log, one hash for the whole store) holds
the destinations that had a retry scheduled since their last success. A success takes its
destination's mark and releases the backlog (``retry_now.lua``, batch by batch over every
partition: deliveries of that destination due later than now become due now). With one
partition ``finish.lua`` keeps the marks itself, in the partition's slot; with more, the
``log.lua`` call that follows it does.

Durability is Redis's: run it with ``appendonly yes`` and ``appendfsync always`` to lose
nothing that was answered 202, or ``appendfsync everysec`` to risk up to one second of accepted
events on a crash of the Redis host (a crash of the gateway loses nothing either way). With
replication (a Sentinel-watched master, or a cluster whose masters have replicas), a failover
can lose the last writes the replica had not yet received, unless ``store.wait_replicas`` is
set: then an accept is answered only once that many replicas confirm it (``WAIT`` on the
connection that wrote it, ``gateway.redisio.pipeline``), and a 503 tells the sender to retry
when they do not within ``store.wait_timeout``.
"""

from __future__ import annotations

from gateway.store.redis.analytics import RedisAnalytics
from gateway.store.redis.core import PartitionMismatch
from gateway.store.redis.ingress import RedisIngress
from gateway.store.redis.operator import RedisOperator
from gateway.store.redis.payments import RedisPayments
from gateway.store.redis.queue import RedisQueue
from gateway.store.redis.reconcile import RedisReconcile

__all__ = ["PartitionMismatch", "RedisStore"]


class RedisStore(
    RedisIngress, RedisQueue, RedisOperator, RedisPayments, RedisReconcile, RedisAnalytics
):
    """The Redis implementation of ``Store``; open it with ``RedisStore.open``."""
