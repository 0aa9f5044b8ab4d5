//! Scenario files (TOML): a multi-phase load plan with per-phase rate shape, payload mix and
//! header distributions, and an optional input-drift injection from a named phase on.
//! Parsing rejects unknown keys; validation reports every problem at once.
//! The format is documented in `load-tests/README.md`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use switchyard_policy::duration::parse as parse_duration;

use crate::schedule::Segment;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    pub name: Option<String>,
    pub description: Option<String>,
    /// host:port of the inference listener (overridable on the command line).
    pub addr: Option<String>,
    /// Model to drive; its metadata (`GET /v2/models/{m}`) shapes the generated tensors.
    pub model: Option<String>,
    pub version: Option<String>,
    /// Send `GET path` instead of inference (e.g. `/v2/health/ready`): no model needed.
    pub get: Option<String>,
    /// `rest` (default) or `grpc`: `ModelInfer` calls over HTTP/2, tensors in
    /// `raw_input_contents`, metadata from `ModelMetadata`.
    pub protocol: Option<String>,
    /// Per-request timeout, e.g. "30s".
    pub timeout: Option<String>,
    /// Upper bound on open connections; a request waiting for one is late, and its latency shows it.
    pub max_connections: Option<usize>,
    pub seed: Option<u64>,
    /// Default payload mix and headers for phases that set none.
    #[serde(default)]
    pub payload: Vec<PayloadFile>,
    #[serde(default)]
    pub header: Vec<HeaderFile>,
    pub drift: Option<DriftFile>,
    #[serde(default)]
    pub phase: Vec<PhaseFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhaseFile {
    pub name: Option<String>,
    pub duration: String,
    /// Open loop: requests per second (the start rate of a ramp).
    pub rate: Option<f64>,
    /// Open loop: ramp linearly from `rate` to this by the end of the phase.
    pub ramp_to: Option<f64>,
    /// With `ramp_to`: climb in this many equal constant-rate steps instead (a saturation sweep);
    /// each step is reported as its own phase.
    pub steps: Option<u32>,
    pub spike: Option<SpikeFile>,
    /// Closed loop: this many clients, each sending when its last answer arrived.
    pub concurrency: Option<usize>,
    pub payload: Option<Vec<PayloadFile>>,
    pub header: Option<Vec<HeaderFile>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpikeFile {
    pub rate: f64,
    /// Offset into the phase.
    pub at: String,
    pub duration: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayloadFile {
    #[serde(default = "one")]
    pub weight: f64,
    /// Rows (batch dimension) per request of generated tensors.
    pub rows: Option<usize>,
    /// Binary tensor data extension instead of JSON.
    #[serde(default)]
    pub binary: bool,
    /// Replay V2 request bodies, one JSON object per line, in turn.
    pub replay: Option<PathBuf>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderFile {
    pub name: String,
    /// Share of requests that carry the header (default all).
    #[serde(default = "one")]
    pub fraction: f64,
    /// One of `users` distinct keys `{prefix}{0..users}`, uniformly: sticky user ids.
    pub users: Option<u32>,
    #[serde(default)]
    pub prefix: String,
    /// Or one of these values, by `weights` (uniform when absent).
    pub values: Option<Vec<String>>,
    pub weights: Option<Vec<f64>>,
}

impl HeaderFile {
    /// The header `name: value` on every request.
    pub fn constant(name: &str, value: &str) -> HeaderFile {
        HeaderFile {
            name: name.to_owned(),
            fraction: 1.0,
            users: None,
            prefix: String::new(),
            values: Some(vec![value.to_owned()]),
            weights: None,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriftFile {
    /// From the start of this phase on, generated inputs drift.
    pub from_phase: String,
    /// Feature indices (positions within one row of each input) to move.
    pub features: Vec<usize>,
    /// x → x · scale + shift on those features.
    #[serde(default)]
    pub shift: f64,
    #[serde(default = "one")]
    pub scale: f64,
}

fn one() -> f64 {
    1.0
}

/// A validated plan, ready to run once payloads are built against the model's metadata.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    pub addr: Option<String>,
    pub model: Option<String>,
    pub version: Option<String>,
    pub get: Option<String>,
    /// gRPC instead of REST.
    pub grpc: bool,
    pub timeout: Duration,
    pub max_connections: usize,
    pub seed: u64,
    pub phases: Vec<Phase>,
    pub drift: Option<Drift>,
}

#[derive(Clone, Debug)]
pub struct Phase {
    pub name: String,
    pub duration: Duration,
    pub load: Load,
    pub payload: Vec<PayloadFile>,
    pub header: Vec<HeaderFile>,
    /// Inputs drift in this phase (it is the drift's first phase or comes after it).
    pub drifted: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Load {
    Open(Vec<Segment>),
    Closed(usize),
}

#[derive(Clone, Debug)]
pub struct Drift {
    pub features: Vec<usize>,
    pub shift: f64,
    pub scale: f64,
}

impl Load {
    /// Mean target rate over the phase, for reports (None for closed loop).
    pub fn mean_rate(&self, duration: Duration) -> Option<f64> {
        match self {
            Load::Open(segs) => Some(segs.iter().map(Segment::count).sum::<f64>() / duration.as_secs_f64()),
            Load::Closed(_) => None,
        }
    }
}

/// Why a scenario file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}: {source}", path.display())]
    Toml { path: PathBuf, source: toml::de::Error },
    #[error("{} is not a valid scenario:\n  - {}", path.display(), problems.join("\n  - "))]
    Invalid { path: PathBuf, problems: Vec<String> },
}

pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read { path: path.to_owned(), source })?;
    let file: ScenarioFile =
        toml::from_str(&text).map_err(|source| ScenarioError::Toml { path: path.to_owned(), source })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut sc = validate(file).map_err(|problems| ScenarioError::Invalid { path: path.to_owned(), problems })?;
    // Replay files are relative to the scenario file.
    for p in &mut sc.phases {
        for pay in &mut p.payload {
            if let Some(r) = pay.replay.as_mut().filter(|r| r.is_relative()) {
                *r = base.join(&*r);
            }
        }
    }
    if sc.name.is_empty() {
        sc.name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    }
    Ok(sc)
}

/// Checks everything that can be checked without the server; returns every problem found.
pub fn validate(f: ScenarioFile) -> Result<Scenario, Vec<String>> {
    let mut errs = Vec::new();
    let dur = |what: &str, s: &str, errs: &mut Vec<String>| match parse_duration(s) {
        Ok(d) => Some(d),
        Err(e) => {
            errs.push(format!("{what}: {e}"));
            None
        }
    };
    let timeout = f.timeout.as_deref().map_or(Some(Duration::from_secs(30)), |t| dur("timeout", t, &mut errs));
    match (&f.model, &f.get) {
        (None, None) => errs.push("set `model` (inference) or `get` (a path to GET)".into()),
        (Some(_), Some(_)) => errs.push("set only one of `model` and `get`".into()),
        (None, Some(p)) if !p.starts_with('/') => errs.push(format!("get = '{p}': a path starting with '/'")),
        _ => {}
    }
    if f.max_connections == Some(0) {
        errs.push("max_connections must be at least 1".into());
    }
    let grpc = match f.protocol.as_deref() {
        None | Some("rest") => false,
        Some("grpc") => true,
        Some(other) => {
            errs.push(format!("protocol = '{other}': expected rest or grpc"));
            false
        }
    };
    if grpc && f.get.is_some() {
        errs.push("protocol = 'grpc' infers: it takes a `model`, not a `get` path".into());
    }
    let replays =
        f.payload.iter().chain(f.phase.iter().flat_map(|p| p.payload.iter().flatten())).any(|p| p.replay.is_some());
    if grpc && replays {
        errs.push(
            "protocol = 'grpc' builds its messages from the model's metadata: replay files are REST bodies".into(),
        );
    }
    if f.phase.is_empty() {
        errs.push("no [[phase]]: a scenario needs at least one".into());
    }
    check_payloads("payload", &f.payload, &mut errs);
    check_headers("header", &f.header, &mut errs);

    let mut phases = Vec::new();
    for (i, p) in f.phase.iter().enumerate() {
        let name = p.name.clone().unwrap_or_else(|| format!("phase {}", i + 1));
        let at = format!("phase '{name}'");
        let Some(duration) = dur(&format!("{at} duration"), &p.duration, &mut errs) else { continue };
        if duration.is_zero() {
            errs.push(format!("{at}: duration must be positive"));
            continue;
        }
        let secs = duration.as_secs_f64();
        let rate_ok = |r: f64, what: &str, errs: &mut Vec<String>| {
            let ok = r.is_finite() && r >= 0.0;
            if !ok {
                errs.push(format!("{at}: {what} = {r} must be a finite rate ≥ 0"));
            }
            ok
        };
        let load = match (p.rate, p.concurrency) {
            (Some(_), Some(_)) => {
                errs.push(format!("{at}: set `rate` (open loop) or `concurrency` (closed loop), not both"));
                continue;
            }
            (None, None) => {
                errs.push(format!("{at}: set `rate` (open loop) or `concurrency` (closed loop)"));
                continue;
            }
            (None, Some(c)) => {
                if c == 0 {
                    errs.push(format!("{at}: concurrency must be at least 1"));
                }
                if p.ramp_to.is_some() || p.spike.is_some() || p.steps.is_some() {
                    errs.push(format!("{at}: ramp_to, steps and spike need an open-loop `rate`"));
                }
                Load::Closed(c)
            }
            (Some(rate), None) => {
                if !rate_ok(rate, "rate", &mut errs) {
                    continue;
                }
                let mut segs = vec![Segment::constant(rate, secs)];
                if let Some(to) = p.ramp_to {
                    if !rate_ok(to, "ramp_to", &mut errs) {
                        continue;
                    }
                    segs = vec![Segment { seconds: secs, from: rate, to }];
                }
                if let Some(spike) = &p.spike {
                    if p.ramp_to.is_some() {
                        errs.push(format!("{at}: a spike sits on a constant rate: drop ramp_to"));
                    }
                    let at_d = dur(&format!("{at} spike.at"), &spike.at, &mut errs);
                    let len = dur(&format!("{at} spike.duration"), &spike.duration, &mut errs);
                    rate_ok(spike.rate, "spike.rate", &mut errs);
                    if let (Some(a), Some(l)) = (at_d, len) {
                        if a + l > duration || l.is_zero() {
                            errs.push(format!("{at}: the spike ({l:?} from {a:?}) must fit inside the phase"));
                        } else {
                            segs = [
                                Segment::constant(rate, a.as_secs_f64()),
                                Segment::constant(spike.rate, l.as_secs_f64()),
                                Segment::constant(rate, (duration - a - l).as_secs_f64()),
                            ]
                            .into_iter()
                            .filter(|s| s.seconds > 0.0)
                            .collect();
                        }
                    }
                }
                if rate == 0.0 && p.ramp_to.unwrap_or(0.0) == 0.0 && p.spike.is_none() {
                    errs.push(format!("{at}: a rate of 0 sends nothing"));
                }
                Load::Open(segs)
            }
        };
        let payload = p.payload.clone().unwrap_or_else(|| f.payload.clone());
        let header = p.header.clone().unwrap_or_else(|| f.header.clone());
        check_payloads(&format!("{at} payload"), &payload, &mut errs);
        check_headers(&format!("{at} header"), &header, &mut errs);
        if f.get.is_some() && p.payload.is_some() {
            errs.push(format!("{at}: a `get` scenario sends no payload"));
        }
        let phase = Phase { name, duration, load, payload, header, drifted: false };
        match (p.steps, p.ramp_to, &phase.load) {
            (Some(0), ..) => errs.push(format!("{at}: steps must be at least 1")),
            (Some(n), Some(to), Load::Open(_)) => {
                let from = p.rate.unwrap_or(0.0);
                let step = duration / n;
                for k in 0..n {
                    let r = if n == 1 { to } else { from + (to - from) * f64::from(k) / f64::from(n - 1) };
                    phases.push(Phase {
                        name: format!("{} @{r:.0}/s", phase.name),
                        duration: step,
                        load: Load::Open(vec![Segment::constant(r, step.as_secs_f64())]),
                        ..phase.clone()
                    });
                }
            }
            (Some(_), None, _) => errs.push(format!("{at}: steps needs ramp_to (the last step's rate)")),
            _ => phases.push(phase),
        }
    }

    let drift = match &f.drift {
        None => None,
        Some(d) => {
            match phases
                .iter()
                .position(|p| p.name == d.from_phase || p.name.starts_with(&format!("{} @", d.from_phase)))
            {
                None => errs.push(format!("drift.from_phase = '{}': no phase has that name", d.from_phase)),
                Some(first) => phases.iter_mut().skip(first).for_each(|p| p.drifted = true),
            }
            if d.features.is_empty() {
                errs.push("drift.features is empty: name the feature indices to move".into());
            }
            if !(d.shift.is_finite() && d.scale.is_finite()) {
                errs.push("drift.shift and drift.scale must be finite".into());
            }
            if f.get.is_some() {
                errs.push("drift needs generated inference payloads (`model`), not `get`".into());
            }
            Some(Drift { features: d.features.clone(), shift: d.shift, scale: d.scale })
        }
    };
    if !errs.is_empty() {
        return Err(errs);
    }
    Ok(Scenario {
        name: f.name.unwrap_or_default(),
        description: f.description.unwrap_or_default(),
        addr: f.addr,
        model: f.model,
        version: f.version,
        get: f.get,
        grpc,
        timeout: timeout.unwrap_or(Duration::from_secs(30)),
        max_connections: f.max_connections.unwrap_or(1024),
        seed: f.seed.unwrap_or(1),
        phases,
        drift,
    })
}

fn check_payloads(at: &str, ps: &[PayloadFile], errs: &mut Vec<String>) {
    for (i, p) in ps.iter().enumerate() {
        if !(p.weight.is_finite() && p.weight > 0.0) {
            errs.push(format!("{at} #{}: weight must be positive", i + 1));
        }
        if p.rows == Some(0) {
            errs.push(format!("{at} #{}: rows must be at least 1", i + 1));
        }
        if p.replay.is_some() && (p.rows.is_some() || p.binary) {
            errs.push(format!("{at} #{}: replay sends the file's bodies as they are: drop rows/binary", i + 1));
        }
    }
}

fn check_headers(at: &str, hs: &[HeaderFile], errs: &mut Vec<String>) {
    for h in hs {
        let at = format!("{at} '{}'", h.name);
        if h.name.is_empty() || !h.name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b)) {
            errs.push(format!("{at}: not a valid header name"));
        }
        if !(0.0..=1.0).contains(&h.fraction) {
            errs.push(format!("{at}: fraction must be within 0..1"));
        }
        match (&h.users, &h.values) {
            (Some(0), None) => errs.push(format!("{at}: users must be at least 1")),
            (Some(_), None) => {}
            (None, Some(v)) if v.is_empty() => errs.push(format!("{at}: values is empty")),
            (None, Some(v)) => {
                let bad = |w: &Vec<f64>| {
                    w.len() != v.len()
                        || w.iter().any(|x| !(x.is_finite() && *x >= 0.0))
                        || w.iter().sum::<f64>() <= 0.0
                };
                if h.weights.as_ref().is_some_and(bad) {
                    errs.push(format!("{at}: weights must be one non-negative number per value, not all 0"));
                }
            }
            _ => errs.push(format!("{at}: set exactly one of `users` and `values`")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Scenario, Vec<String>> {
        validate(toml::from_str(s).map_err(|e| vec![e.to_string()])?)
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("10").unwrap_err().to_string().contains("not a duration"));
        assert!(parse_duration("fast").is_err());
    }

    #[test]
    fn a_full_scenario_parses() {
        let sc = parse(
            r#"
            name = "canary"
            model = "mlp"
            [[payload]]
            rows = 1
            weight = 9
            [[payload]]
            rows = 8
            [[header]]
            name = "x-user-id"
            users = 500
            prefix = "u"
            [drift]
            from_phase = "drifted"
            features = [0, 3]
            shift = 2.0
            [[phase]]
            name = "warm-up"
            duration = "2s"
            rate = 10
            ramp_to = 100
            [[phase]]
            name = "spike"
            duration = "10s"
            rate = 100
            spike = { rate = 1000, at = "4s", duration = "1s" }
            [[phase]]
            name = "drifted"
            duration = "5s"
            concurrency = 8
            "#,
        )
        .unwrap();
        assert_eq!(sc.phases.len(), 3);
        assert_eq!(sc.phases[0].load, Load::Open(vec![Segment { seconds: 2.0, from: 10.0, to: 100.0 }]));
        let Load::Open(spike) = &sc.phases[1].load else { panic!() };
        assert_eq!(spike.len(), 3);
        assert_eq!(sc.phases[1].load.mean_rate(sc.phases[1].duration), Some(190.0));
        assert_eq!(sc.phases[2].load, Load::Closed(8));
        assert_eq!(sc.phases.iter().map(|p| p.drifted).collect::<Vec<_>>(), [false, false, true]);
        assert_eq!(sc.phases[1].payload.len(), 2, "phases inherit the default payload mix");
        assert_eq!(sc.phases[1].header[0].users, Some(500));
    }

    #[test]
    fn steps_expand_into_phases() {
        let sc = parse("model = 'm'\n[[phase]]\nname = 'sweep'\nduration = '8s'\nrate = 100\nramp_to = 400\nsteps = 4")
            .unwrap();
        let rates: Vec<_> = sc.phases.iter().map(|p| p.load.mean_rate(p.duration).unwrap().round()).collect();
        assert_eq!(rates, [100.0, 200.0, 300.0, 400.0]);
        assert_eq!(sc.phases[3].name, "sweep @400/s");
        assert!(sc.phases.iter().all(|p| p.duration == Duration::from_secs(2)));
    }

    #[test]
    fn every_problem_is_reported() {
        let errs = parse(
            r#"
            get = "v2/health"
            timeout = "soon"
            max_connections = 0
            [drift]
            from_phase = "nope"
            features = []
            [[header]]
            name = "bad header"
            fraction = 2
            [[phase]]
            duration = "1s"
            [[phase]]
            duration = "1s"
            rate = -5
            [[phase]]
            duration = "3s"
            rate = 10
            spike = { rate = 100, at = "2s", duration = "2s" }
            [[phase]]
            duration = "1s"
            concurrency = 0
            ramp_to = 5
            "#,
        )
        .unwrap_err();
        let all = errs.join("\n");
        for want in [
            "get = 'v2/health'",
            "timeout: 'soon'",
            "max_connections",
            "from_phase = 'nope'",
            "drift.features is empty",
            "drift needs generated",
            "not a valid header name",
            "fraction",
            "set exactly one of `users` and `values`",
            "phase 1': set `rate`",
            "rate = -5",
            "must fit inside the phase",
            "concurrency must be at least 1",
            "ramp_to, steps and spike need",
        ] {
            assert!(all.contains(want), "missing '{want}' in:\n{all}");
        }
    }

    #[test]
    fn the_readme_example_is_valid() {
        let readme = include_str!("../README.md");
        let block = readme.split("```toml\n").nth(1).and_then(|b| b.split("```").next()).unwrap();
        let sc = parse(block).unwrap();
        assert_eq!(sc.phases.len(), 13, "warm-up, 10 sweep steps, spike, drifted");
        assert!(sc.phases.last().unwrap().drifted);
        assert_eq!(sc.phases[0].payload.len(), 3);
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = toml::from_str::<ScenarioFile>("model = 'm'\nrps = 5").unwrap_err().to_string();
        assert!(e.contains("unknown field `rps`"), "{e}");
    }
}
