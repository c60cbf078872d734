"""The dashboard's Reconciliation view (design.md 5.8) in a real Chromium, against the Node
double of the payments service's listing (tests/doubles.py).

The browser, the page and its checks (no console error, no page error) are those of
tests/test_dashboard_browser.py; the stack is that one's with reconciled sources, each read
from a listing double of its own so each test sets what its provider lists and how it
misbehaves: ``payments`` recovers what the gateway lacks, ``reports`` only reports
(``recover: false``), ``flaky`` is the one made to fail or to be slow, and ``idle`` (every
hour) is never run.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web
from playwright.sync_api import Page, expect

from gateway.server import Gateway
from tests import test_dashboard_browser as shared
from tests.doubles import PaymentsListing, payments_listing
from tests.support import ADMIN_TOKEN, build_config, config_dict, sqlite_url
from tests.test_dashboard_browser import OFF_SCREEN, ZONED, Stack, no_page_wide_scroll, sign_in
from tests.test_reconcile import LISTING_TOKEN, http_list_source, listed
from tests.waiting import eventually_sync

VIEW = "/dashboard/reconciliation"
#: Sources and the path each takes webhooks on (every one has a listing double).
SOURCES = {
    "payments": "/hooks/payments",
    "reports": "/hooks/reports",
    "flaky": "/hooks/flaky",
    "idle": "/hooks/idle",
}
HOSTILE_KEY = "<img src=x onerror=alert(1)>"
#: Run now while a run of ``flaky`` goes on answers 409 on purpose (the page's fixture would
#: take Chromium's log of it for an error).
EXPECTED_REFUSALS = {"/admin/reconciliation/flaky/run": 409}

# The shared fixtures: one Chromium for the module, a fresh context per test that fails it on
# any console or page error, and where screenshots go. ``page`` takes this module's ``stack``.
browser = shared.browser
page = shared.page
shots = shared.shots


class ReconcileStack(Stack):
    """The dashboard's stack, with reconciled sources and a listing double for each."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.exits = AsyncExitStack()
        self.listings: dict[str, PaymentsListing] = {}

    async def _start(self) -> None:
        self._market_runner = web.AppRunner(self.market.app())
        await self._market_runner.setup()
        await web.TCPSite(self._market_runner, "127.0.0.1", 0).start()
        port = self._market_runner.addresses[0][1]
        sources: dict[str, Any] = {}
        for name, path in SOURCES.items():
            listing = await self.exits.enter_async_context(
                payments_listing(self.directory, token=LISTING_TOKEN)
            )
            self.listings[name] = listing
            extra: dict[str, Any] = {
                "reports": {"recover": False},
                "idle": {"every": "1h"},
            }.get(name, {})
            sources[name] = {**http_list_source(listing.listing_url, **extra), "path": path}
        data = config_dict(
            f"http://127.0.0.1:{port}/api/webhooks/payments",
            store_url=sqlite_url(self.directory),
            sources=sources,
        )
        self.gateway = Gateway(build_config(data))
        await self.gateway.start()
        assert self.gateway.ingress_site is not None and self.gateway.admin_site is not None
        self.ingress = f"http://127.0.0.1:{self.gateway.ingress_site.port}"
        self.admin = f"http://127.0.0.1:{self.gateway.admin_site.port}"

    def stop(self) -> None:
        self.run(self.exits.aclose())
        super().stop()

    async def run_now(self, source: str) -> tuple[int, dict[str, Any]]:
        """``POST /admin/reconciliation/{source}/run`` with the bearer token: status, answer."""
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{self.admin}/admin/reconciliation/{source}/run", headers=headers) as r,
        ):
            return r.status, await r.json()

    def requests_at(self, source: str) -> int:
        """How many requests the source's listing double has answered or is answering."""
        return int(self.run(self.listings[source].stats())["requests"])

    def until_requested(self, source: str, count: int) -> None:
        eventually_sync(
            lambda: self.requests_at(source),
            f"{count} request(s) at the {source} listing",
            until=lambda n: n >= count,
        )

    def recovered_bodies(self) -> list[dict[str, Any]]:
        return [
            json.loads(r.body)
            for r in self.market.received
            if r.headers.get("X-Gateway-Origin") == "reconciled"
        ]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Any:
    running = ReconcileStack(tmp_path_factory.mktemp("reconcile-dashboard"))
    running.start()
    yield running
    running.stop()


