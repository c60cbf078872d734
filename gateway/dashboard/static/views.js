// The views: each draws into <main> and returns a refresh function for live updates.
import { get, post, seg } from "./api.js";
import { badge, el, money, put, table, text, when } from "./dom.js";

export const link = (href, label, attrs) => el("a", { href, ...(attrs || {}) }, label);
export const eventHref = (id, source) => `/dashboard/events/${seg(id)}${source ? `?source=${seg(source)}` : ""}`;

function pager(cursor, onMore) {
  if (!cursor) return null;
  return el("p", { class: "pager" }, el("button", { type: "button", "data-action": "next-page", onclick: () => onMore(cursor) }, "Older"));
}

export function heading(title, ...rest) {
  return el("div", { class: "heading" }, el("h1", null, title), rest);
}

function notice(box, message, kind) {
  put(box, el("p", { class: `notice ${kind || ""}`, role: "status" }, message));
}

// -- filters shared by the lists --------------------------------------------------------------

/** A filter form whose values live in the page's URL (so a filtered list is a deep link, and
 * back and forward step through filters): submitting navigates to ``base`` with them. */
function filterForm(params, navigate, base, fields) {
  const value = (name) => params.get(name) || "";
  const form = el(
    "form",
    { class: "filters", role: "search" },
    fields.map(([name, label, options]) =>
      el(
        "label",
        null,
        el("span", null, label),
        Array.isArray(options)
          ? el("select", { name }, options.map((o) => el("option", { value: o, selected: o === value(name) }, o ? o.replace(/_/g, " ") : "any")))
          : el("input", { name, value: value(name), ...(options || {}) }),
      ),
    ),
    el("button", { type: "submit" }, "Filter"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const query = new URLSearchParams();
    for (const [key, val] of new FormData(form)) if (val) query.set(key, val);
    navigate(`${base}${query.toString() ? `?${query}` : ""}`);
  });
  return form;
}

/** The next page of a list whose cursor is in the URL. */
function urlPager(params, navigate, base, cursor) {
  return pager(cursor, (next) => {
    const query = new URLSearchParams(params);
    query.set("cursor", next);
    navigate(`${base}?${query}`);
  });
}

// -- payments ------------------------------------------------------------------------------------

const STATES = ["", "pending", "processing", "completed", "failed", "expired", "cancelled"];
const ATTENTIONS = ["", "conflict", "dead_letter", "missing"];
const ATTENTION_SAYS = {
  conflict: "An event reported another final state than the payment has: held, not delivered.",
  dead_letter: "A delivery of one of its events is dead-lettered: the marketplace lacks it.",
  missing: "The provider knows this payment and no event of it could be recovered.",
};

export const paymentHref = (source, key) => `/dashboard/payments/${seg(source)}/${seg(key)}`;

/** Whether the marketplace has the payment as it stands. */
function confirmed(delivered) {
  return el(
    "span",
    { class: `badge ${delivered ? "confirmed" : "unconfirmed"}`, "data-delivered": delivered ? "true" : "false", title: delivered ? "Every delivery of its events (held ones aside) is done" : "A delivery of its events is not done yet, or none was made" },
    delivered ? "confirmed" : "not confirmed",
  );
}

function attention(value) {
  if (!value) return "–";
  return el("span", { class: `badge ${value}`, "data-attention": value, title: ATTENTION_SAYS[value] || null }, value.replace(/_/g, " "));
}

