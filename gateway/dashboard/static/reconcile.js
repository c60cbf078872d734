// The Reconciliation view: per reconciled source, its schedule, its last run and that run's
// counts, what needs a look (the items of the last complete run, each linked to its payment),
// its recent runs, and Run now / Dry run.
import { get, post, seg } from "./api.js";
import { el, put, table, text, when } from "./dom.js";
import { eventHref, heading, link, paymentHref } from "./views.js";

/** Runs asked for per source: every one kept, since the last complete run (neither failed nor
 * a dry run), whose items the view shows, may be behind several failed ones. */
const RUNS = 50;
/** Runs shown in a source's history. */
const HISTORY = 5;
/** A run's results, in the order they are shown; the last three need someone to look. */
const RESULTS = ["matched", "open", "recovered", "missing", "mismatch", "unknown_to_provider"];
const NEEDS_A_LOOK = new Set(["missing", "mismatch", "unknown_to_provider"]);
const RESULT_SAYS = {
  matched: "The gateway has the payment in the provider's final state.",
  open: "Not final at the provider, or final for less than grace: its webhook may be on its way.",
  recovered: "The gateway lacked it: the recovered event went through the source and is delivered.",
  missing: "Not recovered (the reason says why); the payment is flagged missing until its webhook or a later run brings it.",
  mismatch: "The gateway has another final state than the provider: someone must look.",
  unknown_to_provider: "The gateway has the payment in a final state the provider's listing does not show.",
};
const said = (result) => result.replace(/_/g, " ");

// Kept across views (a run goes on when one leaves the view, and its answer is still worth
// showing when one comes back): the runs this page started and is waiting for, by source
// ("run" or "dry"), and the answer to the last one of each source.
const going = new Map();
const answers = new Map();
/** The view on screen (the latest one drawn): its ``paint`` and ``refresh``. */
let shown = null;

/** A number of seconds as a person says it: "5 min", "1 h 30 min", "45 s". */
function span(seconds) {
  let left = Math.round(Number(seconds));
  const parts = [];
  for (const [unit, size] of [["d", 86400], ["h", 3600], ["min", 60], ["s", 1]]) {
    if (left >= size) {
      parts.push(`${Math.floor(left / size)} ${unit}`);
      left %= size;
    }
  }
  return parts.join(" ") || "0 s";
}

