// DOM building without innerHTML (every text is set as text) and number formatting.

export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "class") element.className = value;
    else if (name === "testid") element.dataset.testid = value;
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

const usd = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD", minimumFractionDigits: 2, maximumFractionDigits: 6 });
const usdShort = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD", maximumSignificantDigits: 3 });
const count = new Intl.NumberFormat("en-US");
const compact = new Intl.NumberFormat("en-US", { notation: "compact", maximumFractionDigits: 1 });

// Money travels as integer micro-USD (proto JSON prints int64 as strings).
export const micro = (value) => Number(value || 0);
export const money = (microUsd) => usd.format(micro(microUsd) / 1e6);
// Axis ticks: under a cent at the top of the axis, in micro-USD (µ$), else in dollars.
export const moneyAxis = (microUsd, top = microUsd) =>
  top < 10_000 ? `${compact.format(micro(microUsd))} µ$` : usdShort.format(micro(microUsd) / 1e6);
export const number = (value) => count.format(Number(value || 0));
export const short = (value) => compact.format(Number(value || 0));
export const perMillion = (microUsd) => `${usd.format(micro(microUsd) / 1e6)} / 1M`;

export function when(text) {
  if (!text) return "—";
  const date = new Date(text);
  return date.toLocaleString("en-GB", { dateStyle: "medium", timeStyle: "short", timeZone: "UTC" }) + " UTC";
}

export function table(columns, rows, { testid, empty = "Nothing yet." } = {}) {
  const head = h("tr", {}, columns.map((c) => h("th", { class: c.numeric ? "num" : "" }, c.title)));
  const body = rows.length
    ? rows.map((row) => h("tr", {}, columns.map((c) => h("td", { class: c.numeric ? "num" : "" }, c.cell(row)))))
    : [h("tr", {}, h("td", { class: "empty", colspan: columns.length }, empty))];
  return h("div", { class: "table-wrap" }, h("table", { testid }, h("thead", {}, head), h("tbody", {}, body)));
}

export function card(title, ...children) {
  return h("section", { class: "card" }, h("h2", {}, title), ...children);
}

export function stat(label, value, note, testid) {
  return h("div", { class: "stat", testid }, h("div", { class: "stat-label" }, label), h("div", { class: "stat-value" }, value), note ? h("div", { class: "stat-note" }, note) : null);
}

export function badge(text, tone) {
  return h("span", { class: `badge ${tone}` }, text);
}
