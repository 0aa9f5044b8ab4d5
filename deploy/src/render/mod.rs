//! Configuration rendered from a validated [`Config`]: Envoy's bootstrap and
//! the filter's ECDS resource ([`envoy`]), and the Prometheus and Alertmanager configuration
//! of the local stack ([`prometheus`]). Pure: callers read and write the files
//! (`switchyard-policy render …`, the test kit, the benchmarks), so every consumer of the
//! policy goes through [`Config::parse`] and these functions.

pub mod envoy;
pub mod k8s;
pub mod prometheus;

use std::fmt;

use serde_json::Value;
use switchyard_policy::{Config, ConfigErrors};

/// A policy file's text with its validated form: the filter is handed the text (and parses
/// it with the same rules), the renderers read the [`Config`].
#[derive(Debug, Clone)]
pub struct Policy {
    text: String,
    config: Config,
}

impl Policy {
    pub fn parse(text: String) -> Result<Policy, ConfigErrors> {
        let config = Config::parse(text.as_bytes())?;
        Ok(Policy { text, config })
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn config(&self) -> &Config {
        &self.config
    }
}

/// `HOST:PORT` with a numeric port; the host is not resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl std::str::FromStr for HostPort {
    type Err = String;

    fn from_str(s: &str) -> Result<HostPort, String> {
        let bad = || format!("'{s}' is not HOST:PORT");
        let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
        let port = port.parse().map_err(|_| bad())?;
        if host.is_empty() {
            return Err(bad());
        }
        Ok(HostPort { host: host.to_owned(), port })
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// Problems found while rendering, all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderErrors(pub Vec<String>);

impl fmt::Display for RenderErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("; "))
    }
}

impl std::error::Error for RenderErrors {}

/// JSON text Envoy reads (as YAML).
pub fn json_text(v: &Value) -> String {
    // A Value always serialises.
    serde_json::to_string_pretty(v).unwrap_or_default() + "\n"
}

fn collect<T>(value: T, problems: Vec<String>) -> Result<T, RenderErrors> {
    if problems.is_empty() { Ok(value) } else { Err(RenderErrors(problems)) }
}
