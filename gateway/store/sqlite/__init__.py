"""The embedded store: one SQLite file in WAL mode, for a single host (design.md 5.4).

The package follows the store's roles: ``ingress`` (accept; claim, commit, release),
``queue`` (leases and how each ends), ``operator`` (replay, redrive, retry-now, retention),
``views`` (the admin API's and the dashboard's reads), ``payments`` (a payment's state,
decided with each accept, and the Payments view), ``reconcile`` (runs and what they compare),
``analytics`` (the rollups, kept with each change), over ``rows`` (columns, row readers and
the helpers they share), ``engine`` (connections, threads, group commit) and ``schema``
(tables, migrations, opening the file).

Each write operation is one function run in the next group commit, so a caller is answered
only once the ``COMMIT`` holding its operation returned: ingress answers 202 after the event
is on disk, and a ``kill -9`` (or a power cut) after the answer loses nothing. Within a batch,
every operation sees what it would have seen had they run one by one (the second of two
accepts with one dedupe key is a duplicate). Reads run on a connection of their own and see
every write answered before them.

With ``store.encryption_keys`` set, the ``body`` and ``headers`` columns of new events hold
envelopes sealed by ``gateway.store.crypto`` (``headers`` then holds a BLOB, not JSON text).
"""

from __future__ import annotations

from gateway.store.sqlite.analytics import SqliteAnalytics
from gateway.store.sqlite.ingress import SqliteIngress
from gateway.store.sqlite.operator import SqliteOperator
from gateway.store.sqlite.payments import SqlitePayments
from gateway.store.sqlite.queue import SqliteQueue
from gateway.store.sqlite.reconcile import SqliteReconcile
from gateway.store.sqlite.views import SqliteViews

__all__ = ["SqliteStore"]


class SqliteStore(
    SqliteIngress,
    SqliteQueue,
    SqliteOperator,
    SqliteViews,
    SqlitePayments,
    SqliteReconcile,
    SqliteAnalytics,
):
    """The SQLite implementation of ``Store``; open it with ``SqliteStore.open``."""
