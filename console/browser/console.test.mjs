// The rollout console in Debian's chromium, headless (playwright-core drives it; no browser is
// downloaded). e2e/tests/console.rs starts the stack and the controller, then runs
//   node console.test.mjs edit      the live view against Envoy's and the monitor's metrics,
//                                   an invalid edit, a write without the token, an apply
//   node console.test.mjs rollout   pause, resume and abort of a running rollout
// with the addresses in the environment, and operator/tests/console.rs runs
//   node console.test.mjs cluster   the operator's read-only console: every rollout, the kubectl
//                                   commands instead of writes, a command run against the API
//                                   server and the page following the operator's status
// Exits non-zero, saying why, at the first failure; screenshots go to $OUT.
import { chromium } from "playwright-core";

const env = (name) => {
  const v = process.env[name];
  if (v === undefined) throw new Error(`${name} is not set (e2e/tests/console.rs sets it)`);
  return v;
};
const phase = process.argv[2];
const URL_ = env("CONSOLE_URL"), OUT = env("OUT");
// The local stack's, for the controller's phases (not set for `cluster`).
const local = phase === "cluster" ? () => undefined : env;
const TOKEN = local("TOKEN"), ENVOY = local("ENVOY"), ENVOY_ADMIN = local("ENVOY_ADMIN");

