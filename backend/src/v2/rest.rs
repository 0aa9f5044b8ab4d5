//! The REST codec of the Open Inference Protocol: request bodies become validated
//! `InferRequest`s before they reach a queue, and batch results become response bodies.
//!
//! Besides JSON `data` (flat or nested, row-major), the binary tensor data extension used by
//! Triton's clients is supported: with an `Inference-Header-Content-Length` header the body is
//! a JSON header followed by raw little-endian tensors, each sized by its
//! `parameters.binary_data_size`.

use std::fmt;
use std::time::Duration;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;

use super::{InferRequest, InputHeader, MAX_DIMS, OutputRows, Outputs, RequestedOutput, output_rows};
use crate::batcher::InferOutput;
use crate::config::{ModelConfig, TensorSpec};
use crate::error::{EncodeError, Invalid};
use crate::tensor::{DataType, Span, TensorData, write_le_bytes};

mod json;
use json::{DataError, parse_flat};

/// Header that announces the binary tensor data extension, in requests and responses.
pub const HEADER_CONTENT_LENGTH: &str = "inference-header-content-length";

/// The top-level fields of a request other than `inputs`, which are decoded in place
/// (`InputList`) as the parser reaches them.
struct Head<'a> {
    id: Option<String>,
    parameters: Option<Parameters>,
    /// Checked after the inputs, one at a time (`for_each`), so a long list never becomes a
    /// long vector.
    outputs: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum Field {
    Id,
    Parameters,
    Inputs,
    Outputs,
    #[serde(other)]
    Other,
}

/// The request object. Its inputs go straight into `Inputs` while the body is parsed, so a
/// tensor's text is read twice (skipped by serde_json, then scanned by `json::parse_flat`)
/// rather than three times, as when the whole body was parsed before the inputs.
struct Request<'s, 'c, 'b>(&'s mut Inputs<'c, 'b>);

impl<'de> DeserializeSeed<'de> for Request<'_, '_, '_> {
    type Value = Head<'de>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Head<'de>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Request<'_, '_, '_> {
    type Value = Head<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an inference request object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Head<'de>, A::Error> {
        // As `#[derive(Deserialize)]` would: unknown fields ignored, repeated ones refused.
        let (mut id, mut parameters, mut outputs, mut inputs) = (None, None, None, false);
        while let Some(field) = map.next_key::<Field>()? {
            match field {
                Field::Id if id.is_some() => return Err(de::Error::duplicate_field("id")),
                Field::Id => id = Some(map.next_value::<Option<String>>()?),
                Field::Parameters if parameters.is_some() => return Err(de::Error::duplicate_field("parameters")),
                Field::Parameters => parameters = Some(map.next_value::<Option<Parameters>>()?),
                Field::Outputs if outputs.is_some() => return Err(de::Error::duplicate_field("outputs")),
                Field::Outputs => outputs = Some(map.next_value::<Option<&'de RawValue>>()?),
                Field::Inputs if inputs => return Err(de::Error::duplicate_field("inputs")),
                Field::Inputs => {
                    map.next_value_seed(InputList(&mut *self.0))?;
                    inputs = true;
                }
                Field::Other => {
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
        }
        if !inputs {
            return Err(de::Error::missing_field("inputs"));
        }
        Ok(Head { id: id.flatten(), parameters: parameters.flatten(), outputs: outputs.flatten() })
    }
}

/// The `inputs` array: each input is checked and decoded as soon as it is parsed.
struct InputList<'s, 'c, 'b>(&'s mut Inputs<'c, 'b>);

impl<'de> DeserializeSeed<'de> for InputList<'_, '_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for InputList<'_, '_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(input) = seq.next_element::<RawInput<'de>>()? {
            if let Err(e) = self.0.add(&input) {
                self.0.failed = Some(e);
                // The rest is only checked for syntax, as when the whole body was checked
                // before any input was looked at: a syntax error anywhere is still what the
                // client hears about, and otherwise this first problem.
                while seq.next_element::<de::IgnoredAny>()?.is_some() {}
            }
        }
        Ok(())
    }
}