def block(tab: Page, source: str) -> Any:
    return tab.locator(f"[data-reconcile-source='{source}']")


def run_button(tab: Page, source: str, dry: bool = False) -> Any:
    action = "reconcile-dry-run" if dry else "reconcile"
    return tab.locator(f"[data-action={action}][data-source='{source}']")


def payment_path(source: str, key: str) -> str:
    """The payment page's path, each part escaped as encodeURIComponent escapes it."""
    unreserved = "-_.!~*'()"
    return f"/dashboard/payments/{quote(source, safe=unreserved)}/{quote(key, safe=unreserved)}"


# -- a source that never ran, then Run now ---------------------------------------------------


def test_a_source_that_never_ran_says_so_and_run_now_recovers_its_payment(page, stack, shots):
    key = f"pend-rec-{uuid.uuid4().hex[:8]}"
    stack.listings["payments"].set(payments=[listed(key), listed(f"{key}-open", "pending")])
    sign_in(page, stack, VIEW)
    expect(page.locator("[data-nav=reconciliation]")).to_have_attribute("aria-current", "page")
    expect(page.locator("h1")).to_have_text("Reconciliation")
    payments = block(page, "payments")
    expect(payments.locator("[data-fact=last-run] [data-never]")).to_contain_text("never ran")
    expect(payments.locator("[data-fact=schedule]")).to_have_text("on demand")
    expect(payments.locator("[data-fact=provider]")).to_have_text("http-list")
    expect(block(page, "idle").locator("[data-fact=schedule]")).to_have_text("every 1 h")
    expect(block(page, "idle").locator("[data-never]")).to_be_visible()
    expect(payments.locator("[data-counts]")).to_have_count(0)
    page.screenshot(path=str(shots / "reconcile-never-ran.png"), full_page=True)

    run_button(page, "payments").click()
    expect(payments.locator("[data-answer=ok]")).to_contain_text("Run done: 0 matched · 1 open")
    expect(payments.locator("[data-count=recovered] strong")).to_have_text("1")
    expect(payments.locator("[data-count=open] strong")).to_have_text("1")
    expect(payments.locator("[data-count=missing] strong")).to_have_text("0")
    last_run = payments.locator("[data-fact=last-run]")
    expect(last_run.locator("[data-outcome=ok]")).to_have_text("ok")
    assert re.fullmatch(ZONED, last_run.locator("time").text_content() or "")
    expect(payments.locator("[data-never]")).to_have_count(0)
    # The recovered payment reached the marketplace, signed by the gateway.
    bodies = eventually_sync(
        stack.recovered_bodies,
        "the recovered payment at the marketplace",
        until=lambda found: any(b["pendingId"] == key for b in found),
    )
    assert [b["type"] for b in bodies if b["pendingId"] == key] == ["payment.completed"]
    row = payments.locator(f"[data-reconcile-key='{key}']")
    expect(row).to_have_attribute("data-result", "recovered")
    expect(row).to_contain_text("completed")
    runs = payments.locator("[data-list=reconcile-runs] tbody tr")
    expect(runs).to_have_count(1)
    expect(runs).to_have_attribute("data-outcome", "ok")
    expect(runs).to_contain_text("1")  # recovered
    page.screenshot(path=str(shots / "reconcile-recovered.png"), full_page=True)

    # A deep link that works on reload; the recovered event's link opens its page.
    page.reload()
    row.locator("[data-event-link]").click()
    page.wait_for_url(re.compile(r"/dashboard/events/[^/?]+\?source=payments$"))
    expect(page.locator("[data-body]")).to_contain_text(key)
    expect(page.locator("main dd", has_text="reconciled")).to_have_count(1)


