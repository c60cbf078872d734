// The views: each draws into <main> and returns a refresh function for live updates.
import { get, post, seg } from "./api.js";
import { badge, el, put, table, text, when } from "./dom.js";

const link = (href, label, attrs) => el("a", { href, ...(attrs || {}) }, label);
const eventHref = (id, source) => `/dashboard/events/${seg(id)}${source ? `?source=${seg(source)}` : ""}`;

function pager(cursor, onMore) {
  if (!cursor) return null;
  return el("p", { class: "pager" }, el("button", { type: "button", "data-action": "next-page", onclick: () => onMore(cursor) }, "Older"));
}

function heading(title, ...rest) {
  return el("div", { class: "heading" }, el("h1", null, title), rest);
}

function notice(box, message, kind) {
  put(box, el("p", { class: `notice ${kind || ""}`, role: "status" }, message));
}

// -- payments ------------------------------------------------------------------------------------

export function payments(main) {
  const body = el("div");
  put(main, heading("Payments"), el("p", { class: "lead" }, "One line per subject, latest activity first."), body);
  let cursor = null;
  async function refresh() {
    const page = await get("/admin/payments", { cursor, limit: 50 });
    const rows = page.payments.map((p) =>
      el(
        "tr",
        { "data-subject": p.subject === null ? null : p.subject, "data-event-id": p.subject === null ? p.event_id : null },
        el("td", null, p.subject === null ? link(eventHref(p.event_id, p.source), `(no subject) ${p.event_id}`) : link(`/dashboard/payments/${seg(p.subject)}`, p.subject)),
        el("td", null, text(p.type)),
        el("td", null, text(p.body_status)),
        el("td", { class: "num" }, String(p.events)),
        el("td", null, badge(p.delivered ? "delivered" : p.status)),
        el("td", null, when(p.latest_at)),
      ),
    );
    put(body,
      rows.length ? table(["Subject", "Latest type", "Status field", "Events", "Delivered", "When"], rows) : el("p", { class: "empty" }, "No events yet."),
      pager(page.next_cursor, (next) => { cursor = next; refresh(); }),
    );
  }
  return refresh;
}

// -- one payment's timeline ----------------------------------------------------------------------

function attemptsTable(attempts) {
  return table(
    ["#", "Time", "Status", "Latency", "Error", "Response"],
    attempts.map((a) =>
      el(
        "tr",
        null,
        el("td", { class: "num" }, String(a.number)),
        el("td", null, when(a.started_at)),
        el("td", null, text(a.status)),
        el("td", { class: "num" }, `${a.latency_ms} ms`),
        el("td", null, text(a.error)),
        el("td", null, el("code", { class: "excerpt" }, text(a.response_excerpt))),
      ),
    ),
  );
}

function deliveries(list) {
  if (!list.length) return el("p", { class: "empty" }, "No deliveries (no route takes this type).");
  return el("div", { class: "deliveries" }, list.map((d) =>
    el(
      "section",
      { class: "delivery", "data-delivery-id": d.id },
      el("h3", null, `→ ${d.destination} `, badge(d.state), ` ${d.attempts_made} attempt(s) since created or redriven`),
      d.dead_reason ? el("p", { class: "reason" }, `Dead: ${d.dead_reason}`) : null,
      d.next_attempt_at ? el("p", null, "Next attempt ", when(d.next_attempt_at)) : null,
      d.attempts.length ? attemptsTable(d.attempts) : el("p", { class: "empty" }, "Not tried yet."),
    ),
  ));
}

export function payment(main, subject) {
  const body = el("div");
  put(main, heading(`Payment ${subject}`), el("p", null, link("/dashboard", "← All payments")), body);
  async function refresh() {
    let data;
    try {
      data = await get(`/admin/payments/${seg(subject)}`);
    } catch (error) {
      if (error.status === 404) return notice(body, "No events with this subject.");
      throw error;
    }
    put(body,
      el(
        "ol",
        { class: "timeline" },
        data.events.map((e) =>
          el(
            "li",
            { "data-event-id": e.id },
            el("h2", null, link(eventHref(e.id, e.source), text(e.type)), " ", badge(e.status)),
            el("p", { class: "meta" }, when(e.received_at), ` · status field ${text(e.body_status)} · id ${e.id}`),
            deliveries(e.deliveries),
          ),
        ),
      ),
    );
  }
  return refresh;
}

// -- events --------------------------------------------------------------------------------------

const STATUSES = ["", "queued", "delivered", "dead_lettered", "unrouted"];

