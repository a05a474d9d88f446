// The console's shell: sign-in and sign-up, navigation by URL hash, errors shown as toasts.

import { api, ApiError, session } from "./api.js";
import { h } from "./dom.js";
import { adminLogin, operator } from "./operator.js";
import { keys, models, overview } from "./user.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const who = document.getElementById("who");
const toast = document.getElementById("toast");

const USER_PAGES = { overview: ["Overview", overview], keys: ["API keys", keys], models: ["Models", models] };

let toastTimer;
function notify(message, tone = "info") {
  toast.textContent = message;
  toast.className = `toast ${tone}`;
  toast.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { toast.hidden = true; }, 6000);
}

function authForm() {
  let mode = "login";
  const error = h("p", { class: "error", role: "alert" });
  const submit = h("button", { type: "submit", class: "primary" }, "Log in");
  const switcher = h("button", { type: "button", class: "link", testid: "switch-mode" }, "No account? Sign up");
  const heading = h("h1", {}, "Log in");
  const form = h("form", { class: "auth", testid: "auth" },
    heading,
    h("p", { class: "muted" }, "Use the console to manage API keys, follow spend and usage, and browse models."),
    h("label", {}, "Email", h("input", { name: "email", type: "email", required: true, autocomplete: "username" })),
    h("label", {}, "Password", h("input", { name: "password", type: "password", required: true, minlength: 8, autocomplete: "current-password" })),
    error, submit, switcher);
  switcher.addEventListener("click", () => {
    mode = mode === "login" ? "signup" : "login";
    heading.textContent = mode === "login" ? "Log in" : "Create an account";
    submit.textContent = mode === "login" ? "Log in" : "Sign up";
    switcher.textContent = mode === "login" ? "No account? Sign up" : "Have an account? Log in";
    error.textContent = "";
    form.elements.password.autocomplete = mode === "login" ? "current-password" : "new-password";
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const email = form.elements.email.value.trim();
    const password = form.elements.password.value;
    error.textContent = "";
    try {
      if (mode === "signup") await api.register(email, password);
      session.signIn(email, await api.login(email, password));
      window.location.hash = "#/overview";
      await render();
    } catch (failure) {
      error.textContent = failure.message;
    }
  });
  return form;
}

function navigation(current) {
  const link = (hash, label) => h("a", { href: `#/${hash}`, class: hash === current ? "active" : "" }, label);
  const links = session.access ? Object.entries(USER_PAGES).map(([hash, [label]]) => link(hash, label)) : [];
  nav.replaceChildren(...links, link("operator", "Operator"));
  const out = [];
  if (session.access) {
    out.push(h("span", { class: "email" }, session.email),
      h("button", { class: "small", testid: "logout", onclick: logout }, "Log out"));
  } else if (current === "operator") { // elsewhere the sign-in form is the page
    out.push(h("a", { href: "#/login", class: "button small" }, "Log in"));
  }
  if (session.admin && current === "operator") {
    out.push(h("button", { class: "small", onclick: () => { session.setAdmin(null); render(); } }, "Forget admin token"));
  }
  who.replaceChildren(...out);
}

async function logout() {
  const refresh = session.refresh;
  session.signOut();
  if (refresh) await api.logout(refresh).catch(() => {});
  window.location.hash = "#/login";
  await render();
}

async function render() {
  const page = (window.location.hash.replace(/^#\/?/, "") || "overview").split("?")[0];
  navigation(page);
  main.setAttribute("aria-busy", "true");
  try {
    if (page === "operator") {
      if (!session.admin) adminLogin(main, render);
      else await operator(main, notify);
    } else if (!session.access || page === "login") {
      if (session.access) { window.location.hash = "#/overview"; return; }
      main.replaceChildren(authForm());
    } else {
      const [, view] = USER_PAGES[page] || USER_PAGES.overview;
      await view(main, notify);
    }
  } catch (error) {
    if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
      if (page === "operator") {
        session.setAdmin(null);
        notify(`The admin token was refused: ${error.message}`, "bad");
      } else {
        session.signOut();
        notify("Your session ended: log in again.", "bad");
      }
      await render();
      return;
    }
    notify(error.message || String(error), "bad");
  } finally {
    main.removeAttribute("aria-busy");
  }
}

window.addEventListener("hashchange", render);
// Errors of form actions (create key, revoke, drain, add node) surface as toasts too.
window.addEventListener("unhandledrejection", (event) => notify(event.reason?.message || String(event.reason), "bad"));
render();