# -- report only: the missing payment, linked to its page ------------------------------------


def test_report_only_lists_the_missing_payment_with_its_reason_and_a_link_to_it(page, stack, shots):
    # A key with slashes, as a URL key has: its link carries them escaped.
    key = f"https://wallet.example/incoming-payments/{uuid.uuid4()}"
    stack.listings["reports"].set(payments=[listed(key)])
    sign_in(page, stack, VIEW)
    reports = block(page, "reports")
    expect(reports.locator("[data-fact=recovery]")).to_contain_text("report only")
    run_button(page, "reports").click()
    row = reports.locator(f"[data-reconcile-key='{key}']")
    expect(row).to_have_attribute("data-result", "missing")
    for part in ("missing", "recover: false", "completed"):
        expect(row).to_contain_text(part)
    expect(reports.locator("[data-count=missing] strong")).to_have_text("1")
    expect(reports.locator("[data-count=recovered] strong")).to_have_text("0")
    # Nothing was recovered: the event is named, not linked (it was never stored).
    expect(row.locator("[data-event-link]")).to_have_count(0)
    assert not [b for b in stack.recovered_bodies() if b["pendingId"] == key]
    page.screenshot(path=str(shots / "reconcile-report-only.png"), full_page=True)

    link = row.locator("[data-payment-link]")
    expect(link).to_have_text(key)
    assert link.get_attribute("href") == payment_path("reports", key)
    link.click()
    page.wait_for_url(f"**{payment_path('reports', key)}")
    expect(page.locator("h1")).to_have_text(f"Payment {key}")
    expect(page.locator("[data-summary] [data-fact=attention]")).to_contain_text("missing")
    page.go_back()
    expect(block(page, "reports").locator(f"[data-reconcile-key='{key}']")).to_be_visible()


# -- a failing provider -----------------------------------------------------------------------


def test_a_failing_provider_shows_the_run_failed_with_its_reason(page, stack, shots):
    flaky = stack.listings["flaky"]
    flaky.set(payments=[listed(f"pend-fail-{uuid.uuid4().hex[:6]}")], behaviour="status:500")
    try:
        sign_in(page, stack, VIEW)
        run_button(page, "flaky").click()
        source = block(page, "flaky")
        expect(source.locator("[data-answer=failed]")).to_contain_text("Run failed: HTTP 500")
        expect(source.locator("[data-fact=last-run] [data-outcome=failed]")).to_have_text("failed")
        expect(source.locator("[data-fact=error]")).to_contain_text("HTTP 500")
        expect(source.locator("[data-counts]")).to_have_count(0)  # a failed run counts nothing
        latest = source.locator("[data-list=reconcile-runs] tbody tr").first
        expect(latest).to_have_attribute("data-outcome", "failed")
        expect(latest).to_contain_text("HTTP 500")
        page.screenshot(path=str(shots / "reconcile-failed.png"), full_page=True)
        # It stays so on reload: the run is kept, not just the answer to the click.
        page.reload()
        expect(block(page, "flaky").locator("[data-fact=error]")).to_contain_text("HTTP 500")
    finally:
        flaky.set(behaviour=None)


# -- a slow provider: the button while it runs, and a second run -----------------------------


