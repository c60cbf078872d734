// Charts as SVG drawn here (no library, no network), each with its axes, their marks and a
// legend: the health strip's events per minute, and the Analytics view's figures per bucket.
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
/** About one character of the 11 px text, in units; a legend row's height. */
const CHAR = 6.2;
const ROW = 15;

/** A legend mark: a swatch of a bar's fill, or a stroke of a line's. */
const swatch = (cls) => (x, y) => svg("rect", { class: cls, x, y: y - 5, width: 10, height: 9 });
const stroke = (cls) => (x, y) => svg("line", { class: cls, x1: x, y1: y, x2: x + 12, y2: y });

/** The legend: what each mark means, each entry ([name, label, mark]) drawn with the mark it
 * names, in rows that wrap between ``left`` and ``right``; and the height it takes. */
function legend(entries, left, right) {
  let x = left;
  let y = 10;
  const drawn = entries.map(([name, label, mark]) => {
    const size = 15 + label.length * CHAR;
    if (x > left && x + size > right) {
      x = left;
      y += ROW;
    }
    const entry = svg("g", { "data-legend": name }, mark(x, y), svg("text", { x: x + 15, y, "dominant-baseline": "central" }, label));
    x += size + 14;
    return entry;
  });
  return { node: svg("g", { class: "legend" }, drawn), height: y + 8 };
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
  const key = legend(
    [
      ["accepted", "accepted", swatch("bar")],
      ["delivered", "delivered", stroke("delivered")],
      ["dead_lettered", "dead-lettered", stroke("dead")],
    ],
    LEFT,
    W - RIGHT,
  );
  return svg(
    "svg",
    {
      viewBox: `0 0 ${W} ${H}`,
      class: "chart",
      role: "img",
      "aria-label": `Events per minute over the last ${minutes} minutes: ${sum(accepted)} accepted, ${sum(delivered)} delivered, ${sum(dead)} dead-lettered; at most ${peak} in a minute`,
    },
    svg("title", null, `Events per minute over the last ${minutes} minutes (peak ${peak})`),
    key.node,
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

// -- figures per bucket (the Analytics view) ------------------------------------------------------

/** Round marks for a y axis from ``lo`` to ``hi`` (0 among them): steps of 1, 2 or 5 times a
 * power of ten, about three of them; whole steps only when ``whole``. */
export function marks(lo, hi, whole) {
  if (hi <= lo) hi = lo + 1;
  const raw = (hi - lo) / 3;
  const power = 10 ** Math.floor(Math.log10(raw));
  let step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) || 10 * power;
  if (whole) step = Math.max(1, Math.round(step));
  const first = Math.floor(lo / step);
  const last = Math.ceil(hi / step);
  const out = [];
  // Multiples of the step, not sums of it: 0.1 + 0.2 is not 0.3.
  for (let k = first; k <= last; k += 1) out.push(Number((k * step).toPrecision(12)));
  return out;
}

const UTC_DAY = new Intl.DateTimeFormat(undefined, { timeZone: "UTC", month: "short", day: "numeric" });
const UTC_DAY_YEAR = new Intl.DateTimeFormat(undefined, { timeZone: "UTC", year: "numeric", month: "short", day: "numeric" });
const UTC_HOUR = new Intl.DateTimeFormat(undefined, { timeZone: "UTC", hour: "2-digit", minute: "2-digit", hourCycle: "h23" });

/** A bucket's start as a mark of the x axis, in UTC (the buckets are UTC hours, days and
 * weeks): "14:00", with its day when ``withDay`` ("Dec 5 14:00"); "Dec 5" for a day or a
 * week, with the year when ``withYear``. */
export function bucketLabel(iso, bucket, withDay, withYear) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  const day = (withYear ? UTC_DAY_YEAR : UTC_DAY).format(date);
  if (bucket !== "hour") return day;
  return withDay ? `${day} ${UTC_HOUR.format(date)}` : UTC_HOUR.format(date);
}

/** Buckets between two marks of the x axis, the fewest first: round hours (every 6 h falls on
 * 00:00, 06:00, 12:00 and 18:00 UTC), days, weeks. */
const STRIDES = {
  hour: [1, 2, 3, 6, 12, 24, 48, 72, 168, 336, 672, 1344],
  day: [1, 2, 7, 14, 28, 56, 91, 182, 364],
  week: [1, 2, 4, 8, 13, 26, 52],
};
const SECONDS = { hour: 3600, day: 86400, week: 7 * 86400 };

/** The x axis's marks: evenly spaced, on buckets whose number is a multiple of the stride (so
 * on round hours), at most one per ``spacing`` units; a mark shows its day when it
 * is the first or its day is not the previous mark's, its year when the buckets span two. */
function xMarks(starts, bucket, plotWidth, spacing) {
  const n = starts.length;
  const room = Math.max(1, Math.floor(plotWidth / spacing));
  const strides = STRIDES[bucket] || [1];
  const stride = strides.find((s) => Math.ceil(n / s) <= room) || Math.ceil(n / room);
  // Days and weeks count from the first Monday, 1970-01-05: a mark every 7 days is a Monday.
  const from = bucket === "hour" ? 0 : 4 * 86400;
  const number = (iso) => Math.round((Date.parse(iso) / 1000 - from) / (SECONDS[bucket] || 86400));
  let picked = starts.map((_, i) => i).filter((i) => ((number(starts[i]) % stride) + stride) % stride === 0);
  if (!picked.length) picked = [0];
  const years = new Set(starts.map((s) => String(s).slice(0, 4)));
  let lastDay = null;
  return picked.map((i) => {
    const day = String(starts[i]).slice(0, 10);
    const label = bucketLabel(starts[i], bucket, day !== lastDay, years.size > 1);
    lastDay = day;
    return [i, label];
  });
}