export function events(main, params, navigate) {
  const field = (name, label, input) => el("label", null, el("span", null, label), input);
  const value = (name) => params.get(name) || "";
  const form = el(
    "form",
    { class: "filters", role: "search" },
    field("q", "Search id or subject", el("input", { name: "q", type: "search", value: value("q"), placeholder: "prefix" })),
    field("source", "Source", el("input", { name: "source", value: value("source") })),
    field("type", "Type", el("input", { name: "type", value: value("type") })),
    field(
      "status",
      "Status",
      el("select", { name: "status" }, STATUSES.map((s) => el("option", { value: s, selected: s === value("status") }, s || "any"))),
    ),
    el("button", { type: "submit" }, "Filter"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const query = new URLSearchParams();
    for (const [key, val] of new FormData(form)) if (val) query.set(key, val);
    navigate(`/dashboard/events${query.toString() ? `?${query}` : ""}`);
  });
  const body = el("div");
  const error = el("div");
  put(main, heading("Events"), form, error, body);
  async function refresh() {
    let page;
    try {
      page = await get("/admin/events", {
        q: value("q"), source: value("source"), type: value("type"), status: value("status"), cursor: value("cursor"), limit: 50,
      });
    } catch (failure) {
      if (failure.status === 400) return notice(error, failure.message, "error");
      throw failure;
    }
    put(error);
    const rows = page.events.map((e) =>
      el(
        "tr",
        { "data-event-id": e.id },
        el("td", null, link(eventHref(e.id, e.source), e.id)),
        el("td", null, e.source),
        el("td", null, text(e.type)),
        el("td", null, e.subject === null ? "–" : link(`/dashboard/payments/${seg(e.subject)}`, e.subject)),
        el("td", null, badge(e.status), e.body_status ? el("span", { class: "field" }, ` ${e.body_status}`) : null),
        el("td", null, when(e.received_at)),
        el("td", { class: "num" }, String(e.attempts)),
      ),
    );
    put(body,
      rows.length ? table(["Id", "Source", "Type", "Subject", "Status", "Received", "Attempts"], rows, { "data-list": "events" }) : el("p", { class: "empty" }, "No events match."),
      pager(page.next_cursor, (next) => {
        const query = new URLSearchParams(params);
        query.set("cursor", next);
        navigate(`/dashboard/events?${query}`);
      }),
    );
  }
  return refresh;
}

// -- one event -----------------------------------------------------------------------------------

function pretty(body) {
  try {
    return JSON.stringify(JSON.parse(body), null, 2);
  } catch {
    return body;
  }
}

export function event(main, id, params) {
  const source = params.get("source") || "";
  const status = el("div", { "aria-live": "polite" });
  const body = el("div");
  const replay = el("button", { type: "button", "data-action": "replay" }, "Replay");
  replay.addEventListener("click", async () => {
    replay.disabled = true;
    try {
      const result = await post(`/admin/events/${seg(id)}/replay${source ? `?source=${seg(source)}` : ""}`);
      notice(status, `Replayed: ${result.deliveries.length} new delivery(ies) queued.`, "ok");
      await refresh();
    } catch (failure) {
      notice(status, `Replay refused: ${failure.message}`, "error");
    } finally {
      replay.disabled = false;
    }
  });
  put(main, heading(`Event ${id}`, replay), status, body);
  async function refresh() {
    let e;
    try {
      e = await get(`/admin/events/${seg(id)}`, { source });
    } catch (failure) {
      if (failure.status === 404) return notice(body, "No such event.");
      throw failure;
    }
    const facts = [
      ["Source", e.source], ["Type", text(e.type)], ["Subject", text(e.subject)], ["Status", badge(e.status)],
      ["Status field", text(e.body_status)], ["Received", when(e.received_at)], ["Event time", when(e.time)],
      ["Mode", e.mode], ["Dedupe key", e.dedupe_key], ["Request id", e.request_id],
    ];
    put(body,
      el("dl", { class: "facts" }, facts.map(([k, v]) => [el("dt", null, k), el("dd", null, v)])),
      e.subject !== null ? el("p", null, link(`/dashboard/payments/${seg(e.subject)}`, "This payment's timeline →")) : null,
      el("h2", null, "Headers kept"),
      table(["Name", "Value"], e.headers.map(([k, v]) => el("tr", null, el("td", null, k), el("td", null, v)))),
      el("h2", null, "Body"),
      el("pre", { class: "body", tabindex: "0", "data-body": "" }, e.body !== undefined ? pretty(e.body) : `(binary, base64) ${e.body_base64}`),
      el("h2", null, "Deliveries"),
      deliveries(e.deliveries),
    );
  }
  return refresh;
}

// -- dead letters --------------------------------------------------------------------------------

export function deadLetters(main) {
  const status = el("div", { "aria-live": "polite" });
  const body = el("div");
  const all = el("button", { type: "button", "data-action": "redrive-all" }, "Redrive all");
  async function redrive(payload, what) {
    try {
      const result = await post("/admin/dead-letters/redrive", payload);
      notice(status, `${what}: ${result.redriven} delivery(ies) due again.`, "ok");
    } catch (failure) {
      notice(status, `Redrive refused: ${failure.message}`, "error");
    }
    await refresh();
  }
  all.addEventListener("click", () => {
    if (window.confirm("Redrive every dead letter? Each is delivered again.")) redrive({ all: true }, "Redrive all");
  });
  put(main, heading("Dead letters", all), status, body);
  let cursor = null;
  async function refresh() {
    const page = await get("/admin/dead-letters", { cursor, limit: 50 });
    const rows = page.dead_letters.map((d) => {
      const last = d.last_attempt;
      return el(
        "tr",
        { "data-delivery-id": d.delivery_id, "data-event-id": d.event_id },
        el("td", null, link(eventHref(d.event_id, d.source), d.event_id)),
        el("td", null, d.destination),
        el("td", null, d.reason),
        el("td", null, last ? `${text(last.status)} ` : "–", last ? el("code", { class: "excerpt" }, text(last.response_excerpt)) : null),
        el("td", { class: "num" }, String(d.attempts_made)),
        el("td", null, when(d.dead_at)),
        el("td", null, el("button", { type: "button", "data-action": "redrive", onclick: () => redrive({ ids: [d.delivery_id] }, "Redriven") }, "Redrive")),
      );
    });
    all.disabled = rows.length === 0;
    put(body,
      rows.length ? table(["Event", "Destination", "Reason", "Last response", "Attempts", "Dead since", ""], rows) : el("p", { class: "empty" }, "No dead letters."),
      pager(page.next_cursor, (next) => { cursor = next; refresh(); }),
    );
  }
  return refresh;
}
