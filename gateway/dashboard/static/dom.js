// Building the page: every value a sender chose goes in as a text node, never as markup.

const SVG = "http://www.w3.org/2000/svg";

function fill(node, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.setAttribute("class", value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** An HTML element with attributes and children (strings become text nodes). */
export function el(tag, attrs, ...children) {
  return fill(document.createElement(tag), attrs, children);
}

/** An SVG element, as ``el``. */
export function svg(tag, attrs, ...children) {
  return fill(document.createElementNS(SVG, tag), attrs, children);
}

const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;
const two = (n) => String(n).padStart(2, "0");
const zoneFormat = new Intl.DateTimeFormat(undefined, { timeZoneName: "short" });

/** The browser's name for its time zone at that date ("UTC", "CET", "GMT+2"). */
function zone(date) {
  const part = zoneFormat.formatToParts(date).find((p) => p.type === "timeZoneName");
  return part ? part.value : "";
}

/** An RFC 3339 time as the browser's local time with its zone, year first so that no reader
 * mistakes the day for the month (2026-12-06 07:05:00 CET), in a <time> that keeps the value
 * as given in its datetime and title; a dash when there is none, the value itself as text
 * when it is not a time. */
export function when(iso) {
  if (!iso) return "–";
  // Only RFC 3339 with an offset: Date() also reads "12" or "May 3" as some local time.
  const date = RFC3339.test(iso) ? new Date(iso) : new Date(NaN);
  if (Number.isNaN(date.getTime())) return String(iso);
  const day = `${date.getFullYear()}-${two(date.getMonth() + 1)}-${two(date.getDate())}`;
  const clock = `${two(date.getHours())}:${two(date.getMinutes())}:${two(date.getSeconds())}`;
  return el("time", { datetime: iso, title: iso }, `${day} ${clock} ${zone(date)}`);
}

let currencies = null;

/** Whether a code is an ISO 4217 currency this browser knows (exactly as written: "EUR", not
 * "eur"); a well-formed code it does not know ("XYZ") formats without error, so the list is
 * what decides, or, in a browser without it, a format that refuses the code. */
function iso4217(code) {
  if (currencies === null) {
    try {
      currencies = new Set(Intl.supportedValuesOf("currency"));
    } catch {
      currencies = undefined;
    }
  }
  if (currencies) return currencies.has(code);
  try {
    return /^[A-Z]{3}$/.test(code) && Boolean(new Intl.NumberFormat("en", { style: "currency", currency: code }));
  } catch {
    return false;
  }
}

/** A decimal string's value as sign, integer digits and fraction digits without the zeros
 * that do not count ("-0019.900" and "-19.9" are the same). */
function digits(negative, integer, fraction) {
  const whole = integer.replace(/^0+/, "");
  const part = fraction.replace(/0+$/, "");
  return `${negative && (whole || part) ? "-" : ""}${whole || "0"}.${part}`;
}

/** The decimal string in the browser's locale (digit grouping, decimal mark), or as it is
 * when the browser cannot format it exactly: Intl.NumberFormat reads a string as an exact
 * decimal, but an older one goes through a float, and then the digits shown are compared
 * with the digits given before anything is shown. */
function localNumber(decimal, options) {
  const given = /^(-?)(\d+)(?:\.(\d+))?$/.exec(decimal);
  if (!given) return decimal;
  try {
    const parts = new Intl.NumberFormat(undefined, { ...options, numberingSystem: "latn" }).formatToParts(decimal);
    const of = (type) => parts.filter((p) => p.type === type).map((p) => p.value).join("");
    const shown = digits(Boolean(of("minusSign")), of("integer"), of("fraction"));
    if (shown !== digits(given[1] === "-", given[2], given[3] || "")) return decimal;
    // The number alone: the code follows it, the same way for every currency.
    return parts
      .filter((p) => p.type !== "currency" && p.type !== "literal")
      .map((p) => p.value)
      .join("")
      .trim();
  } catch {
    return decimal;
  }
}

/** An amount of the admin API ({value, scale, currency, decimal}) as text with its currency,
 * "19.99 EUR": an ISO 4217 currency with at least its usual decimals (more when the amount
 * has more; never fewer digits than it has), any other code with the amount's own scale
 * ("12.3456 XRP"). Formatted from the exact decimal string, never through a float. */
export function moneyText(amount) {
  const decimal = String(amount.decimal);
  const code = String(amount.currency);
  const scale = Math.max(0, Math.min(100, Number(amount.scale) || 0));
  let options;
  if (iso4217(code)) {
    const usual = new Intl.NumberFormat("en", { style: "currency", currency: code }).resolvedOptions().minimumFractionDigits;
    options = { style: "currency", currency: code, currencyDisplay: "code", minimumFractionDigits: usual, maximumFractionDigits: Math.max(usual, scale) };
  } else {
    options = { minimumFractionDigits: scale, maximumFractionDigits: scale };
  }
  return `${localNumber(decimal, options)} ${code}`;
}

/** ``moneyText`` in a span that keeps the exact figures; a dash when there is no amount. */
export function money(amount) {
  if (!amount) return "–";
  const code = String(amount.currency);
  return el(
    "span",
    { class: "money", "data-decimal": String(amount.decimal), "data-currency": code, title: `${amount.value} at scale ${amount.scale}, ${code}` },
    moneyText(amount),
  );
}

/** A decimal string of a currency ("865.06", "-12.5") as an amount of the admin API, its scale
 * the digits after the point: what ``money`` takes. */
export function amountOf(decimal, currency) {
  const text = String(decimal);
  const [, sign = "", integer = "0", fraction = ""] = /^(-?)(\d+)(?:\.(\d+))?$/.exec(text) || [];
  const value = `${sign}${`${integer}${fraction}`.replace(/^0+(?=\d)/, "")}`;
  return { value, scale: fraction.length, currency: String(currency), decimal: text };
}

/** A value or a dash, as text. */
export function text(value) {
  return value === null || value === undefined || value === "" ? "–" : String(value);
}

/** A table inside a box that scrolls sideways on its own, so the page never does. Each
 * cell's content sits in a block of bounded width, so one long value cannot widen its column
 * past that (table cells themselves ignore max-width). Each cell carries its column's name in
 * data-label, which narrow screens show beside the value when they stack a row's cells. */
export function table(head, rows, attrs) {
  for (const row of rows) {
    row.setAttribute("role", "row");
    [...row.children].forEach((cell, i) => {
      const box = el("div", { class: "cell" });
      box.append(...cell.childNodes);
      cell.append(box);
      cell.setAttribute("role", "cell");
      if (head[i]) cell.dataset.label = head[i];
    });
  }
  const header = el("tr", { role: "row" }, head.map((h) => el("th", { scope: "col", role: "columnheader" }, h)));
  return el(
    "div",
    { class: "scroll", ...(attrs || {}) },
    el("table", { role: "table" }, el("thead", { role: "rowgroup" }, header), el("tbody", { role: "rowgroup" }, rows)),
  );
}

/** A status badge. */
export function badge(status) {
  return el("span", { class: `badge ${String(status || "none").replace(/[^a-z_]/g, "")}` }, text(status));
}

/** Replace a node's children (skipping empty ones; strings become text nodes). */
export function put(node, ...children) {
  node.replaceChildren();
  return fill(node, null, children);
}
