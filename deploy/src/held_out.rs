//! Which versions the data-plane guard holds out of the split, since when and why, read from
//! the filter's own gauges (`switchyard_guard_out`, `switchyard_guard_out_since_seconds`) in
//! Envoy's or Prometheus' exposition: what `envoy/apply-policy.sh`, the rollout controller and
//! the console say after every change, so that a latch in force is never a surprise.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use switchyard_contract::metrics::{GUARD_OUT, GUARD_OUT_SINCE};
use switchyard_runtime::exposition::Sample;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HeldOut {
    pub model: String,
    pub version: String,
    /// When the guard took it out (Unix seconds); `None` when no gauge says (a filter of an
    /// earlier release).
    pub since_s: Option<u64>,
    /// The SLI it tripped on (`availability` or `latency`).
    pub sli: Option<String>,
}

fn label<'a>(s: &'a Sample, key: &str) -> &'a str {
    s.labels.get(key).map_or("", String::as_str)
}

/// Every version some Envoy in `samples` holds out, once, with the latest trip seen for it.
pub fn held_out(samples: &[Sample]) -> Vec<HeldOut> {
    let mut out: BTreeMap<(&str, &str), HeldOut> = BTreeMap::new();
    for s in samples.iter().filter(|s| s.name == GUARD_OUT.name && s.value > 0.0) {
        let (model, version) = (label(s, "model"), label(s, "version"));
        out.entry((model, version)).or_insert_with(|| HeldOut {
            model: model.to_owned(),
            version: version.to_owned(),
            since_s: None,
            sli: None,
        });
    }
    for s in samples.iter().filter(|s| s.name == GUARD_OUT_SINCE.name && s.value > 0.0) {
        if let Some(h) = out.get_mut(&(label(s, "model"), label(s, "version"))) {
            let since = s.value as u64;
            if h.since_s.is_none_or(|was| since > was) {
                h.since_s = Some(since);
                h.sli = Some(label(s, "sli").to_owned());
            }
        }
    }
    out.into_values().collect()
}

impl HeldOut {
    /// One line for a person: which, since when (UTC, and how long ago from `now`), why, and
    /// what clears it.
    pub fn describe(&self, now: SystemTime) -> String {
        Describe(self, now).to_string()
    }

    /// Why, in words, from the SLI it tripped on.
    pub fn why(&self) -> Option<&'static str> {
        match self.sli.as_deref() {
            Some("availability") => Some("its error ratio was worse than the stable version's"),
            Some("latency") => Some("too many of its requests were slower than the SLO threshold"),
            _ => None,
        }
    }
}

struct Describe<'a>(&'a HeldOut, SystemTime);

impl fmt::Display for Describe<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Describe(h, now) = self;
        write!(f, "{}/{} is held out of the split by the guard", h.model, h.version)?;
        if let Some(since) = h.since_s {
            let at = UNIX_EPOCH + Duration::from_secs(since);
            let ago = now.duration_since(at).unwrap_or_default().as_secs();
            write!(
                f,
                " since {} ({} ago)",
                humantime::format_rfc3339_seconds(at),
                humantime::format_duration(Duration::from_secs(ago))
            )?;
        }
        if let Some(why) = h.why() {
            write!(f, ": {why}")?;
        }
        write!(
            f,
            "; a new models.{}.guard.epoch (switchyard-rollout reset-guard) puts it back; Envoy's log has the counts",
            h.model
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_runtime::exposition::parse;

    #[test]
    fn a_version_out_is_named_with_since_when_and_why_once_across_envoys() {
        let text = "switchyard_guard_out{model=\"mlp\",version=\"v1\"} 0\n\
            switchyard_guard_out{model=\"mlp\",version=\"v2\"} 1\n\
            switchyard_guard_out{instance=\"e2\",model=\"mlp\",version=\"v2\"} 1\n\
            switchyard_guard_out_since_seconds{model=\"mlp\",version=\"v2\",sli=\"availability\"} 1765000000\n\
            switchyard_guard_out_since_seconds{model=\"mlp\",version=\"v2\",sli=\"latency\"} 0\n\
            switchyard_guard_out_since_seconds{model=\"mlp\",version=\"v1\",sli=\"availability\"} 0\n";
        let out = held_out(&parse(text));
        assert_eq!(
            out,
            vec![HeldOut {
                model: "mlp".into(),
                version: "v2".into(),
                since_s: Some(1_765_000_000),
                sli: Some("availability".into())
            }]
        );
        let line = out[0].describe(UNIX_EPOCH + Duration::from_secs(1_765_000_000 + 840));
        assert!(
            line.starts_with(
                "mlp/v2 is held out of the split by the guard since 2025-12-06T05:46:40Z (14m ago): its error ratio"
            ),
            "{line}"
        );
        assert!(held_out(&parse("switchyard_guard_out{model=\"mlp\",version=\"v2\"} 0\n")).is_empty());
    }
}
