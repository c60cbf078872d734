"""The dashboard's Analytics view (design.md 5.9) in a real Chromium.

The browser, the page and its checks (no console error, no page error) are those of
tests/test_dashboard_browser.py; the stack is that one's with payment sources whose amounts
are decimals with their currency (tests/test_analytics.py's ``PAYMENT``), one source per test
that counts money, so each test's figures are its own whatever ran before it.
"""

from __future__ import annotations

import csv
import io
import re
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import web
from playwright.sync_api import Page, expect

from gateway.analytics.report import CSV_COLUMNS
from gateway.server import Gateway
from tests import test_dashboard_browser as shared
from tests.support import build_config, config_dict, payments_source, sqlite_url
from tests.test_analytics import PAYMENT
from tests.test_dashboard_browser import WAIT_MS, Stack, no_page_wide_scroll, sign_in

VIEW = "/dashboard/analytics"
#: The sources and the path each takes webhooks on: one per test that sends payments.
SOURCES = {
    "payments": "/hooks/payments",
    "shop": "/hooks/shop",
    "phone": "/hooks/phone",
}
#: A currency is printable text of up to 16 characters (gateway/payments/amounts.py): markup
#: fits.
HOSTILE_CURRENCY = "<b>x</b>"
#: A custom range that ends before it starts is refused by the API on purpose (the page's
#: fixture would take Chromium's log of it for an error).
EXPECTED_REFUSALS = {"/admin/analytics": 400}

# The shared fixtures: one Chromium for the module, a fresh context per test that fails it on
# any console or page error, and where screenshots go. ``page`` takes this module's ``stack``.
browser = shared.browser
page = shared.page
shots = shared.shots


class AnalyticsStack(Stack):
    """The dashboard's stack, with a payment source per test."""

    async def _start(self) -> None:
        self._market_runner = web.AppRunner(self.market.app())
        await self._market_runner.setup()
        await web.TCPSite(self._market_runner, "127.0.0.1", 0).start()
        port = self._market_runner.addresses[0][1]
        data = config_dict(
            f"http://127.0.0.1:{port}/api/webhooks/payments",
            store_url=sqlite_url(self.directory),
            sources={
                name: payments_source(path=path, payment=PAYMENT) for name, path in SOURCES.items()
            },
        )
        self.gateway = Gateway(build_config(data))
        await self.gateway.start()
        assert self.gateway.ingress_site is not None and self.gateway.admin_site is not None
        self.ingress = f"http://127.0.0.1:{self.gateway.ingress_site.port}"
        self.admin = f"http://127.0.0.1:{self.gateway.admin_site.port}"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Any:
    running = AnalyticsStack(tmp_path_factory.mktemp("analytics-dashboard"))
    running.start()
    yield running
    running.stop()


def pay(stack: Stack, source: str, value: str, currency: str, failed: bool = False) -> str:
    """One signed payment event to ``source``: completed (or failed) for that amount."""
    fields: dict[str, Any] = {"type": "payment.failed", "status": "failed"} if failed else {}
    return stack.send(
        path=SOURCES[source],
        pendingId=f"pend-{uuid.uuid4().hex[:10]}",
        amount={"value": value, "currency": currency},
        **fields,
    )


def two_currencies(stack: Stack, source: str) -> None:
    """EUR 19.99 and 5.01 and USD 12.50 completed, one USD payment failed; all delivered."""
    sent = [
        pay(stack, source, "19.99", "EUR"),
        pay(stack, source, "5.01", "EUR"),
        pay(stack, source, "12.50", "USD"),
        pay(stack, source, "3.00", "USD", failed=True),
    ]
    for event_id in sent:
        stack.wait_status(event_id, "delivered")


def total(tab: Page, name: str) -> Any:
    return tab.locator(f"[data-total={name}] strong")


