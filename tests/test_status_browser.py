"""The buyer's page in a real Chromium (design.md 5.10): a page on another origin runs the
script of docs/integrate-marketplace.md, follows a payment at the gateway over a WebSocket
and over Server-Sent Events, and shows it completed, then confirmed.

The page is served by a small aiohttp app of this test on a port of its own (another origin
than the gateway's), with a token minted by hand from the contract. A second page server,
whose origin the gateway does not list, shows that a real browser's ``Origin`` is refused.
The gateway, the marketplace and both page servers run on real sockets in a thread with
their own event loop; the tests drive Chromium synchronously, as the dashboard's do.
"""

from __future__ import annotations

import asyncio
import html
import threading
import uuid
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from aiohttp import web
from playwright.sync_api import Browser, ConsoleMessage, Page, expect

from gateway.server import Gateway
from gateway.status.routes import HUB
from tests import test_dashboard_browser as shared
from tests.deploy.files import doc_code_block
from tests.status_support import mint, status_block
from tests.support import (
    Marketplace,
    build_config,
    config_dict,
    payment_body,
    sign_payment,
    sqlite_url,
)
from tests.waiting import eventually_sync

T = TypeVar("T")
WAIT_MS = 10_000
SCRIPT = doc_code_block("integrate-marketplace.md", "static/jobs/payment-status.js")
#: The page's own record of what it showed, in order (the script sets text; this watches).
RECORDER = """
window.__shown = [];
window.__closes = [];
const NativeWebSocket = window.WebSocket;
window.WebSocket = function (url, protocols) {
  const socket = new NativeWebSocket(url, protocols);
  socket.addEventListener("close", (event) => window.__closes.push(event.code));
  return socket;
};
window.WebSocket.prototype = NativeWebSocket.prototype;
new MutationObserver(() => {
  const state = document.querySelector("[data-payment-state]");
  const confirmed = document.querySelector("[data-payment-confirmed]");
  if (!state) return;
  const now = state.textContent + "|" + confirmed.textContent;
  if (window.__shown[window.__shown.length - 1] !== now) window.__shown.push(now);
}).observe(document, {subtree: true, childList: true, characterData: true});
"""


class Stack:
    """Marketplace, gateway and two page servers, in a thread with their own event loop."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.market = Marketplace(delay=1.0)  # "completed" shows a moment before confirmed
        self.runners: list[web.AppRunner] = []
        self.ingress = ""
        self.page = ""  # the marketplace's origin, listed in status.allow_origins
        self.foreign = ""  # another origin, not listed

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> None:
        self.thread.start()
        self.run(self._start())

    async def _serve(self, app: web.Application) -> str:
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        self.runners.append(runner)
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    def _page_app(self) -> web.Application:
        """The buyer's finish page: the documented script and a section to fill in."""

        async def page(request: web.Request) -> web.Response:
            key = request.query["key"]
            url = f"{self.ingress}/status/payments/{key}?token={mint('payments', key)}"
            body = (
                "<!doctype html><meta charset=utf-8><title>Payment</title>"
                '<link rel="icon" href="data:,">'
                f'<section data-status-url="{html.escape(url)}"'
                f' data-transport="{html.escape(request.query["transport"])}">'
                "<p>Payment: <strong data-payment-state>waiting for the wallet</strong></p>"
                "<p data-payment-confirmed></p></section>"
                '<script src="/payment-status.js" defer></script>'
            )
            return web.Response(text=body, content_type="text/html")

        async def script(_: web.Request) -> web.Response:
            return web.Response(text=SCRIPT, content_type="text/javascript")

        app = web.Application()
        app.router.add_get("/", page)
        app.router.add_get("/payment-status.js", script)
        return app

    async def _start(self) -> None:
        market = await self._serve(self.market.app())
        self.page = await self._serve(self._page_app())
        self.foreign = await self._serve(self._page_app())
        data = config_dict(f"{market}/api/webhooks/payments", store_url=sqlite_url(self.directory))
        data["status"] = status_block(allow_origins=[self.page])
        self.gateway = Gateway(build_config(data))
        await self.gateway.start(admin=False)
        assert self.gateway.ingress_site is not None
        self.ingress = f"http://127.0.0.1:{self.gateway.ingress_site.port}"

    def stop(self) -> None:
        async def stop() -> None:
            await self.gateway.stop()
            for runner in self.runners:
                await runner.cleanup()

        self.run(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def pay(self, key: str) -> None:
        """The payments service reports the payment completed, through the gateway."""
        body = payment_body(pendingId=key)

        async def post() -> None:
            async with (
                aiohttp.ClientSession() as session,
                session.post(
                    f"{self.ingress}/hooks/payments", data=body, headers=sign_payment(body)
                ) as response,
            ):
                assert response.status == 202, await response.text()

        self.run(post())

    def open_streams(self) -> int:
        return self.gateway.app[HUB].open_streams

    def refused(self, reason: str) -> float:
        """How many streams the gateway refused for ``reason``."""
        value = self.gateway.metrics.registry.get_sample_value(
            "webhook_gateway_status_refusals_total", {"reason": reason}
        )
        return value or 0.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(tmp_path_factory.mktemp("status"))
    running.start()
    yield running
    running.stop()


#: Debian's chromium, launched as the dashboard's browser tests launch it.
browser = shared.browser


@pytest.fixture
def page(browser: Browser) -> Iterator[tuple[Page, list[str]]]:
    """A fresh tab recording what it shows, and every console or page error."""
    context = browser.new_context()
    tab = context.new_page()
    tab.set_default_timeout(WAIT_MS)
    tab.add_init_script(RECORDER)
    errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    tab.on("console", on_console)
    tab.on("pageerror", lambda error: errors.append(f"page error: {error}"))
    yield tab, errors
    context.close()


@pytest.mark.parametrize("transport", ["websocket", "sse"])
def test_the_buyers_page_shows_the_payment_completed_then_confirmed(stack, page, transport):
    tab, errors = page
    key = f"pend-{uuid.uuid4().hex[:12]}"
    tab.goto(f"{stack.page}/?key={key}&transport={transport}")
    state = tab.locator("[data-payment-state]")
    confirmed = tab.locator("[data-payment-confirmed]")
    expect(state).to_have_text("unknown")  # the gateway has not seen the payment yet
    stack.pay(key)
    expect(state).to_have_text("completed")
    expect(confirmed).to_have_text("confirmed")
    shown = tab.evaluate("window.__shown")
    assert shown[-3:] == ["unknown|", "completed|", "completed|confirmed"], shown
    # The stream ended at the final state: the gateway holds nothing for the page, and the
    # page does not come back for more.
    eventually_sync(stack.open_streams, "the stream to end", until=lambda n: n == 0)
    if transport == "websocket":
        closes = eventually_sync(lambda: tab.evaluate("window.__closes"), "the close", until=bool)
        assert closes == [1000], closes
    assert errors == []


def test_a_page_from_an_origin_not_listed_is_refused(stack, page):
    tab, _ = page
    before = stack.refused("origin")
    key = f"pend-{uuid.uuid4().hex[:12]}"
    tab.goto(f"{stack.foreign}/?key={key}&transport=websocket")
    # The browser sent its Origin; the gateway refused the handshake (a page only sees 1006).
    eventually_sync(lambda: stack.refused("origin"), "the refusal", until=lambda n: n > before)
    closes = eventually_sync(lambda: tab.evaluate("window.__closes"), "the close", until=bool)
    assert closes[0] == 1006, closes
    expect(tab.locator("[data-payment-state]")).to_have_text("waiting for the wallet")
