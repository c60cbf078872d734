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
