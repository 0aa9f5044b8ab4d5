//! What each request carries: V2 inference bodies generated from a model's metadata (seeded,
//! optionally drifted) or replayed from a JSONL file, mixed by weight, and headers drawn per
//! request from distributions (sticky user keys, override headers). Bodies are built once
//! before the run, so during it the generator spends its CPU on HTTP only.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, bail};
use bytes::Bytes;
use hyper::header::{HeaderName, HeaderValue};

use crate::metadata::TensorMeta;
use crate::scenario::{Drift, HeaderFile, PayloadFile};

/// Different bodies per generated payload variant, so the data varies between requests (a drift
/// monitor needs a distribution, not one vector): as many as fit in [`POOL_BYTES`], between
/// [`POOL_MIN`] and [`POOL_MAX`] (an mlp request gets 4096, a ResNet image 16): a drift
/// monitor comparing thousands of rows must not see the same few hundred again and again.
const POOL_MIN: u64 = 16;
const POOL_MAX: u64 = 4096;
const POOL_BYTES: usize = 16 * 1024 * 1024;

/// A deterministic pseudo-random generator (xorshift64*), so runs repeat.
pub struct Rng(u64);

impl Rng {
    /// The seed goes through SplitMix64 first: xorshift's first outputs from related states
    /// (consecutive seeds) are correlated, which showed as a spurious per-feature shift between
    /// two pools of bodies.
    pub fn new(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u = 1.0 - self.next_f64();
        let v = self.next_f64();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// One ready-to-send request body.
#[derive(Clone, Debug)]
pub struct Body {
    pub bytes: Bytes,
    /// `Inference-Header-Content-Length` for the binary tensor data extension.
    pub header_len: Option<usize>,
    pub rows: usize,
}

impl Body {
    pub fn empty() -> Self {
        Body { bytes: Bytes::new(), header_len: None, rows: 0 }
    }
}

/// One input of a V2 request as the generator writes it. The data stays typed until it is
/// written: through a `serde_json::Value` an f32 would be printed as the f64 it widens to
/// (`0.1f32` as `0.10000000149011612`), doubling a JSON body for no information.
#[derive(serde::Serialize)]
struct Input<'a> {
    name: &'a str,
    datatype: &'a str,
    shape: Vec<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Data>,
}

#[derive(serde::Serialize)]
#[serde(untagged)]
enum Data {
    F32(Vec<f32>),
    F64(Vec<f64>),
    Int(Vec<i64>),
}

#[derive(serde::Serialize)]
struct Request<'a> {
    inputs: Vec<Input<'a>>,
}

/// Where gRPC requests go: the model (and version) their messages name.
#[derive(Clone, Debug)]
pub struct GrpcTarget {
    pub model: String,
    pub version: Option<String>,
}

