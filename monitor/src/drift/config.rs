//! The monitor's configuration (JSON), read by one parser and validated once with every
//! problem reported. The batch `compare` reads the column rules only; `watch` reads the models.
//!
//! ```json
//! {
//!   "columns": {"colour": "categorical"},
//!   "tests": {"features[3]": "psi", "features[4]": {"test": "ks", "threshold": 0.01}},
//!   "names": {"features": ["age", "income"]},
//!   "drift_share": 0.5,
//!   "models": {
//!     "mlp": {
//!       "reference": {"version": "v1", "rows": 1000},
//!       "windows": [{"name": "1k", "rows": 1000}, {"name": "5m", "seconds": 300, "rows": 10000}]
//!     }
//!   }
//! }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use serde::Deserialize;
use switchyard_drift::{Kind, Test};

use super::table::DEFAULT_MAX_TENSOR_COLUMNS;

/// Rows a window may hold: the exact KS p-value, which scipy computes up to 10,000 values per
/// side, and a bound on memory.
pub const MAX_WINDOW_ROWS: usize = 10_000;
/// Rows a "first N samples" reference may hold.
pub const MAX_REFERENCE_ROWS: usize = 100_000;
/// Rows a window (or `compare`'s current data) needs before its columns are judged: below it a
/// few odd rows decide, and 40 rows flagged 97% of the demo's columns. A window that holds
/// fewer rows in all (`rows`) is judged when full.
pub const DEFAULT_MIN_ROWS: usize = 500;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The top-level column rules (`columns`, `tests`, `names`, `drift_share`,
    /// `max_tensor_columns`): the batch command's, and every model's default.
    #[serde(skip)]
    pub rules: Rules,
    #[serde(default)]
    columns: HashMap<String, Kind>,
    #[serde(default)]
    tests: HashMap<String, TestSpec>,
    #[serde(default)]
    names: HashMap<String, Vec<String>>,
    drift_share: Option<f64>,
    max_tensor_columns: Option<usize>,
    #[serde(default)]
    pub models: BTreeMap<String, ModelConfig>,
    /// How often windows are evaluated.
    #[serde(default = "default_every")]
    pub evaluate_every_seconds: f64,
    /// Versions tracked per model; samples of further versions are counted and skipped.
    #[serde(default = "default_max_versions")]
    pub max_versions: usize,
    /// Columns tracked per model (each is a label value of the drift metrics).
    #[serde(default = "default_max_columns")]
    pub max_columns: usize,
}

/// How columns are typed, named and tested (top level: the defaults for every model).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    #[serde(default)]
    pub columns: HashMap<String, Kind>,
    #[serde(default)]
    pub tests: HashMap<String, TestSpec>,
    #[serde(default)]
    pub names: HashMap<String, Vec<String>>,
    pub drift_share: Option<f64>,
    pub max_tensor_columns: Option<usize>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(untagged)]
pub enum TestSpec {
    Name(Test),
    Full(FullSpec),
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FullSpec {
    test: Test,
    threshold: Option<f64>,
}

impl TestSpec {
    pub fn test(self) -> Test {
        match self {
            TestSpec::Name(t) | TestSpec::Full(FullSpec { test: t, .. }) => t,
        }
    }
    pub fn threshold(self) -> Option<f64> {
        match self {
            TestSpec::Name(_) => None,
            TestSpec::Full(FullSpec { threshold, .. }) => threshold,
        }
    }
}

impl Rules {
    pub fn drift_share(&self) -> f64 {
        self.drift_share.unwrap_or(0.5)
    }
    pub fn max_tensor_columns(&self) -> usize {
        self.max_tensor_columns.unwrap_or(DEFAULT_MAX_TENSOR_COLUMNS)
    }
    /// The test and threshold a column is given (`None`: Evidently's default).
    pub fn test(&self, column: &str) -> (Option<Test>, Option<f64>) {
        self.tests.get(column).map_or((None, None), |s| (Some(s.test()), s.threshold()))
    }

