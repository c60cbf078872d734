"""The dashboard in a real Chromium (design.md 5.6), driven by Playwright.

The browser is Debian's ``chromium`` (``make test`` installs it with apt-get); Playwright only
drives it. One browser serves the module; each test gets a fresh context (no cookies) and fails
on any console error or uncaught page error. A gateway (ingress, workers, admin listener) and a
marketplace run on real sockets in a thread with their own event loop, so the tests themselves
are plain synchronous Playwright.

Each view is saved as a screenshot in a temporary directory (``WG_SCREENSHOTS`` chooses it);
with ``WG_UPDATE_DOCS=1`` the payments view is also written to docs/dashboard.png for README.

The stack's payments source reads a payment from each event (design.md 5.7): its key is the
``pendingId``, its reference the ``offerId``, its amount an Open Payments-like ``amount``
object, and ``payment.pending`` reports an earlier state than ``payment.completed``, so a late
pending is superseded.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Coroutine, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

from gateway.server import Gateway
from tests.support import (
    ADMIN_TOKEN,
    Marketplace,
    build_config,
    config_dict,
    payment_body,
    payments_source,
    sign_payment,
    sqlite_url,
)
from tests.waiting import eventually_sync

T = TypeVar("T")
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Bound on any wait for the page (ms); the live view must show a change within 2 s.
WAIT_MS = 10_000
LIVE_MS = 4_000
ROOT = Path(__file__).resolve().parents[1]
HOSTILE = "<img src=x onerror=window.__pwned=1>"
HOSTILE_OFFER = "<script>window.__pwned=2</script><b>offer</b>"
#: 19.99 EUR as the payments service's body carries it: minor units, code, scale.
EUR_19_99 = {"value": "1999", "assetCode": "EUR", "assetScale": 2}


class Stack:
    """A marketplace and a gateway on real sockets, in a thread with their own event loop."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.market = Marketplace()
        self.admin = ""
        self.ingress = ""
        #: The session cookie of the first sign-in, for the tests after it.
        self.cookies: list[Any] = []

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run a coroutine on the stack's loop and wait for its result (bounded)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> None:
        self.thread.start()
        self.run(self._start())

    async def _start(self) -> None:
        self._market_runner = web.AppRunner(self.market.app())
        await self._market_runner.setup()
        site = web.TCPSite(self._market_runner, "127.0.0.1", 0)
        await site.start()
        port = self._market_runner.addresses[0][1]
        data = config_dict(
            f"http://127.0.0.1:{port}/api/webhooks/payments",
            store_url=sqlite_url(self.directory),
            # A failed delivery waits an hour: what Retry now is for.
            destination={"retry": {"schedule": ["1h"], "max_age": "2h", "jitter": 0}},
        )
        payments = data["sources"]["payments"]
        payments["routes"] = [{"destination": "marketplace", "types": ["*"]}]
        payments["payment"] = {
            **payments["payment"],
            "amount": {
                "value": "/amount/value",
                "currency": "/amount/assetCode",
                "scale": "/amount/assetScale",
            },
            "states": {**payments["payment"]["states"], "payment.pending": "pending"},
        }
        # A source whose routes take none of the payments' types: its events are unrouted.
        data["sources"]["orders"] = payments_source(
            path="/hooks/orders", routes=[{"destination": "marketplace", "types": ["order.*"]}]
        )
        self.gateway = Gateway(build_config(data))
        await self.gateway.start()
        assert self.gateway.ingress_site is not None and self.gateway.admin_site is not None
        self.ingress = f"http://127.0.0.1:{self.gateway.ingress_site.port}"
        self.admin = f"http://127.0.0.1:{self.gateway.admin_site.port}"

    def stop(self) -> None:
        async def stop() -> None:
            await self.gateway.stop()
            await self._market_runner.cleanup()

        self.run(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def send(self, msg_id: str | None = None, path: str = "/hooks/payments", **fields: Any) -> str:
        """Send one signed payments event (to another source's ``path``); its id."""
        msg_id = msg_id or f"msg_{uuid.uuid4().hex[:12]}"
        body = payment_body(**fields)

        async def post() -> None:
            async with (
                aiohttp.ClientSession() as session,
                session.post(
                    f"{self.ingress}{path}",
                    data=body,
                    headers=sign_payment(body, msg_id=msg_id),
                ) as response,
            ):
                assert response.status == 202, await response.text()

        self.run(post())
        return msg_id

    def admin_get(self, path: str) -> Any:
        async def get() -> Any:
            headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"{self.admin}{path}", headers=headers) as response,
            ):
                return await response.json()

        return self.run(get())

    def wait_status(self, event_id: str, status: str) -> None:
        eventually_sync(
            lambda: self.admin_get(f"/admin/events/{event_id}").get("status"),
            f"event {event_id} to be {status}",
            until=lambda seen: seen == status,
        )

    def received_ids(self) -> list[str]:
        return [r.headers["webhook-id"] for r in self.market.received]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(tmp_path_factory.mktemp("dashboard"))
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), "chromium is missing: make test installs it (apt-get)"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chosen = os.environ.get("WG_SCREENSHOTS")
    if chosen:
        Path(chosen).mkdir(parents=True, exist_ok=True)
        return Path(chosen)
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture
def page(browser: Browser, stack: Stack, request: pytest.FixtureRequest) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    tab = context.new_page()
    tab.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    # Refusals a test module provokes on purpose ({path: status}; a query does not count),
    # beside the sign-in's.
    expected: dict[str, int] = getattr(request.module, "EXPECTED_REFUSALS", {})

    def on_console(message: ConsoleMessage) -> None:
        # The refused sign-in answers 401 on purpose; Chromium logs any 4xx document.
        url = message.location.get("url", "").split("?", 1)[0]
        refused = url.endswith("/dashboard/login") or any(
            url.endswith(path) and f"status of {status} " in message.text
            for path, status in expected.items()
        )
        if message.type == "error" and not refused:
            errors.append(f"console: {message.text}")

    tab.on("console", on_console)
    tab.on("pageerror", lambda error: errors.append(f"page error: {error}"))
    yield tab
    context.close()
    assert errors == [], errors