/// Builds a V2 request with `rows` rows of standard-normal data per input, drifted if asked:
/// JSON, JSON with binary tensors, or (`grpc`) a gRPC-framed `ModelInferRequest` with the
/// tensors in `raw_input_contents`.
pub fn build_body(
    inputs: &[TensorMeta],
    rows: usize,
    binary: bool,
    seed: u64,
    drift: Option<&Drift>,
    grpc: Option<&GrpcTarget>,
) -> anyhow::Result<Body> {
    let mut rng = Rng::new(seed);
    let mut header_inputs = Vec::new();
    let mut blob = Vec::new();
    let mut grpc_inputs = Vec::new();
    let mut raw = Vec::new();
    for i in inputs {
        let mut shape = i.shape.clone();
        let Some(first) = shape.first_mut() else { bail!("input '{}' has no batch dimension", i.name) };
        *first = rows as i64;
        if shape.iter().skip(1).any(|d| *d < 1) {
            bail!("input '{}' has a variable dimension {:?} besides the batch: give replay bodies", i.name, i.shape);
        }
        let width: usize = shape.iter().skip(1).map(|d| *d as usize).product();
        if let Some(f) = drift.and_then(|d| d.features.iter().find(|f| **f >= width)) {
            bail!("drift feature {f} is out of range: input '{}' has {width} features per row", i.name);
        }
        let mut data: Vec<f64> = (0..rows * width).map(|_| rng.normal()).collect();
        if let Some(d) = drift {
            for row in data.chunks_mut(width) {
                for f in &d.features {
                    if let Some(x) = row.get_mut(*f) {
                        *x = *x * d.scale + d.shift;
                    }
                }
            }
        }
        let (data, bytes) = match i.datatype.as_str() {
            "FP32" => {
                let v: Vec<f32> = data.iter().map(|x| *x as f32).collect();
                let b: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                (Data::F32(v), b)
            }
            "FP64" => {
                let b = data.iter().flat_map(|x| x.to_le_bytes()).collect();
                (Data::F64(data), b)
            }
            "INT32" | "INT64" => {
                let v: Vec<i64> = data.iter().map(|x| (x * 4.0).round() as i64).collect();
                let b = if i.datatype == "INT32" {
                    v.iter().flat_map(|x| (*x as i32).to_le_bytes()).collect()
                } else {
                    v.iter().flat_map(|x| x.to_le_bytes()).collect()
                };
                (Data::Int(v), b)
            }
            other => {
                bail!("input '{}' is {other}: the generator builds FP32/FP64/INT32/INT64; replay other bodies", i.name)
            }
        };
        if grpc.is_some() {
            grpc_inputs.push(switchyard_oip::inference::model_infer_request::InferInputTensor {
                name: i.name.clone(),
                datatype: i.datatype.clone(),
                shape,
                ..Default::default()
            });
            raw.push(Bytes::from(bytes));
            continue;
        }
        let mut input = Input { name: &i.name, datatype: &i.datatype, shape, parameters: None, data: None };
        if binary {
            input.parameters = Some(serde_json::json!({"binary_data_size": bytes.len()}));
            blob.extend(bytes);
        } else {
            input.data = Some(data);
        }
        header_inputs.push(input);
    }
    if let Some(t) = grpc {
        let message = switchyard_oip::inference::ModelInferRequest {
            model_name: t.model.clone(),
            model_version: t.version.clone().unwrap_or_default(),
            inputs: grpc_inputs,
            raw_input_contents: raw,
            ..Default::default()
        };
        let bytes = crate::http::grpc_frame(&prost::Message::encode_to_vec(&message))?;
        return Ok(Body { bytes, header_len: None, rows });
    }
    let mut body = serde_json::to_vec(&Request { inputs: header_inputs })?;
    if !binary {
        return Ok(Body { bytes: body.into(), header_len: None, rows });
    }
    let header_len = body.len();
    body.extend_from_slice(&blob);
    Ok(Body { bytes: body.into(), header_len: Some(header_len), rows })
}

/// Request bodies from a JSONL file, one V2 request object per line (blank lines skipped).
pub fn read_replay(path: &Path) -> anyhow::Result<Vec<Body>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read replay file {}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let at = || format!("{} line {}", path.display(), n + 1);
        let v: serde_json::Value = serde_json::from_str(line).with_context(|| format!("{}: not JSON", at()))?;
        let Some(inputs) = v.get("inputs").and_then(|i| i.as_array()) else {
            bail!("{}: a V2 inference request needs an \"inputs\" array", at());
        };
        let rows = inputs
            .first()
            .and_then(|i| i.get("shape")?.get(0)?.as_u64())
            .with_context(|| format!("{}: the first input has no shape", at()))?;
        out.push(Body { bytes: Bytes::copy_from_slice(line.as_bytes()), header_len: None, rows: rows as usize });
    }
    if out.is_empty() {
        bail!("replay file {} has no requests", path.display());
    }
    Ok(out)
}

/// A phase's payload mix: variants chosen by weight, bodies in turn within a variant.
#[derive(Clone, Debug)]
pub struct Mix {
    /// Cumulative weight, bodies.
    variants: Vec<(f64, Vec<Body>)>,
}

impl Mix {
    pub fn single(body: Body) -> Self {
        Mix { variants: vec![(1.0, vec![body])] }
    }

    /// Bodies the caller built, one picked at random for each request.
    pub fn of(bodies: Vec<Body>) -> Self {
        Mix { variants: vec![(1.0, bodies)] }
    }

    pub fn pick(&self, rng: &mut Rng) -> Option<&Body> {
        let total = self.variants.last()?.0;
        let x = rng.next_f64() * total;
        let (_, bodies) = self.variants.iter().find(|v| x < v.0).or(self.variants.last())?;
        bodies.get(rng.below(bodies.len() as u64) as usize)
    }
}

/// Builds payload mixes, sharing bodies between phases that ask for the same variant.
pub struct Mixes<'a> {
    inputs: &'a [TensorMeta],
    seed: u64,
    grpc: Option<GrpcTarget>,
    generated: HashMap<(usize, bool, bool), Vec<Body>>,
    replayed: HashMap<std::path::PathBuf, Vec<Body>>,
}

