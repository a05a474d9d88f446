// The facade's REST routes, called with the user's access token or the operator's admin token.
// Tokens live in sessionStorage only: closing the tab signs out.

const store = window.sessionStorage;

export const session = {
  get access() { return store.getItem("atoma.access"); },
  get refresh() { return store.getItem("atoma.refresh"); },
  get email() { return store.getItem("atoma.email"); },
  get admin() { return store.getItem("atoma.admin"); },
  signIn(email, grant) {
    store.setItem("atoma.email", email);
    store.setItem("atoma.access", grant.access_token);
    store.setItem("atoma.refresh", grant.refresh_token);
  },
  signOut() { ["atoma.email", "atoma.access", "atoma.refresh"].forEach((k) => store.removeItem(k)); },
  setAdmin(token) { token ? store.setItem("atoma.admin", token) : store.removeItem("atoma.admin"); },
};

export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.code || "";
  }
}

async function send(method, path, { token, body, query } = {}) {
  const url = new URL(path, window.location.origin);
  for (const [name, value] of Object.entries(query || {})) url.searchParams.set(name, value);
  const headers = { accept: "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  let parsed = null;
  try { parsed = text ? JSON.parse(text) : null; } catch { parsed = null; }
  if (!response.ok) throw new ApiError(response.status, parsed);
  return parsed;
}

// One refresh at a time: a refresh token works once (a second use is taken for theft and ends the session),
// so calls that meet an expired access token together share one refresh.
let refreshing = null;
function refreshOnce(expired) {
  if (session.access !== expired) return Promise.resolve(); // another call refreshed it already
  if (!refreshing) {
    refreshing = send("POST", "/v1/auth/refresh", { body: { refresh_token: session.refresh } })
      .then((grant) => session.signIn(session.email, grant))
      .finally(() => { refreshing = null; });
  }
  return refreshing;
}

// A user's call: on 401 the refresh token buys a new access token once, then the call is retried.
async function asUser(method, path, options = {}) {
  const token = session.access;
  try {
    return await send(method, path, { ...options, token });
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 401 || !session.refresh) throw error;
    await refreshOnce(token);
    return send(method, path, { ...options, token: session.access });
  }
}

const asAdmin = (method, path, options = {}) => send(method, path, { ...options, token: session.admin });

export const api = {
  register: (email, password) => send("POST", "/v1/auth/register", { body: { email, password } }),
  login: (email, password) => send("POST", "/v1/auth/login", { body: { email, password } }),
  logout: (refresh) => send("POST", "/v1/auth/logout", { body: { refresh_token: refresh } }),
  profile: () => asUser("GET", "/v1/account"),
  balance: () => asUser("GET", "/v1/balance"),
  keys: () => asUser("GET", "/v1/api-keys"),
  createKey: (name) => asUser("POST", "/v1/api-keys", { body: { name } }),
  revokeKey: (id) => asUser("DELETE", `/v1/api-keys/${encodeURIComponent(id)}`),
  usage: (pageSize) => asUser("GET", "/v1/usage", { query: { page_size: String(pageSize) } }),
  summary: (startDate) => asUser("GET", "/v1/usage/summary", { query: { start_date: startDate } }),
  models: () => send("GET", "/v1/models", { token: session.access }),
  nodes: () => asAdmin("GET", "/v1/admin/nodes"),
  addNode: (node) => asAdmin("POST", "/v1/admin/nodes", { body: node }),
  drainNode: (id) => asAdmin("POST", `/v1/admin/nodes/${encodeURIComponent(id)}:drain`, { body: {} }),
  stats: (width, count) =>
    asAdmin("GET", "/v1/admin/usage/stats", { query: { bucket_width: width, bucket_count: String(count) } }),
};
