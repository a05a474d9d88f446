// Small SVG charts: stacked bars and lines over labelled buckets, with axes, grid and hover titles.
// Every bar and point carries data-label and data-value, which the browser test reads.

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 640;
const HEIGHT = 220;
const PAD = { top: 12, right: 12, bottom: 28, left: 64 };

function node(tag, attrs = {}, text) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) element.setAttribute(name, String(value));
  if (text !== undefined) element.textContent = text;
  return element;
}

// A "nice" upper bound for the axis: 1, 2 or 5 times a power of ten.
function niceMax(value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) if (step * power >= value) return step * power;
  return 10 * power;
}

// chart({labels, series: [{name, values, kind: "bar"|"line", className}], format, stacked, testId})
// Line values may be null (no data in that bucket): the line has a gap there.
export function chart({ labels, series, format = String, testId, title, integer = false }) {
  const figure = document.createElement("figure");
  figure.className = "chart";
  if (testId) figure.dataset.testid = testId;
  if (title) {
    const caption = document.createElement("figcaption");
    const heading = document.createElement("span");
    heading.textContent = title;
    caption.append(heading);
    const legend = document.createElement("span");
    legend.className = "legend";
    for (const each of series) {
      const item = document.createElement("span");
      item.className = `key ${each.className}`;
      item.textContent = each.name;
      legend.append(item);
    }
    caption.append(legend);
    figure.append(caption);
  }
  const svg = node("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", "aria-label": title || "chart" });
  const bars = series.filter((s) => s.kind !== "line");
  const lines = series.filter((s) => s.kind === "line");
  const stackedTotals = labels.map((_, i) => bars.reduce((sum, s) => sum + (s.values[i] || 0), 0));
  const lineMax = Math.max(0, ...lines.flatMap((s) => s.values.filter((v) => v !== null)));
  const highest = Math.max(0, ...stackedTotals, lineMax);
  // Counts get whole ticks: the top is four times a nice whole number.
  const top = integer ? 4 * Math.max(1, niceMax(Math.ceil(highest / 4))) : niceMax(highest);
  const plotW = WIDTH - PAD.left - PAD.right;
  const plotH = HEIGHT - PAD.top - PAD.bottom;
  const y = (value) => PAD.top + plotH - (value / top) * plotH;
  const slot = plotW / Math.max(labels.length, 1);

  for (let tick = 0; tick <= 4; tick += 1) {
    const value = (top * tick) / 4;
    svg.append(node("line", { class: "grid", x1: PAD.left, x2: WIDTH - PAD.right, y1: y(value), y2: y(value) }));
    svg.append(node("text", { class: "axis", x: PAD.left - 6, y: y(value) + 4, "text-anchor": "end" }, format(value, top)));
  }
  const every = Math.ceil(labels.length / 8);
  labels.forEach((label, i) => {
    if ((labels.length - 1 - i) % every === 0) { // the newest bucket always has its label
      svg.append(node("text", { class: "axis", x: PAD.left + slot * (i + 0.5), y: HEIGHT - 8, "text-anchor": "middle" }, label));
    }
  });

  const barWidth = Math.max(2, slot * 0.7);
  labels.forEach((label, i) => {
    let base = 0;
    for (const each of bars) {
      const value = each.values[i] || 0;
      if (value > 0) {
        const rect = node("rect", {
          class: `bar ${each.className}`,
          x: PAD.left + slot * i + (slot - barWidth) / 2,
          y: y(base + value),
          width: barWidth,
          height: Math.max(1, y(base) - y(base + value)),
          rx: 2,
          "data-label": label,
          "data-value": value,
          "data-series": each.name,
        });
        rect.append(node("title", {}, `${label} · ${each.name}: ${format(value)}`));
        svg.append(rect);
      }
      base += value;
    }
  });
  for (const each of lines) {
    let run = [];
    const flush = () => {
      if (run.length > 1) svg.append(node("polyline", { class: `line ${each.className}`, points: run.join(" ") }));
      run = [];
    };
    each.values.forEach((value, i) => {
      if (value === null || value === undefined) { flush(); return; }
      const [px, py] = [PAD.left + slot * (i + 0.5), y(value)];
      run.push(`${px},${py}`);
      const dot = node("circle", {
        class: `dot ${each.className}`, cx: px, cy: py, r: 3,
        "data-label": labels[i], "data-value": value, "data-series": each.name,
      });
      dot.append(node("title", {}, `${labels[i]} · ${each.name}: ${format(value)}`));
      svg.append(dot);
    });
    flush();
  }
  svg.append(node("line", { class: "baseline", x1: PAD.left, x2: WIDTH - PAD.right, y1: y(0), y2: y(0) }));
  figure.append(svg);
  return figure;
}
