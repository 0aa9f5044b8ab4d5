//! Prometheus, Alertmanager and the demo's pager (`switchyard-pager`) on free loopback ports, with the
//! configuration rendered by `switchyard-policy render` ([`crate::stack::render`]), and small clients for their HTTP APIs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::{Log, Process, address_after};
use crate::{free_port, try_request, url_encode};

/// A Debian-packaged tool (`prometheus`, `promtool`, `prometheus-alertmanager`, `amtool`).
pub fn tool(name: &str) -> Command {
    let found =
        std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(name).is_file()));
    assert!(found, "{name} is not on PATH: run scripts/setup.sh (it installs Debian's prometheus packages)");
    Command::new(name)
}

/// Runs a tool to completion: (success, stdout and stderr together).
pub fn run_tool(name: &str, args: &[&str]) -> (bool, String) {
    let out = tool(name).args(args).output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// GET `path` and parse the JSON body; Err with the body on a non-2xx status.
fn get_json(addr: &str, path: &str) -> Result<serde_json::Value, String> {
    let r = try_request(addr, "GET", path, &[], b"").map_err(|e| format!("GET {path}: {e}"))?;
    let body = String::from_utf8_lossy(&r.body).into_owned();
    if !(200..300).contains(&r.status) {
        return Err(format!("HTTP {}: {body}", r.status));
    }
    serde_json::from_str(&body).map_err(|e| format!("not JSON ({e}): {body}"))
}

/// A daemon with its output in `log`, killed on drop, up once `/-/ready` answers 200.
fn daemon(name: &str, cmd: Command, log: PathBuf, addr: &str) -> Process {
    let mut p = Process::spawn(name, cmd, Log::File(log)).unwrap();
    p.wait_ready(Duration::from_secs(30), "readiness", || {
        try_request(addr, "GET", "/-/ready", &[], b"").is_ok_and(|r| r.status == 200)
    })
    .unwrap();
    p
}

/// One sample of an instant query.
#[derive(Debug, Clone)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// An alert as Prometheus' `/api/v1/alerts` shows it.
#[derive(Debug, Clone)]
pub struct Alert {
    pub labels: BTreeMap<String, String>,
    /// `pending` or `firing`.
    pub state: String,
    pub value: f64,
}

impl Alert {
    pub fn name(&self) -> &str {
        self.labels.get("alertname").map_or("", String::as_str)
    }

    pub fn label(&self, k: &str) -> &str {
        self.labels.get(k).map_or("", String::as_str)
    }
}

fn labels(v: &serde_json::Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())).collect())
        .unwrap_or_default()
}

/// Prometheus values are strings ("1.5", "NaN", "+Inf").
fn value(v: &serde_json::Value) -> f64 {
    v.as_str().and_then(|s| s.parse().ok()).unwrap_or(f64::NAN)
}

pub struct Prometheus {
    daemon: Process,
    pub addr: String,
}

impl Prometheus {
    /// Starts `prometheus` on a free port with `config`, its data under `dir`.
    pub fn start(config: &Path, dir: &Path) -> Prometheus {
        Prometheus::start_at(config, dir, &format!("127.0.0.1:{}", free_port()))
    }

    /// [`Prometheus::start`] listening on `addr`.
    pub fn start_at(config: &Path, dir: &Path, addr: &str) -> Prometheus {
        let addr = addr.to_owned();
        let mut cmd = tool("prometheus");
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("prometheus-data").display()))
            .arg(format!("--web.listen-address={addr}"))
            // Firing alerts are sent to Alertmanager every second, not every minute: their
            // `endsAt` is then 4 s ahead, so a stopped Prometheus shows at the pager's dead
            // man's switch within seconds on the local stack's compressed clock.
            .arg("--rules.alert.resend-delay=1s")
            .arg("--log.level=warn");
        let daemon = daemon("prometheus", cmd, dir.join("prometheus.log"), &addr);
        Prometheus { daemon, addr }
    }

    pub fn log(&self) -> String {
        self.daemon.log()
    }

    fn api(&self, path: &str) -> Result<serde_json::Value, String> {
        let v = get_json(&self.addr, path)?;
        if v["status"] != "success" {
            return Err(format!("{v}"));
        }
        Ok(v["data"].clone())
    }

    /// An instant query at the current time; Err with Prometheus' message (e.g. a parse error).
    pub fn query(&self, expr: &str) -> Result<Vec<Sample>, String> {
        let data = self.api(&format!("/api/v1/query?query={}", url_encode(expr)))?;
        let result = data["result"].as_array().cloned().unwrap_or_default();
        Ok(match data["resultType"].as_str() {
            Some("vector") => {
                result.iter().map(|s| Sample { labels: labels(&s["metric"]), value: value(&s["value"][1]) }).collect()
            }
            Some("scalar") => vec![Sample { labels: BTreeMap::new(), value: value(&data["result"][1]) }],
            other => return Err(format!("unexpected result type {other:?} for {expr}")),
        })
    }

    /// Values of `label` on the series matching `selector` (Grafana's `label_values`).
    pub fn label_values(&self, label: &str, selector: &str) -> Result<Vec<String>, String> {
        let data = self.api(&format!("/api/v1/label/{label}/values?match[]={}", url_encode(selector)))?;
        Ok(data
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default())
    }

    /// The loaded rule groups (`/api/v1/rules`).
    pub fn rule_groups(&self) -> Vec<serde_json::Value> {
        self.api("/api/v1/rules").unwrap()["groups"].as_array().cloned().unwrap_or_default()
    }

    /// Pending and firing alerts.
    pub fn alerts(&self) -> Vec<Alert> {
        let data = self.api("/api/v1/alerts").unwrap();
        data["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|a| Alert {
                labels: labels(&a["labels"]),
                state: a["state"].as_str().unwrap_or_default().to_owned(),
                value: value(&a["value"]),
            })
            .collect()
    }
}