export function payments(main, params, navigate) {
  const value = (name) => params.get(name) || "";
  const form = filterForm(params, navigate, "/dashboard", [
    ["q", "Search key or reference", { type: "search", placeholder: "prefix" }],
    ["source", "Source", null],
    ["state", "State", STATES],
    ["attention", "Attention", ATTENTIONS],
  ]);
  const body = el("div");
  const error = el("div");
  put(main, heading("Payments"), el("p", { class: "lead" }, "One row per payment, latest update first."), form, error, body);
  async function refresh() {
    let page;
    try {
      page = await get("/admin/payments", {
        q: value("q"), source: value("source"), state: value("state"), attention: value("attention"), cursor: value("cursor"), limit: 50,
      });
    } catch (failure) {
      if (failure.status === 400) return notice(error, failure.message, "error");
      throw failure;
    }
    put(error);
    const rows = page.payments.map((p) =>
      el(
        "tr",
        { "data-payment-key": p.key, "data-source": p.source, "data-state": p.state },
        el("td", { class: "key" }, link(paymentHref(p.source, p.key), p.key), el("span", { class: "under", title: "Source" }, p.source)),
        el("td", null, text(p.reference)),
        el("td", null, badge(p.state)),
        el("td", { class: "num" }, money(p.amount)),
        el("td", null, confirmed(p.delivered)),
        el("td", null, attention(p.attention)),
        el("td", { class: "num" }, String(p.events)),
        el("td", null, when(p.updated_at)),
      ),
    );
    const filtered = ["q", "source", "state", "attention"].some((name) => value(name));
    put(body,
      rows.length
        ? table(["Key · source", "Reference", "State", "Amount", "Marketplace", "Attention", "Events", "Last update"], rows, { "data-list": "payments" })
        : el("p", { class: "empty" }, filtered ? "No payments match." : "No payments yet."),
      urlPager(params, navigate, "/dashboard", page.next_cursor),
    );
  }
  return refresh;
}

// -- one payment: its summary and the timeline of its events -------------------------------------

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

function deliveries(list, status, level) {
  if (!list.length) {
    return el("p", { class: "empty" }, status === "held" ? "No deliveries." : "No deliveries (no route takes this type).");
  }
  return el("div", { class: "deliveries" }, list.map((d) =>
    el(
      "section",
      { class: "delivery", "data-delivery-id": d.id },
      el(level || "h3", { class: "delivery-title" }, `→ ${d.destination} `, badge(d.state), ` ${d.attempts_made} attempt(s) since created or redriven`),
      d.dead_reason ? el("p", { class: "reason" }, `Dead: ${d.dead_reason}`) : null,
      d.next_attempt_at ? el("p", null, "Next attempt ", when(d.next_attempt_at)) : null,
      d.attempts.length ? attemptsTable(d.attempts) : el("p", { class: "empty" }, "Not tried yet."),
    ),
  ));
}

const MARK_SAYS = {
  superseded: "it reports an earlier state than the payment already had.",
  conflict: "it reports another final state than the payment already had.",
};

/** An event's mark, said plainly: what it means. */
function mark(value) {
  if (!value) return null;
  return el("p", { class: `mark ${value}`, "data-mark": value }, el("strong", null, value === "conflict" ? "Conflict" : "Superseded"), `: ${MARK_SAYS[value] || value}`);
}

/** What a held event needs said: it went nowhere, and Replay on its page delivers it
 * (``onItsPage``: the button is right there). */
function held(e, onItsPage) {
  if (e.status !== "held") return null;
  return el(
    "p",
    { class: "notice held", "data-held": "" },
    el("strong", null, "Not delivered"),
    ": held back from the marketplace. ",
    onItsPage ? "Replay (above) delivers it." : ["Replay on ", link(eventHref(e.id, e.source), "the event's page"), " delivers it."],
  );
}

