// Events per minute over the last hour, as an SVG drawn here (no library, no network).
import { svg } from "./dom.js";

const W = 360;
const H = 64;

/** Bars of accepted events per minute, with delivered and dead-lettered as lines. */
export function chart(perMinute) {
  const accepted = perMinute.accepted || [];
  const delivered = perMinute.delivered || [];
  const dead = perMinute.dead_lettered || [];
  const top = Math.max(1, ...accepted, ...delivered, ...dead);
  const step = W / Math.max(accepted.length, 1);
  const y = (v) => H - 2 - (v / top) * (H - 6);
  const line = (values) => values.map((v, i) => `${(i + 0.5) * step},${y(v)}`).join(" ");
  const total = accepted.reduce((a, b) => a + b, 0);
  return svg(
    "svg",
    { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": `Events per minute, last hour: ${total} accepted`, preserveAspectRatio: "none" },
    svg("title", null, `Events per minute over the last hour (peak ${top})`),
    accepted.map((v, i) =>
      svg("rect", { class: "bar", x: i * step + 0.5, y: y(v), width: Math.max(step - 1, 1), height: H - 2 - y(v) }),
    ),
    svg("polyline", { class: "delivered", points: line(delivered) }),
    svg("polyline", { class: "dead", points: line(dead) }),
  );
}
