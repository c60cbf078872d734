"""The store's Lua scripts (``lua/``), each as Redis runs it: the shared prelude in front.

Atomicity: every operation that changes more than one key is one script. Redis runs a script
without interleaving anything else, so e.g. ``accept`` checks the dedupe key, writes the event
and enqueues its deliveries, or does nothing at all. ``lua/prelude.lua`` names the partition's
shared keys and holds the helpers every script uses; each script's header says its ``KEYS``,
its ``ARGV`` and its answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript

from gateway.analytics.rollup import BIN_FLOOR, BIN_RATIO, BINS, RETENTION_DAYS
from gateway.payments.states import STATES
from gateway.ratelimit.redis_limiter import GCRA_FUNCTION

#: Every script the store calls, by the name of its file in ``lua/``.
SCRIPTS = (
    "accept", "claim", "release", "due", "lease", "finish", "replay", "redrive", "retry_now",
    "prune", "log", "wake", "missing", "recon_lease",
)  # fmt: skip

#: The fields of a delivery's hash and of its event's hash that a lease reads (``lease.lua``
#: answers them in this order; the hashes hold more, for the dashboard and the admin API).
LEASE_DELIVERY_FIELDS = ("dest", "made", "token", "lexp", "first", "created")
LEASE_EVENT_FIELDS = (
    "source", "id", "body", "headers", "type", "subject", "time", "dedupe_key", "request_id",
    "received_at", "body_status",
)  # fmt: skip


#: What rollup.lua needs to bin durations as ``gateway.analytics.rollup`` does, and how long
#: a day's rollup hash lives.
ROLLUP_CONSTANTS = (
    f"local BIN_FLOOR, BIN_RATIO, BINS = {BIN_FLOOR!r}, {BIN_RATIO!r}, {BINS}\n"
    f"local ROLLUP_TTL = {RETENTION_DAYS * 86400}\n"
)


def script_text(name: str) -> str:
    """The text of a store script with the shared prelude in front (and for accept and claim,
        the rate limiter's ``gcra``, for the per-source limit they may decide first; for accept,
        ``payment.lua``, a payment's state machine; for accept, missing and finish, ``rollup.lua``,
    the analytics rollups; for lease, the fields it reads)."""
    here = resources.files("gateway.store.redis") / "lua"
    prelude = (here / "prelude.lua").read_text()
    if name in ("accept", "claim"):
        prelude += GCRA_FUNCTION
    if name in ("accept", "missing", "finish"):
        prelude += ROLLUP_CONSTANTS + (here / "rollup.lua").read_text()
    if name == "accept":
        prelude += f"local STATE_KEYS = {_lua_list(STATES)}\n"
        prelude += (here / "payment.lua").read_text()
    if name == "lease":
        prelude += f"local DFIELDS = {_lua_list(LEASE_DELIVERY_FIELDS)}\n"
        prelude += f"local EFIELDS = {_lua_list(LEASE_EVENT_FIELDS)}\n"
    return prelude + (here / f"{name}.lua").read_text()


def register_scripts(client: Redis | RedisCluster) -> dict[str, AsyncScript]:
    """Every store script registered on ``client``, by name (loaded on first use, or by the
    pipeline's ``load`` at open)."""
    return {name: client.register_script(script_text(name)) for name in SCRIPTS}


def _lua_list(names: Sequence[str]) -> str:
    return "{" + ", ".join(f"'{name}'" for name in names) + "}"