def sign_in(page: Page, stack: Stack, path: str = "/dashboard") -> None:
    """Sign in with the form the first time; later tests reuse that session's cookie, as a
    browser would (sign-in is limited to 10 a minute per address, more than a test module's
    pace would stay under)."""
    if stack.cookies:
        page.context.add_cookies(stack.cookies)
        page.goto(f"{stack.admin}{path}")
    else:
        page.goto(f"{stack.admin}{path}")
        page.fill("input[name=token]", ADMIN_TOKEN)
        page.click("button[type=submit]")
        page.wait_for_selector("#health [data-figure=accepted]")
        stack.cookies = page.context.cookies()
        if path != "/dashboard":
            page.goto(f"{stack.admin}{path}")
    page.wait_for_selector("#health [data-figure=accepted]")
    page.wait_for_selector("[data-live=on]")


def no_page_wide_scroll(page: Page) -> bool:
    return bool(
        page.evaluate(
            "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
            " && document.documentElement.scrollWidth <= window.innerWidth"
        )
    )


#: The text of every table cell (and anything in one) that is not wholly within the window's
#: width: on a phone, a value or button one must scroll sideways to find.
OFF_SCREEN = """() => [...document.querySelectorAll("main td, main td *")]
    .filter((node) => {
        const box = node.getBoundingClientRect();
        return box.width > 0 && (box.left < 0 || box.right > window.innerWidth + 0.5);
    })
    .map((node) => `${node.tagName}: ${node.textContent.slice(0, 40)}`)"""

#: Local time with its zone, year first: 2026-12-06 06:05:00 UTC (or CET, GMT+5:30, ...).
ZONED = r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} (UTC|GMT[+-]\d{1,2}(:\d{2})?|[A-Z]{2,5})"


# -- sign-in -------------------------------------------------------------------------------------


def test_sign_in_refuses_a_wrong_token_and_accepts_the_right_one(page, stack, shots):
    page.goto(f"{stack.admin}/dashboard")
    assert page.get_attribute("input[name=token]", "type") == "password"
    page.fill("input[name=token]", "not-the-token")
    page.click("button[type=submit]")
    page.wait_for_selector("[role=alert]")
    assert "not the admin token" in page.text_content("[role=alert]")
    assert page.context.cookies() == []
    page.screenshot(path=str(shots / "sign-in.png"))

    page.fill("input[name=token]", ADMIN_TOKEN)
    page.click("button[type=submit]")
    page.wait_for_selector("#health [data-figure=accepted]")
    assert page.url == f"{stack.admin}/dashboard"
    [cookie] = page.context.cookies()
    assert (cookie["httpOnly"], cookie["sameSite"], cookie["secure"]) == (True, "Strict", False)
    assert 11.9 * 3600 < cookie["expires"] - time.time() <= 12 * 3600
    assert page.evaluate("document.cookie") == ""  # HttpOnly: scripts cannot read it


# -- events, live, hostile input ------------------------------------------------------------------


