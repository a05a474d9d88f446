// The user's pages: overview (balance, spend and tokens per day, recent requests), API keys, models.

import { api } from "./api.js";
import { chart } from "./charts.js";
import { badge, card, h, micro, money, moneyAxis, number, perMillion, short, stat, table, when } from "./dom.js";

const DAYS = 30;
// The secret of a key made in this tab, kept in memory only: /v1/models takes an API key.
let lastSecret = null;

function lastDays(days) {
  const out = [];
  const today = new Date();
  for (let i = days - 1; i >= 0; i -= 1) {
    const day = new Date(Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), today.getUTCDate() - i));
    out.push(day.toISOString().slice(0, 10));
  }
  return out;
}

export async function overview(main) {
  const days = lastDays(DAYS);
  const [balance, summary, usage] = await Promise.all([api.balance(), api.summary(days[0]), api.usage(20)]);
  const b = balance.balance;
  const byDay = new Map(summary.days.map((d) => [d.date, d]));
  const pick = (field) => days.map((d) => micro(byDay.get(d)?.[field]));
  const spend = pick("cost_micro_usd");
  const prompt = pick("prompt_tokens");
  const completion = pick("completion_tokens");
  const requests = pick("requests").reduce((a, v) => a + v, 0);
  const labels = days.map((d) => d.slice(5));
  const totalSpend = spend.reduce((a, v) => a + v, 0);
  const totalTokens = prompt.reduce((a, v) => a + v, 0) + completion.reduce((a, v) => a + v, 0);

  main.replaceChildren(
    h("h1", {}, "Overview"),
    h("div", { class: "stats" },
      stat("Available balance", money(b.available_micro_usd), `${money(b.reserved_micro_usd)} reserved`, "balance"),
      stat(`Spend, ${DAYS} days`, money(totalSpend), `${money(b.debited_micro_usd)} all time`),
      stat(`Requests, ${DAYS} days`, number(requests), "billable requests"),
      stat(`Tokens, ${DAYS} days`, short(totalTokens), "prompt + completion"),
    ),
    h("div", { class: "grid2" },
      card("Spend per day", chart({ labels, title: "USD, UTC days", format: moneyAxis, testId: "spend-chart",
        series: [{ name: "spend", values: spend, className: "s1" }] })),
      card("Tokens per day", chart({ labels, title: "tokens, UTC days", format: short, testId: "tokens-chart", integer: true,
        series: [{ name: "prompt", values: prompt, className: "s2" }, { name: "completion", values: completion, className: "s3" }] })),
    ),
    card("Recent requests", table([
      { title: "Time", cell: (r) => when(r.create_time) },
      { title: "Model", cell: (r) => h("code", {}, r.model) },
      { title: "Node", cell: (r) => r.node_id ? badge(r.node_id, "neutral") : "—" },
      { title: "Prompt", numeric: true, cell: (r) => number(r.prompt_tokens) },
      { title: "Completion", numeric: true, cell: (r) => number(r.completion_tokens) },
      { title: "Cost", numeric: true, cell: (r) => money(r.cost_micro_usd) },
      { title: "Request id", cell: (r) => h("code", { class: "dim" }, r.request_id) },
    ], usage.records, { testid: "recent-requests", empty: "No request yet: create a key and call the API." })),
  );
}