    fn problems(&self, at: &str, problems: &mut Vec<String>) {
        if let Some(s) = self.drift_share
            && !(s > 0.0 && s <= 1.0)
        {
            problems.push(format!("{at}drift_share = {s}: must be in (0, 1]"));
        }
        if self.max_tensor_columns == Some(0) {
            problems.push(format!("{at}max_tensor_columns must be at least 1"));
        }
        let mut tests: Vec<_> = self.tests.iter().collect();
        tests.sort_by_key(|(c, _)| *c);
        for (column, spec) in tests {
            if let Some(t) = spec.threshold()
                && !(t.is_finite() && t >= 0.0 && (t <= 1.0 || !spec.test().is_p_value()))
            {
                let range = if spec.test().is_p_value() { "0..=1 (a p-value)" } else { "finite and >= 0" };
                problems.push(format!("{at}tests.{column}: threshold {t} must be {range}"));
            }
            if self.columns.get(column) == Some(&Kind::Categorical) && !spec.test().allows(Kind::Categorical) {
                problems.push(format!("{at}tests.{column}: '{}' needs a numerical column", spec.test()));
            }
        }
        for (tensor, names) in &self.names {
            let mut seen = std::collections::HashSet::new();
            if let Some(dup) = names.iter().find(|n| !seen.insert(n.as_str())) {
                problems.push(format!("{at}names.{tensor}: '{dup}' is given twice"));
            }
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub reference: ReferenceConfig,
    #[serde(default = "default_windows")]
    pub windows: Vec<WindowConfig>,
    /// Column rules for this model (same fields as the top level's), replacing the top-level
    /// ones as a whole (nothing is merged); the top-level ones when absent.
    pub rules: Option<Rules>,
    /// Only this tenant's samples (their `tenant`, with `identity` in the policy): drift in one
    /// team's traffic that the others' would dilute. Every sample when absent.
    pub tenant: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, untagged)]
pub enum ReferenceConfig {
    /// A JSONL file (samples, V2 requests, row arrays or named-column objects).
    File { file: PathBuf },
    /// The first `rows` rows of `version` that the monitor sees.
    Version { version: String, rows: usize },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    pub name: String,
    /// The last `rows` rows (at most; fewer when `seconds` cuts them).
    pub rows: usize,
    /// Only rows of samples that started in the last `seconds`.
    pub seconds: Option<f64>,
    /// Rows it needs before its columns are judged ([`DEFAULT_MIN_ROWS`], or `rows` when
    /// fewer): below, every column is "not enough data", and no drift is exported.
    pub min_rows: Option<usize>,
}

impl WindowConfig {
    pub fn min_rows(&self) -> usize {
        self.min_rows.unwrap_or(DEFAULT_MIN_ROWS.min(self.rows))
    }
}

fn default_every() -> f64 {
    5.0
}
fn default_max_versions() -> usize {
    16
}
fn default_max_columns() -> usize {
    512
}
fn default_windows() -> Vec<WindowConfig> {
    vec![
        WindowConfig { name: "1k".into(), rows: 1000, seconds: None, min_rows: None },
        WindowConfig { name: "5m".into(), rows: MAX_WINDOW_ROWS, seconds: Some(300.0), min_rows: None },
    ]
}

/// A label value the metrics can carry: short, and `[A-Za-z0-9_.:-]`.
fn label_ok(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b))
}