def test_a_slow_run_disables_its_buttons_and_another_run_meanwhile_is_in_progress(
    page, stack, shots
):
    flaky = stack.listings["flaky"]
    flaky.set(payments=[listed(f"pend-slow-{uuid.uuid4().hex[:6]}", "pending")], delay_ms=1500)
    try:
        sign_in(page, stack, VIEW)
        source = block(page, "flaky")
        button, dry = run_button(page, "flaky"), run_button(page, "flaky", dry=True)
        before = stack.requests_at("flaky")
        button.click()
        expect(button).to_be_disabled()
        expect(button).to_have_text("Running…")
        expect(dry).to_be_disabled()
        expect(source.locator("[data-answer=going]")).to_be_visible()
        page.screenshot(path=str(shots / "reconcile-running.png"), full_page=True)
        # The run holds the source's lease once it asks the provider: the API is refused.
        stack.until_requested("flaky", before + 1)
        status, answer = stack.run(stack.run_now("flaky"))
        assert (status, answer["error"]) == (409, "in_progress")
        expect(source.locator("[data-answer=ok]")).to_contain_text("Run done")
        expect(button).to_be_enabled()
        expect(button).to_have_text("Run now")
        expect(source.locator("[data-count=open] strong")).to_have_text("1")

        # The other way round: a run from the API goes on, and Run now is told so.
        before = stack.requests_at("flaky")
        elsewhere = asyncio.run_coroutine_threadsafe(stack.run_now("flaky"), stack.loop)
        stack.until_requested("flaky", before + 1)
        button.click()
        refused = source.locator("[data-answer=in-progress]")
        expect(refused).to_contain_text("a run is already going on")
        expect(refused).to_contain_text("try again when it ends")
        expect(button).to_be_enabled()
        page.screenshot(path=str(shots / "reconcile-in-progress.png"), full_page=True)
        status, answer = elsewhere.result(30)
        assert (status, answer["ok"]) == (200, True)
    finally:
        flaky.set(delay_ms=None)


# -- hostile text ----------------------------------------------------------------------------


def test_a_hostile_payment_key_shows_as_text_and_never_runs(page, stack, shots):
    key = f"{HOSTILE_KEY}/{uuid.uuid4().hex[:6]}"
    stack.listings["reports"].set(payments=[listed(key)])
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    sign_in(page, stack, VIEW)
    reports = block(page, "reports")
    # A dry run shows what it found right away; then a run keeps it as needing attention.
    run_button(page, "reports", dry=True).click()
    found = reports.locator("[data-list=dry-run-items]").locator(f"[data-reconcile-key='{key}']")
    expect(found).to_contain_text(key)
    expect(reports.locator("[data-answer=dry-run]")).to_contain_text("nothing recovered")
    expect(reports.locator("[data-fact=last-run] [data-dry-run]")).to_have_text("dry run")
    reports.screenshot(path=str(shots / "reconcile-dry-run.png"))
    run_button(page, "reports").click()
    row = reports.locator("[data-list=reconcile-items]").locator(f"[data-reconcile-key='{key}']")
    expect(row.locator("[data-payment-link]")).to_have_text(key)
    assert page.locator("main img, main script").count() == 0
    row.locator("[data-payment-link]").click()
    page.wait_for_url(f"**{payment_path('reports', key)}")
    expect(page.locator("h1")).to_have_text(f"Payment {key}")
    assert page.locator("main img, main script").count() == 0
    assert dialogs == []


# -- small screens, keyboard -----------------------------------------------------------------


def test_the_view_fits_a_phone_and_runs_from_the_keyboard(page, stack, shots):
    key = "https://wallet.example/incoming-payments/" + "x" * 80
    stack.listings["reports"].set(payments=[listed(key), listed(f"pend-{'y' * 70}")])
    page.set_viewport_size({"width": 360, "height": 740})
    sign_in(page, stack, VIEW)
    button = run_button(page, "reports")
    button.focus()
    page.keyboard.press("Enter")
    reports = block(page, "reports")
    expect(reports.locator(f"[data-reconcile-key='{key}']")).to_be_visible()
    expect(button).to_be_enabled()
    expect(button).to_be_focused()  # the keyboard is where it was
    assert no_page_wide_scroll(page)
    assert page.evaluate(OFF_SCREEN) == []
    page.screenshot(path=str(shots / "reconcile-narrow-360.png"), full_page=True)
    page.emulate_media(color_scheme="dark")
    assert no_page_wide_scroll(page)
    page.screenshot(path=str(shots / "reconcile-narrow-360-dark.png"), full_page=True)
