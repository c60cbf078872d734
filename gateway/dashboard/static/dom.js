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

/** A local time for an RFC 3339 string, or a dash. */
export function when(iso) {
  if (!iso) return "–";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

/** A value or a dash, as text. */
export function text(value) {
  return value === null || value === undefined || value === "" ? "–" : String(value);
}

/** A table inside a box that scrolls sideways on its own, so the page never does. Each
 * cell's content sits in a block of bounded width, so one long value cannot widen its column
 * past that (table cells themselves ignore max-width). */
export function table(head, rows, attrs) {
  for (const row of rows) {
    for (const cell of row.children) {
      const box = el("div", { class: "cell" });
      box.append(...cell.childNodes);
      cell.append(box);
    }
  }
  return el(
    "div",
    { class: "scroll", ...(attrs || {}) },
    el("table", null, el("thead", null, el("tr", null, head.map((h) => el("th", { scope: "col" }, h)))), el("tbody", null, rows)),
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