/// The inputs decoded so far and the first problem found, with the binary part of the body
/// that no input has claimed yet.
struct Inputs<'c, 'b> {
    checked: super::Inputs<'c>,
    header_len: Option<usize>,
    binary: &'b [u8],
    failed: Option<Invalid>,
}

#[derive(Deserialize)]
struct RawInput<'a> {
    name: String,
    #[serde(deserialize_with = "bounded_shape")]
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Option<Parameters>,
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct RawOutput {
    name: String,
    #[serde(default)]
    parameters: Option<Parameters>,
}

/// The parameters this server understands; others are accepted and ignored, as the
/// protocol asks.
#[derive(Deserialize, Default)]
struct Parameters {
    #[serde(default)]
    timeout: Option<u64>,
    #[serde(default)]
    binary_data_output: Option<bool>,
    #[serde(default)]
    binary_data: Option<bool>,
    #[serde(default)]
    binary_data_size: Option<usize>,
}

fn bounded_shape<'de, D: de::Deserializer<'de>>(d: D) -> Result<Vec<i64>, D::Error> {
    struct Dims;
    impl<'de> Visitor<'de> for Dims {
        type Value = Vec<i64>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "a shape of at most {MAX_DIMS} dimensions")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<i64>, A::Error> {
            let mut dims = Vec::new();
            while let Some(d) = seq.next_element()? {
                if dims.len() == MAX_DIMS {
                    return Err(de::Error::custom(format!("shape has more than {MAX_DIMS} dimensions")));
                }
                dims.push(d);
            }
            Ok(dims)
        }
    }
    d.deserialize_seq(Dims)
}

/// Calls `f` on each element of the JSON array `raw` as soon as it is parsed. A JSON error
/// becomes "malformed request JSON"; an error of `f` stops the parse and is returned as is.
fn for_each<'de, T: Deserialize<'de>>(
    raw: &'de RawValue,
    mut f: impl FnMut(T) -> Result<(), Invalid>,
) -> Result<(), Invalid> {
    struct Each<'f, T, F> {
        f: &'f mut F,
        failed: &'f mut Option<Invalid>,
        item: std::marker::PhantomData<fn() -> T>,
    }
    impl<'de, T: Deserialize<'de>, F: FnMut(T) -> Result<(), Invalid>> Visitor<'de> for Each<'_, T, F> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an array")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while let Some(item) = seq.next_element::<T>()? {
                if let Err(e) = (self.f)(item) {
                    *self.failed = Some(e);
                    return Err(de::Error::custom("stopped"));
                }
            }
            Ok(())
        }
    }
    let mut failed = None;
    let mut de = serde_json::Deserializer::from_str(raw.get());
    let each = Each { f: &mut f, failed: &mut failed, item: std::marker::PhantomData };
    let parsed = de::Deserializer::deserialize_seq(&mut de, each).and_then(|()| de.end());
    match (failed, parsed) {
        (Some(e), _) => Err(e),
        (None, Err(e)) => Err(format!("malformed request JSON: {e}").into()),
        (None, Ok(())) => Ok(()),
    }
}

impl Inputs<'_, '_> {
    fn add(&mut self, input: &RawInput<'_>) -> Result<(), Invalid> {
        let header = InputHeader { name: &input.name, shape: &input.shape, datatype: &input.datatype };
        let binary_size = input.parameters.as_ref().and_then(|p| p.binary_data_size);
        let (header_len, binary) = (self.header_len, &mut self.binary);
        self.checked.add(&header, |expected| match (input.data, binary_size) {
            (Some(_), Some(_)) => {
                Err(format!("input '{}' has both 'data' and a binary_data_size parameter", input.name).into())
            }
            (Some(raw), None) => {
                parse_json_data(expected.spec.datatype, raw.get(), expected.count).map_err(|e| match e {
                    DataError::TooMany => expected.wrong_count(&header, &format_args!("more than {}", expected.count)),
                    DataError::Invalid(e) => Invalid(format!("input '{}': invalid data: {e}", input.name)),
                })
            }
            (None, Some(size)) => {
                if header_len.is_none() {
                    return Err(format!(
                        "input '{}' has binary_data_size but the request has no Inference-Header-Content-Length header",
                        input.name
                    )
                    .into());
                }
                if size > binary.len() {
                    return Err(format!(
                        "input '{}' declares {size} binary bytes but only {} remain in the body",
                        input.name,
                        binary.len()
                    )
                    .into());
                }
                let (mine, rest) = binary.split_at(size);
                *binary = rest;
                expected.decode_le(&header, mine)
            }
            (None, None) => Err(format!("input '{}' has no 'data'", input.name).into()),
        })
    }
}

