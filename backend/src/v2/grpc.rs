//! The gRPC codec of the Open Inference Protocol: `ModelInferRequest` messages become the
//! same validated `InferRequest`s the REST codec makes, through the same checks, and batch
//! results become `ModelInferResponse`s with every output in `raw_output_contents`.
//!
//! Input data is taken either all from `raw_input_contents` (little-endian, one entry per
//! input in the order of `inputs`) or all from each input's typed `contents`, as the
//! specification asks; FP16 and BF16 have no typed field and come raw only.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use switchyard_oip::inference::model_infer_request::InferInputTensor;
use switchyard_oip::inference::model_infer_response::InferOutputTensor;
use switchyard_oip::inference::model_metadata_response::TensorMetadata;
use switchyard_oip::inference::{
    InferParameter, InferTensorContents, ModelInferRequest, ModelInferResponse, ModelMetadataResponse,
    infer_parameter::ParameterChoice,
};

use super::{Expected, InferRequest, InputHeader, OutputRows, Outputs, RequestedOutput, output_rows};
use crate::batcher::InferOutput;
use crate::config::{ModelConfig, TensorSpec};
use crate::error::{EncodeError, Invalid};
use crate::tensor::{DataType, TensorData, write_le_bytes};

/// Decodes and validates an inference message for `config`. The message is consumed, so
/// typed contents of the model's own element type become its tensors without a copy.
pub fn decode_request(config: &ModelConfig, req: ModelInferRequest) -> Result<InferRequest, Invalid> {
    let timeout = timeout(&req.parameters)?;
    let raw = req.raw_input_contents;
    if !raw.is_empty() && raw.len() != req.inputs.len() {
        return Err(format!(
            "raw_input_contents has {} entries but the request has {} inputs: every input's data is raw, or none is",
            raw.len(),
            req.inputs.len()
        )
        .into());
    }
    let mut inputs = super::Inputs::new(config);
    for (i, mut input) in req.inputs.into_iter().enumerate() {
        let contents = input.contents.take();
        let InferInputTensor { name, datatype, shape, .. } = &input;
        let header = InputHeader { name, shape, datatype };
        inputs.add(&header, |expected| match (raw.get(i), contents) {
            (Some(_), Some(c)) if !is_empty(&c) => {
                Err(format!("input '{name}' has both typed contents and raw_input_contents").into())
            }
            (Some(bytes), _) => expected.decode_le(&header, bytes),
            (None, Some(c)) => typed(expected, &header, c),
            (None, None) => {
                Err(format!("input '{name}' has no contents (and the request no raw_input_contents)").into())
            }
        })?;
    }
    let (decoded, rows) = inputs.finish()?;
    let mut outputs = Outputs::new(config);
    for o in &req.outputs {
        outputs.add(&o.name, false)?;
    }
    Ok(InferRequest {
        id: Some(req.id).filter(|id| !id.is_empty()),
        inputs: decoded,
        rows,
        outputs: outputs.finish(false),
        timeout,
    })
}

/// Triton's `timeout` schedule parameter, in µs: clients send it as int64 (tritonclient) or
/// uint64. Zero or negative means none.
fn timeout(parameters: &HashMap<String, InferParameter>) -> Result<Option<Duration>, Invalid> {
    let Some(p) = parameters.get("timeout") else { return Ok(None) };
    let micros = match &p.parameter_choice {
        Some(ParameterChoice::Int64Param(v)) => u64::try_from(*v).unwrap_or(0),
        Some(ParameterChoice::Uint64Param(v)) => *v,
        _ => return Err("parameter 'timeout' must be an int64 or uint64 number of microseconds".into()),
    };
    Ok(Some(micros).filter(|t| *t > 0).map(Duration::from_micros))
}

fn is_empty(c: &InferTensorContents) -> bool {
    filled(c).next().is_none()
}

/// The typed fields that hold data, by name.
fn filled(c: &InferTensorContents) -> impl Iterator<Item = &'static str> {
    [
        ("bool_contents", c.bool_contents.is_empty()),
        ("int_contents", c.int_contents.is_empty()),
        ("int64_contents", c.int64_contents.is_empty()),
        ("uint_contents", c.uint_contents.is_empty()),
        ("uint64_contents", c.uint64_contents.is_empty()),
        ("fp32_contents", c.fp32_contents.is_empty()),
        ("fp64_contents", c.fp64_contents.is_empty()),
        ("bytes_contents", c.bytes_contents.is_empty()),
    ]
    .into_iter()
    .filter_map(|(name, empty)| (!empty).then_some(name))
}