def test_events_are_listed_and_new_ones_appear_without_reload(page, stack, shots):
    first = stack.send(offerId="offer-list", status="paid")
    stack.wait_status(first, "delivered")
    sign_in(page, stack, "/dashboard/events")
    row = page.wait_for_selector(f"[data-event-id='{first}']")
    text = row.text_content()
    for part in (first, "payments", "payment.completed", "offer-list", "delivered"):
        assert part in text
    page.evaluate("window.__notReloaded = true")
    later = stack.send(offerId="offer-live", status="pending", type="payment.pending")
    page.wait_for_selector(f"[data-event-id='{later}']", timeout=LIVE_MS)
    assert page.evaluate("window.__notReloaded") is True
    page.wait_for_selector(f"[data-event-id='{later}'] .badge.delivered", timeout=LIVE_MS)
    page.fill("input[name=q]", "offer-lis")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**/dashboard/events?q=offer-lis")
    page.wait_for_selector(f"[data-event-id='{first}']")
    assert page.query_selector(f"[data-event-id='{later}']") is None
    page.reload()  # a deep link works on reload
    page.wait_for_selector(f"[data-event-id='{first}']")
    page.screenshot(path=str(shots / "events.png"), full_page=True)


def test_sender_chosen_text_is_shown_as_text_and_never_run(page, stack, shots):
    # The payment's key (with slashes, as a URL key has), its reference and its currency are
    # the sender's too.
    key = f"{HOSTILE_OFFER}/{HOSTILE}/{uuid.uuid4().hex[:6]}"
    amount = {"value": "100", "assetCode": "<b>X</b>", "assetScale": 2}
    event_id = stack.send(
        type=HOSTILE, offerId=HOSTILE_OFFER, status=HOSTILE, pendingId=key, amount=amount
    )
    sign_in(page, stack, "/dashboard/events")
    row = page.wait_for_selector(f"[data-event-id='{event_id}']")
    assert HOSTILE in row.text_content()
    assert HOSTILE_OFFER in row.text_content()
    assert row.query_selector("img, script, b") is None
    page.goto(f"{stack.admin}/dashboard/events/{event_id}")
    page.wait_for_selector("[data-body]")
    assert json.loads(page.text_content("[data-body]"))["type"] == HOSTILE
    assert page.query_selector("main img, main script, main b") is None
    page.click("[data-payment-link]")
    page.wait_for_url(f"**/dashboard/payments/payments/{quote(key, safe='')}")
    page.wait_for_selector(f".timeline [data-event-id='{event_id}']")
    assert page.text_content("h1") == f"Payment {key}"
    expect(page.locator("[data-summary] [data-fact=reference]")).to_have_text(HOSTILE_OFFER)
    expect(page.locator("[data-summary] [data-fact=amount]")).to_have_text("1.00 <b>X</b>")
    assert page.query_selector("main img, main script, main b") is None
    # A first-version link to a subject opens the payments found by it: here, by reference.
    page.goto(f"{stack.admin}/dashboard/payments/{quote(HOSTILE_OFFER, safe='')}")
    page.wait_for_url(f"**/dashboard?q={quote(HOSTILE_OFFER, safe='')}")
    listed = page.wait_for_selector(f"tr[data-payment-key='{key}']")
    for part in (key, HOSTILE_OFFER, "1.00 <b>X</b>"):
        assert part in listed.text_content()
    assert page.input_value("input[name=q]") == HOSTILE_OFFER
    assert page.evaluate("window.__pwned") is None
    assert page.query_selector("main img, main script, main b") is None


# -- event detail: replay -------------------------------------------------------------------------


def test_replay_delivers_again_with_the_same_webhook_id(page, stack, shots):
    event_id = stack.send(offerId="offer-replay")
    stack.wait_status(event_id, "delivered")
    sign_in(page, stack, f"/dashboard/events/{event_id}")
    page.wait_for_selector(".delivery")
    assert '"offerId": "offer-replay"' in page.text_content("[data-body]")  # pretty-printed
    page.click("[data-action=replay]")
    page.wait_for_selector(".notice.ok")
    eventually_sync(
        stack.received_ids,
        "the replay to be delivered",
        until=lambda ids: ids.count(event_id) >= 2,
    )
    # The page's CSP forbids eval, so wait through a locator, not a JavaScript string.
    expect(page.locator(".delivery")).to_have_count(2)
    page.screenshot(path=str(shots / "event.png"), full_page=True)


# -- dead letters: redrive -----------------------------------------------------------------------