/// Decodes and validates a request body for `config`. `header_len` is the value of the
/// `Inference-Header-Content-Length` header, when present.
///
/// Memory stays proportional to what the model accepts, whatever the body holds: inputs and
/// outputs are checked one at a time as they are parsed, and a tensor's `data` stops being
/// parsed at the first element beyond its declared shape. The whole body is still checked for
/// syntax before any problem with its content is reported.
pub fn decode_request(config: &ModelConfig, body: &[u8], header_len: Option<usize>) -> Result<InferRequest, Invalid> {
    let (json, binary) = match header_len {
        Some(n) if n > body.len() => {
            return Err(
                format!("Inference-Header-Content-Length is {n} but the body has only {} bytes", body.len()).into()
            );
        }
        Some(n) => body.split_at(n),
        None => (body, &[][..]),
    };
    let mut inputs = Inputs { checked: super::Inputs::new(config), header_len, binary, failed: None };
    let mut de = serde_json::Deserializer::from_slice(json);
    let head = Request(&mut inputs)
        .deserialize(&mut de)
        .and_then(|head| de.end().map(|()| head))
        .map_err(|e| format!("malformed request JSON: {e}"))?;
    if let Some(e) = inputs.failed {
        return Err(e);
    }
    if !inputs.binary.is_empty() {
        return Err(format!("{} byte(s) of binary data are not claimed by any input", inputs.binary.len()).into());
    }
    let (decoded, rows) = inputs.checked.finish()?;

    let params = head.parameters.unwrap_or_default();
    let binary_default = params.binary_data_output.unwrap_or(false);
    let mut outputs = Outputs::new(config);
    if let Some(list) = head.outputs {
        for_each(list, |o: RawOutput| {
            let binary = o.parameters.and_then(|p| p.binary_data).unwrap_or(binary_default);
            outputs.add(&o.name, binary)
        })?;
    }
    Ok(InferRequest {
        id: head.id,
        inputs: decoded,
        rows,
        outputs: outputs.finish(binary_default),
        timeout: params.timeout.filter(|t| *t > 0).map(Duration::from_micros),
    })
}

/// One row of a single-input model as a bare JSON array (flat or nested to the row's shape):
/// the compact line format of offline batch files.
pub fn decode_row(config: &ModelConfig, text: &str) -> Result<InferRequest, Invalid> {
    let [spec] = config.inputs.as_slice() else {
        return Err(format!(
            "model '{}' takes {} inputs: rows need a V2 request per line",
            config.model,
            config.inputs.len()
        )
        .into());
    };
    let want = spec.row_elements();
    let data = parse_json_data(spec.datatype, text, want).map_err(|e| match e {
        DataError::TooMany => {
            format!("row has more than {want} element(s); input '{}' needs {want} per row", spec.name)
        }
        DataError::Invalid(e) => e,
    })?;
    if data.len() != want {
        return Err(format!("row has {} element(s); input '{}' needs {want} per row", data.len(), spec.name).into());
    }
    Ok(InferRequest {
        id: None,
        inputs: vec![data],
        rows: 1,
        outputs: (0..config.outputs.len()).map(|index| RequestedOutput { index, binary: false }).collect(),
        timeout: None,
    })
}