/** How long a run took, from its two RFC 3339 times ("40 ms", "1.5 s"); null without an end. */
function took(run) {
  const ms = Date.parse(run.finished_at) - Date.parse(run.started_at);
  if (!Number.isFinite(ms) || ms < 0) return null;
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/** Ok or failed, and whether it was a dry run. */
function outcome(run) {
  return el(
    "span",
    { class: "outcome" },
    el("span", { class: `badge ${run.ok ? "ok" : "failed"}`, "data-outcome": run.ok ? "ok" : "failed" }, run.ok ? "ok" : "failed"),
    run.dry_run ? [" ", el("span", { class: "badge dry_run", "data-dry-run": "", title: "Compared and reported: nothing recovered or flagged" }, "dry run")] : null,
  );
}

function countsOf(run) {
  return el(
    "ul",
    { class: "counts", "data-counts": run.id },
    RESULTS.map((result) => {
      const n = Number(run.counts[result] || 0);
      const mood = n && result === "recovered" ? " good" : n && NEEDS_A_LOOK.has(result) ? " bad" : "";
      return el(
        "li",
        { class: `count${mood}`, "data-count": result, title: RESULT_SAYS[result] },
        el("strong", null, String(n)),
        el("span", { class: "label" }, said(result)),
      );
    }),
  );
}

/** One count of a run in the history: a dash for a failed run, which counted nothing. */
function count(run, result) {
  return run.ok ? String(run.counts[result] || 0) : "–";
}

/** The answer to Run now or Dry run, as a notice (and a dry run's items, which no other part
 * of the view shows). */
function answer(source, run, dry) {
  if (!run.ok) {
    return el("p", { class: "notice error", role: "status", "data-answer": "failed" }, `${dry ? "Dry run" : "Run"} failed: ${text(run.error)}`);
  }
  const figures = RESULTS.map((result) => `${run.counts[result] || 0} ${said(result)}`).join(" · ");
  const notice = el(
    "p",
    { class: "notice ok", role: "status", "data-answer": dry ? "dry-run" : "ok" },
    dry ? `Dry run done, nothing recovered or flagged: ${figures}.` : `Run done: ${figures}.`,
  );
  if (!dry || !run.items || !run.items.length) return notice;
  return el("div", null, notice, el("p", { class: "hint" }, "What a run would find now:"), itemsTable(source, run.items, "dry-run-items"));
}

function refused(source, failure) {
  const message =
    failure.status === 409
      ? `Not started: a run is already going on for ${source} (started by its schedule, the API or another page); try again when it ends.`
      : `Run refused: ${failure.message}`;
  return el("p", { class: "notice error", role: "status", "data-answer": failure.status === 409 ? "in-progress" : "refused" }, message);
}

/** Run now (``dry``: a dry run) for a source, unless this page already waits for one. */
async function start(source, dry, button) {
  if (going.has(source)) return;
  going.set(source, dry ? "dry" : "run");
  answers.delete(source);
  shown?.paint(source);
  try {
    const run = await post(`/admin/reconciliation/${seg(source)}/run${dry ? "?dry_run=1" : ""}`);
    answers.set(source, answer(source, run, dry));
  } catch (failure) {
    answers.set(source, refused(source, failure));
  } finally {
    going.delete(source);
  }
  // Disabled, the button lost the focus: give it back where the keyboard left it.
  const refocus = button.isConnected && (document.activeElement === document.body || !document.activeElement);
  shown?.paint(source);
  if (refocus) button.focus();
  try {
    await shown?.refresh();
  } catch (failure) {
    answers.set(source, el("p", { class: "notice error", role: "status" }, `Could not load: ${failure.message}`));
    shown?.paint(source);
  }
}

/** Where the recovered (or would-be) event of an item is: its page when the gateway stored it. */
function eventOf(source, item) {
  if (!item.event_id) return "–";
  if (item.result === "recovered") return link(eventHref(item.event_id, source), item.event_id, { "data-event-link": "" });
  return el("span", { class: "field", title: "The event a recovery would send: not stored" }, item.event_id);
}

function itemsTable(source, items, list) {
  const rows = items.map((item) =>
    el(
      "tr",
      { "data-reconcile-key": item.key, "data-result": item.result },
      el("td", { class: "key" }, link(paymentHref(source, item.key), item.key, { "data-payment-link": "" })),
      el("td", null, el("span", { class: `badge ${String(item.result).replace(/[^a-z_]/g, "")}`, title: RESULT_SAYS[item.result] || null }, said(String(item.result)))),
      el("td", null, text(item.provider_state)),
      el("td", null, text(item.gateway_state)),
      el("td", null, text(item.reason)),
      el("td", null, eventOf(source, item)),
    ),
  );
  return table(["Payment key", "Result", "Provider state", "Gateway state", "Reason", "Event"], rows, { "data-list": list });
}

/** The items needing attention of the source's last complete run (``detail``: that run with
 * its items; null when no complete run is kept, undefined when it could not be read). */
function attention(source, complete, detail) {
  const title = el("h3", null, "Recovered and needing attention");
  if (!complete) {
    return [title, el("p", { class: "empty" }, "No complete run yet (every run kept failed or was a dry run).")];
  }
  const from = el("p", { class: "hint" }, "From the last complete run, ", when(complete.started_at), ".");
  if (!detail) return [title, from, el("p", { class: "empty" }, "That run is no longer kept.")];
  if (!detail.items.length) {
    return [title, from, el("p", { class: "empty", "data-attention-none": "" }, "Nothing: every payment listed was matched or still open.")];
  }
  const counted = RESULTS.filter((r) => r !== "matched" && r !== "open").reduce((n, r) => n + Number(detail.counts[r] || 0), 0);
  return [
    title,
    from,
    detail.items.length < counted ? el("p", { class: "hint" }, `The run kept the first ${detail.items.length} of its ${counted} items.`) : null,
    itemsTable(source, detail.items, "reconcile-items"),
  ];
}

function history(runs) {
  const rows = runs.slice(0, HISTORY).map((run) =>
    el(
      "tr",
      { "data-run-id": run.id, "data-outcome": run.ok ? "ok" : "failed" },
      el("td", null, when(run.started_at)),
      el("td", null, outcome(run)),
      el("td", { class: "num" }, count(run, "recovered")),
      el("td", { class: "num" }, count(run, "missing")),
      el("td", { class: "num" }, count(run, "mismatch")),
      el("td", { class: "num" }, count(run, "unknown_to_provider")),
      el("td", null, run.ok ? "–" : el("span", { class: "reason" }, text(run.error))),
    ),
  );
  return [
    el("h3", null, "Recent runs"),
    runs.length > HISTORY ? el("p", { class: "hint" }, `The last ${HISTORY} of ${runs.length} kept.`) : null,
    table(["Started", "Outcome", "Recovered", "Missing", "Mismatch", "Unknown to provider", "Error"], rows, { "data-list": "reconcile-runs" }),
  ];
}

function facts(source) {
  const last = source.last_run;
  const lastRun = last ? [when(last.started_at), " ", outcome(last), took(last) ? ` · took ${took(last)}` : null] : el("span", { "data-never": "" }, "never ran: Run now starts its first run");
  const rows = [
    ["Provider", el("code", null, source.kind)],
    ["Schedule", source.every ? `every ${span(source.every)}` : "on demand"],
    ["Recovery", source.recover ? "recovers what the gateway lacks" : "report only (recover: false): flags what is missing, recovers nothing"],
    ["Last run", lastRun],
    last && !last.ok ? ["Error", el("span", { class: "reason" }, text(last.error))] : null,
  ].filter(Boolean);
  return el("dl", { class: "facts" }, rows.map(([k, v]) => [el("dt", null, k), el("dd", { "data-fact": k.toLowerCase().replace(/ /g, "-") }, v)]));
}

function empty() {
  return el(
    "div",
    { class: "notice", "data-empty": "" },
    el("p", { class: "empty" }, el("strong", null, "No source is reconciled.")),
    el(
      "p",
      null,
      "Give a source a ",
      el("code", null, "reconcile:"),
      " block (with the provider to ask: the payments service's listing, Rafiki or Stripe) and it shows here. ",
      el("code", null, "docs/reconcile.md"),
      " in the gateway's repository has working configs.",
    ),
  );
}

const same = (a, b) => a.length === b.length && a.every((node, i) => node === b[i]);

export function reconciliation(main) {
  const list = el("div", { class: "reconcile" });
  put(
    main,
    heading("Reconciliation"),
    el("p", { class: "lead" }, "Each reconciled source asks its provider what it knows and recovers the webhooks that never arrived."),
    list,
  );
  // Each source's block is drawn once and refreshed in place, so its buttons keep the focus.
  const blocks = new Map();
  const details = new Map(); // run id → the run with its items (a run is not changed once kept)
  let generation = 0;
  let drawnBlocks = 0;

  function parts(name) {
    if (blocks.has(name)) return blocks.get(name);
    const id = `reconcile-source-${(drawnBlocks += 1)}`;
    const now = el("button", { type: "button", "data-action": "reconcile", "data-source": name, "aria-describedby": id }, "Run now");
    const dry = el(
      "button",
      { type: "button", class: "secondary", "data-action": "reconcile-dry-run", "data-source": name, "aria-describedby": id, title: "Compare and report; recover and flag nothing" },
      "Dry run",
    );
    now.addEventListener("click", () => start(name, false, now));
    dry.addEventListener("click", () => start(name, true, dry));
    const status = el("div", { class: "answer", "aria-live": "polite" });
    const body = el("div");
    const block = el(
      "section",
      { class: "source", "data-reconcile-source": name, "aria-labelledby": id },
      el("div", { class: "source-head" }, el("h2", { id }, name), el("div", { class: "actions" }, now, dry)),
      status,
      body,
    );
    const notice = el("p", { class: "notice", role: "status", "data-answer": "going" });
    const made = { block, now, dry, status, body, notice };
    blocks.set(name, made);
    return made;
  }

  /** A source's buttons and the answer to its last run, as they stand now. */
  function paint(name) {
    const made = blocks.get(name);
    if (!made) return;
    const busy = going.get(name);
    made.now.disabled = made.dry.disabled = Boolean(busy);
    made.now.textContent = busy === "run" ? "Running…" : "Run now";
    made.dry.textContent = busy === "dry" ? "Dry run going…" : "Dry run";
    made.block.setAttribute("aria-busy", busy ? "true" : "false");
    made.notice.textContent = busy === "dry" ? "Dry run going on…" : "Run going on…";
    // Put in again only when it changed: the live region would say it again each time.
    const want = busy ? made.notice : answers.get(name);
    if ((made.status.firstChild || undefined) !== want) put(made.status, want);
  }

  async function refresh() {
    if (!list.isConnected) return;
    const mine = ++generation;
    const data = await get("/admin/reconciliation", { limit: RUNS });
    const complete = new Map(data.sources.map((s) => [s.source, s.runs.find((run) => run.ok && !run.dry_run) || null]));
    const wanted = [...complete.values()].filter(Boolean);
    await Promise.all(
      wanted
        .filter((run) => !details.has(run.id))
        .map(async (run) => {
          try {
            details.set(run.id, await get(`/admin/reconciliation/runs/${seg(run.id)}`));
          } catch (failure) {
            if (failure.status !== 404) throw failure;
            details.set(run.id, undefined);
          }
        }),
    );
    if (mine !== generation) return; // a later refresh drew (or is drawing) newer figures
    for (const id of [...details.keys()]) if (!wanted.some((run) => run.id === id)) details.delete(id);
    if (!data.sources.length) {
      blocks.clear();
      put(list, empty());
      return;
    }
    for (const source of data.sources) {
      const made = parts(source.source);
      const last = source.last_run;
      const run = complete.get(source.source);
      const detail = run && details.get(run.id);
      // Drawn again only when it changed: a redraw would take the focus from a link in it.
      const drawn = JSON.stringify([source, Boolean(detail)]);
      if (made.drawn !== drawn) {
        made.drawn = drawn;
        put(
          made.body,
          facts(source),
          last && last.ok ? countsOf(last) : null,
          last ? [attention(source.source, run, detail), history(source.runs)] : null,
        );
      }
      paint(source.source);
    }
    for (const name of [...blocks.keys()]) if (!data.sources.some((s) => s.source === name)) blocks.delete(name);
    const order = data.sources.map((s) => blocks.get(s.source).block);
    if (!same([...list.children], order)) put(list, order);
  }

  shown = { paint, refresh };
  // A scheduled run brings no event when it recovers nothing: look again now and then.
  const timer = setInterval(() => {
    if (!list.isConnected) clearInterval(timer);
    else refresh().catch(() => {});
  }, 15000);
  return refresh;
}
