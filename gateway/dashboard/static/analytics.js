// The Analytics view (design.md 5.9): a range picker whose choice lives in the URL, the range's
// totals and completed amounts per currency, charts of payments by state and of amounts per
// currency over the buckets, the figures per bucket, and the same as CSV. It reads the admin
// API's report, made of the rollups the store keeps as events arrive: nothing here scans events.
import { get } from "./api.js";
import { bucketChart, bucketLabel } from "./chart.js";
import { amountOf, el, money, moneyText, put, table, when } from "./dom.js";
import { heading } from "./views.js";

const VIEW = "/dashboard/analytics";
/** The preset ranges, up to now: their length and the bucket each is drawn in. */
const RANGES = {
  "24h": { label: "24 h", hours: 24, bucket: "hour" },
  "7d": { label: "7 d", hours: 7 * 24, bucket: "day" },
  "30d": { label: "30 d", hours: 30 * 24, bucket: "day" },
};
const BUCKETS = ["hour", "day", "week"];
/** The final states, drawn stacked in this order. */
const STATES = ["completed", "failed", "expired", "cancelled"];
/** Buckets listed in the table of figures, the latest first (the CSV has every one). */
const LISTED = 200;

const two = (n) => String(n).padStart(2, "0");
/** Unix milliseconds as RFC 3339 in UTC, to the second. */
const utc = (ms) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");

/** An RFC 3339 time as a datetime-local input's value, in the browser's zone, to the minute. */
function local(iso) {
  const date = new Date(iso);
  if (!iso || Number.isNaN(date.getTime())) return "";
  return `${date.getFullYear()}-${two(date.getMonth() + 1)}-${two(date.getDate())}T${two(date.getHours())}:${two(date.getMinutes())}`;
}

/** A datetime-local input's value (a time without an offset, so the browser's zone) as RFC
 * 3339 in UTC; empty when there is none. */
function fromLocal(value) {
  const date = value ? new Date(value) : null;
  return date && !Number.isNaN(date.getTime()) ? utc(date.getTime()) : "";
}

/** What the URL asks for: a preset range (7 d when none), or a custom one with its bounds. */
function stateOf(params) {
  const given = params.get("range") || "";
  let range = "7d";
  if (Object.hasOwn(RANGES, given) || given === "custom") range = given;
  else if (params.get("from") || params.get("to")) range = "custom";
  const bucket = BUCKETS.includes(params.get("bucket")) ? params.get("bucket") : range === "custom" ? "" : RANGES[range].bucket;
  const custom = range === "custom";
  return { range, bucket, source: params.get("source") || "", from: custom ? params.get("from") || "" : "", to: custom ? params.get("to") || "" : "" };
}

/** The view's URL for a state: a deep link that draws the same view on reload. */
function hrefOf(state) {
  const query = new URLSearchParams({ range: state.range });
  for (const name of ["from", "to", "bucket", "source"]) if (state[name]) query.set(name, state[name]);
  return `${VIEW}?${query}`;
}

/** The API's parameters for a state: a preset ends now (so a live refresh moves it along). */
function queryOf(state) {
  if (state.range === "custom") return { from: state.from, to: state.to, bucket: state.bucket, source: state.source };
  const now = Date.now();
  return { from: utc(now - RANGES[state.range].hours * 3600_000), to: utc(now), bucket: state.bucket, source: state.source };
}

function search(query) {
  const out = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) if (value) out.set(key, value);
  return out.toString();
}

// -- figures as text --------------------------------------------------------------------------

const PERCENT = new Intl.NumberFormat(undefined, { style: "percent", maximumFractionDigits: 1 });
const COMPACT = new Intl.NumberFormat(undefined, { notation: "compact", maximumSignificantDigits: 3 });
const percent = (ratio) => (ratio === null || ratio === undefined ? "–" : PERCENT.format(ratio));

/** A duration in seconds as a person reads it ("850 ms", "42 s", "3.5 min", "2 h"), marked "at
 * most": the API's percentiles are the upper bound of a bin 25 % wide. */
export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Number(seconds);
  const figure = (n) => (n < 10 ? n.toFixed(1).replace(/\.0$/, "") : String(Math.round(n)));
  if (s < 1) return `≤ ${Math.round(s * 1000)} ms`;
  if (s < 60) return `≤ ${figure(s)} s`;
  if (s < 3600) return `≤ ${figure(s / 60)} min`;
  if (s < 86400) return `≤ ${figure(s / 3600)} h`;
  return `≤ ${figure(s / 86400)} d`;
}