pub struct Alertmanager {
    daemon: Process,
    pub addr: String,
}

impl Alertmanager {
    /// Starts Alertmanager on a free port, clustering off (it would bind a fixed port).
    pub fn start(config: &Path, dir: &Path) -> Alertmanager {
        Alertmanager::start_at(config, dir, &format!("127.0.0.1:{}", free_port()))
    }

    /// [`Alertmanager::start`] listening on `addr`.
    pub fn start_at(config: &Path, dir: &Path, addr: &str) -> Alertmanager {
        let addr = addr.to_owned();
        let mut cmd = tool("prometheus-alertmanager");
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", dir.join("alertmanager-data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--cluster.listen-address=")
            .arg("--log.level=warn");
        let daemon = daemon("alertmanager", cmd, dir.join("alertmanager.log"), &addr);
        Alertmanager { daemon, addr }
    }

    pub fn log(&self) -> String {
        self.daemon.log()
    }

    /// Every alert Alertmanager holds, inhibited ones included, as its v2 API returns them
    /// (`labels`, `status.state` = active | suppressed, `status.inhibitedBy`).
    pub fn alerts(&self) -> Vec<serde_json::Value> {
        get_json(&self.addr, "/api/v2/alerts").unwrap().as_array().cloned().unwrap_or_default()
    }
}

/// `switchyard-pager`: the demo's stand-in pager and ticket queue, with its dead man's switch on
/// Alertmanager's Watchdog.
pub struct Webhook {
    _daemon: Process,
    pub url: String,
    out: PathBuf,
}

impl Webhook {
    pub fn start(dir: &Path) -> Webhook {
        Webhook::start_at("127.0.0.1:0", &dir.join("notifications.jsonl"))
    }

    /// [`Webhook::start`] listening on `listen`, writing what it receives to `out`; the
    /// production watchdog timeout (3 minutes).
    pub fn start_at(listen: &str, out: &Path) -> Webhook {
        Webhook::start_with(listen, out, "3m")
    }

    /// [`Webhook::start_at`] paging by itself after `watchdog_timeout` without a Watchdog.
    pub fn start_with(listen: &str, out: &Path, watchdog_timeout: &str) -> Webhook {
        let out = out.to_owned();
        let mut cmd = Command::new(crate::workspace_bin("switchyard-pager"));
        cmd.args(["--listen", listen, "--watchdog-timeout", watchdog_timeout, "--out"]).arg(&out);
        let (daemon, line) = Process::spawn_reporting("pager", cmd, Log::Discard).unwrap();
        let url = format!("http://{}", address_after(&line, "").expect("pager address"));
        Webhook { _daemon: daemon, url, out }
    }
    /// Every notification received so far with its arrival (Unix seconds): (time, receiver,
    /// Alertmanager's payload).
    pub fn received(&self) -> Vec<(f64, String, serde_json::Value)> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .map(|v| {
                let at = v["received_at"].as_f64().unwrap_or_default();
                (at, v["receiver"].as_str().unwrap_or_default().to_owned(), v["notification"].clone())
            })
            .collect()
    }

    /// Every notification received so far: (receiver, Alertmanager's payload).
    pub fn notifications(&self) -> Vec<(String, serde_json::Value)> {
        self.received().into_iter().map(|(_, receiver, n)| (receiver, n)).collect()
    }
}
