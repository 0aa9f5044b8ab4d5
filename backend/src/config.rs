//! The model repository: `<repo>/<model>/<version>/{model.pt, config.json}`.
//!
//! Every version's config is read and validated once, at startup, and every problem in the
//! whole repository is reported together, so one run of `switchyard-backend check` shows all
//! that needs fixing.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::tensor::{DataType, element_count};

pub const CONFIG_FILE: &str = "config.json";
const DEFAULT_MODEL_FILE: &str = "model.pt";
const MAX_INSTANCES: u32 = 64;
const MAX_BATCH_SIZE: usize = 4096;

/// All problems found in a repository, reported as one error.
#[derive(Debug, thiserror::Error)]
pub struct ConfigErrors(pub Vec<String>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid model repository ({} problem(s)):", self.0.len())?;
        for p in &self.0 {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    pub datatype: DataType,
    /// Full shape; the first dimension is the batch dimension and is always `-1`.
    pub shape: Vec<i64>,
}

impl TensorSpec {
    /// Elements in one row (the product of the non-batch dimensions).
    pub fn row_elements(&self) -> usize {
        element_count(&self.shape[1..]).unwrap_or(0)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct BatchingPolicy {
    /// Rows (not requests) per batch.
    pub max_batch_size: usize,
    /// Hold-to-fill, off when zero (the default): how long an idle instance may hold the first
    /// queued request for others to join its batch. Zero is work-conserving: an idle instance
    /// takes whatever is queued at once, and batches form while instances are busy.
    pub max_queue_delay: Duration,
    /// Requests waiting in the queue beyond which new ones get 429.
    pub max_queue_size: usize,
    /// Deadline for a request that sets no `timeout` parameter.
    pub default_timeout: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceSpec {
    /// The first CUDA device when one is usable, else the CPU.
    Auto,
    Cpu,
    Cuda(usize),
}

/// A device that is none of auto, cpu, cuda, cuda:N.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("device '{0}' is not one of auto, cpu, cuda, cuda:N")]
pub struct UnknownDevice(pub String);

impl DeviceSpec {
    pub fn parse(s: &str) -> Result<Self, UnknownDevice> {
        match s {
            "auto" => Ok(DeviceSpec::Auto),
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" => Ok(DeviceSpec::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceSpec::Cuda)
                .ok_or_else(|| UnknownDevice(s.to_owned())),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    pub model: String,
    pub version: String,
    pub model_file: PathBuf,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    pub batching: BatchingPolicy,
    pub instances: usize,
    pub device: DeviceSpec,
}

/// A validated repository: models by name, versions in natural order (oldest first).
#[derive(Clone, Debug, Default)]
pub struct Repository {
    pub models: BTreeMap<String, Vec<ModelConfig>>,
}

/// Which model version an offline command (`batch`, `bench-engine`) runs: one rule (the
/// named version, else the newest) for both.
#[derive(Debug, Clone)]
pub struct VersionChoice {
    pub model_repository: PathBuf,
    pub model: String,
    /// Default: the newest version.
    pub version: Option<String>,
}

impl VersionChoice {
    /// Loads and validates the repository and picks the version.
    pub fn load(&self) -> anyhow::Result<ModelConfig> {
        let repo = load_repository(&self.model_repository)?;
        Ok(repo.find_version(&self.model, self.version.as_deref())?.clone())
    }
}

/// Why [`Repository::find_version`] found nothing to run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionNotFound {
    #[error("no model '{0}' in the repository")]
    NoModel(String),
    #[error("model '{model}' has no version '{version}'")]
    NoVersion { model: String, version: String },
    #[error("model '{0}' has no versions")]
    NoVersions(String),
}

impl Repository {
    pub fn versions(&self) -> impl Iterator<Item = &ModelConfig> {
        self.models.values().flatten()
    }

    /// The named version of `model`, or its newest one: what the offline commands run.
    pub fn find_version(&self, model: &str, version: Option<&str>) -> Result<&ModelConfig, VersionNotFound> {
        let versions = self.models.get(model).ok_or_else(|| VersionNotFound::NoModel(model.to_owned()))?;
        match version {
            Some(v) => versions
                .iter()
                .find(|c| c.version == v)
                .ok_or_else(|| VersionNotFound::NoVersion { model: model.to_owned(), version: v.to_owned() }),
            None => versions.last().ok_or_else(|| VersionNotFound::NoVersions(model.to_owned())),
        }
    }

    /// Keeps only the `model` or `model:version` entries of `selection` (all when empty);
    /// a selector that matches nothing is an error.
    pub fn select(mut self, selection: &[String]) -> Result<Self, ConfigErrors> {
        if selection.is_empty() {
            return Ok(self);
        }
        let mut problems = Vec::new();
        let mut keep: BTreeMap<String, Vec<ModelConfig>> = BTreeMap::new();
        for sel in selection {
            let (model, version) = match sel.split_once(':') {
                Some((m, v)) => (m, Some(v)),
                None => (sel.as_str(), None),
            };
            let Some(versions) = self.models.get_mut(model) else {
                problems.push(format!("--models: no model '{model}' in the repository"));
                continue;
            };
            let chosen: Vec<ModelConfig> =
                versions.iter().filter(|c| version.is_none_or(|v| c.version == v)).cloned().collect();
            if chosen.is_empty() {
                problems.push(format!("--models: model '{model}' has no version '{}'", version.unwrap_or("")));
            }
            let entry = keep.entry(model.to_owned()).or_default();
            for c in chosen {
                if !entry.iter().any(|e| e.version == c.version) {
                    entry.push(c);
                }
            }
        }
        if !problems.is_empty() {
            return Err(ConfigErrors(problems));
        }
        for versions in keep.values_mut() {
            versions.sort_by(|a, b| natural_cmp(&a.version, &b.version));
        }
        self.models = keep;
        Ok(self)
    }
}

// ---- on-disk format -------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default = "default_platform")]
    platform: String,
    #[serde(default)]
    model_file: Option<String>,
    inputs: Vec<TensorSpecFile>,
    outputs: Vec<TensorSpecFile>,
    batching: BatchingFile,
    #[serde(default = "one")]
    instances: u32,
    #[serde(default = "default_device")]
    device: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TensorSpecFile {
    name: String,
    datatype: String,
    shape: Vec<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchingFile {
    max_batch_size: usize,
    /// Absent means 0: work-conserving batching, no hold.
    #[serde(default)]
    max_queue_delay_us: u64,
    max_queue_size: usize,
    default_timeout_us: u64,
}

fn default_platform() -> String {
    "torchscript".into()
}
fn default_device() -> String {
    "auto".into()
}
fn one() -> u32 {
    1
}

/// Names appear in URLs, file paths and metric labels: the policy's names, and no hidden
/// directory of the repository (`.git`, an editor's `.swp` folder) is taken for a model.
fn valid_name(s: &str) -> bool {
    switchyard_policy::names::valid_name(s) && !s.starts_with('.')
}

/// Orders `v2` before `v10`: digit runs compare as numbers.
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn key(s: &str) -> Vec<(bool, u128, String)> {
        let mut parts = Vec::new();
        let mut chars = s.chars().peekable();
        while let Some(&c) = chars.peek() {
            let digit = c.is_ascii_digit();
            let mut run = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_ascii_digit() != digit {
                    break;
                }
                run.push(c);
                chars.next();
            }
            let n = if digit { run.parse().unwrap_or(u128::MAX) } else { 0 };
            parts.push((digit, n, run));
        }
        parts
    }
    key(a).cmp(&key(b))
}

/// Reads and validates the whole repository.
pub fn load_repository(root: &Path) -> Result<Repository, ConfigErrors> {
    let mut problems = Vec::new();
    let mut repo = Repository::default();
    let entries = match sorted_dirs(root) {
        Ok(e) => e,
        Err(e) => {
            return Err(ConfigErrors(vec![format!("{}: cannot read the model repository: {e}", root.display())]));
        }
    };
    for (model, model_dir) in entries {
        if !valid_name(&model) {
            problems.push(format!("{}: model name must be 1-128 of [A-Za-z0-9_.-]", model_dir.display()));
            continue;
        }
        let versions = match sorted_dirs(&model_dir) {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("{}: cannot read: {e}", model_dir.display()));
                continue;
            }
        };
        let mut configs = Vec::new();
        for (version, dir) in versions {
            if !valid_name(&version) {
                problems.push(format!("{}: version name must be 1-128 of [A-Za-z0-9_.-]", dir.display()));
                continue;
            }
            match load_version(&model, &version, &dir) {
                Ok(c) => configs.push(c),
                Err(mut p) => problems.append(&mut p),
            }
        }
        if configs.is_empty() && !problems.iter().any(|p| p.contains(&*model_dir.to_string_lossy())) {
            problems.push(format!("{}: model has no version directories", model_dir.display()));
        }
        configs.sort_by(|a, b| natural_cmp(&a.version, &b.version));
        if !configs.is_empty() {
            repo.models.insert(model, configs);
        }
    }
    if repo.models.is_empty() && problems.is_empty() {
        problems.push(format!("{}: the repository holds no models", root.display()));
    }
    if problems.is_empty() { Ok(repo) } else { Err(ConfigErrors(problems)) }
}

/// Sub-directories of `dir` by name, hidden ones skipped.
fn sorted_dirs(dir: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !entry.file_type()?.is_dir() {
            continue;
        }
        out.push((name, entry.path()));
    }
    out.sort_by(|a, b| natural_cmp(&a.0, &b.0));
    Ok(out)
}

fn load_version(model: &str, version: &str, dir: &Path) -> Result<ModelConfig, Vec<String>> {
    let path = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| vec![format!("{}: cannot read: {e}", path.display())])?;
    let file: ConfigFile =
        serde_json::from_str(&text).map_err(|e| vec![format!("{}: invalid config: {e}", path.display())])?;
    validate(model, version, dir, file)
        .map_err(|ps| ps.into_iter().map(|p| format!("{}: {p}", path.display())).collect())
}

