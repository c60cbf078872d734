"""Every Redis key name of the store, and which partition an event, a delivery or a key is in.

Partitions (``store.partitions``, design.md 5.4): the store is N independent parts, each under
the hash tag of its own prefix, ``wg:{q}:`` for one partition and ``wg:{q0}:`` ...
``wg:{q<N-1>}:`` for more. An event lives with its deliveries, attempts, dedupe entry and
indexes in the partition of a stable hash of (source, dedupe key), so a duplicate always meets
its original; an event about a payment (design.md 5.7), in that of (source, payment key), so a
payment's events share one partition and its state is decided in one script (a resend carries
the same payment key, so it still meets its original). Each script touches one partition: on a
Redis Cluster the partitions spread over the masters and writes grow with them. Every key a
script touches is passed in ``KEYS`` (the cluster contract): event ids (``uid``) start with
their partition's number and delivery ids with their event's uid, so the keys of a delivery are
known before a script runs. The partition count is recorded in ``wg:meta`` on first use, and a
store opened with another count is refused (the other count would look for duplicates in the
wrong partition).

Keys of one partition, under its prefix::

    dd:<source>\\n<dedupe key>   hash  dedupe entry: st (p = sync claim, d = done), exp, eid
    sid:<source>\\n<event id>    hash  (source, id) seen within the window: exp, uid
    ev:<uid>                    hash  event fields, counters n / pending / dead, status
                                      (body and headers sealed by ``store.crypto`` when
                                      ``store.encryption_keys`` is set)
    evd:<uid>                   list  its delivery ids
    dl:<delivery id>            hash  ev, dest, state, made, created, next, first, token, ...
    at:<delivery id>            list  its attempts, JSON
    due / leased / dead         zset  delivery ids by next attempt / lease expiry / dead_at
    depth                       hash  "<destination>\\n<state>" -> count, for queue_depth
    events, events:src:<source>, events:st:<status>, events:type:<type>, id:<event id>
                                zset  event uids by received_at, for lists and look-ups
    lex:id, lex:subj            zset  "<id or subject>\\n<uid>" at score 0: prefix search
    pay:<source>\\n<key>         hash  a payment (design.md 5.7): state, reference, value,
                                      scale, currency, events, first, updated, conflict,
                                      missing; its events live in its partition (the
                                      partition follows the payment's key, ``Event.shard_key``)
    pay:ev:<source>\\n<key>      zset  its events' uids by received_at
    payments, payments:src:<source>, payments:st:<state>, payments:conflict
                                zset  payments ("<source>\\n<key>") by last update
    lex:paykey, lex:payref      zset  "<key or reference>\\n<source>\\n<key>": prefix search
    stats:<minute>              hash  per-minute counters and latency buckets (2 h TTL)
    an:<day>:<source>           hash  the source's analytics rollups of one UTC day
                                      (``time // 86400``): "<hour of the day>|<field>",
                                      "<hour>|am|<scale>|<currency>" (rollup.lua; 400 days)

Keys of the whole store::

    wg:meta          hash    partitions: the count the store was created with (no hash tag:
                             read once, from any node)
    wg:{q}:changes   stream  the change log ("Change log" in the package's docstring)
    wg:{q}:backoff   hash    destination -> 1 while it has had a retry scheduled since its
                             last success ("Backoff marks" in the package's docstring)
"""

from __future__ import annotations

import hashlib
import os

from gateway.payments.states import STATES

#: Where the partition count is recorded (no hash tag: read once, from any node).
META_KEY = "wg:meta"
#: The change log of the whole store (see "Change log" in the package) and its approximate cap.
CHANGES_KEY = "wg:{q}:changes"
CHANGES_CAP = 10_000
#: Destinations with a retry scheduled since their last success (``log.lua``, ``finish.lua``):
#: one hash for the whole store, beside the change log.
BACKOFF_KEY = "wg:{q}:backoff"
#: Reconciliation's keys (design.md 5.8), beside the change log: a run lease per source
#: (``<prefix>lease:<source>``), each run as JSON (``run:<id>``), a source's runs by start
#: (``runs:<source>``) and the keys its listing showed in a terminal state, with since when
#: (``seen:<source>``, a hash).
RECONCILE_PREFIX = "wg:{q}:recon:"
#: The event statuses with an index each, in prelude.lua's order of ``STATUS``.
STATUSES = ("queued", "delivered", "dead_lettered", "unrouted")


