// The operator's page (admin token): nodes and their state, traffic over time, top users, drain or add a node.

import { api, session } from "./api.js";
import { chart } from "./charts.js";
import { badge, card, h, micro, money, moneyAxis, number, perMillion, short, stat, table } from "./dom.js";

const RANGES = {
  "24h": { width: "USAGE_BUCKET_WIDTH_HOUR", count: 24, label: (d) => `${String(d.getUTCHours()).padStart(2, "0")}:00` },
  "30d": { width: "USAGE_BUCKET_WIDTH_DAY", count: 30, label: (d) => d.toISOString().slice(5, 10) },
};
let range = "24h";

export function adminLogin(main, rerender) {
  const form = h("form", { class: "auth", testid: "admin-login" },
    h("h1", {}, "Operator"),
    h("p", { class: "muted" }, "Paste the proxy's admin token (accounts.admin_token). It is kept in this tab only."),
    h("label", {}, "Admin token", h("input", { name: "token", type: "password", required: true, autocomplete: "off" })),
    h("button", { type: "submit", class: "primary" }, "Open operator view"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    session.setAdmin(form.elements.token.value.trim());
    rerender();
  });
  main.replaceChildren(form);
}

function circuit(state) {
  if (state === "CIRCUIT_STATE_CLOSED") return badge("closed", "good");
  if (state === "CIRCUIT_STATE_HALF_OPEN") return badge("half-open", "warn");
  if (state === "CIRCUIT_STATE_OPEN") return badge("open", "bad");
  return badge("unknown", "neutral");
}

function load(node) {
  const states = node.model_states || [];
  const running = states.reduce((a, s) => a + Number(s.running || 0), 0);
  const waiting = states.reduce((a, s) => a + Number(s.waiting || 0), 0);
  const kv = Math.max(0, ...states.map((s) => Number(s.kv_cache_usage || 0)));
  return h("span", { class: "load" }, `${node.in_flight} in flight`,
    h("span", { class: "dim" }, ` · ${short(running)} run · ${short(waiting)} wait · KV ${Math.round(kv * 100)}%`));
}

function latency(node) {
  const states = (node.model_states || []).filter((s) => s.ttft_seconds > 0);
  if (!states.length) return "—";
  const ttft = Math.min(...states.map((s) => s.ttft_seconds));
  const errors = Math.max(...(node.model_states || []).map((s) => s.error_rate || 0));
  return h("span", {}, `${Math.round(ttft * 1000)} ms`, h("span", { class: "dim" }, ` · ${(errors * 100).toFixed(1)}% err`));
}

// The balanced strategy's score (lower is better), best over the node's models; 0 means "not a candidate now".
function score(node) {
  const scores = (node.model_states || []).map((s) => Number(s.score || 0)).filter((v) => v > 0);
  if (!scores.length) return h("span", { class: "dim", title: "not a candidate: unhealthy, draining or ejected" }, "—");
  return h("span", { title: "expected seconds per request, weighted by load, errors and price; lower wins" },
    Math.min(...scores).toPrecision(2));
}

function addNodeForm(onDone) {
  const form = h("form", { class: "grid-form", testid: "add-node" },
    h("label", {}, "Node id", h("input", { name: "node_id", required: true, placeholder: "gpu-7" })),
    h("label", {}, "URL", h("input", { name: "url", required: true, placeholder: "http://10.0.0.7:8000" })),
    h("label", {}, "Models", h("input", { name: "models", required: true, placeholder: "comma separated" })),
    h("label", {}, "Input µUSD / 1M", h("input", { name: "input", type: "number", min: 0, value: 0 })),
    h("label", {}, "Output µUSD / 1M", h("input", { name: "output", type: "number", min: 0, value: 0 })),
    h("label", {}, "Node API key", h("input", { name: "api_key", type: "password", autocomplete: "off" })),
    h("button", { type: "submit", class: "primary" }, "Add node"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const f = form.elements;
    await api.addNode({
      node_id: f.node_id.value.trim(), url: f.url.value.trim(),
      models: f.models.value.split(",").map((m) => m.trim()).filter(Boolean),
      input_price_per_million: String(f.input.value || 0), output_price_per_million: String(f.output.value || 0),
      api_key: f.api_key.value,
    });
    await onDone();
  });
  return form;
}