/** The currencies of the report: those of the totals and of any bucket (a currency whose
 * changes add up to nothing over the range is in a bucket only). */
function currenciesOf(doc) {
  const codes = new Set(Object.keys(doc.totals.completed_amounts));
  for (const b of doc.buckets) for (const code of Object.keys(b.completed_amounts)) codes.add(code);
  return [...codes].sort();
}

function quiet(doc) {
  const t = doc.totals;
  const counts = Object.values(t.payments).some(Boolean) || t.deliveries.delivered || t.deliveries.dead_lettered;
  return !counts && currenciesOf(doc).length === 0;
}

const active = (b) => Object.values(b.payments).some(Boolean) || Object.keys(b.completed_amounts).length || b.deliveries.delivered || b.deliveries.dead_lettered;

// -- parts of the view --------------------------------------------------------------------------

function figure(name, label, value, title) {
  return el("li", { class: "count", "data-total": name, title }, el("strong", null, value), el("span", { class: "label" }, label));
}

function totals(doc) {
  const t = doc.totals;
  const p = t.payments;
  const d = t.deliveries;
  const ended = STATES.reduce((n, s) => n + p[s], 0);
  const ttc = t.time_to_completion || {};
  const latency = d.latency || {};
  return [
    el("h2", null, "Payments"),
    el(
      "ul",
      { class: "counts", "data-totals": "payments" },
      figure("first_seen", "first seen", String(p.first_seen), "Payments whose first event came in the range"),
      STATES.map((s) => figure(s, s, String(p[s]), `Payments that reached ${s} in the range`)),
      figure("success_ratio", "success ratio", percent(t.success_ratio), `Completed of the ${ended} payments that reached a final state in the range`),
      figure("ttc_p50", "to completion, p50", duration(ttc.p50), "Half the payments completed in the range took at most this long from their first event"),
      figure("ttc_p90", "to completion, p90", duration(ttc.p90), "90% of the payments completed in the range took at most this long from their first event"),
    ),
    el("h2", null, "Deliveries"),
    el(
      "ul",
      { class: "counts", "data-totals": "deliveries" },
      figure("delivered", "delivered", String(d.delivered), "Deliveries that reached the destination in the range"),
      figure("dead_lettered", "dead-lettered", String(d.dead_lettered), "Deliveries given up in the range"),
      figure("latency_p50", "latency p50", duration(latency.p50), "Half the delivered events took at most this long from their arrival to their delivery"),
      figure("latency_p99", "latency p99", duration(latency.p99), "99% of the delivered events took at most this long from their arrival to their delivery"),
    ),
  ];
}

function currencyTotals(doc, codes) {
  const amounts = doc.totals.completed_amounts;
  return [
    el("h2", null, "Completed amounts"),
    codes.length
      ? el(
          "ul",
          { class: "counts money-totals" },
          codes.map((code) =>
            el(
              "li",
              { class: "count", "data-currency-total": code },
              el("strong", null, money(amountOf(amounts[code] || "0", code))),
              el("span", { class: "label" }, "completed in the range"),
            ),
          ),
        )
      : el("p", { class: "empty" }, "No payment completed in this range."),
  ];
}

/** A chart's box: drawn once it is on the page, as wide as it is there. */
const chartBox = (name, attrs) => el("div", { class: "chartbox", "data-chart": name, ...(attrs || {}) });

function paymentsChart(doc, width) {
  const b = doc.buckets;
  const t = doc.totals.payments;
  const at = (i) => `${bucketLabel(b[i].start, doc.bucket, true, false)} UTC`;
  return bucketChart({
    width,
    height: 230,
    starts: b.map((x) => x.start),
    bucket: doc.bucket,
    bars: STATES.map((s) => ({ name: s, label: s, values: b.map((x) => x.payments[s]) })),
    lines: [{ name: "first_seen", label: "first seen", values: b.map((x) => x.payments.first_seen) }],
    whole: true,
    describe: (i) => `${at(i)}: ${b[i].payments.first_seen} first seen, ${STATES.map((s) => `${b[i].payments[s]} ${s}`).join(", ")}`,
    label: `Payments per ${doc.bucket}: ${t.first_seen} first seen, ${STATES.map((s) => `${t[s]} ${s}`).join(", ")}`,
  });
}