def query_of(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


def hours_between(query: dict[str, str]) -> float:
    start, end = (datetime.fromisoformat(query[k].replace("Z", "+00:00")) for k in ("from", "to"))
    return (end - start) / timedelta(hours=1)


# -- totals, charts, CSV --------------------------------------------------------------------------


def test_two_currencies_show_their_totals_charts_and_csv(page, stack, shots):
    two_currencies(stack, "payments")
    sign_in(page, stack, VIEW)
    expect(page.locator("[data-nav=analytics]")).to_have_attribute("aria-current", "page")
    expect(page.locator("[data-view=analytics] h1")).to_have_text("Analytics")
    expect(page.locator("[data-range='7d']")).to_have_attribute("aria-pressed", "true")
    # The source filter, as a person would use it: its choice goes in the URL.
    page.fill("[data-form=analytics] input[name=source]", "payments")
    page.click("[data-form=analytics] button[type=submit]")
    page.wait_for_url(f"**{VIEW}?range=7d&bucket=day&source=payments")
    expect(page.locator("[data-range-shown]")).to_contain_text("source payments")

    # Totals: counts, success ratio, time to completion, deliveries (counted as each ends).
    expect(total(page, "delivered")).to_have_text("4")
    expect(total(page, "first_seen")).to_have_text("4")
    expect(total(page, "completed")).to_have_text("3")
    expect(total(page, "failed")).to_have_text("1")
    expect(total(page, "expired")).to_have_text("0")
    expect(total(page, "success_ratio")).to_have_text("75%")
    expect(total(page, "ttc_p50")).to_have_text(re.compile(r"^≤ \d"))  # a figure, not a dash
    expect(total(page, "dead_lettered")).to_have_text("0")
    # Each currency's total with its currency, every digit kept, as the Payments view shows
    # amounts.
    expect(page.locator("[data-currency-total]")).to_have_count(2)
    expect(page.locator("[data-currency-total=EUR] .money")).to_have_text("25.00 EUR")
    expect(page.locator("[data-currency-total=USD] .money")).to_have_text("12.50 USD")

    # The charts: SVG with both axes' marks and a legend naming each series.
    payments = page.locator("[data-chart=payments] svg")
    expect(payments).to_have_count(1)
    y_marks = payments.locator("[data-axis=y] text").all_text_contents()
    assert y_marks[0] == "0" and int(y_marks[-1]) >= 4, y_marks
    x_marks = payments.locator("[data-axis=x] text").all_text_contents()
    assert x_marks[-1] == "days, UTC" and len(x_marks) >= 3, x_marks
    legend = {
        name: payments.locator(f"[data-legend={name}]").text_content()
        for name in ("completed", "failed", "expired", "cancelled", "first_seen")
    }
    assert legend == {
        "completed": "completed",
        "failed": "failed",
        "expired": "expired",
        "cancelled": "cancelled",
        "first_seen": "first seen",
    }
    assert "4 first seen, 3 completed, 1 failed" in (payments.get_attribute("aria-label") or "")
    for code in ("EUR", "USD"):
        chart = page.locator(f"[data-currency-chart={code}] svg")
        expect(chart.locator("[data-legend=amount]")).to_have_text(f"completed, {code}")
        assert chart.locator("[data-axis=y] text").count() >= 2
    eur = page.locator("[data-currency-chart=EUR] svg").get_attribute("aria-label") or ""
    assert "25.00 EUR" in eur, eur
    # Each legend mark is drawn in the colour of the bars it names, and the colours differ.
    colours = page.evaluate(
        """() => ["completed", "failed", "expired", "cancelled"].map((s) => [
              `[data-chart=payments] [data-legend=${s}] rect`,
              `[data-chart=payments] rect.seg.s-${s}:not([data-legend] *)`,
            ].map((q) => document.querySelector(q)).map((n) => n && getComputedStyle(n).fill))"""
    )
    assert colours[0][0] == colours[0][1] and colours[1][0] == colours[1][1], colours
    assert len({mark for mark, _ in colours}) == 4, colours
    page.locator("details.per-bucket summary").click()
    expect(page.locator("[data-list=analytics-buckets] tbody tr")).to_have_count(1)
    page.screenshot(path=str(shots / "analytics.png"), full_page=True)
    page.emulate_media(color_scheme="dark")
    page.screenshot(path=str(shots / "analytics-dark.png"), full_page=True)

    # The CSV of what the view shows: the same range, bucket and source.
    link = page.locator("[data-action=analytics-csv]")
    href = link.get_attribute("href") or ""
    assert href.startswith("/admin/analytics.csv?"), href
    asked = query_of(href)
    assert (asked["bucket"], asked["source"]) == ("day", "payments")
    assert 167.9 < hours_between(asked) < 168.1
    with page.expect_download() as info:
        link.click()
    download = info.value
    assert download.suggested_filename.startswith("analytics-")
    assert download.suggested_filename.endswith(".csv")
    rows = list(csv.reader(io.StringIO(Path(download.path()).read_text())))
    assert rows[0] == list(CSV_COLUMNS)
    columns = {name: i for i, name in enumerate(CSV_COLUMNS)}
    sums: dict[str, Decimal] = {}
    for row in rows[1:]:
        if row[columns["currency"]]:
            code = row[columns["currency"]]
            sums[code] = sums.get(code, Decimal(0)) + Decimal(row[columns["completed_amount"]])
    assert sums == {"EUR": Decimal("25.00"), "USD": Decimal("12.50")}
    # A bucket's counts repeat on each of its currency rows.
    buckets = {row[columns["start"]]: row for row in rows[1:]}
    assert sum(int(row[columns["first_seen"]]) for row in buckets.values()) == 4
    assert sum(int(row[columns["failed"]]) for row in buckets.values()) == 1

    # Live: a new payment shows without a reload, and the keyboard stays where it was.
    summary = page.locator("details.per-bucket summary")
    summary.focus()
    page.evaluate("window.__notReloaded = true")
    stack.wait_status(pay(stack, "payments", "1.00", "EUR"), "delivered")
    expect(page.locator("[data-currency-total=EUR] .money")).to_have_text(
        "26.00 EUR", timeout=shared.LIVE_MS
    )
    expect(total(page, "completed")).to_have_text("4")
    assert page.evaluate("window.__notReloaded") is True
    expect(summary).to_be_focused()


# -- the range picker ----------------------------------------------------------------------------


def test_the_range_picker_lives_in_the_url_and_asks_for_its_buckets(page, stack, shots):
    sign_in(page, stack, VIEW)
    expect(page.locator("[data-range='7d']")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("[data-range-shown]")).to_contain_text("By day")
    with page.expect_request(lambda r: "/admin/analytics?" in r.url) as asked:
        page.click("[data-range='24h']")
    query = query_of(asked.value.url)
    assert query["bucket"] == "hour"
    assert 23.9 < hours_between(query) < 24.1
    page.wait_for_url(f"**{VIEW}?range=24h&bucket=hour")
    expect(page.locator("[data-range='24h']")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("[data-range='7d']")).to_have_attribute("aria-pressed", "false")
    expect(page.locator("[data-range-shown]")).to_contain_text("By hour")
    page.screenshot(path=str(shots / "analytics-24h.png"), full_page=True)
    expect(page.locator("[data-action=analytics-csv]")).to_have_attribute(
        "href", re.compile("bucket=hour")
    )
    # A deep link: reload keeps the range; back and forward step through ranges.
    page.reload()
    expect(page.locator("[data-range='24h']")).to_have_attribute("aria-pressed", "true")
    page.go_back()
    expect(page.locator("[data-range='7d']")).to_have_attribute("aria-pressed", "true")
    page.go_forward()
    expect(page.locator("[data-range='24h']")).to_have_attribute("aria-pressed", "true")

    # 30 days, drawn by week through the bucket selector.
    page.click("[data-range='30d']")
    page.wait_for_url(f"**{VIEW}?range=30d&bucket=day")
    page.select_option("[data-form=analytics] select[name=bucket]", "week")
    with page.expect_request(lambda r: "/admin/analytics?" in r.url) as asked:
        page.click("[data-form=analytics] button[type=submit]")
    assert query_of(asked.value.url)["bucket"] == "week"
    page.wait_for_url(f"**{VIEW}?range=30d&bucket=week")
    expect(page.locator("[data-range-shown]")).to_contain_text("By week")

    # Custom starts from the range on screen; one that ends before it starts shows the API's
    # answer, and the rest of the view stays.
    page.click("[data-range=custom]")
    page.wait_for_url("**range=custom&from=*")
    start = page.locator("input[name=from]")
    end = page.locator("input[name=to]")
    assert start.input_value() and end.input_value()
    start.fill("2026-03-02T10:00")
    end.fill("2026-03-01T10:00")
    page.click("[data-form=analytics] button[type=submit]")
    refused = page.locator("[data-refused]")
    expect(refused).to_have_text("from must be before to")
    expect(page.locator("[data-view=analytics] h1")).to_have_text("Analytics")
    expect(page.locator("[data-range=custom]")).to_have_attribute("aria-pressed", "true")
    link = page.locator("[data-action=analytics-csv]")
    assert link.get_attribute("href") is None and link.get_attribute("aria-disabled") == "true"
    page.screenshot(path=str(shots / "analytics-refused.png"), full_page=True)

    # A range with nothing in it says so.
    start.fill("2020-01-01T00:00")
    end.fill("2020-01-02T00:00")
    page.click("[data-form=analytics] button[type=submit]")
    expect(page.locator("[data-empty]")).to_contain_text("Nothing in this range")
    expect(refused).to_have_count(0)
    expect(page.locator("[data-chart]")).to_have_count(0)
    expect(link).to_have_attribute("href", re.compile("bucket="))
    page.screenshot(path=str(shots / "analytics-empty.png"), full_page=True)


def test_a_custom_range_is_read_in_the_browsers_time_zone(browser, stack):
    # Kolkata is UTC+5:30 all year: midnight there is 18:30 UTC the day before.
    context = browser.new_context(timezone_id="Asia/Kolkata", locale="en-US")
    errors: list[str] = []
    try:
        tab = context.new_page()
        tab.set_default_timeout(WAIT_MS)
        tab.on("pageerror", lambda error: errors.append(str(error)))
        sign_in(tab, stack, f"{VIEW}?range=custom")
        tab.fill("input[name=from]", "2026-01-01T00:00")
        tab.fill("input[name=to]", "2026-01-02T00:00")
        with tab.expect_request(lambda r: "/admin/analytics?" in r.url) as asked:
            tab.click("[data-form=analytics] button[type=submit]")
        query = query_of(asked.value.url)
        assert (query["from"], query["to"]) == ("2025-12-31T18:30:00Z", "2026-01-01T18:30:00Z")
        assert query_of(tab.url)["from"] == "2025-12-31T18:30:00Z"
        # Reloaded, the inputs show the same local times again.
        tab.reload()
        expect(tab.locator("input[name=from]")).to_have_value("2026-01-01T00:00")
        expect(tab.locator("input[name=to]")).to_have_value("2026-01-02T00:00")
    finally:
        context.close()
    assert errors == []


# -- hostile text ----------------------------------------------------------------------------


def test_a_hostile_currency_shows_as_text(page, stack, shots):
    stack.wait_status(pay(stack, "shop", "7.25", HOSTILE_CURRENCY), "delivered")
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    sign_in(page, stack, f"{VIEW}?range=24h&bucket=hour&source=shop")
    shown = page.locator("[data-currency-total]")
    expect(shown).to_have_count(1)
    assert shown.get_attribute("data-currency-total") == HOSTILE_CURRENCY
    expect(shown.locator(".money")).to_have_text(f"7.25 {HOSTILE_CURRENCY}")
    chart = page.locator("[data-chart=amounts] svg")
    expect(chart.locator("[data-legend=amount]")).to_have_text(f"completed, {HOSTILE_CURRENCY}")
    assert HOSTILE_CURRENCY in (chart.get_attribute("aria-label") or "")
    page.locator("details.per-bucket summary").click()
    expect(page.locator("[data-list=analytics-buckets]")).to_contain_text(HOSTILE_CURRENCY)
    assert page.locator("main b, main img, main script").count() == 0
    assert dialogs == []
    page.screenshot(path=str(shots / "analytics-hostile.png"), full_page=True)


# -- small screens, keyboard ---------------------------------------------------------------------


def test_the_view_fits_a_phone_and_works_from_the_keyboard(page, stack, shots):
    two_currencies(stack, "phone")
    # A long code that is no ISO 4217 currency, with a long amount.
    pay(stack, "phone", "1234567890123.123456", "ASSET-WITH-LONG")
    page.set_viewport_size({"width": 360, "height": 740})
    sign_in(page, stack, f"{VIEW}?range=7d&bucket=day&source=phone")
    expect(page.locator("[data-currency-total]")).to_have_count(3)
    page.locator("details.per-bucket summary").click()
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        assert no_page_wide_scroll(page), scheme
        # Nothing sticks out of the window (the table's cells stack on a phone; its header
        # row stays for screen readers only, clipped to nothing).
        outside = page.evaluate(
            """() => [...document.querySelectorAll("main *:not(thead *)")]
                .filter((n) => { const b = n.getBoundingClientRect();
                                 return b.width > 0 && (b.left < 0 || b.right > innerWidth + 0.5); })
                .map((n) => `${n.tagName}.${n.getAttribute("class")}`)"""
        )
        assert outside == [], outside
        page.screenshot(path=str(shots / f"analytics-narrow-360-{scheme}.png"), full_page=True)
    # Drawn to the width they have, so their text keeps its size (about a pixel a unit).
    scales = page.evaluate(
        """() => [...document.querySelectorAll("[data-chart] svg")]
            .map((s) => s.getBoundingClientRect().width / s.viewBox.baseVal.width)"""
    )
    assert len(scales) == 4 and all(0.9 < s < 1.1 for s in scales), scales

    # By keyboard: a range button is pressed with Enter, and the view follows.
    button = page.locator("[data-range='24h']")
    button.focus()
    page.keyboard.press("Enter")
    page.wait_for_url(f"**{VIEW}?range=24h&bucket=hour&source=phone")
    expect(page.locator("[data-range='24h']")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("[data-currency-total]")).to_have_count(3)
    page.locator("[data-range='30d']").focus()
    page.keyboard.press("Space")
    page.wait_for_url(f"**{VIEW}?range=30d&bucket=day&source=phone")
    assert no_page_wide_scroll(page)
