// Drives the web console in Debian's headless chromium (playwright-core: it never downloads a browser).
// Started by tests/e2e/test_console_browser.py; talks to it by lines:
//   stdout "SECRET <key>"  after signing up, logging in and creating a key in the console;
//   stdin  "GO"            once the test has credited the user and made a request with the key;
//   stdout "RESULT <json>" what the pages showed, for the test to assert on.
// Environment: CONSOLE_URL, ADMIN_TOKEN, EMAIL, PASSWORD, SCREENSHOTS (a folder), CHROMIUM (the executable),
// EXTRA_NODE_ID, EXTRA_NODE_URL, EXTRA_NODE_MODEL (a node to add and drain in the operator view).

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const env = process.env;
const lines = createInterface({ input: process.stdin });
const nextLine = () => new Promise((resolve) => lines.once("line", resolve));
const shot = (page, name) => page.screenshot({ path: join(env.SCREENSHOTS, `${name}.png`), fullPage: true });

const profile = mkdtempSync(join(tmpdir(), "atoma-console-chromium-"));
// A new, empty profile (Playwright's way of passing --user-data-dir).
const context = await chromium.launchPersistentContext(profile, {
  executablePath: env.CHROMIUM,
  headless: true,
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
  ],
  viewport: { width: 1360, height: 900 },
  deviceScaleFactor: 1,
});
const result = { consoleErrors: [] };
try {
  const page = context.pages()[0] || (await context.newPage());
  page.setDefaultTimeout(20_000);
  page.on("console", (message) => { if (message.type() === "error") result.consoleErrors.push(message.text()); });
  page.on("pageerror", (error) => result.consoleErrors.push(String(error)));

  // / redirects to the console, which asks to log in; switch to sign-up.
  await page.goto(env.CONSOLE_URL);
  result.landingUrl = page.url();
  await page.getByTestId("switch-mode").click();
  await page.fill("input[name=email]", env.EMAIL);
  await page.fill("input[name=password]", env.PASSWORD);
  await shot(page, "01-sign-up");
  await page.click("form[data-testid=auth] button[type=submit]");
  await page.getByTestId("balance").waitFor();
  result.signedInAs = (await page.locator("#who .email").textContent()).trim();

  // Log out and in again: the login form alone must work.
  await page.getByTestId("logout").click();
  await page.fill("input[name=email]", env.EMAIL);
  await page.fill("input[name=password]", env.PASSWORD);
  await page.click("form[data-testid=auth] button[type=submit]");
  await page.getByTestId("balance").waitFor();

  // Create a key: its secret is shown once.
  await page.click("nav a[href='#/keys']");
  await page.fill("form[data-testid=create-key] input[name=name]", "browser test");
  await page.click("form[data-testid=create-key] button[type=submit]");
  const secret = (await page.getByTestId("key-secret").textContent()).trim();
  result.keyRows = await page.locator("[data-testid=keys] tbody tr").count();
  await shot(page, "02-api-key-created");
  process.stdout.write(`SECRET ${secret}\n`);
  if ((await nextLine()).trim() !== "GO") throw new Error("the test did not say GO");

  // The request made with the key shows on the charts and in the recent requests.
  await page.click("nav a[href='#/overview']");
  await page.locator("[data-testid=recent-requests] tbody tr td code").first().waitFor();
  result.balanceText = (await page.getByTestId("balance").locator(".stat-value").textContent()).trim();
  result.spendBars = await page.locator("[data-testid=spend-chart] rect.bar").evaluateAll(
    (bars) => bars.map((bar) => ({ label: bar.dataset.label, value: Number(bar.dataset.value) })));
  result.tokenBars = await page.locator("[data-testid=tokens-chart] rect.bar").evaluateAll(
    (bars) => bars.map((bar) => ({ series: bar.dataset.series, value: Number(bar.dataset.value) })));
  result.recentRequests = await page.locator("[data-testid=recent-requests] tbody tr").evaluateAll(
    (rows) => rows.map((row) => [...row.querySelectorAll("td")].map((cell) => cell.textContent.trim())));
  await shot(page, "03-overview");

  await page.click("nav a[href='#/models']");
  await page.locator("[data-testid=models] tbody tr").first().waitFor();
  result.models = await page.locator("[data-testid=models] tbody tr").evaluateAll(
    (rows) => rows.map((row) => [...row.querySelectorAll("td")].map((cell) => cell.textContent.trim())));
  result.modelColumns = await page.locator("[data-testid=models] thead th").allTextContents();
  await shot(page, "04-models");

  // Revoke the key (the console asks for confirmation first).
  await page.click("nav a[href='#/keys']");
  page.once("dialog", (dialog) => dialog.accept());
  await page.click("[data-testid=keys] button.danger");
  await page.locator("[data-testid=keys] .badge.bad").waitFor();
  result.keyStates = await page.locator("[data-testid=keys] tbody tr td:nth-child(3)").allTextContents();

  // The operator view, with the admin token pasted in.
  await page.click("nav a[href='#/operator']");
  await page.fill("form[data-testid=admin-login] input[name=token]", env.ADMIN_TOKEN);
  await page.click("form[data-testid=admin-login] button[type=submit]");
  await page.locator("[data-testid=nodes] tbody tr").first().waitFor();
  result.nodes = await page.locator("[data-testid=nodes] tbody tr").evaluateAll(
    (rows) => rows.map((row) => [...row.querySelectorAll("td")].map((cell) => cell.textContent.trim())));
  result.trafficBars = await page.locator("[data-testid=traffic-chart] rect.bar").evaluateAll(
    (bars) => bars.map((bar) => ({ series: bar.dataset.series, value: Number(bar.dataset.value) })));
  result.topUsers = await page.locator("[data-testid=top-users] tbody tr td:first-child").allTextContents();
  await shot(page, "05-operator");

  // Add a node through the form (the test removes it afterwards), then drain it.
  const form = page.locator("form[data-testid=add-node]");
  await form.locator("input[name=node_id]").fill(env.EXTRA_NODE_ID);
  await form.locator("input[name=url]").fill(env.EXTRA_NODE_URL);
  await form.locator("input[name=models]").fill(env.EXTRA_NODE_MODEL);
  await form.locator("input[name=input]").fill("1000");
  await form.locator("input[name=output]").fill("2000");
  await form.locator("button[type=submit]").click();
  const added = page.locator("[data-testid=nodes] tbody tr", { hasText: env.EXTRA_NODE_ID });
  await added.waitFor();
  result.addedNode = await added.locator("td").allTextContents();
  page.once("dialog", (dialog) => dialog.accept());
  await added.locator("button", { hasText: "Drain" }).click();
  await added.locator(".badge.warn").waitFor();
  result.drainedNode = await added.locator("td").allTextContents();
  await shot(page, "06-operator-node-drained");
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
  process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
  lines.close();
}