/// The typed field that carries `dtype`, as the specification assigns them.
fn field_for(dtype: DataType) -> Option<&'static str> {
    Some(match dtype {
        DataType::Bool => "bool_contents",
        DataType::Int8 | DataType::Int16 | DataType::Int32 => "int_contents",
        DataType::Int64 => "int64_contents",
        DataType::Uint8 | DataType::Uint16 | DataType::Uint32 => "uint_contents",
        DataType::Uint64 => "uint64_contents",
        DataType::Fp32 => "fp32_contents",
        DataType::Fp64 => "fp64_contents",
        DataType::Bytes => "bytes_contents",
        DataType::Fp16 | DataType::Bf16 => return None,
    })
}

fn typed(expected: &Expected<'_>, input: &InputHeader<'_>, c: InferTensorContents) -> Result<TensorData, Invalid> {
    let dtype = expected.spec.datatype;
    let name = input.name;
    let Some(field) = field_for(dtype) else {
        return Err(
            format!("input '{name}' is {dtype}, which has no typed contents: send it in raw_input_contents").into()
        );
    };
    if let Some(other) = filled(&c).find(|f| *f != field) {
        return Err(format!("input '{name}' is {dtype}, whose data goes in {field}, but {other} is set").into());
    }
    // Narrowed element by element: a value outside the type's range is an error, not a wrap.
    fn narrow<S: Copy + std::fmt::Display, T: TryFrom<S>>(
        name: &str,
        dtype: DataType,
        v: &[S],
    ) -> Result<Vec<T>, Invalid> {
        v.iter()
            .map(|&x| T::try_from(x).map_err(|_| Invalid(format!("input '{name}': {x} is out of range for {dtype}"))))
            .collect()
    }
    Ok(match dtype {
        DataType::Bool => TensorData::Bool(c.bool_contents),
        DataType::Int8 => TensorData::I8(narrow(name, dtype, &c.int_contents)?),
        DataType::Int16 => TensorData::I16(narrow(name, dtype, &c.int_contents)?),
        DataType::Int32 => TensorData::I32(c.int_contents),
        DataType::Int64 => TensorData::I64(c.int64_contents),
        DataType::Uint8 => TensorData::U8(narrow(name, dtype, &c.uint_contents)?),
        DataType::Fp32 => TensorData::F32(c.fp32_contents),
        DataType::Fp64 => TensorData::F64(c.fp64_contents),
        other => return Err(format!("input '{name}': datatype {other} is not supported by this server").into()),
    })
}

/// Encodes this request's rows of the batch outputs, each output's bytes in
/// `raw_output_contents`.
pub fn encode_response(
    config: &ModelConfig,
    id: Option<&str>,
    requested: &[RequestedOutput],
    result: &InferOutput,
) -> Result<ModelInferResponse, EncodeError> {
    let mut outputs = Vec::with_capacity(requested.len());
    let mut raw = Vec::with_capacity(requested.len());
    for &r in requested {
        let OutputRows { spec, tensor, span, shape } = output_rows(config, r, result)?;
        let mut bytes = Vec::with_capacity(span.len * spec.datatype.byte_size());
        write_le_bytes(&tensor.data, span, &mut bytes);
        raw.push(Bytes::from(bytes));
        outputs.push(InferOutputTensor {
            name: spec.name.clone(),
            datatype: spec.datatype.to_string(),
            shape,
            parameters: HashMap::new(),
            contents: None,
        });
    }
    Ok(ModelInferResponse {
        model_name: config.model.clone(),
        model_version: config.version.clone(),
        id: id.unwrap_or_default().to_owned(),
        parameters: HashMap::new(),
        outputs,
        raw_output_contents: raw,
    })
}

/// `ModelMetadata` for one version; `versions` are every version the server has of it.
pub fn model_metadata(config: &ModelConfig, versions: &[&str]) -> ModelMetadataResponse {
    let tensors = |specs: &[TensorSpec]| -> Vec<TensorMetadata> {
        specs
            .iter()
            .map(|s| TensorMetadata { name: s.name.clone(), datatype: s.datatype.to_string(), shape: s.shape.clone() })
            .collect()
    };
    ModelMetadataResponse {
        name: config.model.clone(),
        versions: versions.iter().map(|v| (*v).to_owned()).collect(),
        platform: super::PLATFORM.into(),
        inputs: tensors(&config.inputs),
        outputs: tensors(&config.outputs),
    }
}

#[cfg(test)]
mod tests;