fn parse_json_data(dtype: DataType, text: &str, limit: usize) -> Result<TensorData, DataError> {
    Ok(match dtype {
        DataType::Bool => TensorData::Bool(parse_flat(text, limit)?),
        DataType::Uint8 => TensorData::U8(parse_flat(text, limit)?),
        DataType::Int8 => TensorData::I8(parse_flat(text, limit)?),
        DataType::Int16 => TensorData::I16(parse_flat(text, limit)?),
        DataType::Int32 => TensorData::I32(parse_flat(text, limit)?),
        DataType::Int64 => TensorData::I64(parse_flat(text, limit)?),
        DataType::Fp16 => TensorData::F16(parse_flat(text, limit)?),
        DataType::Bf16 => TensorData::Bf16(parse_flat(text, limit)?),
        DataType::Fp32 => TensorData::F32(parse_flat(text, limit)?),
        DataType::Fp64 => TensorData::F64(parse_flat(text, limit)?),
        other => return Err(DataError::Invalid(format!("datatype {other} is not supported by this server"))),
    })
}

// ---- responses ------------------------------------------------------------------------------

/// Elements `span` of a buffer, serialised as a flat JSON array.
struct DataSlice<'a>(&'a TensorData, Span);

impl Serialize for DataSlice<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.1.start..self.1.start + self.1.len;
        match self.0 {
            TensorData::Bool(v) => s.collect_seq(&v[r]),
            TensorData::U8(v) => s.collect_seq(&v[r]),
            TensorData::I8(v) => s.collect_seq(&v[r]),
            TensorData::I16(v) => s.collect_seq(&v[r]),
            TensorData::I32(v) => s.collect_seq(&v[r]),
            TensorData::I64(v) => s.collect_seq(&v[r]),
            TensorData::F16(v) => s.collect_seq(v[r].iter().map(|x| x.to_f32())),
            TensorData::Bf16(v) => s.collect_seq(v[r].iter().map(|x| x.to_f32())),
            TensorData::F32(v) => s.collect_seq(&v[r]),
            TensorData::F64(v) => s.collect_seq(&v[r]),
        }
    }
}

#[derive(Serialize)]
struct BinaryParams {
    binary_data_size: usize,
}

#[derive(Serialize)]
struct ResponseOutput<'a> {
    name: &'a str,
    datatype: DataType,
    shape: Vec<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<BinaryParams>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<DataSlice<'a>>,
}

#[derive(Serialize)]
struct Response<'a> {
    model_name: &'a str,
    model_version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    outputs: Vec<ResponseOutput<'a>>,
}

/// An encoded response body; `header_len` is set when binary outputs follow the JSON.
pub struct EncodedResponse {
    pub body: Vec<u8>,
    pub header_len: Option<usize>,
}

/// Encodes this request's rows of the batch outputs.
pub fn encode_response(
    config: &ModelConfig,
    id: Option<&str>,
    requested: &[RequestedOutput],
    result: &InferOutput,
) -> Result<EncodedResponse, EncodeError> {
    let mut outputs = Vec::with_capacity(requested.len());
    let mut binary = Vec::new();
    for &r in requested {
        let OutputRows { spec, tensor, span, shape } = output_rows(config, r, result)?;
        let (parameters, data) = if r.binary {
            let before = binary.len();
            write_le_bytes(&tensor.data, span, &mut binary);
            (Some(BinaryParams { binary_data_size: binary.len() - before }), None)
        } else {
            (None, Some(DataSlice(&tensor.data, span)))
        };
        outputs.push(ResponseOutput { name: &spec.name, datatype: spec.datatype, shape, parameters, data });
    }
    let resp = Response { model_name: &config.model, model_version: &config.version, id, outputs };
    let mut body = serde_json::to_vec(&resp).map_err(|e| EncodeError(e.to_string()))?;
    if binary.is_empty() && !requested.iter().any(|r| r.binary) {
        return Ok(EncodedResponse { body, header_len: None });
    }
    let header_len = body.len();
    body.extend_from_slice(&binary);
    Ok(EncodedResponse { body, header_len: Some(header_len) })
}

/// `GET /v2/models/{m}[/versions/{v}]`.
pub fn model_metadata(config: &ModelConfig, versions: &[&str], device: Option<&str>) -> serde_json::Value {
    let tensors = |specs: &[TensorSpec]| -> Vec<serde_json::Value> {
        specs.iter().map(|s| serde_json::json!({"name": s.name, "datatype": s.datatype, "shape": s.shape})).collect()
    };
    serde_json::json!({
        "name": config.model,
        "versions": versions,
        "platform": super::PLATFORM,
        "inputs": tensors(&config.inputs),
        "outputs": tensors(&config.outputs),
        "parameters": {
            "version": config.version,
            "device": device,
            "max_batch_size": config.batching.max_batch_size,
            "max_queue_delay_us": config.batching.max_queue_delay.as_micros() as u64,
            "instances": config.instances,
        },
    })
}

