"""What every role of the embedded store shares: the database, the key ring, the lifecycle."""

from __future__ import annotations

from typing import Self

from gateway.ratelimit.limiter import Limiter
from gateway.ratelimit.memory import MemoryLimiter
from gateway.store.crypto import KeyRing
from gateway.store.sqlite.engine import SqliteDatabase


class SqliteCore:
    """The file under every role: ``SqliteDatabase``, the payload key ring, limits, health."""

    def __init__(self, db: SqliteDatabase, ring: KeyRing | None = None) -> None:
        self._db = db
        self._ring = ring
        #: When accept next prunes expired dedupe entries; read and set on the store's thread.
        self._prune_at = float("-inf")

    @classmethod
    async def open(cls, url: str, ring: KeyRing | None = None) -> Self:
        """Open (creating when needed) the database a ``sqlite:///`` URL names.

        With a ``ring``, event bodies and headers are written encrypted (``store.crypto``).
        """
        return cls(await SqliteDatabase.open(url), ring)

    def rate_limiter(self) -> Limiter:
        """Limits kept in this process (the file is one host's; each process counts its own)."""
        return MemoryLimiter()

    def decides_limits(self, limiter: Limiter) -> bool:
        """Never: the limits are in the process, not in the file."""
        return False

    def wakeups(self) -> None:
        """None: processes sharing a file find each other's events by polling."""
        return None

    async def ping(self) -> None:
        """Read from the database file."""
        await self._db.run(
            lambda conn: conn.execute("SELECT version FROM schema_version").fetchone()
        )

    async def close(self) -> None:
        """Close the connection and stop the store's thread (after the writes called)."""
        await self._db.close()
