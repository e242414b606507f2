// End-to-end tests of the /ui dashboard in a real headless Chromium, driven by Playwright.
//
// Run by .ci/run after `cargo test`: it starts the already-built `target/debug/switchyard
// serve` itself (temporary SQLite file, a free loopback port), walks the operator's path
// (log in, find a failed webhook, read it, fix its mapping with the CLI, replay it, watch it
// finish, try a payload against the rules) and checks the guards (no session -> login, no
// CSRF token -> 403, a <script> in a payload stays text). Any console error, page error,
// failed request or HTTP error seen by the page fails the run. Screenshots of every page go
// to SCREENSHOT_DIR (default target/ui-screenshots).
"use strict";

const assert = require("node:assert/strict");
const { spawn, execFileSync } = require("node:child_process");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");

const root = path.resolve(__dirname, "..", "..");
const { chromium } = require(path.join(root, ".ci", "node", "node_modules", "playwright-core"));
const binary = path.join(root, "target", "debug", "switchyard");
const shots = process.env.SCREENSHOT_DIR || path.join(root, "target", "ui-screenshots");
const secret = "correct horse battery staple";
const work = fs.mkdtempSync(path.join(os.tmpdir(), "switchyard-ui-"));
const env = {
  ...process.env,
  APP_DB_PATH: path.join(work, "events.sqlite3"),
  APP_COMMANDS_PATH: path.join(work, "commands.json"),
  ADMIN_SECRET: secret,
  HOST: "127.0.0.1",
  PORT: "0",
  WORKER_MAX_ATTEMPTS: "1",
  STRIPE_WEBHOOK_SECRET: "whsec_dashboard_must_never_show_this",
  RUST_LOG: "warn,switchyard=info",
  LOG_FORMAT: "text",
};
delete env.DATABASE_URL;

const CHROMIUM_FLAGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];

function cli(...args) {
  return execFileSync(binary, args, { env, cwd: work, encoding: "utf8", timeout: 30000 });
}

function startServer() {
  const child = spawn(binary, ["serve"], { env, cwd: work, stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("server did not start:\n" + log)), 30000);
    const onData = (chunk) => {
      log += chunk;
      const m = /listening addr=(\S+)/.exec(log);
      if (m) {
        clearTimeout(timer);
        resolve({ child, base: "http://" + m[1], log: () => log });
      }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.on("exit", (code) => reject(new Error(`server exited (${code}):\n${log}`)));
  });
}

async function webhook(base, hint, body) {
  const res = await fetch(`${base}/webhook/${hint}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  assert.equal(res.status, 200);
  return (await res.json()).row_id;
}

// Collects everything the page reports going wrong.
function watch(page, problems) {
  page.on("console", (m) => { if (m.type() === "error") problems.push(`console: ${m.text()}`); });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("requestfailed", (r) => {
    // A poll cut short by navigating away is not a failure of the page.
    if (r.failure() && r.failure().errorText === "net::ERR_ABORTED" && r.resourceType() === "fetch") return;
    problems.push(`request failed: ${r.url()} ${r.failure() && r.failure().errorText}`);
  });
  page.on("response", (r) => { if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.url()}`); });
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(shots, `${name}.png`) });
}

async function guards(context, base, eventId) {
  // Without a session every page redirects to the login.
  for (const p of ["/ui", "/ui/events", `/ui/events/${eventId}`, "/ui/routing", "/ui/schedules"]) {
    const r = await context.request.get(base + p, { maxRedirects: 0 });
    assert.equal(r.status(), 303, `${p} without a session`);
    assert.match(r.headers()["location"], /^\/ui\/login\?next=/, `${p} redirects to the login`);
  }
  // A wrong secret is refused.
  const wrong = await context.request.post(base + "/ui/login", { form: { secret: "nope" }, maxRedirects: 0 });
  assert.equal(wrong.status(), 403, "login form without its token");
}

async function csrfGuards(context, base, eventId) {
  // Signed in, but a form posted without (or with a wrong) CSRF token is refused.
  for (const form of [{}, { _csrf: "0".repeat(64) }]) {
    const r = await context.request.post(`${base}/ui/events/${eventId}/replay`, { form, maxRedirects: 0 });
    assert.equal(r.status(), 403, `replay with form ${JSON.stringify(form)}`);
  }
  const t = await context.request.post(`${base}/ui/routing/try`, { form: { body: "{}" }, maxRedirects: 0 });
  assert.equal(t.status(), 403, "try it without a token");
}