function check(ok, what) {
  if (!ok) throw new Error(what);
  console.log(`ok  ${what}`);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Prometheus text: [{name, labels, value}].
async function metrics(addr, path) {
  const text = await (await fetch(`http://${addr}${path}`)).text();
  return text.split("\n").filter((l) => l && !l.startsWith("#")).map((l) => {
    const m = l.match(/^([^{ ]+)(?:\{(.*)\})? (\S+)$/);
    if (!m) return null;
    const labels = {};
    for (const [, k, v] of (m[2] || "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[k] = v;
    return { name: m[1], labels, value: Number(m[3]) };
  }).filter(Boolean);
}
const total = (ms, name, want) => ms.filter((s) => s.name === name && Object.entries(want).every(([k, v]) => s.labels[k] === v))
  .reduce((a, s) => a + s.value, 0);

async function version(headers = {}) {
  const r = await fetch(`http://${ENVOY}/v2/models/mlp`, { headers });
  await r.arrayBuffer();
  return r.headers.get("x-switchyard-version");
}

async function updates() {
  return total(await metrics(ENVOY_ADMIN, "/stats/prometheus"), "envoy_extension_config_discovery_http_filter_switchyard_update_success", {});
}

const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium", headless: true, args: ["--no-sandbox"] });
const page = await browser.newPage({ viewport: { width: 1500, height: 1100 } });
const errors = [];
// The writes this test makes refused (401, 409; 405 from the read-only console) are logged by the browser as failed loads:
// those are the test's doing, every other error is the page's.
const provoked = /^Failed to load resource: the server responded with a status of 40[159] /;
page.on("console", (m) => { if (m.type() === "error" && !provoked.test(m.text())) errors.push(m.text()); });
page.on("pageerror", (e) => errors.push(String(e)));
const value = async (testid) => page.getAttribute(`[data-testid="${testid}"]`, "data-value");
const text = async (sel) => (await page.textContent(sel)) ?? "";
// The page's next refresh after now: what it shows then was read after this moment.
async function fresh() {
  const after = Date.now();
  await page.waitForFunction((t) => Number(document.getElementById("updated").dataset.ts || 0) > t, after, { timeout: 10000 });
}
// A click as the button's own: Playwright first waits until it is visible, enabled and still,
// then the element is clicked in the page. Mouse coordinates are not used: after a full-page
// screenshot Chrome restores the scroll position a few frames later, whenever the machine gets
// to it, and a mouse click aimed before that lands beside the button (seen under load).
async function press(selector) {
  await page.locator(selector).click({ trial: true });
  await page.$eval(selector, (b) => b.click());
}
async function shot(name) {
  await page.screenshot({ path: `${OUT}/${name}.png`, fullPage: true });
  console.log(`    screenshot ${OUT}/${name}.png`);
  // A full-page screenshot resizes the viewport and Chrome puts the scroll position back a
  // frame or two later: a click aimed before that lands where the button was.
  await page.evaluate(() => new Promise((ok) => requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(ok, 100)))));
}

try {
  await page.goto(URL_);
  await page.waitForSelector('[data-testid="requests-mlp-v1"]', { timeout: 15000 });
  if (phase === "edit") await edit();
  else if (phase === "rollout") await rollout();
  else if (phase === "cluster") await cluster();
  else throw new Error(`unknown phase '${phase}': edit, rollout or cluster`);
  check(errors.length === 0, `no errors in the page's console${errors.length ? ": " + errors.join(" | ") : ""}`);
} finally {
  await browser.close();
}

async function edit() {
  const users = Number(env("USERS"));
  const monitorAddr = env("MONITOR");
  // Traffic has stopped: Envoy's counters and the monitor's scores hold still, and the page's
  // next refresh must show exactly them.
  const envoy = await metrics(ENVOY_ADMIN, "/stats/prometheus");
  const monitor = await metrics(monitorAddr, "/metrics");
  await fresh();
  for (const v of ["v1", "v2"]) {
    const want = total(envoy, "switchyard_requests_total", { model: "mlp", version: v });
    check(Number(await value(`requests-mlp-${v}`)) === want, `mlp/${v}: the page shows ${want} requests, as Envoy counts them`);
    const guard = total(envoy, "switchyard_guard_out", { model: "mlp", version: v }) > 0 ? "out" : "in";
    check((await text(`[data-testid="guard-mlp-${v}"]`)) === guard, `mlp/${v}: guard ${guard}, as Envoy's switchyard_guard_out`);
  }
  check(Number(await value("requests-mlp-v1")) >= users, `v1 served the ${users} sticky users`);
  const burns = envoy.filter((s) => s.name === "switchyard_slo_burn_rate_x1000" && s.labels.model === "mlp");
  check(burns.length > 0, `Envoy exports burn rates for mlp (${burns.length})`);
  for (const b of burns) {
    const id = `burn-mlp-${b.labels.version}-${b.labels.sli}-${b.labels.window}`;
    check(Number(await value(id)) === b.value / 1000, `${id} = ${b.value / 1000}, Envoy's switchyard_slo_burn_rate_x1000 / 1000`);
  }
  check(Number(await value("weight-mlp-v1")) === 100 && Number(await value("weight-mlp-v2")) === 0, "weights 100/0, as in force");
  check((await value("p99-mlp-v1")) !== null, "v1 has a p99 over the last 30 s");
  const scores = monitor.filter((s) => s.name === "switchyard_drift_score" && s.labels.model === "mlp");
  check(scores.length > 0, `the monitor scores mlp's columns (${scores.length})`);
  const shown = await page.$$eval('[data-testid^="drift-mlp-"][data-value]', (cells) => cells.map((c) => [c.dataset.testid, Number(c.dataset.value)]));
  check(shown.length > 0, `the page lists ${shown.length} drift scores`);
  for (const [id, v] of shown) {
    const s = scores.find((s) => `drift-mlp-${s.labels.version}-${s.labels.window}-${s.labels.column}` === id);
    check(s && s.value === v, `${id} = ${v}, the monitor's switchyard_drift_score`);
  }
  // Each window as the monitor judged it: "not enough data" below its min_rows, never red.
  for (const r of monitor.filter((s) => s.name === "switchyard_drift_window_rows" && s.labels.model === "mlp")) {
    const { version, window } = r.labels;
    const min = total(monitor, "switchyard_drift_window_min_rows", { model: "mlp", version, window });
    const sel = `[data-testid="window-mlp-${version}-${window}"]`;
    const scarce = (await text(sel)).includes("not enough data");
    check(scarce === r.value < min, `mlp/${version}/${window}: ${r.value} rows of ${min} needed, ${scarce ? "not enough data" : "judged"}`);
    if (scarce) check(!(await page.$eval(sel, (e) => e.classList.contains("bad"))), `${sel} is not red`);
  }
  await shot("console-live");

  // An invalid edit: the filter's own message, the apply button off, nothing changed.
  const before = await updates();
  await page.fill('[data-testid="edit-weight-mlp-v1"]', "0");
  const message = env("INVALID_MESSAGE");
  await page.waitForFunction(() => document.getElementById("policy-check").classList.contains("error"));
  check((await text("#policy-check")) === message, `the invalid edit shows the filter's message: ${message}`);
  check(await page.isDisabled("#apply"), "and cannot be applied");
  await shot("console-invalid");
  const direct = await fetch(`${URL_}api/policy`, {
    method: "POST", headers: { "Content-Type": "application/json", Authorization: `Bearer ${TOKEN}` },
    body: JSON.stringify({ policy: await page.inputValue("#policy") }),
  });
  const refusal = await direct.json();
  check(direct.status === 400 && refusal.error === message, `posted anyway, the controller refuses it with the same message (${direct.status})`);
  // The quick editor's other fields write the same JSON, checked the same way.
  await page.fill('[data-testid="edit-weight-mlp-v1"]', "100");
  await page.waitForFunction(() => document.getElementById("policy-check").classList.contains("ok"));
  await page.fill('[data-testid="edit-shadow-version-mlp"]', "v2");
  await page.fill('[data-testid="edit-shadow-percent-mlp"]', "150");
  const shadowMessage = env("SHADOW_MESSAGE");
  await page.waitForFunction(() => document.getElementById("policy-check").classList.contains("error"));
  check((await text("#policy-check")) === shadowMessage, `a shadow of 150% shows the filter's message: ${shadowMessage}`);
  check(JSON.parse(await page.inputValue("#policy")).models.mlp.shadow.version === "v2", "written into the policy's JSON");
  await press("#revert");
  await page.waitForFunction(() => document.getElementById("policy-check").classList.contains("ok"));
  check(!JSON.parse(await page.inputValue("#policy")).models.mlp.shadow, "revert puts the policy in force back");

  // A valid edit previewed, refused without the token, then applied with it.
  await page.fill('[data-testid="edit-weight-mlp-v1"]', "50");
  await page.fill('[data-testid="edit-weight-mlp-v2"]', "50");
  const li = '[data-testid="preview-mlp"]';
  await page.waitForSelector(li);
  const keys = Number(await page.getAttribute(li, "data-keys"));
  const moves = JSON.parse(await page.getAttribute(li, "data-moves"));
  const moved = moves.filter((m) => m.from === "v1" && m.to === "v2").reduce((a, m) => a + m.keys, 0);
  check(keys === users, `the preview knows the ${users} recent sticky users (${keys})`);
  check(moved > users * 0.3 && moved < users * 0.7 && moves.length === 1, `and moves ${moved} of them from v1 to v2: ${await text(li)}`);
  await shot("console-preview");
  await press("#apply");
  await page.waitForFunction(() => document.getElementById("write-result").dataset.status);
  check((await page.getAttribute("#write-result", "data-status")) === "401", `without the token the apply is refused: ${await text("#write-result")}`);
  await sleep(500);
  check((await updates()) === before, "and Envoy got no new policy");
  await page.fill("#token", TOKEN);
  await page.fill("#actor", "console-test");
  await page.evaluate(() => delete document.getElementById("write-result").dataset.status);
  await press("#apply");
  await page.waitForFunction(() => document.getElementById("write-result").dataset.status);
  check((await page.getAttribute("#write-result", "data-status")) === "200", `with it the policy is applied: ${await text("#write-result")}`);
  const deadline = Date.now() + 10000;
  while ((await updates()) === before && Date.now() < deadline) await sleep(50);
  check((await updates()) > before, "Envoy took the new policy (ECDS)");
  await sleep(300);
  let toV2 = 0;
  for (let i = 0; i < 200; i++) if ((await version()) === "v2") toV2++;
  check(toV2 > 60 && toV2 < 140, `the split is 50/50 now: ${toV2} of 200 requests went to v2`);
  let stickyV2 = 0;
  for (let i = 0; i < users; i++) if ((await version({ "x-user": `user-${i}` })) === "v2") stickyV2++;
  check(stickyV2 === moved, `exactly the ${moved} sticky users the preview named moved to v2 (${stickyV2})`);
  await fresh();
  check(Number(await value("weight-mlp-v2")) === 50, "the page shows v2 at 50");
  await shot("console-applied");
}

async function rollout() {
  await page.fill("#token", TOKEN);
  await page.fill("#actor", "console-test");
  await page.waitForFunction(() => document.querySelector('[data-testid="rollout-state"]')?.textContent === "running", null, { timeout: 15000 });
  await page.waitForFunction(() => document.querySelector('[data-testid="weight-mlp-v2"]')?.dataset.value === "20", null, { timeout: 15000 });
  check(true, "the rollout runs, its first step (v2 at 20) in force");
  // Its weights are the rollout's: an edit of them is refused, saying why.
  await page.fill('[data-testid="edit-weight-mlp-v2"]', "30");
  await page.fill('[data-testid="edit-weight-mlp-v1"]', "70");
  await press("#apply");
  await page.waitForFunction(() => document.getElementById("write-result").dataset.status);
  check((await page.getAttribute("#write-result", "data-status")) === "409" && (await text("#write-result")).includes("a rollout of mlp/v2 is running"),
    `an edit of the rollout's weights is refused: ${await text("#write-result")}`);
  await press("#revert");
  for (const [button, state] of [["#pause", "paused"], ["#resume", "running"]]) {
    await press(button);
    await page.waitForFunction((s) => document.querySelector('[data-testid="rollout-state"]')?.textContent === s, state);
    check(true, `${button.slice(1)}: the rollout is ${state}`);
  }
  await page.fill("#reason", "drill from the console test");
  await press("#abort");
  await page.waitForFunction(() => document.querySelector('[data-testid="rollout-state"]')?.textContent === "aborted");
  await page.waitForFunction(() => document.querySelector('[data-testid="weight-mlp-v2"]')?.dataset.value === "0");
  check(true, "abort: the rollout is aborted and the page shows v2 at 0");
  await sleep(500);
  let toV2 = 0;
  for (let i = 0; i < 100; i++) if ((await version()) === "v2") toV2++;
  check(toV2 === 0, `the canary gets no traffic: ${toV2} of 100 requests went to v2`);
  await fresh();
  await shot("console-aborted");
}

// The operator's console. EXPECT (JSON): the rollouts and phases the operator has written, the
// featured rollout's weight; API: the stand-in API server, where the page's pause command is
// run as kubectl would run it.
async function cluster() {
  const want = JSON.parse(env("EXPECT"));
  const api = env("API");
  await fresh();
  for (const r of want.rollouts) {
    check(await text(`[data-testid="phase-${r.name}"]`) === r.phase, `rollout ${r.name} listed as ${r.phase}`);
    if (r.reason) check((await text(`[data-rollout="${r.name}"]`)).includes(r.reason), `with its status' reason: ${r.reason}`);
  }
  check(await text('[data-testid="rollout-state"]') === "Running", "the card shows the running rollout");
  check(await value("weight-mlp-v2") === String(want.weight), `mlp v2's weight is the rollout's step (${want.weight}) as the operator carries it`);
  check((await text('[data-testid="rollout-traffic"]')).startsWith(`v2 at ${want.weight}%`), "the card says the traffic in force");
  for (const sel of ["#auth-panel", "#promote", "#pause", "#resume", "#abort", "#apply"]) {
    check(await page.isHidden(sel), `${sel} is not offered: the console is read-only`);
  }
  check((await text("#apply-how")).includes(`kubectl -n ${want.namespace} edit trafficpolicy gateway`), "an edit says how to put it in force");
  const pause = await text('[data-testid="command-pause"]');
  check(pause === `kubectl -n ${want.namespace} patch modelrollout mlp-v2 --type merge -p '{"spec":{"paused":true}}'`, `the pause command is shown: ${pause}`);
  const refused = await page.evaluate(async () => {
    const r = await fetch("/api/rollout/pause", { method: "POST", headers: { "Content-Type": "application/json" }, body: "{}" });
    return { status: r.status, error: (await r.json()).error };
  });
  check(refused.status === 405 && refused.error.includes("read-only"), `a write to the API is refused: ${refused.status} ${refused.error}`);
  // The filter's own check still runs on an edit.
  await page.fill("#policy", "{\"models\": {}}");
  await page.waitForSelector("#policy-check.error");
  check((await text("#policy-check")).length > 0, `an invalid edit is named: ${await text("#policy-check")}`);
  await press("#revert");
  await shot("cluster-running");
  // The command as shown, run against the API server as kubectl would (a merge patch of the
  // spec); the operator pauses the rollout and the page follows its status.
  const patch = pause.match(/-p '(.*)'$/)[1];
  const r = await fetch(`${api}/apis/switchyard.dev/v1alpha1/namespaces/${want.namespace}/modelrollouts/mlp-v2`, {
    method: "PATCH", headers: { "Content-Type": "application/merge-patch+json" }, body: patch,
  });
  check(r.ok, `the pause command is accepted by the API server (${r.status})`);
  await page.waitForFunction(() => document.querySelector('[data-testid="phase-mlp-v2"]')?.textContent === "Paused", null, { timeout: 20000 });
  check(true, "the page shows mlp-v2 Paused once the operator has paused it");
  check((await text("#events")).includes("decision: Paused, pause"), `the history has the decision: ${await text("#events")}`);
  await shot("cluster-paused");
}
