//! The observability stack in `dashboards/`: the Prometheus and Alertmanager configuration,
//! the recording and alerting rules and their promtool unit tests, the runbooks, the Grafana
//! dashboards, the metrics reference; and the live check: the real data plane with a canary
//! failing 30% of its requests (Envoy fault injection) feeding a real Prometheus and
//! Alertmanager, against which every recording rule, dashboard query and variable is evaluated.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use switchyard_contract::process::pager;

use serde_json::{Value, json};
use switchyard_contract::metrics as contract;
use switchyard_testkit::prom::{Alert, Alertmanager, Prometheus, Sample, Webhook, run_tool};
use switchyard_testkit::stack::{Stack, mlp_policy, policy_tool, python, render};
use switchyard_testkit::{demo_repo, root, scratch, try_request};

/// What every runbook_url starts with; the rest is `docs/runbooks/<alertname>.md`.
const RUNBOOK_BASE: &str = "https://github.com/switchyard-ml/switchyard/blob/main/";
/// Grafana 12's classic dashboard model (dashboards/grafana/generate.py).
const SCHEMA_VERSION: u64 = 41;
const DATASOURCE_UID: &str = "${datasource}";
/// Series Prometheus itself makes; not ours to document.
const PROMETHEUS_SERIES: &[&str] = &["up", "ALERTS", "ALERTS_FOR_STATE"];

fn dashboards_dir() -> PathBuf {
    root().join("dashboards")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml(path: &Path) -> Value {
    serde_norway::from_str(&read(path)).unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()))
}

/// Files in `dir` ending with `ext`, sorted.
fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_str().is_some_and(|s| s.ends_with(ext)))
        .collect();
    v.sort();
    v
}

fn rule_files() -> Vec<PathBuf> {
    ["recording-rules.yml", "alerting-rules.yml"].iter().map(|f| dashboards_dir().join("prometheus").join(f)).collect()
}

/// Every rule of a rule file, flattened.
fn rules(file: &Path) -> Vec<Value> {
    yaml(file)["groups"].as_array().unwrap().iter().flat_map(|g| g["rules"].as_array().unwrap().clone()).collect()
}

fn dashboards() -> Vec<(String, Value)> {
    files(&dashboards_dir().join("grafana"), ".json")
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let v = serde_json::from_str(&read(&p)).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"));
            (name, v)
        })
        .collect()
}

/// `switchyard-policy render prometheus` into `dir`; returns the path of prometheus.yml.
fn render_prometheus(
    dir: &Path,
    policy: &Path,
    envoy: &str,
    backends: &[&str],
    monitors: &[&str],
    alertmanager: &str,
    every: &str,
) -> PathBuf {
    let (dir_s, policy_s) = (dir.to_str().unwrap(), policy.to_str().unwrap());
    let mut args = vec!["prometheus", "--out-dir", dir_s, "--policy", policy_s, "--envoy", envoy];
    for b in backends {
        args.extend(["--backend", b]);
    }
    for m in monitors {
        args.extend(["--monitor", m]);
    }
    args.extend(["--alertmanager", alertmanager, "--scrape-interval", every, "--evaluation-interval", every]);
    render(&args);
    dir.join("prometheus.yml")
}

// ---------------------------------------------------------------------------------------------
// PromQL and Grafana template helpers

const AGGREGATIONS: &[&str] =
    &["sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk", "quantile"];