impl Config {
    /// Parses and validates; every problem, not only the first.
    pub fn parse(text: &str) -> Result<Config, Vec<String>> {
        let mut config: Config =
            serde_json::from_str(text).map_err(|e| vec![format!("not a valid monitor config: {e}")])?;
        config.rules = Rules {
            columns: std::mem::take(&mut config.columns),
            tests: std::mem::take(&mut config.tests),
            names: std::mem::take(&mut config.names),
            drift_share: config.drift_share,
            max_tensor_columns: config.max_tensor_columns,
        };
        let mut problems = Vec::new();
        config.rules.problems("", &mut problems);
        if !(config.evaluate_every_seconds >= 0.1 && config.evaluate_every_seconds <= 3600.0) {
            problems.push(format!("evaluate_every_seconds = {}: must be 0.1..=3600", config.evaluate_every_seconds));
        }
        if config.max_versions == 0 || config.max_columns == 0 {
            problems.push("max_versions and max_columns must be at least 1".into());
        }
        for (model, m) in &config.models {
            let at = format!("models.{model}.");
            if !switchyard_policy::names::valid_name(model) {
                problems.push(format!("models.{model}: not a model name a policy could have"));
            }
            if let Some(r) = &m.rules {
                r.problems(&at, &mut problems);
            }
            match &m.reference {
                ReferenceConfig::Version { version, rows } => {
                    if !switchyard_policy::names::valid_name(version) {
                        problems.push(format!("{at}reference.version '{version}' is not a version name"));
                    }
                    if *rows == 0 || *rows > MAX_REFERENCE_ROWS {
                        problems.push(format!("{at}reference.rows = {rows}: must be 1..={MAX_REFERENCE_ROWS}"));
                    }
                }
                ReferenceConfig::File { file } => {
                    if !file.is_file() {
                        problems.push(format!("{at}reference.file {}: no such file", file.display()));
                    }
                }
            }
            if m.windows.is_empty() {
                problems.push(format!("{at}windows: give at least one"));
            }
            let mut names = std::collections::HashSet::new();
            for w in &m.windows {
                if !label_ok(&w.name) {
                    problems.push(format!("{at}windows: name '{}' must be 1-64 of [A-Za-z0-9_.:-]", w.name));
                }
                if !names.insert(&w.name) {
                    problems.push(format!("{at}windows: '{}' is named twice", w.name));
                }
                if w.rows == 0 || w.rows > MAX_WINDOW_ROWS {
                    problems.push(format!("{at}windows.{}: rows = {}: must be 1..={MAX_WINDOW_ROWS}", w.name, w.rows));
                }
                if let Some(s) = w.seconds
                    && !(s.is_finite() && s > 0.0)
                {
                    problems.push(format!("{at}windows.{}: seconds = {s}: must be positive", w.name));
                }
                if let Some(min) = w.min_rows
                    && (min == 0 || min > w.rows)
                {
                    problems.push(format!("{at}windows.{}: min_rows = {min}: must be 1..=rows ({})", w.name, w.rows));
                }
            }
        }
        if problems.is_empty() { Ok(config) } else { Err(problems) }
    }

    /// A model's column rules.
    pub fn rules(&self, model: &str) -> &Rules {
        self.models.get(model).and_then(|m| m.rules.as_ref()).unwrap_or(&self.rules)
    }
}

#[cfg(test)]
mod tests {
    use super::Config;

    #[test]
    fn every_problem_is_reported() {
        let text = r#"{"drift_share": 2, "tests": {"c": {"test": "ks", "threshold": 0.1}}, "columns": {"c": "categorical"},
            "models": {"mlp": {"reference": {"version": "v 1", "rows": 0},
                               "windows": [{"name": "a", "rows": 20000}, {"name": "a", "rows": 5, "seconds": -1, "min_rows": 6}]}}}"#;
        let problems = Config::parse(text).unwrap_err();
        for want in [
            "drift_share = 2",
            "tests.c: 'ks' needs a numerical",
            "'v 1' is not",
            "reference.rows = 0",
            "rows = 20000",
            "'a' is named twice",
            "seconds = -1",
            "min_rows = 6: must be 1..=rows (5)",
        ] {
            assert!(problems.iter().any(|p| p.contains(want)), "{want}: {problems:?}");
        }
    }

    #[test]
    fn the_smallest_config_is_valid_and_unknown_fields_are_refused() {
        let c = Config::parse(r#"{"columns": {"x": "numerical"}}"#).unwrap();
        assert_eq!(c.rules.drift_share(), 0.5);
        assert!(Config::parse(r#"{"colums": {}}"#).unwrap_err()[0].contains("colums"));
        assert!(Config::parse(r#"{"tests": {"x": "kolmogorov"}}"#).is_err());
        let m = Config::parse(r#"{"models": {"mlp": {"reference": {"version": "v1", "rows": 100}}}}"#).unwrap();
        assert_eq!(m.models["mlp"].windows.len(), 2);
        // 500 rows before a window is judged; a smaller window when full.
        let mins: Vec<usize> = m.models["mlp"].windows.iter().map(|w| w.min_rows()).collect();
        assert_eq!(mins, [500, 500]);
        let small = Config::parse(
            r#"{"models": {"mlp": {"reference": {"version": "v1", "rows": 100},
            "windows": [{"name": "100", "rows": 100}, {"name": "all", "rows": 10000, "min_rows": 50}]}}}"#,
        )
        .unwrap();
        let mins: Vec<usize> = small.models["mlp"].windows.iter().map(|w| w.min_rows()).collect();
        assert_eq!(mins, [100, 50]);
    }
}
