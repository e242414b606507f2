// End-to-end tests of the /ui dashboard in a real headless Chromium, driven by Playwright.
//
// Run by .ci/run after `cargo test`: it starts the already-built `target/debug/switchyard
// serve` itself (temporary SQLite file, a free loopback port), walks the operator's path
// (log in, find a failed webhook, read it, fix its mapping with the CLI, replay it, watch it
// finish, force a replay, try a payload against the rules, read the Overview's chart, filter
// and page the events, see a schedule's next runs and last tick, see an event wait for its
// flow slot and be superseded, cancel a queued event) and
// checks the guards (no session -> login, no CSRF token -> 403, a <script> in a payload stays
// text). Any console error, page error,
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
  CLAUDE_CLI: path.join(work, "fake-claude"),
  LLM_DAILY_BUDGET_USD: "5",
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

function startServer(role = "serve") {
  const child = spawn(binary, [role], { env, cwd: work, stdio: ["ignore", "pipe", "pipe"] });
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
  for (const p of ["/ui", "/ui/overview", "/ui/events", `/ui/events/${eventId}`, "/ui/routing", "/ui/schedules"]) {
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
  const c = await context.request.post(`${base}/ui/events/${eventId}/cancel`, { form: {}, maxRedirects: 0 });
  assert.equal(c.status(), 403, "cancel without a token");
  const t = await context.request.post(`${base}/ui/routing/try`, { form: { body: "{}" }, maxRedirects: 0 });
  assert.equal(t.status(), 403, "try it without a token");
}

// Signs in on the login page the browser was sent to (a no-op when already signed in).
async function signIn(page) {
  if (!/\/ui\/login/.test(page.url())) return;
  await page.fill("input[name=secret]", secret);
  await Promise.all([page.waitForURL((u) => !u.pathname.startsWith("/ui/login")), page.click("button[type=submit]")]);
}

// Force replay of a done event: its action runs again and it ends done, without a reload.
async function forceReplay(page, base, id) {
  await page.goto(`${base}/ui/events/${id}`);
  await page.locator("#event-live .badge.done").first().waitFor();
  const runsBefore = await page.locator("#event-live div.run").count();
  await page.evaluate(() => { window.__stillHere = true; });
  await page.click("#event-live form.force button");
  await page.locator(".flash.ok", { hasText: "will run again" }).waitFor({ timeout: 20000 });
  await page.locator("#event-live .badge.done").first().waitFor({ timeout: 20000 });
  assert.equal(await page.evaluate(() => window.__stillHere), true, "force replay without a reload");
  assert.ok(runsBefore >= 1, "the event had run before");
  await shot(page, "event-forced");
}

// The schedules page lists the real schedules with their next runs and the last tick.
async function schedules(page, base) {
  const res = await page.goto(base + "/ui/schedules");
  assert.equal(res.status(), 200, "/ui/schedules");
  const heartbeat = page.locator("tr", { hasText: "heartbeat" });
  assert.equal(await heartbeat.locator("td").nth(5).locator("div").count(), 3, "three next runs");
  // The heartbeat ticks every two seconds: its last tick appears after a reload or two.
  for (let i = 0; i < 20 && !(await heartbeat.locator("td").nth(6).textContent()).trim(); i++) {
    await page.waitForTimeout(500);
    await page.reload();
  }
  assert.match(await heartbeat.locator("td").nth(6).textContent(), /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/);
  const daily = page.locator("tr", { hasText: "daily-digest" });
  assert.match(await daily.locator("td").nth(5).textContent(), /09:00:00\+0[12]:00/, "next runs in Paris time");
  await shot(page, "schedules");
}

// The Overview: counts, the chart (an accessible SVG with a line per series), the failures.
async function overview(page, base, failedId) {
  await page.goto(base + "/ui");
  assert.match(page.url(), /\/ui\/overview$/);
  assert.equal(await page.locator("header nav a").first().textContent(), "Overview");
  assert.match(await page.locator("svg.chart title").textContent(), /per minute/);
  assert.equal(await page.locator("svg.chart polyline").count(), 3);
  assert.match(await page.locator(".legend").textContent(), /received \([1-9]\d*\)/);
  const done = await page.locator(".stats .card.done .stat").textContent();
  assert.ok(Number(done) >= 1, `done count ${done}`);
  assert.ok((await page.locator("svg.chart text").count()) >= 8, "axis labels");
  await shot(page, "overview");
  // The failed webhook was replayed to done: no longer a failure; a fresh failure is listed.
  assert.equal(await page.locator(`#event-rows tr[data-id="${failedId}"]`).count(), 0);
}

// Every filter of the API narrows the table; 60 events page by cursor with no row twice.
async function filtersAndPaging(page, base) {
  const ids = [];
  for (let i = 0; i < 60; i++) ids.push(await webhook(base, "pager", { n: i, tag: `page-${i}` }));
  await page.goto(base + "/ui/events?provider=pager");
  await page.locator(`#event-rows tr[data-id="${ids[59]}"]`).waitFor({ timeout: 20000 });
  const seen = await page.locator("#event-rows tr[data-id]").evaluateAll((rows) => rows.map((r) => r.dataset.id));
  assert.equal(seen.length, 50, "a page holds 50 rows");
  await shot(page, "events-filtered");
  await Promise.all([page.waitForURL(/cursor=/), page.click(".pager a.next")]);
  assert.match(page.url(), /provider=pager/, "the next page keeps the filter");
  const rest = await page.locator("#event-rows tr[data-id]").evaluateAll((rows) => rows.map((r) => r.dataset.id));
  assert.equal(rest.length, 10, "the second page holds the last 10");
  assert.deepEqual([...seen, ...rest].map(Number).sort((a, b) => a - b), ids.slice().sort((a, b) => a - b));
  assert.equal(await page.locator(".pager a.next").count(), 0, "no page after the last");
  await shot(page, "events-page-2");

  // Free text, source, time range and a status narrow as GET /events does. Wait for the
  // worker to finish the 60 (statuses settle), and fix "until" (the heartbeat goes on).
  const api = async (query) => {
    const r = await fetch(`${base}/events?limit=500&${query}`, { headers: { "x-admin-secret": secret } });
    assert.equal(r.status, 200, query);
    return (await r.json()).events;
  };
  for (let i = 0; i < 40 && (await api("provider=pager&status=error")).length
    + (await api("provider=pager&status=done")).length < 60; i++) await page.waitForTimeout(500);
  const now = encodeURIComponent(new Date().toISOString());
  const hourAgo = encodeURIComponent(new Date(Date.now() - 3600e3).toISOString());
  const first = (await api(`provider=pager&until=${now}`)).find((e) => e.id === ids[0]);
  const text = first.event_id.slice(2, 10);
  const count = async (query) => {
    await page.goto(`${base}/ui/events?${query}`);
    return page.locator("#event-rows tr[data-id]").count();
  };
  for (const q of [`source=cron&until=${now}`, `source=webhook&provider=pager&until=${now}`,
    `status=error&provider=pager&until=${now}`, `since=${hourAgo}&until=${now}&provider=pager`,
    `q=${encodeURIComponent(text)}&until=${now}`, "until=2000-01-01T00:00:00Z", "status=cancelled"]) {
    assert.equal(await count(q), Math.min(50, (await api(q)).length), q);
  }
  assert.ok((await count(`q=${encodeURIComponent(text)}`)) >= 1, "free text finds the event id");
  assert.ok((await count(`source=cron&until=${now}`)) >= 1, "the heartbeat's ticks are cron events");
  await page.goto(`${base}/ui/events?status=bogus`);
  assert.match(await page.locator(".flash.error").textContent(), /status must be one of/);
}

// A queued event's Cancel button: the event becomes cancelled without a reload.
async function cancelQueued(page, base) {
  const id = await webhook(base, "acme", { type: "deploy", ref: "later" });
  await page.goto(`${base}/ui/events/${id}`);
  await signIn(page);
  await page.locator("#event-live .badge.pending").first().waitFor();
  await page.evaluate(() => { window.__stillHere = true; });
  await page.click("#event-live form.cancel button");
  await page.locator("#event-live .badge.cancelled").first().waitFor({ timeout: 20000 });
  assert.equal(await page.evaluate(() => window.__stillHere), true, "cancelled without a reload");
  assert.match(await page.locator(".flash.ok").textContent(), /Cancelled/);
  assert.equal(await page.locator("#event-live form.cancel").count(), 0, "no cancel once cancelled");
  await shot(page, "event-cancelled");
  await page.goto(`${base}/ui/events?status=cancelled`);
  await page.locator(`#event-rows tr[data-id="${id}"]`).waitFor();
}

// Issue 31: the attempt history survives the replay, the chart's y axis has whole, evenly
// spaced ticks and its title clears the top gridline, a zero "error" count is not red,
// Filter and Clear line up, and the events table has an event-id column.
async function newcomerChecks(page, base, failedId) {
  await page.goto(`${base}/ui/events/${failedId}`);
  const attempts = page.locator("#event-live table.attempts tbody tr");
  assert.ok((await attempts.count()) >= 2, "the failed attempt and its replay are both listed");
  assert.match(await attempts.first().locator(".badge").textContent(), /^error$/, "oldest first: the failure");
  assert.match(await attempts.first().locator("pre.error-text").textContent(), /DEPLOY_TOKEN is not set/);
  assert.match(await attempts.last().locator(".badge").textContent(), /^done$/, "the replay that succeeded");
  assert.match(await attempts.first().locator("td").nth(3).textContent(), /^\d+ ms$/, "a duration");
  await shot(page, "event-attempts");

  await page.goto(base + "/ui");
  const ticks = (await page.locator('svg.chart text.axis.y').allTextContents()).map((t) => t.trim());
  assert.ok(ticks.length >= 2, `y ticks ${ticks}`);
  for (const t of ticks) assert.match(t, /^\d+$/, `integer y tick ${t}`);
  const values = ticks.map(Number).sort((a, b) => a - b);
  const steps = new Set(values.slice(1).map((v, i) => v - values[i]));
  assert.equal(steps.size, 1, `evenly spaced y ticks ${values}`);
  const clear = await page.evaluate(() => {
    const title = document.querySelector("svg.chart text.title").getBBox();
    const lines = [...document.querySelectorAll("svg.chart line.grid")].map((l) => l.y1.baseVal.value);
    return title.y + title.height <= Math.min(...lines);
  });
  assert.ok(clear, "the chart's title sits above the top gridline");
  const errorCard = page.locator(".stats .card.error");
  if (Number(await errorCard.locator(".stat").textContent()) === 0) {
    const colour = await errorCard.locator(".stat").evaluate((el) => getComputedStyle(el).color);
    const errColour = await page.evaluate(() => getComputedStyle(document.documentElement).getPropertyValue("--err").trim());
    assert.ok(await errorCard.evaluate((el) => el.classList.contains("zero")), "a zero count is marked");
    assert.notEqual(colour, errColour, "error 0 is not red");
  }

  await page.goto(base + "/ui/events");
  const button = await page.locator("form.filters button[type=submit]").boundingBox();
  const clearLink = await page.locator("form.filters a.button").boundingBox();
  assert.ok(Math.abs(button.y - clearLink.y) <= 1 && Math.abs(button.height - clearLink.height) <= 1,
    `Filter ${JSON.stringify(button)} and Clear ${JSON.stringify(clearLink)} line up`);
  assert.ok((await page.locator("table.events thead th").allTextContents()).includes("Event id"));
  const r = await fetch(`${base}/events/${failedId}`, { headers: { "x-admin-secret": secret } });
  const eventId = (await r.json()).event.event_id;
  assert.equal(await page.locator(`#event-rows tr[data-id="${failedId}"] td.event-id`).textContent(), eventId);
}

// Fan-out (issue 27): an event whose rules pick two actions, one failing (a command target
// that does not exist) and one done, shows each action's state on its page and in the
// list; "try it" lists both actions for a sample payload; the rules table shows `continue`.
async function fanOut(page, base) {
  cli("mapping", "rule-set", "--provider", "fanout", "--name", "fan-notify", "--priority", "10", "--continue",
    "--conditions-json", '{"op":"json_path_exists","path":"order"}', "--action", "notify");
  cli("mapping", "rule-set", "--provider", "fanout", "--name", "fan-ship", "--priority", "20",
    "--conditions-json", '{"op":"json_path_exists","path":"order"}', "--action", "ship",
    "--handler-mode", "command", "--handler-target", "no-such-command");
  const id = await webhook(base, "fanout", { order: { id: 7 } });
  await page.goto(`${base}/ui/events/${id}`);
  await signIn(page);
  // WORKER_MAX_ATTEMPTS=1: the failed action ends the event in error after one attempt.
  await page.locator("#event-live .badge.error").first().waitFor({ timeout: 20000 });
  const actions = page.locator("#event-live ul.fan-out li.fan-action");
  assert.deepEqual(await actions.evaluateAll((li) => li.map((l) => [l.dataset.action, l.dataset.state])),
    [["notify", "done"], ["ship", "error"]], "each action's own state, in priority order");
  assert.match(await page.locator("#event-live li.fan-action[data-action=ship]").textContent(), /no-such-command/);
  assert.equal(await page.locator("#event-live div.run").count(), 2, "one run per action");
  await shot(page, "event-fan-out");

  await page.goto(`${base}/ui/events?provider=fanout`);
  const row = page.locator(`#event-rows tr[data-id="${id}"]`);
  const states = await row.locator(".fan-action").evaluateAll((s) => s.map((e) => [e.dataset.action, e.dataset.state]));
  assert.deepEqual(states.sort(), [["notify", "done"], ["ship", "error"]], "the list shows each action's state");

  await page.goto(base + "/ui/routing");
  await page.fill("input[name=hint]", "fanout");
  await page.fill("textarea[name=body]", '{"order": {"id": 8}}');
  await Promise.all([page.waitForURL(/\/ui\/routing\/try/), page.click("#try button[type=submit]")]);
  const listed = await page.locator("#trial ol.actions li.action").allTextContents();
  assert.deepEqual(listed.map((t) => t.trim().split(" ")[0]), ["notify", "ship"], "try it lists both actions");
  const notifyRule = page.locator("table tr", { hasText: "fan-notify" }).last();
  assert.equal((await notifyRule.locator("td.continue").textContent()).trim(), "yes");
  await shot(page, "routing-fan-out");
}

// An agent run's timeline and the Spend page (issue 29). A fake Claude CLI prints the
// stream-json lines of a run whose text and tool input are hostile markup.
async function agentTimelineAndSpend(page, base) {
  const lines = [
    { type: "system", subtype: "init", model: "claude-test", tools: ["Read"], session_id: "s-ui" },
    { type: "assistant", message: { content: [
      { type: "text", text: "<script>window.__pwned = 1</script>Let me read it." },
      { type: "tool_use", id: "t1", name: "Read", input: { file_path: "<img src=x onerror=window.__pwned=2>" } },
    ] } },
    { type: "user", message: { content: [{ type: "tool_result", tool_use_id: "t1", content: "file body", is_error: false }] } },
    { type: "assistant", message: { content: [{ type: "text", text: '{"ok": true}' }] } },
    { type: "result", subtype: "success", is_error: false, result: '{"ok": true}', total_cost_usd: 0.0123,
      num_turns: 2, session_id: "s-ui", usage: { input_tokens: 100, output_tokens: 20 },
      modelUsage: { "claude-test": { inputTokens: 100, outputTokens: 20, costUSD: 0.0123 } }, permission_denials: [] },
  ];
  const script = "#!/bin/sh\ncat >/dev/null\ncat <<'EOF'\n" + lines.map((l) => JSON.stringify(l)).join("\n") + "\nEOF\n";
  fs.writeFileSync(env.CLAUDE_CLI, script, { mode: 0o755 });
  fs.mkdirSync(path.join(work, "agents"), { recursive: true });
  fs.writeFileSync(path.join(work, "agents", "timeline.md"), "---\nname: timeline\ntools: Read\n---\nAnswer with JSON.\n");
  cli("mapping", "set", "--provider", "agentui", "--action", "agent_ui", "--handler-mode", "agent", "--handler-target", "timeline");
  const id = await webhook(base, "agentui", { ticket: "UI-1" });
  await page.goto(`${base}/ui/events/${id}`);
  await signIn(page);
  await page.locator("#event-live .badge.done").first().waitFor({ timeout: 20000 });
  assert.match(await page.locator("#event-live span.usage").first().textContent(), /\$0\.0123/);
  await Promise.all([page.waitForURL(/\/runs\//), page.click("#event-live a.timeline-link")]);
  assert.match(await page.locator("ol.timeline li.t-system").textContent(), /claude-test/);
  assert.match(await page.locator("ol.timeline li.t-tool").textContent(), /Read[\s\S]*<img src=x/);
  assert.match(await page.locator("ol.timeline li.t-result").textContent(), /file body/);
  assert.match(await page.locator("ol.timeline li.t-final").textContent(), /\$0\.0123/);
  assert.match(await page.locator("ol.timeline li.t-text").first().textContent(), /<script>/, "markup shown as text");
  assert.equal(await page.evaluate(() => window.__pwned), undefined, "no transcript markup ran");
  assert.equal(await page.locator("ol.timeline img, ol.timeline script").count(), 0);
  await shot(page, "agent-timeline");

  await page.goto(`${base}/ui/spend`);
  assert.ok(await page.locator("svg.spend-chart rect.bar").count() >= 1, "a bar for today");
  assert.match(await page.locator("div.budget").first().textContent(), /\$0\.0123 of \$5\.00/);
  assert.equal(await page.locator("svg.budget-bar rect.fill").count(), 1, "the daily budget's bar");
  assert.match(await page.locator("div.legend").last().textContent(), /agent_ui/);
  assert.equal(await page.locator(`table.top-runs a[href="/ui/events/${id}"]`).count(), 1, "the run is listed");
  await shot(page, "spend");
}

// Flow control (issue 28), produced by the real worker: `per_key: 1` with `on_conflict:
// supersede` on a command that holds its run until the test lets it go. The first event
// runs; the second waits and its page says what for; a third supersedes it, and the
// second's page follows it to superseded, linking the third, which then waits in its turn.
async function flowStatuses(page, base) {
  const config = path.join(work, "flow.json");
  fs.writeFileSync(config, JSON.stringify({ mappings: [{
    provider: "flowui", action: "review", handler_mode: "command", handler_target: "hold",
    flow: { key: "{{payload.pr}}", concurrency: { per_key: 1 }, on_conflict: "supersede" },
  }] }));
  cli("mapping", "apply-config", "--config", config);
  const event = async (id) => {
    const r = await fetch(`${base}/events/${id}`, { headers: { "x-admin-secret": secret } });
    assert.equal(r.status, 200);
    return (await r.json()).event;
  };
  const until = async (id, status) => {
    for (let i = 0; i < 200; i++) {
      const e = await event(id);
      if (e.status === status) return e;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.fail(`event ${id} never became ${status}: ${JSON.stringify(await event(id))}`);
  };
  const running = await webhook(base, "flowui", { pr: 7, push: 1 });
  await until(running, "processing");
  const stale = await webhook(base, "flowui", { pr: 7, push: 2 });
  await until(stale, "waiting");

  await page.goto(`${base}/ui/events/${stale}`);
  await signIn(page);
  await page.locator("#event-live div.grid .badge.waiting").first().waitFor();
  assert.equal((await page.locator("#event-live h2", { hasText: "Waiting for" }).count()), 1);
  assert.match(await page.locator("#event-live pre.wait-text").textContent(),
    new RegExp(`^flow:concurrency: action 'review' key '7': 1 of per_key 1 running \\(event ${running} runs\\)`));
  assert.equal(await page.locator("#event-live pre.error-text").count(), 0, "a wait is not an error");
  assert.equal(await page.locator("#event-live form.cancel").count(), 1, "a waiting event can be cancelled");
  await shot(page, "event-waiting");

  // A newer push: the waiting one is superseded; its page follows without a reload.
  await page.evaluate(() => { window.__stillHere = true; });
  const latest = await webhook(base, "flowui", { pr: 7, push: 3 });
  await page.locator("#event-live div.grid .badge.superseded").first().waitFor({ timeout: 20000 });
  assert.equal(await page.evaluate(() => window.__stillHere), true, "superseded without a reload");
  assert.match(await page.locator("#event-live p.flow-note").textContent(), new RegExp(`^Superseded by event ${latest} `));
  assert.equal(await page.locator("#event-live form.cancel").count(), 0, "no cancel once superseded");
  await shot(page, "event-superseded");
  await Promise.all([page.waitForURL(new RegExp(`/ui/events/${latest}$`)),
    page.click(`#event-live p.flow-note a[href="/ui/events/${latest}"]`)]);
  await page.locator("#event-live div.grid .badge.waiting").first().waitFor();
  assert.match(await page.locator("#event-live pre.wait-text").textContent(), new RegExp(`\\(event ${running} runs\\)`));

  // The events list: the waiting event's reason in its row, the filter by status.
  await page.goto(`${base}/ui/events?status=waiting`);
  const row = page.locator(`#event-rows tr[data-id="${latest}"]`);
  await row.locator(".badge.waiting").waitFor();
  assert.match(await row.locator("td.reason").textContent(), /^flow:concurrency:/);
  await shot(page, "events-waiting");

  // Let the runs go: the first finishes, the latest runs after it; the stale one never ran.
  fs.writeFileSync(path.join(work, "release-hold"), "");
  await until(running, "done");
  await until(latest, "done");
  assert.equal((await event(stale)).status, "superseded");
}

async function run() {
  fs.mkdirSync(shots, { recursive: true });
  fs.writeFileSync(env.APP_COMMANDS_PATH, JSON.stringify({
    deploy: ["sh", "-c", "echo 'deploy failed: DEPLOY_TOKEN is not set' >&2; exit 3"],
    // Holds its run until the file release-hold exists (at most a minute).
    hold: ["sh", "-c", `cat >/dev/null; i=0; while [ ! -f '${path.join(work, "release-hold")}' ] && [ $i -lt 600 ]; `
      + `do sleep 0.1; i=$((i+1)); done; echo '{"ok": true}'`],
  }));
  // No operator command creates the database (issue 31): create it first, as a user does.
  cli("db", "init");
  cli("mapping", "set", "--provider", "acme", "--action", "deploy", "--handler-mode", "command", "--handler-target", "deploy");
  cli("mapping", "rule-set", "--provider", "acme", "--name", "acme-ping", "--priority", "10",
    "--conditions-json", '{"op":"json_path_equals","path":"type","value":"ping"}', "--action", "pong");
  // A real schedule ticking every two seconds (its ticks are routed to a noop) and a daily one.
  const config = path.join(work, "schedules.json");
  fs.writeFileSync(config, JSON.stringify({ schedules: [
    { job: "heartbeat", cron: "*/2 * * * * *" },
    { job: "daily-digest", cron: "0 9 * * MON-FRI", timezone: "Europe/Paris" },
  ] }));
  cli("mapping", "apply-config", "--config", config);
  cli("mapping", "set", "--provider", "unknown", "--action", "default", "--handler-mode", "noop");

  const server = await startServer();
  const { base } = server;
  // A fresh, empty profile directory (Playwright passes it as --user-data-dir).
  const context = await chromium.launchPersistentContext(fs.mkdtempSync(path.join(work, "profile-")), {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: CHROMIUM_FLAGS,
    viewport: { width: 1280, height: 860 },
  });
  const problems = [];
  let ingestOnly = null;
  try {
    const page = await context.newPage();
    // The force replay and cancel buttons ask first; the operator says yes.
    page.on("dialog", (d) => d.accept());
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
    // The event's own status badge (the status card): a run's or an attempt's badge may
    // read done in a refresh that read the event a moment before it finished.
    await page.locator("#event-live div.grid .badge.done").first().waitFor({ timeout: 20000 });
    assert.equal(await page.evaluate(() => window.__stillHere), true, "replay finished without a reload");
    // (The attempt history below keeps the failure: that is its purpose.)
    const errorsLeft = page.locator("#event-live pre.error-text:not(table.attempts pre)");
    assert.equal(await errorsLeft.count(), 0, "no error left once done");
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

    await forceReplay(page, base, id);
    await schedules(page, base);
    await overview(page, base, id);
    await newcomerChecks(page, base, id);
    await filtersAndPaging(page, base);
    await fanOut(page, base);
    await agentTimelineAndSpend(page, base);
    await flowStatuses(page, base);

    // Cancel needs an event that stays queued: the same database served without a worker.
    server.child.kill("SIGTERM");
    await new Promise((resolve) => server.child.once("exit", resolve));
    ingestOnly = await startServer("http");
    await cancelQueued(page, ingestOnly.base);
  } finally {
    await context.close();
    server.child.kill("SIGTERM");
    if (ingestOnly) ingestOnly.child.kill("SIGTERM");
  }
  assert.deepEqual(problems, [], "the pages reported problems");
  fs.rmSync(work, { recursive: true, force: true });
  console.log(`dashboard browser tests passed; screenshots in ${shots}`);
}

run().catch((e) => {
  console.error(e);
  process.exit(1);
});