const KEYWORDS: &[&str] = &["and", "or", "unless", "offset", "bool", "inf", "nan", "atan2"];
const LABEL_LISTS: &[&str] = &["by", "without", "on", "ignoring", "group_left", "group_right"];

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// The metric names a PromQL expression selects: identifiers outside strings, label matchers
/// and range brackets that are not functions, aggregations, keywords or label lists.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let c: Vec<char> = expr.chars().collect();
    let next_non_space = |mut j: usize| {
        while j < c.len() && c[j].is_whitespace() {
            j += 1;
        }
        (j, c.get(j).copied())
    };
    let (mut names, mut i, mut braces, mut brackets) = (BTreeSet::new(), 0, 0i32, 0i32);
    while i < c.len() {
        match c[i] {
            q @ ('"' | '\'' | '`') => {
                i += 1;
                while i < c.len() && c[i] != q {
                    i += if c[i] == '\\' { 2 } else { 1 };
                }
            }
            '{' => braces += 1,
            '}' => braces -= 1,
            '[' => brackets += 1,
            ']' => brackets -= 1,
            d if d.is_ascii_digit() || d == '$' => {
                while i + 1 < c.len() && (is_ident(c[i + 1]) || c[i + 1] == '.') {
                    i += 1;
                }
            }
            a if a.is_ascii_alphabetic() || a == '_' || a == ':' => {
                let start = i;
                while i < c.len() && is_ident(c[i]) {
                    i += 1;
                }
                let word: String = c[start..i].iter().collect();
                let (j, next) = next_non_space(i);
                if braces > 0 || brackets > 0 {
                    continue;
                }
                if LABEL_LISTS.contains(&word.as_str()) && next == Some('(') {
                    i = j;
                    while i < c.len() && c[i] != ')' {
                        i += 1;
                    }
                } else if next != Some('(')
                    && !KEYWORDS.contains(&word.to_lowercase().as_str())
                    && !AGGREGATIONS.contains(&word.as_str())
                {
                    names.insert(word);
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    names
}

/// A Grafana query variable's query (a string, or `{"query": ...}` in newer Grafana).
fn variable_query(v: &Value) -> String {
    v["query"].as_str().or_else(|| v["query"]["query"].as_str()).unwrap_or_default().to_owned()
}

/// `label_values(selector, label)` or `label_values(label)`: (selector, label).
fn label_values_args(q: &str) -> Option<(String, String)> {
    let inner = q.trim().strip_prefix("label_values(")?.strip_suffix(')')?;
    let mut depth = 0;
    let mut split = None;
    for (i, ch) in inner.char_indices() {
        match ch {
            '(' | '{' => depth += 1,
            ')' | '}' => depth -= 1,
            ',' if depth == 0 => split = Some(i),
            _ => {}
        }
    }
    Some(match split {
        Some(i) => (inner[..i].trim().to_owned(), inner[i + 1..].trim().to_owned()),
        None => (String::new(), inner.trim().to_owned()),
    })
}

/// Every PromQL expression of a dashboard: (where, expression), variable selectors included.
fn dashboard_exprs(dash: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push((
                format!("panel '{}'", p["title"].as_str().unwrap_or("?")),
                t["expr"].as_str().unwrap_or("").to_owned(),
            ));
        }
    }
    for v in dash["templating"]["list"].as_array().unwrap() {
        let q = variable_query(v);
        if let Some((selector, _)) = label_values_args(&q) {
            out.push((format!("variable '{}'", v["name"].as_str().unwrap_or("?")), selector));
        }
    }
    for a in dash["annotations"]["list"].as_array().into_iter().flatten() {
        if let Some(e) = a["expr"].as_str() {
            out.push((format!("annotation '{}'", a["name"].as_str().unwrap_or("?")), e.to_owned()));
        }
    }
    out
}

const GRAFANA_BUILTINS: &[&str] = &["__rate_interval", "__interval", "__interval_ms", "__range", "__range_s"];

/// The names of the template variables an expression uses (`$name`, `${name}`, `${name:fmt}`).
fn template_variables(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find('$') {
        rest = &rest[i + 1..];
        let braced = rest.starts_with('{');
        let body = if braced { &rest[1..] } else { rest };
        let name: String = body.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        out.push(name);
    }
    out
}

/// Grafana's interpolation of `vars` into `expr`.
fn substitute(expr: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = expr;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        let braced = rest.starts_with('{');
        let body = if braced { &rest[1..] } else { rest };
        let name: String = body.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        let value = vars.get(&name).ok_or_else(|| format!("undefined variable ${name} in {expr}"))?;
        out.push_str(value);
        rest = if braced {
            let close = body.find('}').ok_or_else(|| format!("unclosed ${{ in {expr}"))?;
            &body[close + 1..]
        } else {
            &body[name.len()..]
        };
    }
    out.push_str(rest);
    Ok(out)
}