impl<'a> Mixes<'a> {
    /// Mixes of bodies for `inputs`; gRPC messages for `grpc`'s model when given.
    pub fn new(inputs: &'a [TensorMeta], seed: u64, grpc: Option<GrpcTarget>) -> Self {
        Mixes { inputs, seed, grpc, generated: HashMap::new(), replayed: HashMap::new() }
    }

    pub fn build(&mut self, payload: &[PayloadFile], drift: Option<&Drift>) -> anyhow::Result<Mix> {
        let default = [PayloadFile { weight: 1.0, rows: None, binary: false, replay: None }];
        let payload = if payload.is_empty() { &default[..] } else { payload };
        let mut variants = Vec::new();
        let mut total = 0.0;
        for p in payload {
            let bodies = match &p.replay {
                Some(path) => match self.replayed.get(path) {
                    Some(b) => b.clone(),
                    None => {
                        let b = read_replay(path)?;
                        self.replayed.insert(path.clone(), b.clone());
                        b
                    }
                },
                None => {
                    let key = (p.rows.unwrap_or(1), p.binary, drift.is_some());
                    if let Some(b) = self.generated.get(&key) {
                        b.clone()
                    } else {
                        // Drifted bodies are fresh draws (other seeds), so their unshifted features
                        // are a new sample of the same distribution, as in real traffic.
                        let seed =
                            |k: u64| self.seed.wrapping_add(k).wrapping_add(if drift.is_some() { 1 << 32 } else { 0 });
                        let grpc = self.grpc.as_ref();
                        let first = build_body(self.inputs, key.0, p.binary, seed(0), drift, grpc)?;
                        let pool =
                            (POOL_BYTES / first.bytes.len().max(1)).clamp(POOL_MIN as usize, POOL_MAX as usize) as u64;
                        let mut b = vec![first];
                        for k in 1..pool {
                            b.push(build_body(self.inputs, key.0, p.binary, seed(k), drift, grpc)?);
                        }
                        self.generated.insert(key, b.clone());
                        b
                    }
                }
            };
            total += p.weight;
            variants.push((total, bodies));
        }
        Ok(Mix { variants })
    }
}

/// One header's distribution.
#[derive(Clone, Debug)]
pub struct HeaderDist {
    name: HeaderName,
    fraction: f64,
    kind: HeaderKind,
}

#[derive(Clone, Debug)]
enum HeaderKind {
    Users { count: u64, prefix: String },
    Values { values: Vec<HeaderValue>, cumulative: Vec<f64> },
}

impl HeaderDist {
    pub fn new(h: &HeaderFile) -> anyhow::Result<Self> {
        let name = HeaderName::from_bytes(h.name.as_bytes()).with_context(|| format!("header name '{}'", h.name))?;
        let kind = match (&h.users, &h.values) {
            (Some(n), _) => HeaderKind::Users { count: u64::from(*n), prefix: h.prefix.clone() },
            (None, Some(vals)) => {
                let values = vals
                    .iter()
                    .map(|v| HeaderValue::from_str(v).with_context(|| format!("header '{}' value '{v}'", h.name)))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let weights = h.weights.clone().unwrap_or_else(|| vec![1.0; vals.len()]);
                let cumulative = weights
                    .iter()
                    .scan(0.0, |acc, w| {
                        *acc += w;
                        Some(*acc)
                    })
                    .collect();
                HeaderKind::Values { values, cumulative }
            }
            (None, None) => bail!("header '{}' has neither users nor values", h.name),
        };
        Ok(HeaderDist { name, fraction: h.fraction, kind })
    }