async function run() {
  fs.mkdirSync(shots, { recursive: true });
  fs.writeFileSync(env.APP_COMMANDS_PATH, JSON.stringify({
    deploy: ["sh", "-c", "echo 'deploy failed: DEPLOY_TOKEN is not set' >&2; exit 3"],
  }));
  cli("mapping", "set", "--provider", "acme", "--action", "deploy", "--handler-mode", "command", "--handler-target", "deploy");
  cli("mapping", "rule-set", "--provider", "acme", "--name", "acme-ping", "--priority", "10",
    "--conditions-json", '{"op":"json_path_equals","path":"type","value":"ping"}', "--action", "pong");

  const server = await startServer();
  const { base } = server;
  // A fresh, empty profile directory (Playwright passes it as --user-data-dir).
  const context = await chromium.launchPersistentContext(fs.mkdtempSync(path.join(work, "profile-")), {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: CHROMIUM_FLAGS,
    viewport: { width: 1280, height: 860 },
  });
  const problems = [];
  try {
    const page = await context.newPage();
    watch(page, problems);
    await guards(context, base, 1);

    // Log in.
    await page.goto(base + "/ui/events");
    assert.match(page.url(), /\/ui\/login\?next=/);
    await shot(page, "login");
    await page.fill("input[name=secret]", secret);
    await Promise.all([page.waitForURL(/\/ui\/events$/), page.click("button[type=submit]")]);
    await csrfGuards(context, base, 1);

    // A webhook that fails appears in the table without a reload, and under the failures filter.
    await page.evaluate(() => { window.__stillHere = true; });
    const hostile = "<script>window.__pwned = true</script>";
    const id = await webhook(base, "acme", { type: "deploy", ref: "main", note: hostile });
    await page.locator(`#event-rows tr[data-id="${id}"] .badge.error`).waitFor({ timeout: 20000 });
    assert.equal(await page.evaluate(() => window.__stillHere), true, "the table refreshed in place");
    await page.selectOption("select[name=status]", "error");
    await Promise.all([page.waitForURL(/status=error/), page.click("form.filters button[type=submit]")]);
    await page.locator(`#event-rows tr[data-id="${id}"]`).waitFor();
    await shot(page, "events");

    // Open it: payload (the script as text), reasons, error.
    await Promise.all([page.waitForURL(new RegExp(`/ui/events/${id}$`)), page.click(`#event-rows a[href="/ui/events/${id}"]`)]);
    const payloadText = await page.locator("pre.json").first().textContent();
    assert.ok(payloadText.includes(hostile), "the payload shows the script tag as text");
    assert.equal(await page.evaluate(() => window.__pwned), undefined, "no script from the payload ran");
    assert.equal(await page.locator("pre.json script").count(), 0);
    const reasons = await page.locator("ul.reasons").first().textContent();
    assert.ok(reasons.includes("path:source_hint") && reasons.includes("mapping:acme"), reasons);
    assert.match(await page.locator("pre.error-text").first().textContent(), /DEPLOY_TOKEN is not set/);
    await shot(page, "event-failed");

    // Fix the mapping with the CLI, press replay, watch it finish without a reload.
    cli("mapping", "set", "--provider", "acme", "--action", "deploy", "--handler-mode", "noop");
    await page.evaluate(() => { window.__stillHere = true; });
    await page.click("#event-live form[action$='/replay'] button");
    await page.locator("#event-live .badge.done").first().waitFor({ timeout: 20000 });
    assert.equal(await page.evaluate(() => window.__stillHere), true, "replay finished without a reload");
    assert.equal(await page.locator("#event-live pre.error-text").count(), 0, "no error left once done");
    await shot(page, "event");

    // Try it: a pasted payload shows the rule that would match, and why.
    await page.goto(base + "/ui/routing");
    await page.fill("input[name=hint]", "acme");
    await page.fill("textarea[name=body]", '{"type": "ping"}');
    await Promise.all([page.waitForURL(/\/ui\/routing\/try/), page.click("#try button[type=submit]")]);
    assert.equal((await page.locator("#trial .match-rule").textContent()).trim(), "acme-ping");
    assert.match(await page.locator("#trial ul.reasons").textContent(), /json_path_equals:type/);
    const sources = await page.locator("table").filter({ hasText: "/webhook/stripe" }).count();
    assert.equal(sources, 1, "the stripe source is listed");
    assert.ok(!(await page.content()).includes("whsec_dashboard_must_never_show_this"), "no secret on the page");
    await shot(page, "routing");

    const sched = await page.goto(base + "/ui/schedules");
    assert.equal(sched.status(), 200, "/ui/schedules");
    await shot(page, "schedules");

  } finally {
    await context.close();
    server.child.kill("SIGTERM");
  }
  assert.deepEqual(problems, [], "the pages reported problems");
  fs.rmSync(work, { recursive: true, force: true });
  console.log(`dashboard browser tests passed; screenshots in ${shots}`);
}

run().catch((e) => {
  console.error(e);
  process.exit(1);
});
