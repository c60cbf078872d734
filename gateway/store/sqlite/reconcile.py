"""The embedded store's part in reconciliation (design.md 5.8): the run lease, the gateway's
side of the comparison, the missing flag, sightings and the runs kept."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence

from gateway.analytics.rollup import PaymentChange
from gateway.jsontext import dumps
from gateway.payments.states import STATES, TERMINAL, State
from gateway.store.records import RUNS_KEPT, Event, ReconcileRun, one_of
from gateway.store.sqlite.analytics import add_payment_change
from gateway.store.sqlite.core import SqliteCore


class SqliteReconcile(SqliteCore):
    """What ``ReconcileStore`` asks of the SQLite store."""

    async def acquire_reconcile(self, source: str, holder: str, now: float, lease: float) -> bool:
        """Take the lease unless another holder has one that has not run out."""

        def tx(conn: sqlite3.Connection) -> bool:
            taken = conn.execute(
                "INSERT INTO reconcile_leases (source, holder, until) VALUES (?, ?, ?)"
                " ON CONFLICT (source) DO UPDATE SET holder = excluded.holder,"
                " until = excluded.until WHERE reconcile_leases.until <= ?"
                " OR reconcile_leases.holder = excluded.holder",
                (source, holder, now + lease, now),
            ).rowcount
            return taken == 1

        return await self._db.write(tx)

    async def release_reconcile(self, source: str, holder: str) -> None:
        """Give the lease up if ``holder`` still has it."""

        def tx(conn: sqlite3.Connection) -> None:
            conn.execute(
                "DELETE FROM reconcile_leases WHERE source = ? AND holder = ?", (source, holder)
            )

        await self._db.write(tx)

    async def reconcile_holder(self, source: str, now: float) -> str | None:
        """Who holds the source's lease, if it has not run out."""

        def read(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT holder FROM reconcile_leases WHERE source = ? AND until > ?",
                (source, now),
            ).fetchone()
            return None if row is None else str(row[0])

        return await self._db.read(read)

    async def payment_states(self, source: str, keys: Sequence[str]) -> dict[str, State]:
        """The state of each of these payments the gateway has."""
        wanted = list(dict.fromkeys(keys))

        def tx(conn: sqlite3.Connection) -> dict[str, State]:
            found: dict[str, State] = {}
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ",".join("?" * len(chunk))
                # The placeholders are fixed text; every value is a bound parameter.
                rows = conn.execute(
                    f"SELECT key, state FROM payments WHERE source = ? AND key IN ({marks})",  # noqa: S608
                    (source, *chunk),
                ).fetchall()
                for key, state in rows:
                    found[key] = one_of(state, STATES, "payment state")
            return found

        return await self._db.read(tx)

    async def terminal_payments(
        self, source: str, since: float, until: float, limit: int
    ) -> list[tuple[str, State]]:
        """Terminal payments first seen since ``since``, last updated before ``until``."""

        def tx(conn: sqlite3.Connection) -> list[tuple[str, State]]:
            rows = conn.execute(
                "SELECT key, state FROM payments WHERE source = ? AND first_seen >= ?"
                " AND updated_at < ? ORDER BY first_seen LIMIT ?",
                (source, since, until, limit * 4),
            ).fetchall()
            terminal = [
                (key, one_of(state, STATES, "payment state"))
                for key, state in rows
                if state in TERMINAL
            ]
            return terminal[:limit]

        return await self._db.read(tx)

    async def seen(self, events: Sequence[Event], now: float) -> list[bool]:
        """Whether each event's dedupe key is live."""

        def tx(conn: sqlite3.Connection) -> list[bool]:
            return [
                conn.execute(
                    "SELECT 1 FROM dedupe WHERE source = ? AND key = ? AND expires_at > ?",
                    (event.source, event.dedupe_key, now),
                ).fetchone()
                is not None
                for event in events
            ]

        return await self._db.read(tx)

    async def mark_missing(
        self, source: str, key: str, reference: str | None, missing: bool, now: float
    ) -> None:
        """Flag (or clear) a payment a run could not recover."""

        def tx(conn: sqlite3.Connection) -> None:
            if not missing:
                conn.execute(
                    "UPDATE payments SET missing = 0 WHERE source = ? AND key = ?", (source, key)
                )
                return
            flagged = conn.execute(
                "UPDATE payments SET missing = 1 WHERE source = ? AND key = ?", (source, key)
            ).rowcount
            if flagged:
                return
            # A payment the gateway never saw: first seen now, as pending.
            conn.execute(
                "INSERT INTO payments (source, key, reference, state, events, first_seen,"
                " updated_at, conflict, missing) VALUES (?, ?, ?, 'pending', 0, ?, ?, 0, 1)",
                (source, key, reference, now, now),
            )
            change = PaymentChange(None, "pending", None, None, now, now)
            add_payment_change(conn, source, change)

        await self._db.write(tx)

    async def sightings(
        self, source: str, observed: Mapping[str, str], now: float
    ) -> dict[str, float]:
        """Since when each listed key has been listed in its state."""

        def tx(conn: sqlite3.Connection) -> dict[str, float]:
            known = {
                key: (state, since)
                for key, state, since in conn.execute(
                    "SELECT key, state, since FROM reconcile_sightings WHERE source = ?",
                    (source,),
                ).fetchall()
            }
            out: dict[str, float] = {}
            for key, state in observed.items():
                old = known.get(key)
                since = old[1] if old is not None and old[0] == state else now
                out[key] = since
                if old is None or old != (state, since):
                    conn.execute(
                        "INSERT OR REPLACE INTO reconcile_sightings (source, key, state, since)"
                        " VALUES (?, ?, ?, ?)",
                        (source, key, state, since),
                    )
            gone = [(source, key) for key in known if key not in observed]
            conn.executemany("DELETE FROM reconcile_sightings WHERE source = ? AND key = ?", gone)
            return out

        return await self._db.write(tx)

    async def save_run(self, run: ReconcileRun) -> None:
        """Keep the run and the source's last ``RUNS_KEPT``."""

        def tx(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR REPLACE INTO reconcile_runs (id, source, started_at, run)"
                " VALUES (?, ?, ?, ?)",
                (run.id, run.source, run.started_at, dumps(run.to_json())),
            )
            conn.execute(
                "DELETE FROM reconcile_runs WHERE source = ? AND id NOT IN (SELECT id FROM"
                " reconcile_runs WHERE source = ? ORDER BY started_at DESC LIMIT ?)",
                (run.source, run.source, RUNS_KEPT),
            )

        await self._db.write(tx)

    async def recent_runs(self, source: str, limit: int) -> list[ReconcileRun]:
        """The source's last runs, newest first."""

        def tx(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT run FROM reconcile_runs WHERE source = ?"
                " ORDER BY started_at DESC, id DESC LIMIT ?",
                (source, limit),
            ).fetchall()
            return [row[0] for row in rows]

        return [ReconcileRun.from_json(json.loads(text)) for text in await self._db.read(tx)]

    async def get_run(self, run_id: str) -> ReconcileRun | None:
        """One run with its items."""

        def tx(conn: sqlite3.Connection) -> str | None:
            row = conn.execute("SELECT run FROM reconcile_runs WHERE id = ?", (run_id,)).fetchone()
            return None if row is None else str(row[0])

        text = await self._db.read(tx)
        return None if text is None else ReconcileRun.from_json(json.loads(text))