def test_redrive_one_and_all(page, stack, shots):
    stack.market.status = 400
    try:
        one = stack.send(offerId="offer-dead-1")
        two = stack.send(offerId="offer-dead-2")
        stack.wait_status(one, "dead_lettered")
        stack.wait_status(two, "dead_lettered")
    finally:
        stack.market.status = 200
    sign_in(page, stack, "/dashboard/dead-letters")
    row = page.wait_for_selector(f"tr[data-event-id='{one}']")
    assert "400" in row.text_content()
    page.screenshot(path=str(shots / "dead-letters.png"), full_page=True)
    row.query_selector("[data-action=redrive]").click()
    stack.wait_status(one, "delivered")
    page.wait_for_selector(f"tr[data-event-id='{one}']", state="detached")
    asked: list[str] = []
    answers = iter([False, True])  # Cancel first, then OK
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url) if r.method == "POST" else None)

    def confirm(dialog: Any) -> None:
        asked.append(dialog.message)
        if next(answers):
            dialog.accept()
        else:
            dialog.dismiss()

    page.on("dialog", confirm)
    page.click("[data-action=redrive-all]")
    page.wait_for_timeout(300)  # time enough for a request the click should not have sent
    assert len(asked) == 1 and "Redrive every dead letter" in asked[0]
    assert sent == []
    assert stack.admin_get(f"/admin/events/{two}")["status"] == "dead_lettered"
    page.click("[data-action=redrive-all]")
    stack.wait_status(two, "delivered")
    assert len(asked) == 2 and [url.rsplit("/", 1)[-1] for url in sent] == ["redrive"]


#: A refusal a real backend might send: long enough that the table has to share out its width.
REFUSAL = (
    b'{"error":"offer_closed","message":"The marketplace no longer accepts payments for this '
    b"offer because the seller closed it before the payment was confirmed; the buyer's money "
    b"stays with the payment provider until it is refunded or the seller reopens the offer, "
    b'which can take up to three business days depending on the provider and the currency."}'
)

#: Every word of every text node under ``root`` that is drawn on more than one line.
SPLIT_WORDS = """root => {
    const split = [];
    const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        for (const word of node.data.matchAll(/\\S+/g)) {
            const range = document.createRange();
            range.setStart(node, word.index);
            range.setEnd(node, word.index + word[0].length);
            if (range.getClientRects().length !== 1) split.push(word[0]);
        }
    }
    return split;
}"""


def test_dead_letters_never_break_a_word(page, stack, shots):
    stack.market.status, stack.market.answer = 400, REFUSAL
    try:
        event_id = stack.send(offerId="offer-dead-long")
        stack.wait_status(event_id, "dead_lettered")
    finally:
        stack.market.status, stack.market.answer = 200, b'{"ok":true}'
    sign_in(page, stack, "/dashboard/dead-letters")
    page.wait_for_selector(f"tr[data-event-id='{event_id}']")
    page.screenshot(path=str(shots / "dead-letters-long.png"), full_page=True)
    assert page.eval_on_selector("main table", SPLIT_WORDS) == []


# -- reconciliation: none here --------------------------------------------------------------------


def test_reconciliation_without_a_reconciled_source_says_how_to_set_one_up(page, stack, shots):
    # No source of this stack has a reconcile block (tests/test_dashboard_reconcile_browser.py
    # drives the view with some).
    sign_in(page, stack)
    page.click("[data-nav=reconciliation]")
    page.wait_for_url("**/dashboard/reconciliation")
    expect(page.locator("[data-nav=reconciliation]")).to_have_attribute("aria-current", "page")
    expect(page.locator("h1")).to_have_text("Reconciliation")
    empty = page.locator("main [data-empty]")
    expect(empty).to_contain_text("No source is reconciled.")
    expect(empty).to_contain_text("reconcile:")
    expect(empty).to_contain_text("docs/reconcile.md")
    expect(page.locator("[data-reconcile-source], [data-action=reconcile]")).to_have_count(0)
    assert page.title() == "Reconciliation · webhook-gateway"
    page.reload()  # a deep link that works on reload
    expect(page.locator("main [data-empty]")).to_contain_text("No source is reconciled.")
    page.screenshot(path=str(shots / "reconciliation-none.png"), full_page=True)


# -- health strip and times ----------------------------------------------------------------------


