// The rollout console: polls the controller's /api/state every second and draws it; checks and
// previews policy edits with the filter's own code (switchyard-console, WebAssembly); writes go
// to the controller with the bearer token. Served by the operator in a cluster, the state says
// `read_only`: the page then lists every rollout and shows the kubectl command for each change
// instead of writing. Everything from the API is shown through textContent, never parsed as HTML.
import init, { check, preview } from "./pkg/switchyard_console.js";

const REFRESH_MS = 1000;
const COLORS = ["#1d4ed8", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2"];
const $ = (id) => document.getElementById(id);

let live = null;
let edited = false;

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

const fmt = {
  num: (v, d = 1) => (v === null || v === undefined ? "–" : Number(v).toFixed(d)),
  pct: (v) => (v === null || v === undefined ? "–" : (100 * v).toFixed(2) + "%"),
  ms: (v) => (v === null || v === undefined ? "–" : Number(v).toFixed(1) + " ms"),
};

// A cell that carries its raw value too, for whoever checks the page against the metrics.
function cell(testid, value, text) {
  const td = el("td", { "data-testid": testid }, text);
  if (value !== null && value !== undefined) td.dataset.value = String(value);
  return td;
}

function renderRollout(r, events, readOnly) {
  const box = $("rollout");
  box.replaceChildren();
  for (const id of ["promote", "pause", "resume", "abort"]) {
    $(id).disabled = !(r && r.active);
    $(id).hidden = Boolean(readOnly);
  }
  $("reason").hidden = Boolean(readOnly);
  const commands = $("commands");
  commands.hidden = !(readOnly && r && r.commands);
  commands.replaceChildren();
  if (readOnly && r && r.commands) {
    commands.append(el("div", { class: "muted" }, readOnly.why));
    for (const [action, command] of Object.entries(r.commands)) {
      commands.append(el("div", {}, el("span", { class: "muted" }, `${action}: `), el("code", { "data-testid": `command-${action}` }, command)));
    }
  }
  if (!r) {
    box.append(readOnly
      ? `no ModelRollout in namespace ${readOnly.namespace}: kubectl apply -f ROLLOUT.yaml starts one`
      : "no rollout recorded: `switchyard-rollout start SPEC` records one");
  } else {
    box.className = "";
    box.append(
      el("div", {}, el("strong", {}, `${r.name ? r.name + " — " : ""}${r.model}: ${r.stable} → ${r.canary} `),
        el("span", { class: `badge ${r.state.toLowerCase()}`, "data-testid": "rollout-state" }, r.state)),
      el("div", {}, `step ${r.step + 1} of ${r.steps}, traffic `, el("code", { "data-testid": "rollout-traffic" }, r.traffic)),
      el("div", {}, "last decision: ", el("strong", {}, r.decision || "–"), " ", el("span", { "data-testid": "rollout-reason" }, r.reason || "")),
    );
  }
  const list = $("events");
  list.replaceChildren();
  for (const e of [...(events || [])].reverse()) {
    const t = new Date(e.ts_ms).toLocaleTimeString();
    const who = e.who ? ` by ${e.who.actor} (${e.who.peer})` : "";
    const text = e.what === "policy-apply"
      ? `policy applied${who}: ${Object.keys(e.after || {}).join(", ")}`
      : `${e.what}${who}: ${e.state}, ${e.decision || ""} ${e.reason || ""}`;
    list.append(el("li", {}, el("span", { class: "muted" }, t + " "), text));
  }
}

// Every rollout the operator sees (a cluster only): one row each, the featured one first in the card above.
function renderRollouts(rollouts) {
  const panel = $("rollouts-panel");
  panel.hidden = !Array.isArray(rollouts);
  if (panel.hidden) return;
  const head = el("tr", {}, ...["rollout", "model", "canary", "phase", "step", "traffic", "last decision"].map((h) => el("th", {}, h)));
  const rows = rollouts.map((r) => el("tr", { "data-rollout": r.name },
    el("td", {}, r.name), el("td", {}, r.model), el("td", {}, r.canary),
    el("td", {}, el("span", { class: `badge ${r.state.toLowerCase()}`, "data-testid": `phase-${r.name}` }, r.state)),
    el("td", {}, `${r.step + 1} of ${r.steps}`),
    el("td", { "data-testid": `traffic-${r.name}` }, r.traffic),
    el("td", {}, [r.decision, r.reason].filter(Boolean).join(": ") || "–")));
  $("rollouts").replaceChildren(el("thead", {}, head), el("tbody", {}, ...(rows.length ? rows : [el("tr", {}, el("td", { colspan: "7", class: "muted" }, "none"))])));
}

function chart(title, unit, series, digits) {
  const W = 400, H = 110, P = 4;
  const pts = series.flatMap((s) => s.points.filter((p) => p.v !== null));
  const max = Math.max(1e-9, ...pts.map((p) => p.v));
  // The time axis spans the points kept (five minutes at most), so a young view is not a sliver.
  const t1 = Math.max(...pts.map((p) => p.t), 1);
  const t0 = Math.min(...pts.map((p) => p.t), t1 - 1000);
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("preserveAspectRatio", "none");
  series.forEach((s, i) => {
    const xy = s.points.filter((p) => p.v !== null && p.t >= t0)
      .map((p) => `${(P + (W - 2 * P) * (p.t - t0) / (t1 - t0)).toFixed(1)},${(H - P - (H - 2 * P) * p.v / max).toFixed(1)}`);
    if (xy.length < 2) return;
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", xy.join(" "));
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", COLORS[i % COLORS.length]);
    line.setAttribute("stroke-width", "1.5");
    line.setAttribute("vector-effect", "non-scaling-stroke");
    svg.append(line);
  });
  return el("div", { class: "chart" },
    el("div", { class: "title" }, el("span", {}, title), el("span", {}, `max ${max.toFixed(digits)} ${unit}, last ${Math.round((t1 - t0) / 1000)} s`)), svg);
}


// Why the guard holds a version out, for the badge's tooltip (the filter's
// switchyard_guard_out_since_seconds says since when and on which SLI).
function heldOutTitle(h) {
  if (!h) return "";
  const why = { availability: "its error ratio was worse than the stable version's", latency: "too many of its requests were slower than the SLO threshold" }[h.sli] || "see Envoy's log";
  const since = h.since_s ? `since ${new Date(h.since_s * 1000).toISOString()}: ` : "";
  return `held out by the guard ${since}${why}; a new guard epoch puts it back`;
}

function renderModel(m, history) {
  const card = el("section", { class: "card", "data-model": m.name });
  card.append(el("h2", {}, `Model ${m.name}`, el("span", { class: "muted" }, m.sticky ? ` — sticky by ${m.sticky}` : "")));
  const head = el("tr", {}, ...["version", "weight", "guard", "requests", "req/s", "errors", "p50", "p99", "burn"].map((h) => el("th", {}, h)));
  const body = m.versions.map((v) => {
    const id = `${m.name}-${v.name}`;
    const burn = el("td", { "data-testid": `burn-${id}`, class: "burn" });
    for (const sli of [...new Set(v.burn.map((b) => b.sli))]) {
      const line = el("div", {}, el("span", { class: "muted" }, `${sli} `));
      for (const b of v.burn.filter((b) => b.sli === sli)) {
        const chip = el("span", { class: b.rate >= 1 ? "bad" : "good", "data-testid": `burn-${id}-${b.sli}-${b.window}` }, `${b.window} ${b.rate.toFixed(2)} `);
        chip.dataset.value = String(b.rate);
        line.append(chip);
      }
      burn.append(line);
    }
    return el("tr", {},
      el("td", {}, v.name),
      cell(`weight-${id}`, v.weight, v.weight),
      el("td", {},
        el("span", { class: `badge ${v.guard_out ? "out" : "in"}`, "data-testid": `guard-${id}`, title: heldOutTitle(v.held_out) }, v.guard_out ? "out" : "in"),
        v.held_out && v.held_out.since_s ? el("small", { "data-testid": `guard-since-${id}` }, ` since ${new Date(v.held_out.since_s * 1000).toISOString().slice(11, 19)} UTC`) : ""),
      cell(`requests-${id}`, v.requests, v.requests),
      cell(`rate-${id}`, v.rate, fmt.num(v.rate)),
      cell(`errors-${id}`, v.error_ratio, fmt.pct(v.error_ratio)),
      cell(`p50-${id}`, v.p50_ms, fmt.ms(v.p50_ms)),
      cell(`p99-${id}`, v.p99_ms, fmt.ms(v.p99_ms)),
      burn);
  });
  card.append(el("table", {}, el("thead", {}, head), el("tbody", {}, ...body)));
  card.append(el("div", { class: "muted" }, "rates, errors and percentiles over the last 30 s; burn rates as the filter counts them (1 spends the budget exactly)"));
  const series = (key) => m.versions.map((v) => ({
    name: v.name,
    points: (history[`${m.name}/${v.name}`] || []).map((p) => ({ t: p.ts_ms, v: p[key] })),
  }));
  card.append(el("div", { class: "charts" }, chart("requests / s", "req/s", series("rate"), 1), chart("p99 latency", "ms", series("p99_ms"), 1)));
  card.append(el("div", { class: "legend" }, ...m.versions.map((v, i) => {
    const s = el("span", {}, `■ ${v.name}`);
    s.style.color = COLORS[i % COLORS.length];
    return s;
  })));
  if (m.shadow.length) {
    card.append(el("h3", {}, "Shadow comparison"));
    card.append(el("table", {}, el("tr", {}, ...["primary → shadow", "pair", "rows", "disagreeing", "share"].map((h) => el("th", {}, h))),
      ...m.shadow.map((s) => el("tr", {}, el("td", {}, `${s.primary} → ${s.shadow}`), el("td", {}, s.pair),
        cell(`shadow-rows-${m.name}-${s.shadow}-${s.pair}`, s.rows, s.rows),
        cell(`shadow-disagreeing-${m.name}-${s.shadow}-${s.pair}`, s.disagreeing, s.disagreeing),
        el("td", {}, fmt.pct(s.ratio))))));
  }
  card.append(el("h3", {}, `Drift (${m.columns_tested} columns tested; the most drifted first)`));
  if (m.windows.length) {
    // A window below its min_rows is not judged by the monitor: say so, never in red.
    card.append(el("div", {}, ...m.windows.map((w) => w.enough_data !== false
      ? el("span", { class: w.drifted ? "bad" : "", "data-testid": `window-${m.name}-${w.version}-${w.window}` },
        `${w.version}/${w.window}: ${w.rows} rows, ${(100 * w.drift_share).toFixed(0)}% of columns drifted${w.drifted ? " (dataset drift)" : ""}. `)
      : el("span", { class: "muted", "data-testid": `window-${m.name}-${w.version}-${w.window}` },
        `${w.version}/${w.window}: ${w.rows} rows, not enough data (${w.min_rows} needed). `))));
  }
  if (!m.drift.length) {
    card.append(el("div", { class: "muted" }, "no drift scores (no monitor, or its reference is not complete yet)"));
  } else {
    card.append(el("table", { "data-testid": `drift-${m.name}` },
      el("tr", {}, ...["column", "version / window", "test", "score", "threshold", ""].map((h) => el("th", {}, h))),
      ...m.drift.map((c) => el("tr", { class: c.drifted ? "bad" : "" },
        el("td", {}, c.column), el("td", {}, `${c.version}/${c.window}`), el("td", {}, c.test),
        cell(`drift-${m.name}-${c.version}-${c.window}-${c.column}`, c.score, Number(c.score).toPrecision(3)),
        el("td", {}, Number(c.threshold).toPrecision(3)), el("td", {}, c.drifted ? "drifted" : "")))));
  }
  return card;
}

function render() {
  $("updated").textContent = `updated ${new Date(live.ts_ms).toLocaleTimeString()}`;
  $("updated").dataset.ts = String(live.ts_ms);
  const problems = $("problems");
  problems.hidden = !live.problems.length;
  problems.textContent = live.problems.join(" · ");
  const readOnly = live.read_only || null;
  renderRollout(live.rollout, live.events, readOnly);
  renderRollouts(live.rollouts);
  $("auth-panel").hidden = Boolean(readOnly);
  $("apply").hidden = Boolean(readOnly);
  $("apply-how").hidden = !(readOnly && readOnly.policy);
  if (readOnly && readOnly.policy) $("apply-how").textContent = `Checked and previewed here; to put it in force: ${readOnly.policy}`;
  $("models").replaceChildren(...(live.models || []).map((m) => renderModel(m, live.history || {})));
  if (!edited && typeof live.policy === "string" && $("policy").value !== live.policy) {
    $("policy").value = live.policy;
    validate();
  }
}

// The quick editor rewrites the JSON below it; the JSON is what is checked and applied, so a
// field left in a state the policy does not allow shows the filter's own message.
function quickField(name, label, testid, value, attrs, set) {
  const input = el("input", { "data-testid": `edit-${testid}`, ...attrs });
  input.value = value === undefined || value === null ? "" : String(value);
  input.addEventListener("input", () => {
    const c = JSON.parse($("policy").value);
    set(c.models[name], input.value.trim());
    $("policy").value = JSON.stringify(c, null, 2) + "\n";
    $("weights").dataset.for = $("policy").value;
    edited = true;
    validate();
  });
  return el("label", {}, label, input);
}

// A number field's text as the policy's number; anything else is left as text, for the
// filter's check to name.
const asNumber = (v) => (v !== "" && Number.isFinite(Number(v)) ? Number(v) : v);
const list = (v) => v.split(",").map((x) => x.trim()).filter(Boolean);

function renderWeights(text) {
  const box = $("weights");
  let cfg;
  try { cfg = JSON.parse(text); } catch { return; }
  if (box.dataset.for === text) return;
  box.dataset.for = text;
  const num = { type: "number", min: "0", step: "any", class: "num" };
  box.replaceChildren(...Object.entries(cfg.models || {}).map(([name, m]) => el("div", { class: "weights" },
    el("strong", {}, name),
    ...(m.versions || []).map((v, i) => quickField(name, v.name, `weight-${name}-${v.name}`, v.weight, { ...num, step: "1" },
      (model, x) => { model.versions[i].weight = asNumber(x); })),
    quickField(name, "sticky header", `sticky-${name}`, m.sticky?.header, { placeholder: "none" }, (model, x) => {
      if (x) model.sticky = { ...model.sticky, header: x };
      else if (model.sticky) {
        delete model.sticky.header;
        if (!Object.keys(model.sticky).length) delete model.sticky;
      }
    }),
    quickField(name, "override allow", `override-allow-${name}`, (m.override?.allow || []).join(", "), { placeholder: "v2, v3" }, (model, x) => {
      if (model.override) model.override.allow = list(x);
      else if (x) model.override = { header: "x-switchyard-version-override", allow: list(x) };
    }),
    quickField(name, "shadow to", `shadow-version-${name}`, m.shadow?.version, { placeholder: "none", class: "short" }, (model, x) => {
      if (x) model.shadow = { percent: 0, ...model.shadow, version: x };
      else delete model.shadow;
    }),
    quickField(name, "shadow %", `shadow-percent-${name}`, m.shadow?.percent, num, (model, x) => {
      if (model.shadow) model.shadow.percent = asNumber(x);
    }),
    quickField(name, "sampled (0–1)", `sampling-rate-${name}`, m.sampling?.rate, { ...num, max: "1" }, (model, x) => {
      if (x !== "") model.sampling = { ...model.sampling, rate: asNumber(x) };
      else delete model.sampling;
    }),
  )));
}

function validate() {
  const text = $("policy").value;
  const msg = check(text);
  const box = $("policy-check");
  const list = $("preview");
  list.replaceChildren();
  if (msg) {
    box.className = "check error";
    box.textContent = msg;
    $("apply").disabled = true;
    return;
  }
  renderWeights(text);
  const p = JSON.parse(preview(live && typeof live.policy === "string" ? live.policy : text, text, JSON.stringify((live && live.sticky_points) || {})));
  if (p.error) {
    box.className = "check error";
    box.textContent = p.error;
    $("apply").disabled = true;
    return;
  }
  box.className = "check ok";
  box.textContent = p.changed ? "valid; the change, as the filter will apply it:" : "valid; the same as the policy in force";
  for (const m of p.models.filter((m) => m.changed)) {
    const w = (m.weights || []).filter((x) => x.before !== x.after).map((x) => `${x.version} ${x.before ?? "new"} → ${x.after}`);
    const li = el("li", { "data-testid": `preview-${m.model}` }, m.summary + (w.length ? ` (weights ${w.join(", ")})` : ""));
    li.dataset.keys = String(m.keys ?? 0);
    li.dataset.moves = JSON.stringify(m.moves || []);
    list.append(li);
  }
  $("apply").disabled = !p.changed;
}

async function write(path, body) {
  const out = $("write-result");
  out.className = "result";
  out.textContent = "…";
  const headers = { "Content-Type": "application/json" };
  const token = $("token").value.trim();
  if (token) headers.Authorization = `Bearer ${token}`;
  const actor = $("actor").value.trim();
  if (actor) body.actor = actor;
  try {
    const r = await fetch(path, { method: "POST", headers, body: JSON.stringify(body) });
    const answer = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
    out.className = r.ok ? "result ok" : "result error";
    out.textContent = r.ok ? answer.message : `refused (${r.status}): ${answer.error}`;
    out.dataset.status = String(r.status);
    return r.ok;
  } catch (e) {
    out.className = "result error";
    out.textContent = `the controller did not answer: ${e}`;
    return false;
  }
}

async function poll() {
  try {
    const r = await fetch("/api/state", { cache: "no-store" });
    if (r.ok) {
      live = await r.json();
      render();
    }
  } catch (e) {
    $("updated").textContent = `the controller did not answer: ${e}`;
  }
}

await init();
$("policy").addEventListener("input", () => { edited = true; validate(); });
$("revert").addEventListener("click", () => { edited = false; $("policy").value = ""; if (live) render(); });
$("apply").addEventListener("click", async () => {
  if (await write("/api/policy", { policy: $("policy").value })) {
    edited = false;
    await poll();
  }
});
for (const id of ["promote", "pause", "resume", "abort"]) {
  $(id).addEventListener("click", async () => {
    const body = id === "abort" ? { reason: $("reason").value || "aborted from the console" } : {};
    if (await write(`/api/rollout/${id}`, body)) await poll();
  });
}
await poll();
setInterval(poll, REFRESH_MS);
