// Events per minute over the last hour, as an SVG drawn here (no library, no network).
import { svg } from "./dom.js";

// The drawing's units. The SVG keeps this aspect ratio as it scales (its text would stretch
// otherwise), so one unit is about one CSS pixel where the strip gives the chart ~360 px.
const W = 360;
const H = 124;
const LEFT = 30; // the y axis's numbers
const RIGHT = 6;
const TOP = 22; // the legend
const BOTTOM = 16; // the x axis's time marks
const PLOT_W = W - LEFT - RIGHT;
const PLOT_H = H - TOP - BOTTOM;
const BASE = TOP + PLOT_H;

/** The legend: what each mark means, each entry drawn with the mark it names. */
function legend() {
  const entries = [
    ["accepted", "accepted", (x) => svg("rect", { class: "bar", x, y: 5, width: 10, height: 9 })],
    ["delivered", "delivered", (x) => svg("line", { class: "delivered", x1: x, y1: 10, x2: x + 12, y2: 10 })],
    ["dead_lettered", "dead-lettered", (x) => svg("line", { class: "dead", x1: x, y1: 10, x2: x + 12, y2: 10 })],
  ];
  let x = LEFT;
  return svg(
    "g",
    { class: "legend" },
    entries.map(([name, label, mark]) => {
      const entry = svg("g", { "data-legend": name }, mark(x), svg("text", { x: x + 15, y: 10, "dominant-baseline": "central" }, label));
      x += 15 + label.length * 6.2 + 14;
      return entry;
    }),
  );
}

/** Bars of accepted events per minute, delivered and dead-lettered as lines, with a y axis
 * from 0 to the hour's peak, an x axis in minutes before now, and a legend. */
export function chart(perMinute) {
  const accepted = perMinute.accepted || [];
  const delivered = perMinute.delivered || [];
  const dead = perMinute.dead_lettered || [];
  const minutes = Math.max(accepted.length, 1);
  const peak = Math.max(0, ...accepted, ...delivered, ...dead);
  const top = Math.max(1, peak);
  const step = PLOT_W / minutes;
  const y = (v) => BASE - (v / top) * PLOT_H;
  const line = (values) => values.map((v, i) => `${LEFT + (i + 0.5) * step},${y(v)}`).join(" ");
  const sum = (values) => values.reduce((a, b) => a + b, 0);
  const yMark = (value) => [
    svg("line", { class: "grid", x1: LEFT, y1: y(value), x2: W - RIGHT, y2: y(value) }),
    svg("text", { class: "tick", x: LEFT - 4, y: y(value), "text-anchor": "end", "dominant-baseline": "central" }, String(value)),
  ];
  const xMark = (minute, label, anchor) => [
    svg("line", { class: "axis", x1: LEFT + minute * step, y1: BASE, x2: LEFT + minute * step, y2: BASE + 3 }),
    svg("text", { class: "tick", x: LEFT + minute * step, y: H - 2, "text-anchor": anchor }, label),
  ];
  const half = Math.round(minutes / 2);
  return svg(
    "svg",
    {
      viewBox: `0 0 ${W} ${H}`,
      class: "chart",
      role: "img",
      "aria-label": `Events per minute over the last ${minutes} minutes: ${sum(accepted)} accepted, ${sum(delivered)} delivered, ${sum(dead)} dead-lettered; at most ${peak} in a minute`,
    },
    svg("title", null, `Events per minute over the last ${minutes} minutes (peak ${peak})`),
    legend(),
    svg("g", { "data-axis": "y" }, yMark(0), top > 1 && top % 2 === 0 ? yMark(top / 2) : null, yMark(top)),
    accepted.map((v, i) => svg("rect", { class: "bar", x: LEFT + i * step + 0.5, y: y(v), width: Math.max(step - 1, 1), height: BASE - y(v) })),
    svg("polyline", { class: "delivered", points: line(delivered) }),
    svg("polyline", { class: "dead", points: line(dead) }),
    svg(
      "g",
      { "data-axis": "x" },
      svg("line", { class: "axis", x1: LEFT, y1: BASE, x2: W - RIGHT, y2: BASE }),
      xMark(0, `−${minutes} min`, "start"),
      xMark(half, `−${minutes - half} min`, "middle"),
      xMark(minutes, "now", "end"),
    ),
  );
}
