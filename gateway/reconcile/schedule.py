"""When reconciliation runs by itself: every ``reconcile.every`` of each source (design.md 5.8).

The first scheduled run of a source starts one ``every`` after the process starts (not at
start: a fleet restarted together must not ask every provider at once), then one ``every``
after the previous run began. Each process keeps this schedule; the store's lease lets one run
at a time go ahead and the others find it taken and wait for their next turn. The sources are
read afresh at each turn (``sources``: the current config's), so a reload that adds, removes or
changes one applies. At start and after each turn of a source, the process reads the source's
last successful run back from the store for its metrics, so every process and replica shows
the run wherever it ran.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

from gateway.config.model import SourceConfig
from gateway.errors import StoreError
from gateway.reconcile.runner import AlreadyRunning, Reconciler

log = logging.getLogger("gateway.reconcile")

#: Longest sleep between two looks at the schedule (a reload is seen within it).
TICK = 5.0


async def schedule(
    reconciler: Reconciler,
    sources: Callable[[], Mapping[str, SourceConfig]],
    clock: Callable[[], float],
) -> None:
    """Run each source's reconciliation on its schedule until cancelled."""
    started = clock()
    next_at: dict[str, float] = {}
    for name, source in sources().items():
        if source.reconcile is not None:
            await _show_last(reconciler, name)
    while True:
        now = clock()
        due: list[str] = []
        for name, source in sources().items():
            every = source.reconcile.every if source.reconcile is not None else None
            if every is None:
                next_at.pop(name, None)
                continue
            at = next_at.setdefault(name, max(started, now - every) + every)
            if at <= now:
                due.append(name)
                next_at[name] = now + every
        for name in due:
            current = sources().get(name)
            if current is None or current.reconcile is None:
                continue
            try:
                await reconciler.run(current)
            except AlreadyRunning:
                log.info("reconciliation of %s is running elsewhere", name)
            except Exception:  # a bug in one run must not stop the schedule
                log.exception("reconciliation of %s failed", name)
            await _show_last(reconciler, name)
        wait = min([at - clock() for at in next_at.values()] + [TICK])
        await asyncio.sleep(max(wait, 0.05))


async def _show_last(reconciler: Reconciler, name: str) -> None:
    """The source's last run as the store has it, for this process's metrics; a store that
    cannot answer now is asked again at the next turn."""
    try:
        await reconciler.show_last(name)
    except StoreError as exc:
        log.warning("could not read the last reconciliation of %s: %s", name, exc)