fn validate(model: &str, version: &str, dir: &Path, f: ConfigFile) -> Result<ModelConfig, Vec<String>> {
    let mut problems = Vec::new();
    if f.platform != "torchscript" {
        problems.push(format!("platform '{}' is not supported (only 'torchscript')", f.platform));
    }
    let model_file = dir.join(f.model_file.as_deref().unwrap_or(DEFAULT_MODEL_FILE));
    if !model_file.is_file() {
        problems.push(format!("model file {} does not exist", model_file.display()));
    }
    let inputs = tensor_specs("inputs", f.inputs, &mut problems);
    let outputs = tensor_specs("outputs", f.outputs, &mut problems);
    let b = f.batching;
    if b.max_batch_size == 0 || b.max_batch_size > MAX_BATCH_SIZE {
        problems.push(format!("batching.max_batch_size must be 1..={MAX_BATCH_SIZE}, got {}", b.max_batch_size));
    }
    if b.max_queue_size == 0 {
        problems.push("batching.max_queue_size must be at least 1".into());
    }
    if b.default_timeout_us == 0 {
        problems.push("batching.default_timeout_us must be positive".into());
    }
    if b.max_queue_delay_us >= b.default_timeout_us {
        problems.push(format!(
            "batching.max_queue_delay_us ({}) must be below batching.default_timeout_us ({}), or requests expire while waiting for a batch",
            b.max_queue_delay_us, b.default_timeout_us
        ));
    }
    if f.instances == 0 || f.instances > MAX_INSTANCES {
        problems.push(format!("instances must be 1..={MAX_INSTANCES}, got {}", f.instances));
    }
    let device = DeviceSpec::parse(&f.device).unwrap_or_else(|e| {
        problems.push(e.to_string());
        DeviceSpec::Cpu
    });
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(ModelConfig {
        model: model.to_owned(),
        version: version.to_owned(),
        model_file,
        inputs,
        outputs,
        batching: BatchingPolicy {
            max_batch_size: b.max_batch_size,
            max_queue_delay: Duration::from_micros(b.max_queue_delay_us),
            max_queue_size: b.max_queue_size,
            default_timeout: Duration::from_micros(b.default_timeout_us),
        },
        instances: f.instances as usize,
        device,
    })
}