def test_health_strip_names_its_window_what_success_counts_and_the_charts_axes(page, stack):
    sign_in(page, stack, "/dashboard/events")
    expect(page.locator("#health [data-window=last-hour]")).to_have_text("Last hour")
    expect(page.locator("#health [data-window=last-hour]")).to_be_visible()
    success = page.locator("#health [data-figure=success_ratio]")
    expect(success).to_contain_text("Delivered of finished")
    assert "delivered or dead-lettered" in (success.get_attribute("title") or "")
    assert "retried are not counted" in (success.get_attribute("title") or "")

    per_minute = stack.admin_get("/admin/stats")["per_minute"]
    peak = max(max(per_minute[name]) for name in ("accepted", "delivered", "dead_lettered"))
    y_axis = page.locator("#health .chart [data-axis=y] text").all_text_contents()
    assert y_axis[0] == "0" and y_axis[-1] == str(peak)
    x_axis = page.locator("#health .chart [data-axis=x] text").all_text_contents()
    assert x_axis == ["\u221260 min", "\u221230 min", "now"]  # a minus sign, not a hyphen
    legend = {
        name: page.locator(f"#health .chart [data-legend={name}]").text_content()
        for name in ("accepted", "delivered", "dead_lettered")
    }
    assert legend == {
        "accepted": "accepted",
        "delivered": "delivered",
        "dead_lettered": "dead-lettered",
    }
    # Each legend mark is drawn in the colour of what it names.
    colours = page.evaluate(
        """() => [["[data-legend=accepted] rect", "rect.bar:not([data-legend] *)", "fill"],
                  ["[data-legend=delivered] line", "polyline.delivered", "stroke"],
                  ["[data-legend=dead_lettered] line", "polyline.dead", "stroke"]]
            .map(([mark, drawn, paint]) => [mark, drawn].map(
                (s) => getComputedStyle(document.querySelector(`#health .chart ${s}`))[paint]))"""
    )
    for mark, drawn in colours:
        assert mark == drawn and mark not in ("", "none")


def test_retry_now_delivers_a_destination_backlog(page, stack, shots):
    stack.market.status = 503
    try:
        event_id = stack.send(offerId="offer-backlog")
        eventually_sync(
            lambda: stack.admin_get(f"/admin/events/{event_id}")["deliveries"],
            "the delivery to fail once and wait out the hour",
            until=lambda ds: [(d["attempts_made"], d["state"]) for d in ds] == [(1, "due")],
        )
    finally:
        stack.market.status = 200
    sign_in(page, stack, "/dashboard/events")
    button = page.locator("#health li[data-destination=marketplace] [data-action=retry-now]")
    expect(button).to_be_enabled()
    page.screenshot(path=str(shots / "retry-now.png"), full_page=True)
    button.click()
    expect(page.locator("#health .depth-status")).to_contain_text(
        "marketplace: 1 delivery(ies) due now"
    )
    stack.wait_status(event_id, "delivered")
    [delivery] = stack.admin_get(f"/admin/events/{event_id}")["deliveries"]
    assert [a["number"] for a in delivery["attempts"]] == [1, 2]  # its count kept
    expect(button).to_be_disabled()  # nothing waits any more


def test_unrouted_events_show_in_the_strip_and_link_to_their_list(page, stack):
    event_id = stack.send(path="/hooks/orders", offerId="offer-unrouted")
    sign_in(page, stack, "/dashboard")
    unrouted = page.locator("#health [data-figure=unrouted]")
    expect(unrouted).to_have_text(re.compile(r"^[1-9]\d* unrouted$"))
    expect(unrouted).to_have_class(re.compile(r"\bwarn\b"))
    unrouted.click()
    page.wait_for_url("**/dashboard/events?status=unrouted")
    row = page.wait_for_selector(f"[data-event-id='{event_id}']")
    assert "unrouted" in row.text_content()


def test_times_show_their_time_zone(page, browser, stack):
    event_id = stack.send(offerId="offer-zone")
    received = stack.admin_get(f"/admin/events/{event_id}")["received_at"]
    sign_in(page, stack, "/dashboard/events")
    row = page.wait_for_selector(f"[data-event-id='{event_id}']")
    shown = row.query_selector("time")
    assert shown is not None and shown.get_attribute("datetime") == received
    assert shown.get_attribute("title") == received
    assert re.fullmatch(ZONED, shown.text_content() or ""), shown.text_content()
    times = page.locator("main time").all_text_contents()
    assert times and all(re.fullmatch(ZONED, t) for t in times), times
    assert not re.search(r"\d{1,2}/\d{1,2}/\d{4}", page.text_content("main") or "")

    # In another zone, the same instant in that zone's clock, named.
    context = browser.new_context(timezone_id="Asia/Kolkata", locale="en-US")
    try:
        tab = context.new_page()
        tab.set_default_timeout(WAIT_MS)
        sign_in(tab, stack, "/dashboard/events")
        there = tab.wait_for_selector(f"[data-event-id='{event_id}'] time").text_content()
    finally:
        context.close()
    instant = datetime.fromisoformat(received.replace("Z", "+00:00"))
    local = instant.astimezone(timezone(timedelta(hours=5, minutes=30)))
    assert there == local.strftime("%Y-%m-%d %H:%M:%S") + " GMT+5:30"


# -- payments: one row each, a payment's page ----------------------------------------------------


def payment_path(key: str, source: str = "payments") -> str:
    return f"/dashboard/payments/{quote(source, safe='')}/{quote(key, safe='')}"