def partition_of(source: str, dedupe_key: str, partitions: int) -> int:
    """The partition of an event: a stable hash of (source, dedupe key), so a duplicate
    always lands where its original is (the same in every process and every release)."""
    if partitions == 1:
        return 0
    digest = hashlib.blake2b(f"{source}\n{dedupe_key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % partitions


def uid_of(delivery_id: str) -> str:
    """The uid of the event a delivery belongs to (a delivery id is ``<uid>:<suffix>``)."""
    return delivery_id.rpartition(":")[0]


def new_delivery_id(uid: str) -> str:
    """A fresh id for a delivery of the event ``uid`` (``uid_of`` reads the uid back)."""
    return f"{uid}:{os.urandom(6).hex()}"


class PartitionKeys:
    """The key names of one partition: every key a script is given is made here."""

    def __init__(self, index: int, partitions: int) -> None:
        self.index = index
        self.prefix = "wg:{q}:" if partitions == 1 else f"wg:{{q{index}}}:"
        p = self.prefix
        self.due, self.leased, self.dead, self.depth = (
            p + "due",
            p + "leased",
            p + "dead",
            p + "depth",
        )
        self.events = p + "events"
        #: The prefix-search indexes of event ids and of subjects.
        self.lex_id, self.lex_subject = p + "lex:id", p + "lex:subj"
        self.status = {st: f"{p}events:st:{st}" for st in (*STATUSES, "held")}
        #: What every state-changing script takes first, in prelude.lua's order.
        self.shared = [
            self.due, self.leased, self.dead, self.depth, self.events,
            *(self.status[st] for st in STATUSES),
        ]  # fmt: skip

    def dd(self, source: str, dedupe_key: str) -> str:
        """The dedupe entry of (source, dedupe key)."""
        return f"{self.prefix}dd:{source}\n{dedupe_key}"

    def sid(self, source: str, event_id: str) -> str:
        """The entry saying (source, event id) was seen within the window."""
        return f"{self.prefix}sid:{source}\n{event_id}"

    def ev(self, uid: str) -> str:
        """The hash of an event."""
        return f"{self.prefix}ev:{uid}"

    def evd(self, uid: str) -> str:
        """The list of an event's delivery ids."""
        return f"{self.prefix}evd:{uid}"

    def dl(self, delivery_id: str) -> str:
        """The hash of a delivery."""
        return f"{self.prefix}dl:{delivery_id}"

    def at(self, delivery_id: str) -> str:
        """The list of a delivery's attempts."""
        return f"{self.prefix}at:{delivery_id}"

    def src(self, source: str) -> str:
        """The index of a source's events."""
        return f"{self.prefix}events:src:{source}"

    def ids(self, event_id: str) -> str:
        """The index of the events stored under one event id (of any source)."""
        return f"{self.prefix}id:{event_id}"

    def type(self, type_: str) -> str:
        """The index of the events of one type."""
        return f"{self.prefix}events:type:{type_}"

    def payment(self, member: str) -> str:
        """The hash of a payment (``member``: ``<source>\\n<key>``)."""
        return f"{self.prefix}pay:{member}"

    def payment_events(self, member: str) -> str:
        """The index of a payment's events (its timeline)."""
        return f"{self.prefix}pay:ev:{member}"

    def payment_keys(self, source: str, member: str) -> list[str]:
        """The keys accept.lua's ``payment`` takes, in its order."""
        return [
            self.payment(member),
            self.payment_events(member),
            self.payments,
            self.payments_source(source),
            self.payments_conflict,
            self.lex_payment_key,
            self.lex_payment_reference,
            *(self.payments_state(state) for state in STATES),
        ]

    @property
    def payments(self) -> str:
        """The payments by last update."""
        return f"{self.prefix}payments"

    def payments_source(self, source: str) -> str:
        """One source's payments by last update."""
        return f"{self.prefix}payments:src:{source}"

    def payments_state(self, state: str) -> str:
        """The payments in one state by last update."""
        return f"{self.prefix}payments:st:{state}"

    @property
    def payments_conflict(self) -> str:
        """The payments flagged for a conflict, by last update."""
        return f"{self.prefix}payments:conflict"

    @property
    def lex_payment_key(self) -> str:
        """The prefix-search index of payment keys: ``<key>\\n<member>``."""
        return f"{self.prefix}lex:paykey"

    @property
    def lex_payment_reference(self) -> str:
        """The prefix-search index of payment references: ``<reference>\\n<member>``."""
        return f"{self.prefix}lex:payref"

    def stats(self, minute: int) -> str:
        """The counters of one minute."""
        return f"{self.prefix}stats:{minute}"

    def rollups(self, source: str, day: int) -> str:
        """One source's analytics rollups of one UTC day."""
        return f"{self.prefix}an:{day}:{source}"

    def new_uid(self) -> str:
        """A fresh uid for an event of this partition: its number, a dot, 32 hex digits."""
        # 32 random hex digits, as uuid4().hex gave, at a sixth of its cost (the UUID object
        # and its version bits are not needed here).
        return f"{self.index}.{os.urandom(16).hex()}"