fn tensor_specs(field: &str, specs: Vec<TensorSpecFile>, problems: &mut Vec<String>) -> Vec<TensorSpec> {
    if specs.is_empty() {
        problems.push(format!("{field} must list at least one tensor"));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, s) in specs.into_iter().enumerate() {
        let at = format!("{field}[{i}] '{}'", s.name);
        if s.name.is_empty() {
            problems.push(format!("{field}[{i}]: name must not be empty"));
        } else if !seen.insert(s.name.clone()) {
            problems.push(format!("{at}: duplicate name"));
        }
        let datatype = match DataType::parse(&s.datatype) {
            Ok(d) if d.is_servable() => Some(d),
            Ok(d) => {
                problems.push(format!("{at}: datatype {d} is not supported by the libtorch engine"));
                None
            }
            Err(e) => {
                problems.push(format!("{at}: {e}"));
                None
            }
        };
        match s.shape.split_first() {
            Some((-1, rest)) if rest.iter().all(|&d| d > 0) && element_count(rest).is_some() => {}
            Some((-1, _)) => {
                problems
                    .push(format!("{at}: dimensions after the batch dimension must be positive, got {:?}", s.shape));
            }
            _ => problems.push(format!("{at}: shape must start with the batch dimension -1, got {:?}", s.shape)),
        }
        if let Some(datatype) = datatype {
            out.push(TensorSpec { name: s.name, datatype, shape: s.shape });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, rel: &str, text: &str) {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    const GOOD: &str = r#"{
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}],
        "batching": {"max_batch_size": 8, "max_queue_delay_us": 1000, "max_queue_size": 16, "default_timeout_us": 100000}
    }"#;

    fn tempdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("switchyard-config-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn loads_a_valid_repository_in_natural_version_order() {
        let d = tempdir("good");
        for v in ["v10", "v2", "v1"] {
            write(&d, &format!("m/{v}/config.json"), GOOD);
            write(&d, &format!("m/{v}/model.pt"), "");
        }
        write(&d, ".generated", "stamp");
        let repo = load_repository(&d).unwrap();
        let versions: Vec<_> = repo.models["m"].iter().map(|c| c.version.as_str()).collect();
        assert_eq!(versions, ["v1", "v2", "v10"]);
        let c = &repo.models["m"][0];
        assert_eq!(c.batching.max_queue_delay, Duration::from_millis(1));
        assert_eq!(c.device, DeviceSpec::Auto);
        assert_eq!(c.inputs[0].row_elements(), 4);
    }

    #[test]
    fn without_max_queue_delay_us_batching_is_work_conserving() {
        let d = tempdir("no-delay");
        write(&d, "m/v1/config.json", &GOOD.replace(r#""max_queue_delay_us": 1000, "#, ""));
        write(&d, "m/v1/model.pt", "");
        let repo = load_repository(&d).unwrap();
        assert_eq!(repo.models["m"][0].batching.max_queue_delay, Duration::ZERO);
    }

    #[test]
    fn reports_every_problem_at_once() {
        let d = tempdir("bad");
        write(
            &d,
            "m/v1/config.json",
            r#"{
            "platform": "onnx",
            "inputs": [{"name": "x", "datatype": "BYTES", "shape": [4]}, {"name": "x", "datatype": "FLOAT", "shape": [-1, 0]}],
            "outputs": [],
            "batching": {"max_batch_size": 0, "max_queue_delay_us": 5, "max_queue_size": 0, "default_timeout_us": 5},
            "instances": 0,
            "device": "tpu"
        }"#,
        );
        write(&d, "n/v1/config.json", r#"{"inputs": [], "unknown_field": 1}"#);
        write(&d, "n/v2/config.json", "not json");
        let err = load_repository(&d).unwrap_err();
        let text = err.to_string();
        for needle in [
            "platform 'onnx'",
            "model file",
            "datatype BYTES is not supported",
            "shape must start with the batch dimension",
            "duplicate name",
            "unknown datatype 'FLOAT'",
            "must be positive",
            "outputs must list at least one tensor",
            "max_batch_size must be",
            "max_queue_size must be",
            "must be below batching.default_timeout_us",
            "instances must be",
            "device 'tpu'",
            "unknown field `unknown_field`",
            "n/v2/config.json: invalid config",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
        assert!(err.0.len() >= 15, "{text}");
    }

    #[test]
    fn missing_repository_and_empty_repository_are_errors() {
        let err = load_repository(Path::new("/nonexistent/switchyard")).unwrap_err();
        assert!(err.to_string().contains("cannot read the model repository"));
        let d = tempdir("empty");
        assert!(load_repository(&d).unwrap_err().to_string().contains("holds no models"));
    }

    #[test]
    fn selection_filters_and_reports_unknown_names() {
        let d = tempdir("select");
        for p in ["a/v1", "a/v2", "b/v1"] {
            write(&d, &format!("{p}/config.json"), GOOD);
            write(&d, &format!("{p}/model.pt"), "");
        }
        let repo = load_repository(&d).unwrap();
        let sel = repo.clone().select(&["a:v2".into(), "b".into()]).unwrap();
        assert_eq!(sel.versions().map(|c| format!("{}:{}", c.model, c.version)).collect::<Vec<_>>(), ["a:v2", "b:v1"]);
        let err = repo.select(&["c".into(), "a:v9".into()]).unwrap_err().to_string();
        assert!(err.contains("no model 'c'") && err.contains("no version 'v9'"), "{err}");
    }

    #[test]
    fn find_version_takes_the_named_or_the_newest_in_natural_order() {
        let d = tempdir("find");
        for v in ["v2", "v10", "v9"] {
            write(&d, &format!("m/{v}/config.json"), GOOD);
            write(&d, &format!("m/{v}/model.pt"), "");
        }
        let repo = load_repository(&d).unwrap();
        assert_eq!(repo.find_version("m", None).unwrap().version, "v10");
        assert_eq!(repo.find_version("m", Some("v9")).unwrap().version, "v9");
        assert_eq!(repo.find_version("m", Some("v1")).unwrap_err().to_string(), "model 'm' has no version 'v1'");
        assert_eq!(repo.find_version("n", None).unwrap_err().to_string(), "no model 'n' in the repository");
    }

    #[test]
    fn natural_order() {
        let mut v = vec!["v10", "v9", "v1", "alpha", "v2"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, ["alpha", "v1", "v2", "v9", "v10"]);
    }
}
