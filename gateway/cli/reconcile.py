"""``webhook-gateway reconcile``: run a source's reconciliation now, or report on the runs kept
(design.md 5.8, 8), through a running gateway's admin API.

``reconcile SOURCE [--dry-run]`` prints the run's counts and every item needing attention
(``--json``: the API's document; ``--csv``: the items). It exits 1 when the run could not ask the
provider (its error printed) or another run of the source is going on. ``reconcile --report
[--since 24h]`` prints per source the runs in the window, their failures, what they recovered,
and the items of the last successful run needing attention (``--csv``: one line per run).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import sys
import time
from typing import Any
from urllib.parse import quote

from gateway import times
from gateway.cli.admin import admin_call, print_json, print_table, query
from gateway.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from gateway.config.reader import parse_duration
from gateway.store.records import RECONCILE_RESULTS

#: The results a person must look at (the others need nothing).
ATTENTION = ("missing", "mismatch", "unknown_to_provider")
ITEM_COLUMNS = ("key", "provider_state", "gateway_state", "result", "event_id", "reason")


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {counts.get(name, 0)}" for name in RECONCILE_RESULTS)


def _print_run(run: dict[str, Any]) -> None:
    kind = "dry run" if run.get("dry_run") else "run"
    print(f"{kind} {run['id']} of {run['source']}, {run['started_at']} to {run['finished_at']}")
    if not run["ok"]:
        print(f"failed: {run['error']}")
        return
    print(_counts(run["counts"]))
    items = run.get("items") or []
    if items:
        print()
        print_table(items, ITEM_COLUMNS)


def _write_items(runs: list[dict[str, Any]]) -> None:
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(("run_id", "source", *ITEM_COLUMNS))
    for run in runs:
        for item in run.get("items") or []:
            writer.writerow((run["id"], run["source"], *(item.get(c) for c in ITEM_COLUMNS)))


RUN_COLUMNS = ("id", "source", "started_at", "finished_at", "ok", "dry_run", "error")


def _write_runs(runs: list[dict[str, Any]]) -> None:
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(("run_id", *RUN_COLUMNS[1:], *RECONCILE_RESULTS))
    for run in runs:
        counts = [run["counts"].get(result, 0) for result in RECONCILE_RESULTS]
        writer.writerow([run[column] for column in RUN_COLUMNS] + counts)


def cmd_reconcile(args: argparse.Namespace) -> int:
    """Run one now (``reconcile SOURCE``) or report (``reconcile --report``)."""
    if args.json and args.csv:
        print("usage: --json and --csv do not go together", file=sys.stderr)
        return EXIT_USAGE
    if args.report == bool(args.source):
        print("usage: webhook-gateway reconcile (SOURCE [--dry-run] | --report [--since 24h])",
              file=sys.stderr)  # fmt: skip
        return EXIT_USAGE
    if args.report:
        return _report(args)
    path = f"/admin/reconciliation/{quote(args.source, safe='')}/run"
    path += query(dry_run="1" if args.dry_run else None)
    run = asyncio.run(admin_call(args, "POST", path, {}))
    assert isinstance(run, dict)
    if args.json:
        print_json(run)
    elif args.csv:
        _write_items([run])
    else:
        _print_run(run)
    if not run["ok"]:
        print(f"error: the run failed: {run['error']}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _report(args: argparse.Namespace) -> int:
    try:
        window = parse_duration(args.since)
    except ValueError as exc:
        print(f"usage: --since: {exc}", file=sys.stderr)
        return EXIT_USAGE
    since = times.rfc3339(time.time() - window)
    data = asyncio.run(
        admin_call(args, "GET", "/admin/reconciliation" + query(since=since, limit="50"))
    )
    assert isinstance(data, dict)
    sources: list[dict[str, Any]] = data["sources"]
    if args.json:
        print_json(data)
        return EXIT_OK
    if args.csv:
        _write_runs([run for source in sources for run in source["runs"]])
        return EXIT_OK
    if not sources:
        print("no source has a reconcile block")
        return EXIT_OK
    rows = []
    for source in sources:
        runs = source["runs"]
        done = [r for r in runs if r["ok"]]
        last = source["last_run"]
        rows.append(
            {
                "source": source["source"],
                "runs": len(runs),
                "failed": len(runs) - len(done),
                "recovered": sum(r["counts"].get("recovered", 0) for r in done),
                "last_run": last["started_at"] if last else None,
                "last": None if last is None else "ok" if last["ok"] else "failed",
                "needs_attention": None,
            }
        )
        latest = next((r for r in done if not r["dry_run"]), None)
        if latest is not None:
            rows[-1]["needs_attention"] = sum(latest["counts"].get(r, 0) for r in ATTENTION)
    print(f"reconciliation since {since}")
    print_table(
        rows, ("source", "runs", "failed", "recovered", "last_run", "last", "needs_attention")
    )
    for source, row in zip(sources, rows, strict=True):
        if not row["needs_attention"]:
            continue
        latest = next(r for r in source["runs"] if r["ok"] and not r["dry_run"])
        run = asyncio.run(
            admin_call(args, "GET", f"/admin/reconciliation/runs/{quote(latest['id'], safe='')}")
        )
        assert isinstance(run, dict)
        print(f"\n{source['source']}: needing attention after run {run['id']}")
        print_table([i for i in run["items"] if i["result"] in ATTENTION], ITEM_COLUMNS)
    return EXIT_OK