export function payment(main, source, key) {
  const body = el("div");
  put(main, heading(`Payment ${key}`), el("p", null, link("/dashboard", "← All payments")), body);
  async function refresh() {
    let data;
    try {
      data = await get(`/admin/payments/${seg(source)}/${seg(key)}`);
    } catch (error) {
      if (error.status === 404) return notice(body, `No payment ${key} from source ${source}.`);
      throw error;
    }
    const p = data.payment;
    const facts = [
      ["State", badge(p.state)],
      ["Amount", money(p.amount)],
      ["Reference", text(p.reference)],
      ["Marketplace", confirmed(p.delivered)],
      ["Attention", p.attention ? [attention(p.attention), " ", ATTENTION_SAYS[p.attention] || ""] : "none"],
      ["Source", p.source],
      ["First seen", when(p.first_seen)],
      ["Last update", when(p.updated_at)],
    ];
    const shown = data.events.length;
    put(body,
      el(
        "dl",
        { class: "facts summary", "data-summary": "", "data-state": p.state },
        facts.map(([k, v]) => [el("dt", null, k), el("dd", { "data-fact": k.toLowerCase().replace(/ /g, "-") }, v)]),
      ),
      el("h2", null, `Events (${p.events})`),
      shown < p.events ? el("p", { class: "hint" }, `The last ${shown} of its ${p.events} events.`) : null,
      el(
        "ol",
        { class: "timeline" },
        data.events.map((e) =>
          el(
            "li",
            { "data-event-id": e.id, "data-status": e.status, "data-mark": e.mark || null, class: e.mark ? `marked ${e.mark}` : null },
            el("h3", { class: "event-title" }, link(eventHref(e.id, e.source), text(e.type)), " ", badge(e.status)),
            mark(e.mark),
            held(e, false),
            el("p", { class: "meta" }, when(e.received_at), ` · ${e.origin === "reconciled" ? "recovered from the provider" : "webhook"} · id ${e.id}`),
            deliveries(e.deliveries, e.status, "h4"),
          ),
        ),
      ),
    );
  }
  return refresh;
}

// -- events --------------------------------------------------------------------------------------

const STATUSES = ["", "queued", "delivered", "dead_lettered", "unrouted", "held"];

export function events(main, params, navigate) {
  const value = (name) => params.get(name) || "";
  const form = filterForm(params, navigate, "/dashboard/events", [
    ["q", "Search id or subject", { type: "search", placeholder: "prefix" }],
    ["source", "Source", null],
    ["type", "Type", null],
    ["status", "Status", STATUSES],
  ]);
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
        // The list names no payment key; the event's page links to its payment.
        el("td", null, text(e.subject)),
        el("td", null, badge(e.status), e.body_status ? el("span", { class: "field" }, ` ${e.body_status}`) : null),
        el("td", null, when(e.received_at)),
        el("td", { class: "num" }, String(e.attempts)),
      ),
    );
    put(body,
      rows.length ? table(["Id", "Source", "Type", "Subject", "Status", "Received", "Attempts"], rows, { "data-list": "events" }) : el("p", { class: "empty" }, "No events match."),
      urlPager(params, navigate, "/dashboard/events", page.next_cursor),
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
      ["Payment", e.payment_key ? link(paymentHref(e.source, e.payment_key), e.payment_key, { "data-payment-link": "" }) : "–"],
      ["Mark", e.mark ? badge(e.mark) : "–"],
      ["Origin", text(e.origin)],
      ["Status field", text(e.body_status)], ["Received", when(e.received_at)], ["Event time", when(e.time)],
      ["Mode", e.mode], ["Dedupe key", e.dedupe_key], ["Request id", e.request_id],
    ];
    put(body,
      mark(e.mark),
      held(e, true),
      el("dl", { class: "facts" }, facts.map(([k, v]) => [el("dt", null, k), el("dd", null, v)])),
      e.payment_key ? el("p", null, link(paymentHref(e.source, e.payment_key), "This payment and its events →")) : null,
      el("h2", null, "Headers kept"),
      table(["Name", "Value"], e.headers.map(([k, v]) => el("tr", null, el("td", null, k), el("td", null, v)))),
      el("h2", null, "Body"),
      el("pre", { class: "body", tabindex: "0", "data-body": "" }, e.body !== undefined ? pretty(e.body) : `(binary, base64) ${e.body_base64}`),
      el("h2", null, "Deliveries"),
      deliveries(e.deliveries, e.status),
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
