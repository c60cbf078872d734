"""The reconciliation part of the admin API (design.md 5.5, 5.8): the runs kept per source,
one run with the items needing attention, and a run started by hand.

``GET /admin/reconciliation[?since=&limit=]`` lists every source with a ``reconcile`` block,
whether a run of it is going on (``running``: by which process, since when), its last run and
its recent runs (newest first); ``GET /admin/reconciliation/runs/{id}`` adds
the run's ``items``; ``POST /admin/reconciliation/{source}/run[?dry_run=1]`` runs one now and
answers it with its items, or 409 ``in_progress`` while another run of the source holds the
lease in any process or replica. A run started here finishes even if the caller goes away.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import quote

from aiohttp import web

from gateway import times
from gateway.admin.api import store_of
from gateway.appkeys import CLOCK, GATEWAY, RECONCILER, RUNTIME
from gateway.config.model import SourceConfig
from gateway.errors import InProgress, InvalidRequest, NotFound, Unavailable
from gateway.http.answers import json_answer
from gateway.http.text import is_text
from gateway.reconcile.runner import AlreadyRunning, Reconciler, running_since
from gateway.store.records import RUNS_KEPT, ReconcileItem, ReconcileRun

#: Longest run id accepted in a path (ids are 13 digits, a dash and 8 hex digits).
MAX_RUN_ID = 64
#: Runs per source listed unless ``limit`` says otherwise.
DEFAULT_RUNS = 10


def item_json(item: ReconcileItem, source: str) -> dict[str, Any]:
    """One item of a run, with the admin path of its payment (source and key escaped)."""
    path = f"/admin/payments/{quote(source, safe='')}/{quote(item.key, safe='')}"
    return {**item.to_json(), "payment": path}


def run_json(run: ReconcileRun, *, items: bool = False) -> dict[str, Any]:
    """A run as the admin API shows it; ``items`` adds every item kept."""
    payload: dict[str, Any] = {
        "id": run.id,
        "source": run.source,
        "started_at": times.rfc3339(run.started_at),
        "finished_at": None if run.finished_at is None else times.rfc3339(run.finished_at),
        "ok": run.ok,
        "error": run.error,
        "dry_run": run.dry_run,
        "counts": dict(run.counts),
    }
    if items:
        payload["items"] = [item_json(item, run.source) for item in run.items]
    return payload


def _reconciler(request: web.Request) -> Reconciler:
    reconciler = request.app[GATEWAY].get(RECONCILER)
    if reconciler is None:
        raise Unavailable("the gateway is starting")
    return reconciler


def _reconciled(request: web.Request, name: str) -> SourceConfig:
    source = request.app[GATEWAY][RUNTIME].config.sources.get(name)
    if source is None:
        raise NotFound(f"no source named {name!r}")
    if source.reconcile is None:
        raise NotFound(f"source {name!r} has no reconcile block")
    return source


def _since(request: web.Request) -> float | None:
    text = request.query.get("since")
    if text is None:
        return None
    try:
        return times.parse_rfc3339(text)
    except ValueError as exc:
        raise InvalidRequest("since must be an RFC 3339 time") from exc


async def list_runs(request: web.Request) -> web.Response:
    """``GET /admin/reconciliation?since=&limit=``: each reconciled source with its last run and
    its recent runs (started at or after ``since``, at most ``limit``, newest first)."""
    text = request.query.get("limit", str(DEFAULT_RUNS))
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= RUNS_KEPT:
        raise InvalidRequest(f"limit must be 1..{RUNS_KEPT}")
    limit, since = int(text), _since(request)
    store = store_of(request)
    now = request.app[GATEWAY].get(CLOCK, time.time)()
    config = request.app[GATEWAY][RUNTIME].config
    sources = []
    for name, source in config.sources.items():
        if source.reconcile is None:
            continue
        runs = await store.recent_runs(name, limit)
        recent = [run for run in runs if since is None or run.started_at >= since]
        holder = await store.reconcile_holder(name, now)
        running = None if holder is None else running_since(holder)
        sources.append(
            {
                "source": name,
                "kind": source.reconcile.provider.kind,
                "every": source.reconcile.every,
                "recover": source.reconcile.recover,
                "running": None
                if running is None
                else {"by": running[0], "since": times.rfc3339(running[1])},
                "last_run": run_json(runs[0]) if runs else None,
                "runs": [run_json(run) for run in recent],
            }
        )
    return json_answer(200, {"now": times.rfc3339(now), "sources": sources})


async def show_run(request: web.Request) -> web.Response:
    """``GET /admin/reconciliation/runs/{id}``: one run with every item needing attention."""
    run_id = request.match_info["run_id"]
    if len(run_id) > MAX_RUN_ID or not is_text(run_id):
        raise NotFound(f"no reconciliation run {run_id[:MAX_RUN_ID]!r}")
    run = await store_of(request).get_run(run_id)
    if run is None:
        raise NotFound(f"no reconciliation run {run_id!r}")
    return json_answer(200, run_json(run, items=True))


async def start_run(request: web.Request) -> web.Response:
    """``POST /admin/reconciliation/{source}/run?dry_run=1``: run now, answer the run."""
    source = _reconciled(request, request.match_info["source"])
    flag = request.query.get("dry_run", "0")
    if flag not in ("0", "1", "true", "false"):
        raise InvalidRequest("dry_run must be 1, 0, true or false")
    reconciler = _reconciler(request)
    # Shielded: the run goes on (and keeps its lease) if the caller disconnects.
    task = asyncio.ensure_future(reconciler.run(source, dry_run=flag in ("1", "true")))
    try:
        run = await asyncio.shield(task)
    except AlreadyRunning as exc:
        raise InProgress(f"a reconciliation of {exc} is running; retry when it ends") from None
    return json_answer(200, run_json(run, items=True))


def add_routes(app: web.Application) -> None:
    """Register the reconciliation routes on the admin application."""
    app.router.add_get("/admin/reconciliation", list_runs)
    app.router.add_get("/admin/reconciliation/runs/{run_id}", show_run)
    app.router.add_post("/admin/reconciliation/{source}/run", start_run)