def test_three_payments_of_one_offer_are_three_rows_each_with_its_state(page, stack, shots):
    offer = "offer-777"
    # A Rafiki-like key is a URL: its slashes travel escaped in the dashboard's links.
    paid = f"https://wallet.example/incoming-payments/{uuid.uuid4()}"
    failed, waiting = f"pend-fail-{uuid.uuid4().hex[:6]}", f"pend-wait-{uuid.uuid4().hex[:6]}"
    first = stack.send(offerId=offer, pendingId=paid, type="payment.pending", amount=EUR_19_99)
    second = stack.send(offerId=offer, pendingId=paid, amount=EUR_19_99)
    stack.send(
        offerId=offer,
        pendingId=failed,
        type="payment.failed",
        status="failed",
        amount={"value": "4250", "assetCode": "EUR", "assetScale": 2},
    )
    last = stack.send(
        offerId=offer,
        pendingId=waiting,
        type="payment.pending",
        status="pending",
        amount={"value": "123456", "assetCode": "XRP", "assetScale": 4},
    )
    for event_id in (first, second, last):
        stack.wait_status(event_id, "delivered")
    sign_in(page, stack, f"/dashboard?q={offer}")
    rows = page.locator("tr[data-payment-key]")
    expect(rows).to_have_count(3)
    shown = {
        row.get_attribute("data-payment-key"): row.get_attribute("data-state") for row in rows.all()
    }
    assert shown == {paid: "completed", failed: "failed", waiting: "pending"}
    row = page.locator(f"tr[data-payment-key='{paid}']")
    for part in (offer, "completed", "19.99 EUR", "confirmed"):
        expect(row).to_contain_text(part)
    expect(page.locator(f"tr[data-payment-key='{waiting}']")).to_contain_text("12.3456 XRP")
    assert re.fullmatch(ZONED, row.locator("time").text_content() or "")
    page.screenshot(path=str(shots / "payments.png"), full_page=True)
    if os.environ.get("WG_UPDATE_DOCS") == "1":
        page.set_viewport_size({"width": 1024, "height": 640})
        page.screenshot(path=str(ROOT / "docs" / "dashboard.png"))
        page.set_viewport_size({"width": 1280, "height": 900})

    row.get_by_role("link", name=paid).click()
    page.wait_for_url(f"**{payment_path(paid)}")
    page.wait_for_selector(f".timeline [data-event-id='{second}']")
    summary = page.locator("[data-summary]")
    expect(summary.locator("[data-fact=state]")).to_have_text("completed")
    expect(summary.locator("[data-fact=amount]")).to_have_text("19.99 EUR")
    expect(summary.locator("[data-fact=reference]")).to_have_text(offer)
    expect(summary.locator("[data-fact=marketplace]")).to_have_text("confirmed")
    expect(summary.locator("[data-fact=attention]")).to_have_text("none")
    for fact in ("first-seen", "last-update"):
        assert re.fullmatch(ZONED, summary.locator(f"[data-fact={fact}]").text_content() or "")
    ids = page.eval_on_selector_all(".timeline > li", "items => items.map(i => i.dataset.eventId)")
    assert ids == [first, second]  # in the order received
    expect(page.locator(".timeline .delivery")).to_have_count(2)
    page.screenshot(path=str(shots / "payment.png"), full_page=True)
    # A deep link works on reload, and with the key's slashes written as they are.
    page.reload()
    page.wait_for_selector(f".timeline [data-event-id='{second}']")
    page.goto(f"{stack.admin}/dashboard/payments/payments/{paid}")
    expect(page.locator("[data-summary] [data-fact=amount]")).to_have_text("19.99 EUR")
    assert page.text_content("h1") == f"Payment {paid}"