const AXIS_SAYS = { hour: "hours", day: "days", week: "weeks from Monday" };

/** Bars per bucket, stacked in the order given (values above 0 upward, below 0 downward),
 * with lines over them, a y axis with round marks, an x axis of the buckets' starts in UTC,
 * and a legend. ``o``: ``width`` and ``height`` in units (about CSS pixels: the caller gives
 * the width its box has), ``starts`` (RFC 3339) and ``bucket``, ``bars`` and ``lines``
 * ([{name, label, values}]; a series is styled by its class ``s-<name>``), ``whole`` (counts:
 * whole marks), ``tick`` (a y mark as text), ``describe`` (bucket index → its figures as text,
 * shown on hover), ``label`` (what the chart shows, for a screen reader). */
export function bucketChart(o) {
  const width = Math.max(240, Math.round(o.width) || 0);
  const height = o.height;
  const n = Math.max(o.starts.length, 1);
  const bars = o.bars || [];
  const lines = o.lines || [];
  let hi = 0;
  let lo = 0;
  for (let i = 0; i < n; i += 1) {
    let up = 0;
    let down = 0;
    for (const s of bars) {
      const v = s.values[i] || 0;
      if (v > 0) up += v;
      else down += v;
    }
    const drawn = lines.map((s) => s.values[i] || 0);
    hi = Math.max(hi, up, ...drawn);
    lo = Math.min(lo, down, ...drawn);
  }
  const ys = marks(lo, hi, o.whole);
  const tick = o.tick || String;
  const texts = ys.map((v) => tick(v));
  const left = 8 + Math.max(...texts.map((t) => t.length)) * CHAR;
  const right = 8;
  const key = legend(
    [...bars.map((s) => [s.name, s.label, swatch(`seg s-${s.name}`)]), ...lines.map((s) => [s.name, s.label, stroke(`trend s-${s.name}`)])],
    left,
    width - right,
  );
  const top = key.height + 8;
  const bottom = 34; // the x axis's marks and what they are
  const base = height - bottom;
  const plotWidth = width - left - right;
  const step = plotWidth / n;
  const min = ys[0];
  const max = ys[ys.length - 1];
  const y = (v) => base - ((v - min) / (max - min)) * (base - top);
  const gap = step > 4 ? Math.min(Math.max(1, step * 0.2), 8) : 0;
  const segments = [];
  for (let i = 0; i < n; i += 1) {
    let up = 0;
    let down = 0;
    for (const s of bars) {
      const v = s.values[i] || 0;
      if (!v) continue;
      const from = v > 0 ? up : down;
      const to = from + v;
      if (v > 0) up = to;
      else down = to;
      segments.push(svg("rect", { class: `seg s-${s.name}`, x: left + i * step + gap / 2, y: Math.min(y(from), y(to)), width: Math.max(step - gap, 0.5), height: Math.abs(y(from) - y(to)) }));
    }
  }
  const centre = (i) => left + (i + 0.5) * step;
  const trends = lines.map((s) => [
    svg("polyline", { class: `trend s-${s.name}`, points: s.values.map((v, i) => `${centre(i)},${y(v || 0)}`).join(" ") }),
    // A dot where it is not 0: a lone figure between zeros shows even where the line is flat.
    s.values.map((v, i) => (v ? svg("circle", { class: `dot s-${s.name}`, cx: centre(i), cy: y(v), r: 2.5 }) : null)),
  ]);
  const xs = xMarks(o.starts, o.bucket, plotWidth, o.bucket === "hour" ? 96 : 64).map(([i, label]) => {
    const x = centre(i);
    const half = (label.length * CHAR) / 2;
    const anchor = x - half < 0 ? "start" : x + half > width ? "end" : "middle";
    const at = anchor === "start" ? Math.max(0, x - 4) : anchor === "end" ? Math.min(width, x + 4) : x;
    return [
      svg("line", { class: "axis", x1: x, y1: base, x2: x, y2: base + 3 }),
      svg("text", { class: "tick", x: at, y: base + 14, "text-anchor": anchor }, label),
    ];
  });
  return svg(
    "svg",
    { viewBox: `0 0 ${width} ${height}`, class: "chart wide", role: "img", "aria-label": o.label },
    svg("title", null, o.label),
    key.node,
    svg(
      "g",
      { "data-axis": "y" },
      ys.map((v, k) => [
        svg("line", { class: v === 0 ? "axis" : "grid", x1: left, y1: y(v), x2: width - right, y2: y(v) }),
        svg("text", { class: "tick", x: left - 4, y: y(v), "text-anchor": "end", "dominant-baseline": "central" }, texts[k]),
      ]),
    ),
    // One strip per bucket under the marks, for its figures on hover.
    svg("g", { class: "hits" }, o.starts.map((_, i) => svg("rect", { class: "hit", x: left + i * step, y: top, width: step, height: base - top }, svg("title", null, o.describe ? o.describe(i) : "")))),
    segments,
    trends,
    svg(
      "g",
      { "data-axis": "x" },
      xs,
      svg("text", { class: "tick caption", x: width - right, y: height - 3, "text-anchor": "end" }, `${AXIS_SAYS[o.bucket] || o.bucket}, UTC`),
    ),
  );
}
