"""Command packing in C (hiredis) for redis-py's asyncio connections.

redis-py reads answers with hiredis when it is installed, but its asyncio connections still
pack every command in Python (``Connection.pack_command``: encode each argument, build the
RESP header piece by piece). Under load that was about 8 % of the gateway's CPU on the Redis
store, for the script calls of every request and delivery. ``hiredis.pack_command`` builds the
same bytes in one C call (RESP arrays of bulk strings: text as UTF-8, numbers as their decimal
text), so ``use_hiredis_packing`` gives a client's connections a subclass of their own class
that packs with it. Everything else about the connection (TLS, Sentinel's master lookup, a
cluster node's address) stays with the class it extends.
"""

from __future__ import annotations

from typing import Any

import hiredis
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.connection import AbstractConnection, Connection
from redis.exceptions import DataError


def pack(args: tuple[Any, ...]) -> bytes:
    """The RESP bytes of one command whose name is a single word, packed by hiredis in C."""
    try:
        packed: bytes = hiredis.pack_command(args)
        return packed
    except TypeError as exc:  # what redis-py's encoder refuses too (None, a dict, ...)
        raise DataError(str(exc)) from exc


class HiredisPacking:
    """Mixin for an asyncio connection class: ``pack_command`` by ``hiredis.pack_command``."""

    def pack_command(self, *args: Any) -> list[bytes]:
        """The RESP bytes of one command (the same as redis-py's own packing)."""
        # As redis-py does: a command name with a space ("CONFIG GET") is several arguments.
        head = args[0]
        if isinstance(head, str):
            args = (*head.encode().split(), *args[1:])
        elif b" " in head:
            args = (*head.split(), *args[1:])
        return [pack(args)]


#: One packing subclass per connection class, made once.
_SUBCLASSES: dict[type[Any], type[Any]] = {}


def _with_packing(base: type[Any]) -> type[Any]:
    if issubclass(base, HiredisPacking):
        return base
    made = _SUBCLASSES.get(base)
    if made is None:
        made = _SUBCLASSES[base] = type(f"Hiredis{base.__name__}", (HiredisPacking, base), {})
    return made


def use_hiredis_packing(client: Redis | RedisCluster) -> None:
    """Make the connections ``client`` opens from now on pack commands with hiredis."""
    if isinstance(client, RedisCluster):
        for kwargs in (client.connection_kwargs, client.nodes_manager.connection_kwargs):
            kwargs["connection_class"] = _with_packing(kwargs.get("connection_class", _base()))
        for node in client.nodes_manager.startup_nodes.values():
            node.connection_class = _with_packing(node.connection_class)
        return
    pool = client.connection_pool
    pool.connection_class = _with_packing(pool.connection_class)


def _base() -> type[AbstractConnection]:
    return Connection