export async function keys(main) {
  const listing = await api.keys();
  const form = h("form", { class: "inline", testid: "create-key" },
    h("input", { name: "name", placeholder: "Key name, e.g. laptop", required: true, maxlength: 200, "aria-label": "Key name" }),
    h("button", { type: "submit", class: "primary" }, "Create key"));
  const reveal = h("div", { testid: "new-key" });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = form.elements.name.value.trim();
    const created = await api.createKey(name);
    lastSecret = created.secret;
    await keys(main);
    const secret = h("code", { class: "secret", testid: "key-secret" }, created.secret);
    const copy = h("button", { type: "button", onclick: () => navigator.clipboard?.writeText(created.secret) }, "Copy");
    main.querySelector("[data-testid=new-key]").replaceChildren(h("div", { class: "callout" },
      h("strong", {}, `Key “${created.api_key.name}” created.`),
      h("p", {}, "Copy it now: it is shown only once, and only its hash is stored."),
      h("div", { class: "secret-row" }, secret, copy)));
  });
  const revoke = (key) => async () => {
    if (!window.confirm(`Revoke the key “${key.name}”? Requests made with it will be refused.`)) return;
    await api.revokeKey(key.id);
    await keys(main);
  };
  main.replaceChildren(
    h("h1", {}, "API keys"),
    card("Create a key", h("p", { class: "muted" }, "Keys call the OpenAI-compatible API (base URL ",
      h("code", {}, `${window.location.origin}/v1`), "). Signing in is needed to create or revoke them."), form, reveal),
    card("Your keys", table([
      { title: "Name", cell: (k) => k.name },
      { title: "Prefix", cell: (k) => h("code", {}, `${k.prefix}…`) },
      { title: "State", cell: (k) => k.state === "API_KEY_STATE_ACTIVE" ? badge("active", "good") : badge("revoked", "bad") },
      { title: "Created", cell: (k) => when(k.create_time) },
      { title: "Last used", cell: (k) => when(k.last_use_time) },
      { title: "", cell: (k) => k.state === "API_KEY_STATE_ACTIVE" ? h("button", { class: "danger small", onclick: revoke(k) }, "Revoke") : "" },
    ], listing.api_keys, { testid: "keys", empty: "No key yet." })),
  );
}

function priceRange(range) {
  if (!range) return "—";
  const [low, high] = [micro(range.min_micro_usd), micro(range.max_micro_usd)];
  return low === high ? perMillion(low) : `${money(low)} – ${perMillion(high)}`;
}

function imagePrice(range) {
  const [low, high] = [micro(range.min_micro_usd), micro(range.max_micro_usd)];
  return low === high ? money(low) : `${money(low)} – ${money(high)}`;
}

export async function models(main) {
  main.replaceChildren(h("h1", {}, "Models"));
  let listing;
  try {
    listing = await (lastSecret ? modelsWithKey(lastSecret) : api.models());
  } catch (error) {
    main.append(card("Models", h("p", { class: "muted" },
      "Listing models takes an API key: create one on the API keys page, then come back here.")));
    return;
  }
  // Kind, nodes and prices are shown when the proxy reports them (older proxies list bare OpenAI model objects).
  const has = (field) => listing.data.some((m) => m[field] !== undefined && m[field] !== null);
  const images = listing.data.some((m) => micro(m.price_range?.per_image?.max_micro_usd) > 0);
  const columns = [
    { title: "Model", cell: (m) => h("code", {}, m.id) },
    has("kind") && { title: "Kind", cell: (m) => m.kind || "—" },
    has("context_length") && { title: "Context", numeric: true, cell: (m) => m.context_length ? number(m.context_length) : "—" },
    has("nodes") && { title: "Nodes", cell: (m) => (m.nodes || []).length ? m.nodes.map((n) => badge(n, "neutral")) : "—" },
    has("price_range") && { title: "Input", numeric: true, cell: (m) => priceRange(m.price_range?.input_per_million) },
    has("price_range") && { title: "Output", numeric: true, cell: (m) => priceRange(m.price_range?.output_per_million) },
    images && { title: "Per image", numeric: true, cell: (m) => micro(m.price_range?.per_image?.max_micro_usd) > 0 ? imagePrice(m.price_range.per_image) : "—" },
  ].filter(Boolean);
  main.append(card("Models served by the network",
    table(columns, listing.data, { testid: "models", empty: "No model is served right now." }),
    h("p", { class: "muted" }, has("price_range")
      ? "Prices are in USD per million tokens (images: per image), lowest to highest over the nodes serving each model; a request pays the price of the node that serves it."
      : "A request pays the price of the node that serves it (see the recent requests for what each one cost).")));
}

async function modelsWithKey(secret) {
  const response = await fetch("/v1/models", { headers: { authorization: `Bearer ${secret}` } });
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  return response.json();
}