function amountChart(doc, code, width) {
  const b = doc.buckets;
  const shown = (decimal) => moneyText(amountOf(decimal || "0", code));
  const total = doc.totals.completed_amounts[code];
  return bucketChart({
    width,
    height: 170,
    starts: b.map((x) => x.start),
    bucket: doc.bucket,
    bars: [{ name: "amount", label: `completed, ${code}`, values: b.map((x) => Number(x.completed_amounts[code] || 0)) }],
    tick: (v) => COMPACT.format(v),
    describe: (i) => `${bucketLabel(b[i].start, doc.bucket, true, false)} UTC: ${shown(b[i].completed_amounts[code])} completed`,
    label: `Completed amounts in ${code} per ${doc.bucket}: ${shown(total)} in the range`,
  });
}

function perBucket(doc, codes) {
  const listed = doc.buckets.filter(active).reverse();
  if (!listed.length) return el("p", { class: "empty" }, "No bucket has any figure.");
  const rows = listed.slice(0, LISTED).map((b) =>
    el(
      "tr",
      { "data-bucket": b.start },
      el("td", null, el("time", { datetime: b.start, title: b.start }, `${bucketLabel(b.start, doc.bucket, true, true)} UTC`)),
      el("td", { class: "num" }, String(b.payments.first_seen)),
      STATES.map((s) => el("td", { class: "num" }, String(b.payments[s]))),
      el("td", { class: "num" }, percent(b.success_ratio)),
      el("td", null, codes.filter((c) => b.completed_amounts[c]).map((c) => el("div", null, money(amountOf(b.completed_amounts[c], c)))), Object.keys(b.completed_amounts).length ? null : "–"),
      el("td", { class: "num" }, String(b.deliveries.delivered)),
      el("td", { class: "num" }, String(b.deliveries.dead_lettered)),
    ),
  );
  return [
    listed.length > LISTED ? el("p", { class: "hint" }, `The latest ${LISTED} of the ${listed.length} buckets with figures; the CSV has every one.`) : null,
    table(["Bucket", "First seen", "Completed", "Failed", "Expired", "Cancelled", "Success", "Completed amounts", "Delivered", "Dead-lettered"], rows, { "data-list": "analytics-buckets" }),
  ];
}

function emptyState(doc) {
  return el(
    "div",
    { class: "notice", "data-empty": "" },
    el("p", null, el("strong", null, "Nothing in this range.")),
    el("p", null, "No payment was first seen or reached a final state, and no delivery ended, from ", when(doc.from), " to ", when(doc.to), doc.source ? ` for source ${doc.source}.` : "."),
    el("p", { class: "hint" }, "The figures are counted as events arrive, from the first time this version of the gateway ran on its store: a longer range or another source may hold some."),
  );
}

// -- the view ---------------------------------------------------------------------------------

function field(label, control) {
  return el("label", null, el("span", null, label), control);
}