export async function operator(main, notify) {
  const chosen = RANGES[range];
  const [listing, stats] = await Promise.all([api.nodes(), api.stats(chosen.width, chosen.count)]);
  const rerender = () => operator(main, notify);
  const drain = (node) => async () => {
    if (!window.confirm(`Drain ${node.node_id}? It finishes what it runs and takes no new request.`)) return;
    await api.drainNode(node.node_id);
    notify(`${node.node_id} is draining.`);
    await rerender();
  };
  const buckets = stats.buckets;
  const labels = buckets.map((b) => chosen.label(new Date(b.start_time)));
  const field = (name) => buckets.map((b) => micro(b[name]));
  const requests = field("requests");
  const errors = field("errors");
  const total = (values) => values.reduce((a, v) => a + v, 0);
  const okRequests = requests.map((r, i) => r - errors[i]);
  // Buckets without a successful request have no latency: a gap, not a zero.
  const latencyOf = (name) => buckets.map((b, i) => (micro(b.max_latency_ms) > 0 || okRequests[i] > 0 ? micro(b[name]) : null));
  const nodes = listing.nodes;
  const healthy = nodes.filter((n) => n.healthy && n.serving_state === "NODE_SERVING_STATE_ACTIVE").length;

  const switcher = h("div", { class: "segmented", role: "group", "aria-label": "Time range" },
    Object.keys(RANGES).map((key) => h("button", {
      type: "button", class: key === range ? "active" : "", "aria-pressed": key === range ? "true" : "false",
      onclick: async () => { range = key; await rerender(); },
    }, key === "24h" ? "Last 24 hours" : "Last 30 days")));

  main.replaceChildren(
    h("div", { class: "title-row" }, h("h1", {}, "Operator"), switcher),
    h("div", { class: "stats" },
      stat("Nodes serving", `${healthy} / ${nodes.length}`, "healthy and active", "nodes-serving"),
      stat("Requests", number(total(requests)), `${number(total(errors))} errors`),
      stat("Spend", money(total(field("cost_micro_usd"))), "charged to balances"),
      stat("Tokens", short(total(field("prompt_tokens")) + total(field("completion_tokens"))), "prompt + completion"),
    ),
    card("Nodes", table([
      { title: "Node", cell: (n) => h("div", {}, h("strong", {}, n.node_id), h("div", { class: "dim small" }, n.url)) },
      { title: "Health", cell: (n) => n.healthy ? badge("healthy", "good") : badge("unhealthy", "bad") },
      { title: "Serving", cell: (n) => n.serving_state === "NODE_SERVING_STATE_DRAINING" ? badge("draining", "warn") : badge("active", "good") },
      { title: "Breaker", cell: (n) => circuit(n.circuit_state) },
      { title: "Load", cell: load },
      { title: "TTFT · errors", cell: latency },
      { title: "Score", numeric: true, cell: score },
      { title: "Price in / out", numeric: true, cell: (n) => h("span", {}, perMillion(n.input_price_per_million), h("br"), perMillion(n.output_price_per_million)) },
      { title: "Models", cell: (n) => (n.models || []).map((m) => h("code", { class: "chip" }, m)) },
      { title: "", cell: (n) => n.serving_state === "NODE_SERVING_STATE_DRAINING" ? "" : h("button", { class: "small", onclick: drain(n) }, "Drain") },
    ], nodes, { testid: "nodes", empty: "No node is registered." })),
    h("div", { class: "grid2" },
      card("Traffic", chart({ labels, title: "requests per bucket", format: short, testId: "traffic-chart", integer: true,
        series: [{ name: "ok", values: okRequests, className: "s1" }, { name: "errors", values: errors, className: "s4" }] })),
      card("Latency", chart({ labels, title: "successful requests, ms", format: (v) => `${short(v)}`, testId: "latency-chart", integer: true,
        series: [{ name: "mean", values: latencyOf("mean_latency_ms"), kind: "line", className: "s2" },
          { name: "max", values: latencyOf("max_latency_ms"), kind: "line", className: "s3" }] })),
      card("Spend", chart({ labels, title: "USD charged", format: moneyAxis, testId: "admin-spend-chart",
        series: [{ name: "spend", values: field("cost_micro_usd"), className: "s1" }] })),
      card("Tokens", chart({ labels, title: "tokens", format: short, testId: "admin-tokens-chart", integer: true,
        series: [{ name: "prompt", values: field("prompt_tokens"), className: "s2" }, { name: "completion", values: field("completion_tokens"), className: "s3" }] })),
    ),
    h("div", { class: "grid2" },
      card("Top users by spend", table([
        { title: "User", cell: (u) => h("div", {}, u.email || "(no email)", h("div", { class: "dim small" }, `id ${u.user_id}`)) },
        { title: "Requests", numeric: true, cell: (u) => number(u.requests) },
        { title: "Tokens", numeric: true, cell: (u) => short(micro(u.prompt_tokens) + micro(u.completion_tokens)) },
        { title: "Spend", numeric: true, cell: (u) => money(u.cost_micro_usd) },
      ], stats.top_users, { testid: "top-users", empty: "No usage in this range." })),
      card("Add a node", h("p", { class: "muted" }, "The node is probed once before it is added; it joins the routing at once."),
        addNodeForm(async () => { notify("Node added."); await rerender(); })),
    ),
  );
}