#[cfg(test)]
mod properties;

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;
    use crate::batcher::BatchTensor;
    use crate::config::{BatchingPolicy, DeviceSpec};

    fn config() -> ModelConfig {
        ModelConfig {
            model: "m".into(),
            version: "v1".into(),
            model_file: PathBuf::from("model.pt"),
            inputs: vec![
                TensorSpec { name: "x".into(), datatype: DataType::Fp32, shape: vec![-1, 2, 2] },
                TensorSpec { name: "k".into(), datatype: DataType::Int64, shape: vec![-1, 1] },
            ],
            outputs: vec![
                TensorSpec { name: "y".into(), datatype: DataType::Fp32, shape: vec![-1, 2] },
                TensorSpec { name: "z".into(), datatype: DataType::Bool, shape: vec![-1, 1] },
            ],
            batching: BatchingPolicy {
                max_batch_size: 4,
                max_queue_delay: Duration::from_millis(1),
                max_queue_size: 8,
                default_timeout: Duration::from_secs(1),
            },
            instances: 1,
            device: DeviceSpec::Cpu,
        }
    }

    fn decode(body: &str) -> Result<InferRequest, Invalid> {
        decode_request(&config(), body.as_bytes(), None)
    }

    const GOOD: &str = r#"{"id":"r1","parameters":{"timeout":2500,"unknown":"ignored"},
        "inputs":[{"name":"k","shape":[2,1],"datatype":"INT64","data":[7,8]},
                  {"name":"x","shape":[2,2,2],"datatype":"FP32","data":[[[1,2],[3,4]],[[5,6.5],[7,8]]]}],
        "outputs":[{"name":"z"}]}"#;

    #[test]
    fn decodes_nested_data_in_config_order() {
        let r = decode(GOOD).unwrap();
        assert_eq!(r.id.as_deref(), Some("r1"));
        assert_eq!(r.rows, 2);
        assert_eq!(r.inputs[0], TensorData::F32(vec![1., 2., 3., 4., 5., 6.5, 7., 8.]));
        assert_eq!(r.inputs[1], TensorData::I64(vec![7, 8]));
        assert_eq!(r.outputs, [RequestedOutput { index: 1, binary: false }]);
        assert_eq!(r.timeout, Some(Duration::from_micros(2500)));
    }

    #[test]
    fn rejects_each_malformed_part_with_a_precise_message() {
        let x = r#"{"name":"x","shape":[1,2,2],"datatype":"FP32","data":[1,2,3,4]}"#;
        let k = r#"{"name":"k","shape":[1,1],"datatype":"INT64","data":[1]}"#;
        let cases = [
            ("{", "malformed request JSON"),
            (r#"{"inputs": 3}"#, "malformed request JSON"),
            (&format!(r#"{{"inputs":[{x}]}}"#), "missing input 'k'"),
            (&format!(r#"{{"inputs":[{x},{k},{k}]}}"#), "given more than once"),
            (
                &format!(r#"{{"inputs":[{x},{{"name":"q","shape":[1],"datatype":"FP32","data":[1]}}]}}"#),
                "unknown input 'q'",
            ),
            (
                &format!(r#"{{"inputs":[{x},{{"name":"k","shape":[1,1],"datatype":"FP32","data":[1]}}]}}"#),
                "has datatype FP32 but the model expects INT64",
            ),
            (
                &format!(r#"{{"inputs":[{x},{{"name":"k","shape":[1,1],"datatype":"FLOAT","data":[1]}}]}}"#),
                "unknown datatype 'FLOAT'",
            ),
            (
                &format!(r#"{{"inputs":[{x},{{"name":"k","shape":[1,2],"datatype":"INT64","data":[1,2]}}]}}"#),
                "has shape [1, 2] but the model expects [-1, 1]",
            ),
            (
                &format!(r#"{{"inputs":[{x},{{"name":"k","shape":[2,1],"datatype":"INT64","data":[1,2]}}]}}"#),
                "same batch dimension",
            ),
            (
                &format!(r#"{{"inputs":[{x},{{"name":"k","shape":[1,1],"datatype":"INT64","data":[1,2]}}]}}"#),
                "has more than 1 element(s) but shape [1, 1] needs 1",
            ),
            (
                &format!(r#"{{"inputs":[{x},{{"name":"k","shape":[1,1],"datatype":"INT64","data":[1.5]}}]}}"#),
                "1.5 is not a valid INT64 value",
            ),
            (
                &format!(r#"{{"inputs":[{x},{{"name":"k","shape":[1,1],"datatype":"INT64","data":["a"]}}]}}"#),
                "invalid data",
            ),
            (
                &format!(r#"{{"inputs":[{x},{{"name":"k","shape":[1,1],"datatype":"INT64","data":7}}]}}"#),
                "'data' must be an array",
            ),
            (&format!(r#"{{"inputs":[{x},{{"name":"k","shape":[1,1],"datatype":"INT64"}}]}}"#), "has no 'data'"),
            (
                &format!(r#"{{"inputs":[{x},{{"name":"k","shape":[0,1],"datatype":"INT64","data":[]}}]}}"#),
                "must be at least 1",
            ),
            (
                &format!(r#"{{"inputs":[{x},{{"name":"k","shape":[5,1],"datatype":"INT64","data":[1,2,3,4,5]}}]}}"#),
                "more than the model's max_batch_size of 4",
            ),
            (&format!(r#"{{"inputs":[{x},{k}],"outputs":[{{"name":"nope"}}]}}"#), "unknown output 'nope'"),
            (
                &format!(r#"{{"inputs":[{x},{k}],"outputs":[{{"name":"z"}},{{"name":"y"}},{{"name":"z"}}]}}"#),
                "output 'z' is requested more than once",
            ),
            (
                &format!(
                    r#"{{"inputs":[{x},{{"name":"k","shape":[{}1],"datatype":"INT64","data":[1]}}]}}"#,
                    "1,".repeat(40)
                ),
                "shape has more than 32 dimensions",
            ),
            (
                &format!(r#"{{"inputs":[{x},{{"name":"k","shape":[1,1],"datatype":"INT64","data":[[1],[2]]}}]}}"#),
                "has more than 1 element(s) but shape [1, 1] needs 1",
            ),
            (&format!(r#"{{"inputs":[{x},{k}],"parameters":{{"timeout":"soon"}}}}"#), "malformed request JSON"),
            (
                &format!(
                    r#"{{"inputs":[{x},{{"name":"k","shape":[1,1],"datatype":"INT64","parameters":{{"binary_data_size":8}}}}]}}"#
                ),
                "no Inference-Header-Content-Length",
            ),
        ];
        for (body, needle) in cases {
            let err = decode(body).unwrap_err();
            assert!(err.0.contains(needle), "{body}\n -> {err}\n wanted {needle}");
        }
    }

    #[test]
    fn decodes_binary_tensor_data() {
        let header = r#"{"inputs":[{"name":"x","shape":[1,2,2],"datatype":"FP32","parameters":{"binary_data_size":16}},
            {"name":"k","shape":[1,1],"datatype":"INT64","parameters":{"binary_data_size":8}}],
            "parameters":{"binary_data_output":true}}"#;
        let mut body = header.as_bytes().to_vec();
        for v in [1.0f32, 2.0, 3.0, 4.0] {
            body.extend_from_slice(&v.to_le_bytes());
        }
        body.extend_from_slice(&42i64.to_le_bytes());
        let r = decode_request(&config(), &body, Some(header.len())).unwrap();
        assert_eq!(r.inputs[0], TensorData::F32(vec![1., 2., 3., 4.]));
        assert_eq!(r.inputs[1], TensorData::I64(vec![42]));
        assert!(r.outputs.iter().all(|o| o.binary));

        let err = decode_request(&config(), &body, Some(body.len() + 1)).unwrap_err();
        assert!(err.0.contains("body has only"), "{err}");
        let mut extra = body.clone();
        extra.push(0);
        let err = decode_request(&config(), &extra, Some(header.len())).unwrap_err();
        assert!(err.0.contains("not claimed"), "{err}");
        let err = decode_request(&config(), &body[..body.len() - 1], Some(header.len())).unwrap_err();
        assert!(err.0.contains("only 7 remain"), "{err}");
    }

    fn batch_result() -> InferOutput {
        InferOutput {
            outputs: Arc::from(vec![
                BatchTensor { shape: vec![3, 2], data: TensorData::F32(vec![0., 1., 2., 3., 4., 5.]) },
                BatchTensor { shape: vec![3, 1], data: TensorData::Bool(vec![true, false, true]) },
            ]),
            row_start: 1,
            rows: 2,
        }
    }

    #[test]
    fn encodes_this_requests_rows_as_json() {
        let all = [RequestedOutput { index: 0, binary: false }, RequestedOutput { index: 1, binary: false }];
        let enc = encode_response(&config(), Some("abc"), &all, &batch_result()).unwrap();
        assert!(enc.header_len.is_none());
        let v: serde_json::Value = serde_json::from_slice(&enc.body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"model_name":"m","model_version":"v1","id":"abc","outputs":[
                {"name":"y","datatype":"FP32","shape":[2,2],"data":[2.0,3.0,4.0,5.0]},
                {"name":"z","datatype":"BOOL","shape":[2,1],"data":[false,true]}]})
        );
    }

    #[test]
    fn encodes_binary_outputs_after_the_json_header() {
        let req = [RequestedOutput { index: 0, binary: true }];
        let enc = encode_response(&config(), None, &req, &batch_result()).unwrap();
        let n = enc.header_len.unwrap();
        let header: serde_json::Value = serde_json::from_slice(&enc.body[..n]).unwrap();
        assert_eq!(header["outputs"][0]["parameters"]["binary_data_size"], 16);
        assert!(header["outputs"][0].get("data").is_none());
        let floats = TensorData::from_le_bytes(DataType::Fp32, &enc.body[n..]).unwrap();
        assert_eq!(floats, TensorData::F32(vec![2., 3., 4., 5.]));
    }

    #[test]
    fn data_parsing_stops_at_the_first_element_beyond_the_shape() {
        // The syntax error after the third element is never reached.
        assert_eq!(parse_flat::<f32>("[1, 2, 3, oops", 2), Err(DataError::TooMany));
        assert_eq!(parse_flat::<f32>("[[1, 2], [3]]", 2), Err(DataError::TooMany));
        assert_eq!(parse_flat::<f32>("[[1], [2]]", 2), Ok(vec![1., 2.]));
        // A large declared shape with little data reserves for the data only.
        assert!(parse_flat::<f64>("[1]", 1 << 30).unwrap().capacity() <= 2);
        let row = decode_row(&crate::testing::config("m", "v1"), "[1, 2, 3]").unwrap_err();
        assert_eq!(row, "row has more than 2 element(s); input 'x' needs 2 per row".into());
    }

    #[test]
    fn numbers_are_correctly_rounded_and_ranged_as_before() {
        let f32s = |t: &str| parse_flat::<f32>(t, 8).map(|v| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
        // 2^24 + 1 lies halfway between two f32s: the text decides (ties to even), and just
        // above or below it the nearer one wins, whatever an f64 in between would round to.
        assert_eq!(
            f32s("[16777217, 16777217.000001, 16777216.999999]"),
            Ok(vec![16777216f32.to_bits(), 16777218f32.to_bits(), 16777216f32.to_bits()])
        );
        // Shortest texts of f32s come back exactly; so do -0 and subnormals.
        assert_eq!(
            f32s("[0.1, -0, 1e-45, 3.4028235e38]"),
            Ok(vec![0.1f32.to_bits(), (-0f32).to_bits(), 1, f32::MAX.to_bits()])
        );
        // Past f32's range is infinity, as `f64 as f32` made it; past f64's is refused.
        assert_eq!(parse_flat::<f32>("[1e39]", 1), Ok(vec![f32::INFINITY]));
        assert!(
            matches!(parse_flat::<f32>("[1e400]", 1), Err(DataError::Invalid(e)) if e.contains("1e400 is not a valid FP32"))
        );
        assert!(matches!(parse_flat::<f64>("[-1e400]", 1), Err(DataError::Invalid(_))));
        assert_eq!(parse_flat::<f64>("[1e-400, 0e999999999999999999999]", 2), Ok(vec![0.0, 0.0]));
        // More digits than the fast path takes go through the full parser.
        assert_eq!(parse_flat::<f64>("[0.30000000000000000001]", 1), Ok(vec![0.3]));
        // Integer tensors take integers only, within range.
        assert_eq!(parse_flat::<i64>("[-9223372036854775808, 9223372036854775807]", 2), Ok(vec![i64::MIN, i64::MAX]));
        for bad in ["[9223372036854775808]", "[1e3]", "[1.0]", "[true]"] {
            assert!(
                matches!(parse_flat::<i64>(bad, 1), Err(DataError::Invalid(e)) if e.contains("not a valid INT64")),
                "{bad}"
            );
        }
        assert!(
            matches!(parse_flat::<u8>("[256]", 1), Err(DataError::Invalid(e)) if e.contains("256 is not a valid UINT8"))
        );
        assert_eq!(parse_flat::<bool>("[[true], [false]]", 2), Ok(vec![true, false]));
        assert!(
            matches!(parse_flat::<bool>("[1]", 1), Err(DataError::Invalid(e)) if e.contains("1 is not a valid BOOL"))
        );
        // Not JSON numbers, or not numbers at all: refused with where.
        for bad in [
            "[01]",
            "[1.]",
            "[.5]",
            "[+1]",
            "[NaN]",
            "[Infinity]",
            "[-]",
            "[1e]",
            "[null]",
            "[\"1\"]",
            "[1,]",
            "[1 2]",
            "[1]]",
        ] {
            assert!(
                matches!(parse_flat::<f64>(bad, 4), Err(DataError::Invalid(e)) if e.contains("line 1 column")),
                "{bad}"
            );
        }
    }

    #[test]
    fn binary_tensors_of_the_wrong_size_are_refused_before_decoding() {
        let header = r#"{"inputs":[{"name":"x","shape":[1,2,2],"datatype":"FP32","parameters":{"binary_data_size":20}},
            {"name":"k","shape":[1,1],"datatype":"INT64","data":[1]}]}"#;
        let mut body = header.as_bytes().to_vec();
        body.extend_from_slice(&[0; 20]);
        let err = decode_request(&config(), &body, Some(header.len())).unwrap_err();
        assert_eq!(err, "input 'x' has 5 element(s) but shape [1, 2, 2] needs 4".into());
    }

    proptest! {
        /// Arbitrary bytes, with or without the binary header, give an error or a request;
        /// never a panic.
        #[test]
        fn arbitrary_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512), hl in proptest::option::of(0usize..600)) {
            let _ = decode_request(&config(), &body, hl);
        }

        /// Valid requests with one field corrupted are rejected, not accepted or panicking.
        #[test]
        fn corrupted_valid_requests_are_rejected_cleanly(pos in 0usize..GOOD.len(), byte in any::<u8>()) {
            let mut body = GOOD.as_bytes().to_vec();
            body[pos] = byte;
            if let Ok(r) = decode_request(&config(), &body, None) {
                // A harmless mutation (whitespace, a digit) may still be valid: then it must be whole.
                prop_assert_eq!(r.inputs.len(), 2);
                prop_assert_eq!(r.inputs[0].len(), 8);
            }
        }

        /// Shapes with huge or negative dimensions are refused before any allocation.
        #[test]
        fn shapes_are_checked_before_data(dims in proptest::collection::vec(any::<i64>(), 0..5)) {
            let body = format!(
                r#"{{"inputs":[{{"name":"k","shape":{dims:?},"datatype":"INT64","data":[1]}},{{"name":"x","shape":[1,2,2],"datatype":"FP32","data":[1,2,3,4]}}]}}"#
            );
            let ok = decode(&body).is_ok();
            prop_assert_eq!(ok, dims == [1, 1]);
        }
    }
}