    /// The header for one request, or None when this request goes without it.
    pub fn draw(&self, rng: &mut Rng) -> Option<(HeaderName, HeaderValue)> {
        if self.fraction < 1.0 && rng.next_f64() >= self.fraction {
            return None;
        }
        let value = match &self.kind {
            HeaderKind::Users { count, prefix } => {
                HeaderValue::from_str(&format!("{prefix}{}", rng.below(*count))).ok()?
            }
            HeaderKind::Values { values, cumulative } => {
                let x = rng.next_f64() * cumulative.last().copied().unwrap_or(0.0);
                let i = cumulative.iter().position(|c| x < *c).unwrap_or(values.len().saturating_sub(1));
                values.get(i)?.clone()
            }
        };
        Some((self.name.clone(), value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mlp() -> Vec<TensorMeta> {
        vec![TensorMeta { name: "input".into(), datatype: "FP32".into(), shape: vec![-1, 4] }]
    }

    fn rows_of(b: &Body) -> Vec<Vec<f64>> {
        let v: serde_json::Value = serde_json::from_slice(&b.bytes).unwrap();
        let data: Vec<f64> = serde_json::from_value(v["inputs"][0]["data"].clone()).unwrap();
        data.chunks(4).map(<[f64]>::to_vec).collect()
    }

    #[test]
    fn drift_moves_only_the_chosen_features() {
        let drift = Drift { features: vec![1], shift: 10.0, scale: 1.0 };
        let plain = build_body(&mlp(), 500, false, 3, None, None).unwrap();
        let drifted = build_body(&mlp(), 500, false, 3, Some(&drift), None).unwrap();
        let mean = |b: &Body, f: usize| rows_of(b).iter().map(|r| r[f]).sum::<f64>() / 500.0;
        assert!(mean(&plain, 1).abs() < 0.2, "standard normal data");
        assert!((mean(&drifted, 1) - 10.0).abs() < 0.2);
        assert!((mean(&drifted, 0) - mean(&plain, 0)).abs() < 1e-6, "other features untouched");
        let e = build_body(&mlp(), 1, false, 3, Some(&Drift { features: vec![4], shift: 1.0, scale: 1.0 }), None);
        assert!(e.unwrap_err().to_string().contains("out of range"));
    }

    #[test]
    fn json_fp32_values_are_written_at_their_shortest_and_read_back_exactly() {
        let json = build_body(&mlp(), 100, false, 9, None, None).unwrap();
        let binary = build_body(&mlp(), 100, true, 9, None, None).unwrap();
        let want: Vec<f32> = binary.bytes[binary.header_len.unwrap()..]
            .chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let text = std::str::from_utf8(&json.bytes).unwrap();
        let start = text.find("\"data\":[").unwrap() + 8;
        let end = start + text[start..].find(']').unwrap();
        let tokens: Vec<&str> = text[start..end].split(',').collect();
        assert_eq!(tokens.len(), want.len());
        for (t, w) in tokens.iter().zip(&want) {
            assert_eq!(t.parse::<f32>().unwrap(), *w, "{t}");
            // An f32 needs at most 9 significant digits; widened to f64 it printed ~17.
            assert!(t.len() <= 14, "{t} is longer than an f32 needs");
        }
    }

    #[test]
    fn binary_bodies_carry_their_header_length() {
        let b = build_body(&mlp(), 2, true, 1, None, None).unwrap();
        let n = b.header_len.unwrap();
        assert_eq!(b.bytes.len(), n + 2 * 4 * 4);
        let head: serde_json::Value = serde_json::from_slice(&b.bytes[..n]).unwrap();
        assert_eq!(head["inputs"][0]["parameters"]["binary_data_size"], 32);
    }

    #[test]
    fn header_distributions() {
        let mut rng = Rng::new(5);
        let users = HeaderDist::new(&HeaderFile {
            name: "x-user-id".into(),
            fraction: 0.5,
            users: Some(10),
            prefix: "u".into(),
            values: None,
            weights: None,
        })
        .unwrap();
        let drawn: Vec<_> = (0..4000).filter_map(|_| users.draw(&mut rng)).collect();
        assert!((1800..2200).contains(&drawn.len()), "fraction 0.5 gave {}", drawn.len());
        let distinct: std::collections::HashSet<_> = drawn.iter().map(|(_, v)| v.clone()).collect();
        assert_eq!(distinct.len(), 10);
        let pinned = HeaderDist::new(&HeaderFile {
            name: "x-version".into(),
            fraction: 1.0,
            users: None,
            prefix: String::new(),
            values: Some(vec!["v1".into(), "v2".into()]),
            weights: Some(vec![0.0, 1.0]),
        })
        .unwrap();
        assert!((0..100).all(|_| pinned.draw(&mut rng).unwrap().1 == "v2"));
    }

    #[test]
    fn replay_reads_bodies_and_names_bad_lines() {
        let dir = std::env::temp_dir().join(format!("switchyard-replay-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.jsonl");
        std::fs::write(
            &good,
            "{\"inputs\":[{\"name\":\"x\",\"shape\":[3,1],\"datatype\":\"FP32\",\"data\":[1,2,3]}]}\n\n",
        )
        .unwrap();
        let bodies = read_replay(&good).unwrap();
        assert_eq!((bodies.len(), bodies[0].rows), (1, 3));
        let bad = dir.join("bad.jsonl");
        std::fs::write(&bad, "{\"inputs\":[]}\n{oops\n").unwrap();
        let e = format!("{:#}", read_replay(&bad).unwrap_err());
        assert!(e.contains("line 1"), "{e}");
    }
}