#[test]
fn promql_helpers_find_metrics_and_interpolate_like_grafana() {
    let e = r#"sum by (model, le) (rate(switchyard_x_bucket{outcome=~"5xx|a b"}[$__rate_interval])) / on (model) group_left () max(slo:y:ratio offset 5m) > bool 1e9 and up"#;
    let want: BTreeSet<String> = ["switchyard_x_bucket", "slo:y:ratio", "up"].iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(metric_names(e), want);
    assert_eq!(
        label_values_args(r#"label_values(m{a="$model"}, version)"#),
        Some((r#"m{a="$model"}"#.to_owned(), "version".to_owned()))
    );
    let vars: BTreeMap<String, String> =
        [("model", "mlp"), ("version", "(v1|v2)")].iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    assert_eq!(substitute(r#"x{m="$model",v=~"${version}"}"#, &vars).unwrap(), r#"x{m="mlp",v=~"(v1|v2)"}"#);
    assert!(substitute("x{m=\"$nope\"}", &vars).is_err());
}

// ---------------------------------------------------------------------------------------------
// Static checks

#[test]
fn promtool_and_amtool_accept_the_configuration_and_the_rule_unit_tests_pass() {
    let dir = scratch("obs-config");
    let config = render_prometheus(
        &dir,
        &root().join("envoy/policy.json"),
        "127.0.0.1:9901",
        &["127.0.0.1:8201", "127.0.0.1:8202"],
        &["127.0.0.1:9412"],
        "127.0.0.1:9093",
        "5s",
    );
    let (ok, out) = run_tool("promtool", &["check", "config", config.to_str().unwrap()]);
    assert!(ok, "promtool check config {}:\n{out}", config.display());

    let mut rule_paths = rule_files();
    rule_paths.push(dir.join("switchyard-config.rules.yml"));
    let mut args = vec!["check", "rules"];
    args.extend(rule_paths.iter().map(|p| p.to_str().unwrap()));
    let (ok, out) = run_tool("promtool", &args);
    assert!(ok, "promtool check rules:\n{out}");

    let tests = files(&dashboards_dir().join("prometheus/tests"), ".yml");
    assert!(!tests.is_empty(), "no promtool unit tests in dashboards/prometheus/tests");
    let mut args = vec!["test", "rules"];
    args.extend(tests.iter().map(|p| p.to_str().unwrap()));
    let (ok, out) = run_tool("promtool", &args);
    assert!(ok, "promtool test rules:\n{out}");

    let am = dir.join("alertmanager.yml");
    render(&["alertmanager", "--out", am.to_str().unwrap(), "--webhook", "http://127.0.0.1:9095"]);
    let (ok, out) = run_tool("amtool", &["check-config", am.to_str().unwrap()]);
    assert!(ok, "amtool check-config {}:\n{out}", am.display());
    let text = read(&am);
    for needle in ["receiver: page", "receiver: ticket", "inhibit_rules", "/page\n", "/ticket\n"] {
        assert!(text.contains(needle), "{needle:?} missing from the rendered Alertmanager config:\n{text}");
    }
}

/// An alert rule's identity in the unit tests: its name and the static labels that tell its
/// rules apart (severity, windows, signal).
fn alert_identity(rule: &Value) -> (String, BTreeMap<String, String>) {
    let labels = rule["labels"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())).collect())
        .unwrap_or_default();
    (rule["alert"].as_str().unwrap().to_owned(), labels)
}

#[test]
fn every_alert_has_severity_a_live_description_a_runbook_and_unit_tests() {
    let alerts: Vec<Value> = rules(&rule_files()[1]).into_iter().filter(|r| r.get("alert").is_some()).collect();
    assert!(!alerts.is_empty());
    // (alertname, labels it fired with) and the alertnames with a silent case, from every test.
    let mut fired: Vec<(String, BTreeMap<String, String>)> = Vec::new();
    let mut silent: BTreeSet<String> = BTreeSet::new();
    for f in files(&dashboards_dir().join("prometheus/tests"), ".yml") {
        for t in yaml(&f)["tests"].as_array().into_iter().flatten() {
            for case in t["alert_rule_test"].as_array().into_iter().flatten() {
                let name = case["alertname"].as_str().unwrap_or_default().to_owned();
                let exp = case["exp_alerts"].as_array().cloned().unwrap_or_default();
                if exp.is_empty() {
                    silent.insert(name.clone());
                }
                for a in exp {
                    let labels = a["exp_labels"]
                        .as_object()
                        .map(|m| {
                            m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())).collect()
                        })
                        .unwrap_or_default();
                    fired.push((name.clone(), labels));
                }
            }
        }
    }
    let mut problems = Vec::new();
    let mut names = BTreeSet::new();
    // The dead man's switch fires always: it goes to no person (severity none), has no value to
    // show and is never silent. The pager raises its own alert when it stops, with a runbook.
    let watchdog = |name: &str| name == pager::WATCHDOG_ALERT;
    for rule in &alerts {
        let (name, labels) = alert_identity(rule);
        names.insert(name.clone());
        let who = format!("{name} {labels:?}");
        let severity = labels.get("severity").map(String::as_str);
        if !(matches!(severity, Some("page" | "ticket")) || watchdog(&name) && severity == Some("none")) {
            problems.push(format!("{who}: severity must be page or ticket"));
        }
        let ann = &rule["annotations"];
        if ann["summary"].as_str().is_none_or(str::is_empty) {
            problems.push(format!("{who}: no summary"));
        }
        if !watchdog(&name) && !ann["description"].as_str().is_some_and(|d| d.contains("$value")) {
            problems.push(format!("{who}: the description must show the live value ($value)"));
        }
        let want = format!("{RUNBOOK_BASE}docs/runbooks/{name}.md");
        if ann["runbook_url"].as_str() != Some(want.as_str()) {
            problems.push(format!("{who}: runbook_url must be {want}"));
        }
        let fires_in_a_test = fired.iter().any(|(n, l)| *n == name && labels.iter().all(|(k, v)| l.get(k) == Some(v)));
        if !fires_in_a_test {
            problems.push(format!("{who}: no promtool test shows it firing (exp_alerts with these labels)"));
        }
    }
    for name in &names {
        if !silent.contains(name) && !watchdog(name) {
            problems.push(format!("{name}: no promtool test shows it silent (exp_alerts: [])"));
        }
        let runbook = root().join(format!("docs/runbooks/{name}.md"));
        match std::fs::read_to_string(&runbook) {
            Err(e) => problems.push(format!("{name}: runbook {}: {e}", runbook.display())),
            Ok(text) => {
                for heading in ["## What it means", "## What to look at", "## What to do"] {
                    if !text.contains(heading) {
                        problems.push(format!("{}: no '{heading}' section", runbook.display()));
                    }
                }
            }
        }
    }
    for f in files(&root().join("docs/runbooks"), ".md") {
        let stem = f.file_stem().unwrap().to_string_lossy().into_owned();
        if !names.contains(&stem) && stem != pager::ALERTING_DOWN {
            problems.push(format!("{}: no alert of that name", f.display()));
        }
    }
    assert!(problems.is_empty(), "{} problem(s):\n{}", problems.len(), problems.join("\n"));
}

#[test]
fn dashboards_are_importable_as_is() {
    let out = std::process::Command::new(python())
        .arg(dashboards_dir().join("grafana/generate.py"))
        .arg("--check")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dashes = dashboards();
    let titles: Vec<&str> = dashes.iter().map(|(_, d)| d["title"].as_str().unwrap_or("")).collect();
    assert_eq!(dashes.len(), 5, "overview, canary, backend, FinOps, drift; found {titles:?}");
    let mut problems = Vec::new();
    let mut uids = BTreeSet::new();
    for (file, d) in &dashes {
        let mut p = |m: String| problems.push(format!("{file}: {m}"));
        if !uids.insert(d["uid"].as_str().unwrap_or("").to_owned()) || d["uid"].as_str().is_none_or(str::is_empty) {
            p(format!("uid {:?} missing or not unique", d["uid"]));
        }
        if d["schemaVersion"].as_u64() != Some(SCHEMA_VERSION) {
            p(format!("schemaVersion {} (want {SCHEMA_VERSION})", d["schemaVersion"]));
        }
        if !d["id"].is_null() {
            p("\"id\" must be null so that importing never overwrites another dashboard".into());
        }
        // Every datasource reference, wherever it is, is the template variable.
        let mut refs = Vec::new();
        walk(d, &mut |k, v| {
            if k == "datasource" {
                refs.push(v.clone());
            }
        });
        for r in &refs {
            if r["uid"].as_str() != Some(DATASOURCE_UID) || r["type"].as_str() != Some("prometheus") {
                p(format!("datasource {r} is not {{\"type\": \"prometheus\", \"uid\": \"{DATASOURCE_UID}\"}}"));
            }
        }
        let vars = d["templating"]["list"].as_array().cloned().unwrap_or_default();
        let var = |name: &str| vars.iter().find(|v| v["name"] == name).cloned();
        match var("datasource") {
            Some(v) if v["type"] == "datasource" && v["query"] == "prometheus" => {}
            other => p(format!("no `datasource` variable of type datasource/prometheus: {other:?}")),
        }
        for name in ["model", "version"] {
            match var(name) {
                Some(v) if v["type"] == "query" && !variable_query(&v).is_empty() => {}
                other => p(format!("no `{name}` query variable: {other:?}")),
            }
        }
        let defined: BTreeSet<String> = vars.iter().filter_map(|v| v["name"].as_str().map(str::to_owned)).collect();
        let mut ids = BTreeSet::new();
        let mut cells: Vec<(String, [u64; 4])> = Vec::new();
        for panel in d["panels"].as_array().cloned().unwrap_or_default() {
            let title = panel["title"].as_str().unwrap_or("").to_owned();
            if !ids.insert(panel["id"].as_u64().unwrap_or(0)) || panel["id"].as_u64().is_none() {
                p(format!("panel '{title}': id {} missing or not unique", panel["id"]));
            }
            if title.is_empty() {
                p(format!("panel {}: no title", panel["id"]));
            }
            if panel["fieldConfig"]["defaults"]["unit"].as_str().is_none_or(str::is_empty) {
                p(format!("panel '{title}': no unit"));
            }
            let g = &panel["gridPos"];
            let rect = ["x", "y", "w", "h"].map(|k| g[k].as_u64().unwrap_or(u64::MAX));
            if rect.contains(&u64::MAX) || rect[0] + rect[2] > 24 || rect[2] == 0 || rect[3] == 0 {
                p(format!("panel '{title}': bad gridPos {g}"));
            } else if let Some((other, _)) = cells.iter().find(|(_, r)| {
                rect[0] < r[0] + r[2] && r[0] < rect[0] + rect[2] && rect[1] < r[1] + r[3] && r[1] < rect[1] + rect[3]
            }) {
                p(format!("panel '{title}' overlaps '{other}'"));
            } else {
                cells.push((title.clone(), rect));
            }
            let targets = panel["targets"].as_array().cloned().unwrap_or_default();
            if targets.is_empty() {
                p(format!("panel '{title}': no queries"));
            }
            // Without one, Grafana would use whatever its default datasource is.
            if panel.get("datasource").is_none() || targets.iter().any(|t| t.get("datasource").is_none()) {
                p(format!("panel '{title}': a panel or query without a datasource"));
            }
            let mut refids = BTreeSet::new();
            for t in &targets {
                let expr = t["expr"].as_str().unwrap_or("");
                if expr.trim().is_empty() {
                    p(format!("panel '{title}': empty query"));
                }
                if !refids.insert(t["refId"].as_str().unwrap_or("").to_owned()) {
                    p(format!("panel '{title}': refId {} missing or repeated", t["refId"]));
                }
                for name in template_variables(expr) {
                    if !defined.contains(&name) && !GRAFANA_BUILTINS.contains(&name.as_str()) {
                        p(format!("panel '{title}': ${name} is not a variable of this dashboard"));
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "{} problem(s):\n{}", problems.len(), problems.join("\n"));
}

/// Calls `f(key, value)` for every object member, recursively.
fn walk(v: &Value, f: &mut impl FnMut(&str, &Value)) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                f(k, x);
                walk(x, f);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| walk(x, f)),
        _ => {}
    }
}

#[test]
fn every_metric_in_rules_and_dashboards_is_documented() {
    let dir = scratch("obs-docs");
    render_prometheus(
        &dir,
        &root().join("envoy/policy.json"),
        "127.0.0.1:9901",
        &["127.0.0.1:8201"],
        &["127.0.0.1:9412"],
        "127.0.0.1:9093",
        "5s",
    );
    let mut recorded = BTreeSet::new();
    // (where, expression)
    let mut uses: Vec<(String, String)> = Vec::new();
    for f in rule_files().iter().chain([&dir.join("switchyard-config.rules.yml")]) {
        let short = f.file_name().unwrap().to_string_lossy().into_owned();
        for r in rules(f) {
            let name = r["record"].as_str().or_else(|| r["alert"].as_str()).unwrap().to_owned();
            if r.get("record").is_some() {
                recorded.insert(name.clone());
            }
            uses.push((format!("{short}: {name}"), r["expr"].as_str().unwrap().to_owned()));
        }
    }
    for (file, d) in dashboards() {
        uses.extend(dashboard_exprs(&d).into_iter().map(|(w, e)| (format!("{file}: {w}"), e)));
    }
    let docs = read(&root().join("docs/metrics.md"));
    let documented = |name: &str| {
        let base = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
        docs.contains(&format!("`{name}`")) || docs.contains(&format!("`{base}`"))
    };
    let mut problems = BTreeSet::new();
    for name in &recorded {
        if !documented(name) {
            problems.insert(format!("recorded series `{name}` is not in docs/metrics.md"));
        }
    }
    for (at, expr) in &uses {
        let names = metric_names(expr);
        // A constant (the generated config rules) selects nothing; anything else that seems to
        // would mean the extraction missed a name.
        if names.is_empty() && !expr.starts_with("vector(") {
            problems.insert(format!("{at}: no metric found in {expr:?}"));
        }
        for name in names {
            if PROMETHEUS_SERIES.contains(&name.as_str()) {
                continue;
            }
            if name.contains(':') && !recorded.contains(&name) {
                problems.insert(format!("{at}: `{name}` is recorded by no rule"));
            } else if !documented(&name) {
                problems.insert(format!("{at}: `{name}` is not in docs/metrics.md"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.into_iter().collect::<Vec<_>>().join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// The live check

fn infer_body(seed: usize) -> Vec<u8> {
    let row: Vec<f64> = (0..64).map(|j| ((seed * 64 + j) as f64 * 0.1).sin()).collect();
    serde_json::to_vec(&json!({"inputs": [{"name": "features", "shape": [1, 64], "datatype": "FP32", "data": row}]}))
        .unwrap()
}

fn all_nan(samples: &[Sample]) -> bool {
    samples.iter().all(|s| s.value.is_nan())
}

/// How many recording rules Prometheus runs, and those (name and static labels as a
/// selector) that return no series, or only NaN.
fn silent_recording_rules(prom: &Prometheus) -> (usize, Vec<String>) {
    let (mut count, mut missing) = (0, Vec::new());
    for g in prom.rule_groups() {
        for r in g["rules"].as_array().into_iter().flatten().filter(|r| r["type"] == "recording") {
            let labels = r["labels"]
                .as_object()
                .map(|m| m.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","))
                .unwrap_or_default();
            let selector = format!("{}{{{labels}}}", r["name"].as_str().unwrap());
            count += 1;
            match prom.query(&selector) {
                Ok(s) if !s.is_empty() && !all_nan(&s) => {}
                Ok(s) => missing.push(format!(
                    "{selector}: {} (rule health {}, last error {})",
                    if s.is_empty() { "no series" } else { "only NaN" },
                    r["health"],
                    r["lastError"]
                )),
                Err(e) => missing.push(format!("{selector}: {e}")),
            }
        }
    }
    (count, missing)
}

/// Evaluates every variable, panel query and annotation of a dashboard, with the variables set
/// as Grafana sets them by default (first value; "All" for multi-value variables).
fn check_dashboard(prom: &Prometheus, file: &str, d: &Value, gpu: bool, report: &mut Vec<String>) -> Vec<String> {
    let mut problems = Vec::new();
    // Grafana's $__rate_interval for a 1 s scrape is 4 s; a minute keeps rate() well fed.
    let mut vars: BTreeMap<String, String> = [
        ("__rate_interval", "1m"),
        ("__interval", "15s"),
        ("__interval_ms", "15000"),
        ("__range", "5m"),
        ("__range_s", "300"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    for v in d["templating"]["list"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap().to_owned();
        if v["type"] == "datasource" {
            continue;
        }
        let q = match substitute(&variable_query(v), &vars) {
            Ok(q) => q,
            Err(e) => {
                problems.push(format!("{file}: variable {name}: {e}"));
                continue;
            }
        };
        let values = match label_values_args(&q) {
            Some((selector, label)) if !selector.is_empty() => prom.label_values(&label, &selector),
            _ => Err(format!("unsupported variable query {q}")),
        };
        match values {
            Ok(values) if !values.is_empty() => {
                let all = v["multi"] == true && v["includeAll"] == true && values.len() > 1;
                let value = if all { format!("({})", values.join("|")) } else { values[0].clone() };
                report.push(format!("{file}: ${name} = {value} (from {q})"));
                vars.insert(name, value);
            }
            Ok(_) => problems.push(format!("{file}: variable {name}: no values for {q}")),
            Err(e) => problems.push(format!("{file}: variable {name}: {q}: {e}")),
        }
    }
    let mut checked = 0;
    for panel in d["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap_or("?");
        for t in panel["targets"].as_array().into_iter().flatten() {
            let raw = t["expr"].as_str().unwrap_or("");
            let expr = match substitute(raw, &vars) {
                Ok(e) => e,
                Err(e) => {
                    problems.push(format!("{file}: panel '{title}': {e}"));
                    continue;
                }
            };
            checked += 1;
            let gpu_only = metric_names(raw).iter().all(|m| m.starts_with("switchyard_gpu_"));
            match prom.query(&expr) {
                Err(e) => problems.push(format!("{file}: panel '{title}': {expr}: {e}")),
                Ok(s) if gpu_only && !gpu && s.is_empty() => {
                    report.push(format!("{file}: panel '{title}': parsed, empty: no GPU on this host ({expr})"));
                }
                Ok(s) if s.is_empty() || all_nan(&s) => problems.push(format!(
                    "{file}: panel '{title}': {} for {expr}",
                    if s.is_empty() { "no data" } else { "only NaN" }
                )),
                Ok(_) => {}
            }
        }
    }
    for a in d["annotations"]["list"].as_array().into_iter().flatten() {
        if let Some(raw) = a["expr"].as_str() {
            // Alert annotations are events: they must parse, and may be empty.
            match substitute(raw, &vars).map(|e| prom.query(&e).map(|s| (e, s.len()))) {
                Ok(Ok((e, n))) => report.push(format!("{file}: annotation {e}: {n} series")),
                Ok(Err(e)) | Err(e) => problems.push(format!("{file}: annotation {raw}: {e}")),
            }
        }
    }
    report.push(format!("{file}: {checked} panel queries evaluated"));
    problems
}

#[test]
fn live_stack_feeds_every_rule_panel_and_alert() {
    let started = Instant::now();
    let mut policy = mlp_policy(&json!({
        "versions": [{"name": "v1", "cluster": "mlp-v1", "weight": 70}, {"name": "v2", "cluster": "mlp-v2", "weight": 30}],
        "sampling": {"rate": 0.2, "max_body_bytes": 65536},
        "slo": {"availability": 0.999, "latency_ms": 100, "latency_objective": 0.99}
    }));
    // Clients with tokens of two tenants (one named, one `other`), team-a over a quota it
    // meets now and then: the tenant rules and the FinOps panels get data too.
    policy["identity"] =
        json!({"issuer": "observability", "tenants": {"team-a": {"quota": {"requests_per_second": 150}}}});
    let keys = scratch("observability-keys");
    policy_tool(&["render", "certs", "--out-dir", keys.to_str().unwrap()]).unwrap();
    let jwks = keys.join(switchyard_tls::jwt::JWKS);
    let tokens: Vec<String> = ["team-a", "team-b"]
        .iter()
        .map(|t| {
            let claims = json!({"iss": "observability", "tenant": t, "exp": 4_102_444_800_u64});
            format!(
                "Bearer {}",
                switchyard_tls::jwt::mint(&keys.join(switchyard_tls::jwt::SIGNING_KEY), &claims).unwrap()
            )
        })
        .collect();
    // The canary fails 30% of its requests with 503 (Envoy's fault filter, after the
    // Switchyard filter: the filter counts them like upstream answers).
    let stack =
        Stack::start_with("observability", &policy, &["--fault", "mlp-v2=30", "--jwks", jwks.to_str().unwrap()]);
    let dir = stack.dir.clone();
    let webhook = Webhook::start(&dir);
    let am_config = dir.join("alertmanager.yml");
    // Notifications after 1 s rather than the demo's 30 s, so that the test sees them.
    render(&[
        "alertmanager",
        "--out",
        am_config.to_str().unwrap(),
        "--webhook",
        &webhook.url,
        "--group-wait",
        "1s",
        "--group-interval",
        "1s",
    ]);
    let am = Alertmanager::start(&am_config, &dir);
    // The drift monitor on the stack's samples (20% of the requests): v1's first 300 rows are
    // the reference, so that v1's windows hold the 500 rows the drift series need within
    // seconds.
    let windows = json!([{"name": "1k", "rows": 1000}, {"name": "5m", "seconds": 300, "rows": 10000}]);
    let (_monitor, monitor) = stack.start_monitor(
        &json!({"evaluate_every_seconds": 1, "models": {"mlp": {"reference": {"version": "v1", "rows": 300}, "windows": windows}}}),
    );
    let prom_config = render_prometheus(
        &dir,
        &stack.policy_file,
        &stack.admin,
        &[&stack.v1.admin, &stack.v2.admin],
        &[&monitor],
        &am.addr,
        "1s",
    );
    let prom = Prometheus::start(&prom_config, &dir);

    // The batching limits the efficiency and capacity rules divide by are the config's.
    let config: Value = serde_json::from_str(&read(&demo_repo().join("mlp/v1/config.json"))).unwrap();
    for (metric, field) in
        [(contract::MAX_BATCH_SIZE.name, "max_batch_size"), (contract::MAX_QUEUE_SIZE.name, "max_queue_size")]
    {
        let want = config["batching"][field].as_f64().unwrap();
        assert_eq!(stack.v1.metric(metric, &[("model", "mlp"), ("version", "v1")]), want, "{metric}");
    }

    // Load: 3 clients, each pausing 5 ms between requests, so that Prometheus keeps its 1 s
    // cadence on a 2-core machine. Responses counted by (version, status).
    let stop = AtomicBool::new(false);
    let seen: Mutex<BTreeMap<(String, u16), usize>> = Mutex::new(BTreeMap::new());
    let mut report = Vec::new();
    let mut problems = Vec::new();
    std::thread::scope(|s| {
        for t in 0..3 {
            let (stop, seen, listen) = (&stop, &seen, &stack.listen);
            let token = tokens[t % 2].as_str();
            s.spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let body = infer_body(t * 1_000_000 + i);
                    if let Ok(r) = try_request(
                        listen,
                        "POST",
                        "/v2/models/mlp/infer",
                        &[("content-type", "application/json"), ("authorization", token)],
                        &body,
                    ) {
                        let v = r.header("x-switchyard-version").unwrap_or("-").to_owned();
                        *seen.lock().unwrap().entry((v, r.status)).or_default() += 1;
                    }
                    i += 1;
                    std::thread::sleep(Duration::from_millis(5));
                }
            });
        }

        // Every rule group has run on real data (the SLO period group every 30 s), and the
        // injected errors show as the canary's burn and as canary-worse-than-stable.
        let burn_page = |a: &Alert| {
            a.name() == "SwitchyardErrorBudgetBurn"
                && a.state == "firing"
                && a.label("version") == "v2"
                && a.label("sli") == "availability"
                && a.label("long_window") == "1h"
        };
        let canary_errors = |a: &Alert| {
            a.name() == "SwitchyardCanaryWorseThanStable" && a.label("version") == "v2" && a.label("signal") == "errors"
        };
        let deadline = Instant::now() + Duration::from_secs(75);
        let (recording_rules, missing) = loop {
            let (count, mut missing) = silent_recording_rules(&prom);
            let alerts = prom.alerts();
            if !alerts.iter().any(burn_page) {
                missing.push("SwitchyardErrorBudgetBurn page (1h/5m) firing for mlp/v2".to_owned());
            }
            if !alerts.iter().any(canary_errors) {
                missing.push("SwitchyardCanaryWorseThanStable (errors) active for mlp/v2".to_owned());
            }
            if missing.is_empty() || Instant::now() > deadline {
                break (count, missing);
            }
            std::thread::sleep(Duration::from_millis(500));
        };
        problems.extend(missing.iter().map(|m| format!("after 75 s: {m}")));
        report.push(format!(
            "after {:.1} s: all {recording_rules} recording rules with data, burn paging, canary alert raised",
            started.elapsed().as_secs_f64()
        ));

        // Every dashboard query, while the load runs.
        let gpu = prom.query("count(switchyard_gpu_memory_total_bytes)").is_ok_and(|s| !s.is_empty());
        for (file, d) in dashboards() {
            problems.extend(check_dashboard(&prom, &file, &d, gpu, &mut report));
        }

        // Alertmanager: the page reached the page receiver, and inhibits the tickets of the
        // same burn (the 1d/2h and 3d/6h windows see the same few seconds of errors here).
        let deadline = Instant::now() + Duration::from_secs(30);
        let (inhibited, am_state) = loop {
            {
                let alerts = am.alerts();
                let tickets: Vec<&Value> = alerts
                    .iter()
                    .filter(|a| {
                        a["labels"]["alertname"] == "SwitchyardErrorBudgetBurn" && a["labels"]["severity"] == "ticket"
                    })
                    .collect();
                let paged = webhook.notifications().iter().any(|(receiver, n)| {
                    receiver == "page"
                        && n["alerts"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .any(|a| a["labels"]["alertname"] == "SwitchyardErrorBudgetBurn")
                });
                let inhibited = tickets
                    .iter()
                    .filter(|a| {
                        a["status"]["state"] == "suppressed"
                            && a["status"]["inhibitedBy"].as_array().is_some_and(|v| !v.is_empty())
                    })
                    .count();
                let ok = paged && !tickets.is_empty() && inhibited == tickets.len();
                if ok || Instant::now() > deadline {
                    let state = format!(
                        "burn page delivered to the page receiver: {paged}; burn tickets: {}, inhibited: {inhibited}",
                        tickets.len()
                    );
                    break (ok, state);
                }
            }
            std::thread::sleep(Duration::from_millis(500));
        };
        report.push(format!("Alertmanager: {am_state}"));
        if !inhibited {
            problems.push(format!(
                "Alertmanager: want the burn page at the page receiver and its tickets inhibited; {am_state}\n{}\n{}",
                serde_json::to_string_pretty(&am.alerts()).unwrap(),
                am.log()
            ));
        }
        stop.store(true, Ordering::Relaxed);
    });

    let alerts = prom.alerts();
    let mut listed: Vec<String> = alerts
        .iter()
        .map(|a| {
            let labels: Vec<String> =
                a.labels.iter().filter(|(k, _)| *k != "alertname").map(|(k, v)| format!("{k}={v}")).collect();
            format!("{} {} [{}] value {:.3}", a.state, a.name(), labels.join(" "), a.value)
        })
        .collect();
    listed.sort();
    let seen = seen.into_inner().unwrap();
    println!("live observability check ({:.1} s)", started.elapsed().as_secs_f64());
    println!("responses by (version, status): {seen:?}");
    println!("alerts at the end:\n  {}", listed.join("\n  "));
    println!("{}", report.join("\n"));

    // The stable version was never failed: no burn for it. Nothing is down or bypassed.
    for a in &alerts {
        let stable_burn =
            a.name() == "SwitchyardErrorBudgetBurn" && a.label("version") == "v1" && a.label("sli") == "availability";
        if stable_burn
            || a.name() == "SwitchyardTargetDown"
            || (a.name().starts_with("SwitchyardDrift") && a.state == "firing")
            || (a.name() == "SwitchyardWasmFilterFailing" && a.state == "firing")
        {
            problems.push(format!("unexpected alert {} {:?}", a.state, a.labels));
        }
    }
    // The injected errors reached the client from the canary only.
    let count = |v: &str, ok: bool| {
        seen.iter().filter(|((ver, st), _)| ver == v && (*st == 200) == ok).map(|(_, n)| n).sum::<usize>()
    };
    if count("v1", false) > 0 {
        problems.push(format!("the stable version answered errors: {seen:?}"));
    }
    if count("v2", false) == 0 {
        problems.push(format!("no injected canary errors reached the client: {seen:?}"));
    }
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}\n\nPrometheus log:\n{}",
        problems.len(),
        problems.join("\n"),
        prom.log()
    );
}
