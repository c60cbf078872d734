// The dashboard: routes a path to its view, keeps the health strip, listens to the live stream.
import { analytics } from "./analytics.js";
import { get, post, seg } from "./api.js";
import { chart } from "./chart.js";
import { el, put, text } from "./dom.js";
import { reconciliation } from "./reconcile.js";
import * as views from "./views.js";

const main = document.getElementById("main");
const health = document.getElementById("health");
const live = document.getElementById("live");
let refreshView = async () => {};

/** A path segment as written (a malformed escape is kept as it is rather than thrown). */
function decoded(part) {
  try {
    return decodeURIComponent(part);
  } catch {
    return part;
  }
}

function route() {
  const path = window.location.pathname.replace(/\/+$/, "") || "/dashboard";
  const params = new URLSearchParams(window.location.search);
  const parts = path.split("/").slice(2).map(decoded);
  let nav = "payments";
  if (parts[0] === "events" && parts.length === 2) {
    nav = "events";
    refreshView = views.event(main, parts[1], params);
  } else if (parts[0] === "events") {
    nav = "events";
    refreshView = views.events(main, params, navigate);
  } else if (parts[0] === "payments" && parts.length >= 3) {
    // A key may hold slashes (a Rafiki payment id is a URL): escaped or not, the rest is it.
    refreshView = views.payment(main, parts[1], parts.slice(2).join("/"));
  } else if (parts[0] === "payments" && parts.length === 2) {
    // A link of the first version, to a subject: the payments whose key or reference starts
    // with it.
    window.history.replaceState(null, "", `/dashboard?${new URLSearchParams({ q: parts[1] })}`);
    route();
    return;
  } else if (parts[0] === "dead-letters") {
    nav = "dead-letters";
    refreshView = views.deadLetters(main);
  } else if (parts[0] === "reconciliation") {
    nav = "reconciliation";
    refreshView = reconciliation(main);
  } else if (parts[0] === "analytics") {
    nav = "analytics";
    refreshView = analytics(main, params, navigate);
  } else {
    refreshView = views.payments(main, params, navigate);
  }
  for (const a of document.querySelectorAll("[data-nav]")) {
    if (a.dataset.nav === nav) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  document.title = `${main.querySelector("h1")?.textContent || "Dashboard"} · webhook-gateway`;
  run(refreshView);
}

function run(refresh) {
  refresh().catch((failure) => {
    main.append(el("p", { class: "notice error", role: "alert" }, `Could not load: ${failure.message}`));
  });
}

function navigate(href) {
  window.history.pushState(null, "", href);
  route();
  main.focus({ preventScroll: true });
}

document.addEventListener("click", (event) => {
  const a = event.target instanceof Element ? event.target.closest("a[href^='/dashboard']") : null;
  if (!a || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
  event.preventDefault();
  navigate(a.getAttribute("href"));
});
window.addEventListener("popstate", route);

// -- health strip ---------------------------------------------------------------------------------

function figure(label, value, name, title) {
  return el("div", { class: "figure", "data-figure": name, title }, el("span", { class: "label" }, label), el("strong", null, value));
}

const percent = (ratio) => (ratio === null || ratio === undefined ? "–" : `${(ratio * 100).toFixed(1)}%`);
function ms(value) {
  if (value === null || value === undefined) return "–";
  if (value >= 1000) return `≤ ${(value / 1000).toFixed(1)} s`;
  return `≤ ${value < 10 ? value.toFixed(1) : Math.round(value)} ms`;
}

async function refreshHealth() {
  let stats;
  try {
    stats = await get("/admin/stats");
  } catch (failure) {
    put(health, figure("Gateway", `unreachable (${failure.message})`, "store"));
    return;
  }
  if (!stats.store_reachable) {
    put(health, el("div", { class: "figure down", "data-figure": "store" }, el("span", { class: "label" }, "Store"), el("strong", null, "unreachable")));
    return;
  }
  const hour = stats.last_hour;
  const finished = hour.delivered + hour.dead_lettered;
  const depth = Object.entries(stats.queue_depth).map(([destination, states]) =>
    el(
      "li",
      { "data-destination": destination },
      el("span", null, destination),
      ` ${states.due} due · ${states.leased} leased · ${states.dead} dead `,
      retryNow(destination, states.due),
    ),
  );
  const unrouted = hour.unrouted || 0;
  put(health,
    el(
      "div",
      { class: "window" },
      el("span", { class: "label window-label", "data-window": "last-hour" }, "Last hour"),
      el(
        "div",
        { class: "figures" },
        figure(
          "Accepted",
          el(
            "span",
            null,
            String(hour.accepted),
            el(
              "a",
              { class: `sub${unrouted ? " warn" : ""}`, href: "/dashboard/events?status=unrouted", "data-figure": "unrouted", title: "Events whose type no route takes: stored, delivered nowhere" },
              `${unrouted} unrouted`,
            ),
          ),
          "accepted",
        ),
        figure("Delivered", String(hour.delivered), "delivered"),
        figure("Dead-lettered", String(hour.dead_lettered), "dead_lettered"),
        figure(
          "Delivered of finished",
          percent(hour.success_ratio),
          "success_ratio",
          `Of the ${finished} deliveries that finished in the last hour (delivered or dead-lettered), the share delivered; deliveries still being retried are not counted.`,
        ),
        figure("Latency p50", ms(hour.latency_p50_ms), "p50", "Half the last hour's delivery attempts took at most this long."),
        figure("Latency p99", ms(hour.latency_p99_ms), "p99", "99% of the last hour's delivery attempts took at most this long."),
      ),
    ),
    el("div", { class: "chartbox" }, el("span", { class: "label" }, "Events per minute, last hour"), chart(stats.per_minute)),
    el(
      "div",
      { class: "depth" },
      el("span", { class: "label window-label" }, "Now"),
      el("p", { class: "store", "data-figure": "store" }, "Store reachable"),
      el("span", { class: "label" }, "Queue depth"),
      el("ul", null, depth.length ? depth : el("li", null, text(null))),
      depthStatus,
    ),
  );
}

// Stays across refreshes of the strip: the answer to the last Retry now.
const depthStatus = el("div", { class: "depth-status", "aria-live": "polite" });

/** A destination's backlog due now instead of at each delivery's next retry. */
function retryNow(destination, due) {
  const button = el(
    "button",
    { type: "button", class: "small", "data-action": "retry-now", "data-destination": destination, title: `Deliver what waits out a backoff for ${destination} now` },
    "Retry now",
  );
  button.disabled = due === 0;
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      const result = await post(`/admin/destinations/${seg(destination)}/retry-now`);
      put(depthStatus, el("p", { class: "notice ok", role: "status" }, `${destination}: ${result.retried} delivery(ies) due now.`));
    } catch (failure) {
      put(depthStatus, el("p", { class: "notice error", role: "status" }, `Retry now refused: ${failure.message}`));
    }
    refreshHealth();
  });
  return button;
}

// -- live ----------------------------------------------------------------------------------------

let pending = null;
function soon() {
  if (pending) return;
  pending = setTimeout(() => {
    pending = null;
    run(refreshView);
    refreshHealth();
  }, 300);
}

function listen() {
  const source = new EventSource("/admin/stream");
  const state = (on) => {
    live.dataset.live = on ? "on" : "off";
    live.textContent = on ? "live" : "reconnecting";
  };
  source.addEventListener("open", () => state(true));
  source.addEventListener("error", () => state(false));
  source.addEventListener("accepted", soon);
  source.addEventListener("delivery", soon);
}

route();
refreshHealth();
setInterval(refreshHealth, 15000);
listen();
