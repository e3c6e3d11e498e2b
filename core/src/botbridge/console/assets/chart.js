// Small line charts as inline SVG: one figure per measure, with its current value in words.

import { h, svg } from "./dom.js";

const WIDTH = 300;
const HEIGHT = 90;
const LEFT = 34;
const BOTTOM = 14;

function nice(max) {
  if (!(max > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(max));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (max <= step * power) return step * power;
  }
  return 10 * power;
}

function label(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return "—";
  if (value >= 100 || Number.isInteger(value)) return String(Math.round(value));
  return value.toFixed(value >= 10 ? 1 : 2);
}

// lines: [{name, points: [{at, value|null}]}]; unit: "jobs", "/s", "ms".
export function chart({ title, unit, lines, windowMs, describe }) {
  const now = Date.now();
  const start = now - windowMs;
  const values = lines.flatMap((line) => line.points.map((p) => p.value)).filter((v) => v !== null && Number.isFinite(v));
  const top = nice(Math.max(0, ...values));
  const x = (at) => LEFT + ((at - start) / windowMs) * (WIDTH - LEFT - 4);
  const y = (value) => 4 + (1 - value / top) * (HEIGHT - BOTTOM - 8);
  const drawing = svg(
    "svg",
    { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", "aria-label": describe, focusable: "false" },
    svg("line", { class: "axis", x1: LEFT, y1: y(0), x2: WIDTH - 4, y2: y(0) }),
    svg("line", { class: "axis", x1: LEFT, y1: 4, x2: LEFT, y2: y(0) }),
    svg("text", { x: LEFT - 4, y: 12, "text-anchor": "end" }, label(top)),
    svg("text", { x: LEFT - 4, y: y(0), "text-anchor": "end" }, "0"),
    svg("text", { x: LEFT, y: HEIGHT - 2 }, `−${Math.round(windowMs / 60000)} min`),
    svg("text", { x: WIDTH - 4, y: HEIGHT - 2, "text-anchor": "end" }, "now"),
  );
  lines.forEach((line, index) => {
    // a gap (null) splits the line: no value is invented where none was measured
    let run = [];
    const flush = () => {
      if (run.length === 1) run.push(run[0]);
      if (run.length) drawing.append(svg("polyline", { class: `series-${index}`, points: run.join(" ") }));
      run = [];
    };
    for (const point of line.points) {
      if (point.at < start || point.value === null || !Number.isFinite(point.value)) {
        flush();
        continue;
      }
      run.push(`${x(point.at).toFixed(1)},${y(point.value).toFixed(1)}`);
    }
    flush();
  });
  const latest = lines.map((line) => {
    const last = [...line.points].reverse().find((p) => p.value !== null && Number.isFinite(p.value));
    return last ? last.value : null;
  });
  return h(
    "figure",
    { class: "chart" },
    h("figcaption", {}, title),
    h("div", { class: "now" }, lines.map((line, i) => `${lines.length > 1 ? line.name + " " : ""}${label(latest[i])}`).join(" · "), " ", h("span", { class: "meta" }, unit)),
    drawing,
    lines.length > 1
      ? h("div", { class: "legend" }, lines.map((line, i) => h("span", {}, h("span", { class: `swatch series-${i}` }), line.name)))
      : null,
  );
}

export { label as formatValue };