def test_a_payment_is_found_by_its_key_and_filters_live_in_the_url(page, stack):
    offer = f"offer-find-{uuid.uuid4().hex[:4]}"
    keys = [f"pend-find-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    sent = [stack.send(offerId=offer, pendingId=key) for key in keys]
    failed = stack.send(offerId=offer, pendingId=keys[2] + "-f", type="payment.failed")
    for event_id in (*sent, failed):
        stack.wait_status(event_id, "delivered")
    sign_in(page, stack)
    page.wait_for_selector(f"tr[data-payment-key='{keys[0]}']")
    page.fill("form.filters input[name=q]", keys[1])
    page.click("form.filters button[type=submit]")
    page.wait_for_url(f"**/dashboard?q={keys[1]}")
    rows = page.locator("tr[data-payment-key]")
    expect(rows).to_have_count(1)
    assert rows.get_attribute("data-payment-key") == keys[1]
    page.select_option("form.filters select[name=state]", "failed")
    page.fill("form.filters input[name=q]", offer)
    page.click("form.filters button[type=submit]")
    page.wait_for_url(f"**/dashboard?q={offer}&state=failed")
    expect(rows).to_have_count(1)
    assert rows.get_attribute("data-payment-key") == keys[2] + "-f"
    page.go_back()  # back: the search before, its box filled in again
    page.wait_for_url(f"**/dashboard?q={keys[1]}")
    expect(rows).to_have_count(1)
    assert rows.get_attribute("data-payment-key") == keys[1]
    assert page.input_value("form.filters input[name=q]") == keys[1]
    assert page.input_value("form.filters select[name=state]") == ""
    page.go_forward()
    page.wait_for_url(f"**/dashboard?q={offer}&state=failed")
    expect(rows).to_have_count(1)
    assert page.input_value("form.filters select[name=state]") == "failed"
    page.goto(f"{stack.admin}/dashboard?q=pend-none-{uuid.uuid4().hex}")
    expect(page.locator("main .empty")).to_have_text("No payments match.")


def test_paging_payments_keeps_the_filter_and_the_cursor_in_the_url(page, stack):
    offer = f"offer-page-{uuid.uuid4().hex[:4]}"
    last = ""
    for _ in range(52):
        last = stack.send(offerId=offer)
    stack.wait_status(last, "delivered")
    sign_in(page, stack, f"/dashboard?q={offer}")
    rows = page.locator("tr[data-payment-key]")
    expect(rows).to_have_count(50)
    first_page = set(rows.evaluate_all("rows => rows.map(r => r.dataset.paymentKey)"))
    page.click("[data-action=next-page]")
    page.wait_for_url(re.compile(rf"/dashboard\?q={offer}&cursor=."))
    expect(rows).to_have_count(2)
    second_page = set(rows.evaluate_all("rows => rows.map(r => r.dataset.paymentKey)"))
    assert not first_page & second_page
    page.go_back()
    expect(rows).to_have_count(50)


def test_a_late_earlier_state_is_superseded_held_and_replay_delivers_it(page, stack, shots):
    key = f"pend-late-{uuid.uuid4().hex[:6]}"
    done = stack.send(offerId="offer-late", pendingId=key, amount=EUR_19_99)
    stack.wait_status(done, "delivered")
    late = stack.send(offerId="offer-late", pendingId=key, type="payment.pending")
    stack.wait_status(late, "held")
    sign_in(page, stack, "/dashboard/events?status=held")
    assert page.input_value("form.filters select[name=status]") == "held"
    page.wait_for_selector(f"tr[data-event-id='{late}'] .badge.held")
    page.goto(f"{stack.admin}{payment_path(key)}")
    item = page.locator(f".timeline > li[data-event-id='{late}']")
    expect(item).to_have_attribute("data-mark", "superseded")
    expect(item.locator(".mark")).to_contain_text("Superseded")
    expect(item.locator(".mark")).to_be_visible()
    expect(item.locator("[data-held]")).to_contain_text("Not delivered")
    expect(item.locator("[data-held]")).to_contain_text("Replay")
    expect(item.locator(".delivery")).to_have_count(0)
    first = page.locator(f".timeline > li[data-event-id='{done}']")
    assert first.get_attribute("data-mark") is None
    expect(first.locator(".mark, [data-held]")).to_have_count(0)
    expect(page.locator("[data-summary] [data-fact=state]")).to_have_text("completed")
    page.screenshot(path=str(shots / "payment-superseded.png"), full_page=True)
    assert late not in stack.received_ids()

    item.locator("[data-held] a").click()  # to the event's page: its Replay delivers it
    page.wait_for_url(f"**/dashboard/events/{late}?source=payments")
    expect(page.locator("main [data-held]")).to_be_visible()
    page.click("[data-action=replay]")
    page.wait_for_selector(".notice.ok")
    deadline = time.monotonic() + 15
    while late not in stack.received_ids():
        assert time.monotonic() < deadline, "the replay of the held event was not delivered"
        time.sleep(0.05)
    expect(page.locator("main [data-held]")).to_have_count(0)
    page.click("[data-payment-link]")
    page.wait_for_url(f"**{payment_path(key)}")
    expect(item.locator(".mark")).to_contain_text("Superseded")  # still marked
    expect(item.locator("[data-held]")).to_have_count(0)


def test_a_conflicting_final_state_needs_attention(page, stack, shots):
    key = f"pend-clash-{uuid.uuid4().hex[:6]}"
    done = stack.send(offerId="offer-clash", pendingId=key)
    stack.wait_status(done, "delivered")
    clash = stack.send(offerId="offer-clash", pendingId=key, type="payment.failed")
    stack.wait_status(clash, "held")
    sign_in(page, stack, "/dashboard?attention=conflict")
    assert page.input_value("form.filters select[name=attention]") == "conflict"
    row = page.locator(f"tr[data-payment-key='{key}']")
    expect(row.locator("[data-attention=conflict]")).to_have_text("conflict")
    expect(row).to_have_attribute("data-state", "completed")
    attentions = page.locator("tr[data-payment-key] [data-attention]").all_text_contents()
    assert attentions and set(attentions) == {"conflict"}
    row.get_by_role("link", name=key).click()
    page.wait_for_url(f"**{payment_path(key)}")
    expect(page.locator("[data-summary] [data-fact=attention]")).to_contain_text("conflict")
    item = page.locator(f".timeline > li[data-event-id='{clash}']")
    expect(item).to_have_attribute("data-mark", "conflict")
    expect(item.locator(".mark")).to_contain_text("Conflict")
    expect(item.locator("[data-held]")).to_contain_text("Not delivered")
    page.screenshot(path=str(shots / "payment-conflict.png"), full_page=True)


# -- amounts -------------------------------------------------------------------------------------


#: Amounts as the admin API gives them, and as the page must show them in en-US.
AMOUNTS = [
    ({"value": "1999", "scale": 2, "currency": "EUR", "decimal": "19.99"}, "19.99 EUR"),
    ({"value": "123456", "scale": 4, "currency": "XRP", "decimal": "12.3456"}, "12.3456 XRP"),
    ({"value": "1999", "scale": 0, "currency": "JPY", "decimal": "1999"}, "1,999 JPY"),
    ({"value": "19", "scale": 0, "currency": "EUR", "decimal": "19"}, "19.00 EUR"),
    ({"value": "-500", "scale": 2, "currency": "USD", "decimal": "-5.00"}, "-5.00 USD"),
    # More digits than the currency's usual: every one kept.
    ({"value": "1999000001", "scale": 9, "currency": "USD", "decimal": "1.999000001"},
     "1.999000001 USD"),
    # Not ISO 4217 as written: the code as given, with the amount's own scale.
    ({"value": "1999", "scale": 2, "currency": "eur", "decimal": "19.99"}, "19.99 eur"),
    (None, "\u2013"),
]  # fmt: skip
#: 40 digits: past what a double holds exactly.
HUGE = "12345678901234567890123456789012345678.91"


def test_amounts_show_every_digit_with_their_currency(page, stack):
    sign_in(page, stack, "/dashboard/events")
    given = [amount for amount, _ in AMOUNTS]
    huge = {"value": HUGE.replace(".", ""), "scale": 2, "currency": "EUR", "decimal": HUGE}
    shown = page.evaluate(
        """async (amounts) => {
            const { money } = await import("/dashboard/static/dom.js");
            return amounts.map((a) => { const m = money(a); return m.textContent ?? m; });
        }""",
        [*given, huge],
    )
    assert shown[:-1] == [text for _, text in AMOUNTS]
    number, code = shown[-1].split(" ")
    assert (number.replace(",", ""), code) == (HUGE, "EUR")


# -- small screens -------------------------------------------------------------------------------


@pytest.mark.parametrize(("width", "height"), [(360, 740), (390, 844)])
def test_every_view_fits_a_phone_without_page_wide_scroll(page, stack, shots, width, height):
    key = f"pend-narrow-{width}-" + "x" * 60
    event_id = stack.send(offerId="offer-narrow-" + "x" * 60, pendingId=key, amount=EUR_19_99)
    stack.wait_status(event_id, "delivered")
    # A late pending: the payment's page shows its mark and that it was held.
    late = stack.send(offerId="offer-narrow", pendingId=key, type="payment.pending")
    stack.wait_status(late, "held")
    page.set_viewport_size({"width": width, "height": height})
    sign_in(page, stack)
    views = {
        "payments": "/dashboard",
        "payments-filtered": "/dashboard?q=pend-narrow&state=completed",
        "events": "/dashboard/events",
        "event": f"/dashboard/events/{event_id}",
        "event-held": f"/dashboard/events/{late}",
        "payment": payment_path(key),
        "dead-letters": "/dashboard/dead-letters",
        "reconciliation": "/dashboard/reconciliation",
    }
    for name, path in views.items():
        page.goto(f"{stack.admin}{path}")
        page.wait_for_selector("main .scroll, main .empty, main .timeline")
        assert no_page_wide_scroll(page), name
        assert page.evaluate(OFF_SCREEN) == [], name
        page.screenshot(path=str(shots / f"narrow-{width}-{name}.png"), full_page=True)
    # By keyboard: the first tab stop is the skip link, then the views.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