export function analytics(main, params, navigate) {
  const state = stateOf(params);
  const go = (changes) => navigate(hrefOf({ ...state, ...changes }));

  const csv = el("a", { class: "button", "data-action": "analytics-csv", title: "One row per bucket and currency" }, "Download CSV");
  const picker = el(
    "div",
    { class: "ranges", role: "group", "aria-label": "Range" },
    [...Object.entries(RANGES).map(([key, r]) => [key, r.label, `The last ${r.label}, by ${r.bucket}`]), ["custom", "Custom", "From and to of your choice"]].map(([key, label, title]) =>
      el("button", { type: "button", class: "range", "data-range": key, "aria-pressed": String(key === state.range), title, onclick: () => pick(key) }, label),
    ),
  );
  const custom = state.range === "custom";
  const form = el(
    "form",
    { class: "filters", "data-form": "analytics", "aria-label": "Range and source" },
    custom ? field("From (your time)", el("input", { type: "datetime-local", name: "from", value: local(state.from) })) : null,
    custom ? field("To (your time)", el("input", { type: "datetime-local", name: "to", value: local(state.to) })) : null,
    field("Bucket", el("select", { name: "bucket" }, (custom ? ["", ...BUCKETS] : BUCKETS).map((b) => el("option", { value: b, selected: b === state.bucket }, b || "by range")))),
    field("Source", el("input", { type: "search", name: "source", value: state.source, placeholder: "every source" })),
    el("button", { type: "submit" }, "Show"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const changes = { bucket: String(data.get("bucket") || ""), source: String(data.get("source") || "").trim() };
    if (custom) Object.assign(changes, { from: fromLocal(data.get("from")), to: fromLocal(data.get("to")) });
    go(changes);
  });

  /** A preset with its bucket, or Custom starting from the range on screen. */
  function pick(key) {
    if (key === state.range) return;
    if (key !== "custom") return go({ range: key, bucket: RANGES[key].bucket, from: "", to: "" });
    const { from, to } = shown || queryOf(state);
    const minute = (iso) => utc(Math.floor(Date.parse(iso) / 60_000) * 60_000);
    return go({ range: "custom", from: minute(from), to: minute(to) });
  }

  const refusal = el("div", { "aria-live": "polite" });
  const range = el("p", { class: "lead", "data-range-shown": "" });
  const content = el("div");
  // Kept in place across refreshes, so it stays open (or closed) and keeps the focus.
  const figures = el("div");
  const details = el("details", { class: "per-bucket", hidden: true }, el("summary", null, "Figures per bucket"), figures);
  const body = el("div", { class: "analytics-body" }, content, details);
  const root = el("div", { "data-view": "analytics" }, heading("Analytics", csv), picker, form, refusal, range, body);
  put(main, root);

  let shown = null;
  let drawn = "";
  let drawnWidth = 0;
  let generation = 0;

  function drawCharts() {
    for (const box of body.querySelectorAll("[data-chart]")) {
      const style = getComputedStyle(box);
      const width = box.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
      const code = box.dataset.currencyChart;
      put(box, code === undefined ? paymentsChart(shown, width) : amountChart(shown, code, width));
    }
    drawnWidth = body.clientWidth;
  }

  function draw(doc) {
    put(range, `By ${doc.bucket} (UTC), from `, when(doc.from), " to ", when(doc.to), doc.source ? [" · source ", el("strong", null, doc.source)] : " · every source");
    details.hidden = quiet(doc);
    if (details.hidden) return put(content, emptyState(doc));
    const codes = currenciesOf(doc);
    put(figures, perBucket(doc, codes));
    put(
      content,
      totals(doc),
      currencyTotals(doc, codes),
      el("h2", null, "Payments by state"),
      chartBox("payments"),
      codes.length ? [el("h2", null, "Completed amounts per currency"), el("div", { class: "currency-charts" }, codes.map((code) => chartBox("amounts", { "data-currency-chart": code })))] : null,
    );
    return drawCharts();
  }

  async function refresh() {
    if (!root.isConnected) return;
    const mine = ++generation;
    const query = queryOf(state);
    let doc;
    try {
      doc = await get("/admin/analytics", query);
    } catch (failure) {
      if (mine !== generation || !root.isConnected) return;
      if (failure.status !== 400 && failure.status !== 404) throw failure;
      shown = null;
      drawn = "";
      csv.removeAttribute("href");
      csv.setAttribute("aria-disabled", "true");
      put(range);
      put(content);
      details.hidden = true;
      // Put in again only when it changed: the live region would say it again each time.
      if (refusal.textContent !== failure.message) put(refusal, el("p", { class: "notice error", role: "alert", "data-refused": "" }, failure.message));
      return;
    }
    // A later refresh drew (or is drawing) newer figures, or another view replaced this one.
    if (mine !== generation || !root.isConnected) return;
    put(refusal);
    csv.setAttribute("href", `/admin/analytics.csv?${search(query)}`);
    csv.removeAttribute("aria-disabled");
    shown = doc;
    // A custom range left open at either end: the inputs show where the API put it.
    for (const name of ["from", "to"]) {
      const input = form.elements.namedItem(name);
      if (input && !input.value && document.activeElement !== input) input.value = local(doc[name]);
    }
    // Drawn again only when a figure changed (a live refresh mostly brings the same ones).
    const now = JSON.stringify(doc);
    if (now !== drawn) draw(doc);
    drawn = now;
  }

  // The charts are drawn as wide as their boxes: again when the page's width changes.
  let resizing = null;
  const onResize = () => {
    if (!root.isConnected) return window.removeEventListener("resize", onResize);
    clearTimeout(resizing);
    resizing = setTimeout(() => {
      if (shown && !quiet(shown) && Math.abs(body.clientWidth - drawnWidth) >= 16) drawCharts();
    }, 150);
    return undefined;
  };
  window.addEventListener("resize", onResize);
  return refresh;
}
