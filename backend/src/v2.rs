//! The Open Inference Protocol (KServe V2), independent of the wire: the validated request
//! that models, batcher and engines see, the checks every request goes through, and the
//! slicing of batch results back into one request's rows.
//!
//! Two codecs sit on top and share these checks, so a request means the same whichever way it
//! came in: [`rest`] (JSON, with Triton's binary tensor extension) and [`grpc`] (protobuf).

use std::fmt;
use std::time::Duration;

use crate::batcher::{BatchTensor, InferOutput};
use crate::config::{ModelConfig, TensorSpec};
use crate::error::{EncodeError, Invalid};
use crate::tensor::{DataType, Span, TensorData, element_count};

pub mod grpc;
pub mod rest;

/// A request checked against its model's config.
#[derive(Debug)]
pub struct InferRequest {
    pub id: Option<String>,
    /// One buffer per model input, in the config's order.
    pub inputs: Vec<TensorData>,
    pub rows: usize,
    pub outputs: Vec<RequestedOutput>,
    /// The `timeout` parameter (µs), when the client set a positive one.
    pub timeout: Option<Duration>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestedOutput {
    /// Index into the model config's outputs.
    pub index: usize,
    /// REST only: sent as binary tensor data (gRPC outputs are always raw bytes).
    pub binary: bool,
}

/// What model metadata calls this server's backend.
pub(crate) const PLATFORM: &str = "pytorch_libtorch";

/// More dimensions than any model has; the limit keeps a hostile shape (and the error
/// message that echoes it) small.
pub(crate) const MAX_DIMS: usize = 32;

/// What every codec knows about an input before its data is decoded.
pub(crate) struct InputHeader<'a> {
    pub name: &'a str,
    pub shape: &'a [i64],
    pub datatype: &'a str,
}

/// The model's view of an input whose header passed: what its data must hold.
pub(crate) struct Expected<'c> {
    pub spec: &'c TensorSpec,
    /// Elements the shape needs.
    pub count: usize,
}

impl Expected<'_> {
    /// The message for data of the wrong length (`n` elements, or a description).
    pub fn wrong_count(&self, input: &InputHeader<'_>, n: &dyn fmt::Display) -> Invalid {
        Invalid(format!("input '{}' has {n} element(s) but shape {:?} needs {}", input.name, input.shape, self.count))
    }

    /// Little-endian bytes of this input: sized to the shape before a byte is decoded.
    pub fn decode_le(&self, input: &InputHeader<'_>, bytes: &[u8]) -> Result<TensorData, Invalid> {
        let element = self.spec.datatype.byte_size();
        if bytes.len().is_multiple_of(element) && bytes.len() / element != self.count {
            return Err(self.wrong_count(input, &(bytes.len() / element)));
        }
        TensorData::from_le_bytes(self.spec.datatype, bytes)
            .map_err(|e| Invalid(format!("input '{}': {e}", input.name)))
    }
}

/// The inputs of one request, checked one at a time as a codec reaches them, so no codec
/// decodes data for an input the model does not take, or beyond what its shape declares.
pub(crate) struct Inputs<'c> {
    config: &'c ModelConfig,
    slots: Vec<Option<TensorData>>,
    rows: Option<usize>,
}

impl<'c> Inputs<'c> {
    pub fn new(config: &'c ModelConfig) -> Self {
        Inputs { config, slots: vec![None; config.inputs.len()], rows: None }
    }

    /// Checks `input`'s name, datatype, shape and batch size against the model, then takes
    /// the data `decode` returns for it and checks its length.
    pub fn add(
        &mut self,
        input: &InputHeader<'_>,
        decode: impl FnOnce(&Expected<'c>) -> Result<TensorData, Invalid>,
    ) -> Result<(), Invalid> {
        let config = self.config;
        let Some(index) = config.inputs.iter().position(|s| s.name == input.name) else {
            let expected: Vec<&str> = config.inputs.iter().map(|s| s.name.as_str()).collect();
            return Err(format!(
                "unknown input '{}' (model '{}' takes: {})",
                input.name,
                config.model,
                expected.join(", ")
            )
            .into());
        };
        if self.slots[index].is_some() {
            return Err(format!("input '{}' is given more than once", input.name).into());
        }
        let spec = &config.inputs[index];
        let n = check_header(spec, input, config.batching.max_batch_size)?;
        if *self.rows.get_or_insert(n) != n {
            return Err(format!(
                "input '{}' has {n} row(s) but another input has {}: every input needs the same batch dimension",
                input.name,
                self.rows.unwrap_or(0)
            )
            .into());
        }
        let count = element_count(input.shape)
            .ok_or_else(|| format!("input '{}' has shape {:?}: too many elements", input.name, input.shape))?;
        let expected = Expected { spec, count };
        let data = decode(&expected)?;
        if data.len() != count {
            return Err(expected.wrong_count(input, &data.len()));
        }
        self.slots[index] = Some(data);
        Ok(())
    }

    /// Every input of the model, in its order, and the row count.
    pub fn finish(self) -> Result<(Vec<TensorData>, usize), Invalid> {
        let mut decoded = Vec::with_capacity(self.slots.len());
        for (slot, spec) in self.slots.into_iter().zip(&self.config.inputs) {
            decoded.push(slot.ok_or_else(|| format!("missing input '{}'", spec.name))?);
        }
        Ok((decoded, self.rows.unwrap_or(0)))
    }
}

/// Checks name-independent header fields; returns the row count.
fn check_header(spec: &TensorSpec, input: &InputHeader<'_>, max_batch: usize) -> Result<usize, Invalid> {
    if input.shape.len() > MAX_DIMS {
        return Err(format!("input '{}': shape has more than {MAX_DIMS} dimensions", input.name).into());
    }
    let datatype = DataType::parse(input.datatype).map_err(|e| Invalid(format!("input '{}': {e}", input.name)))?;
    if datatype != spec.datatype {
        return Err(
            format!("input '{}' has datatype {datatype} but the model expects {}", input.name, spec.datatype).into()
        );
    }
    let dims_ok = input.shape.len() == spec.shape.len()
        && input.shape.iter().zip(&spec.shape).skip(1).all(|(got, want)| got == want);
    if !dims_ok {
        return Err(format!(
            "input '{}' has shape {:?} but the model expects {:?}",
            input.name, input.shape, spec.shape
        )
        .into());
    }
    let rows = input.shape[0];
    if rows < 1 {
        return Err(format!("input '{}' has batch dimension {rows}; it must be at least 1", input.name).into());
    }
    if rows as u64 > max_batch as u64 {
        return Err(format!(
            "input '{}' has {rows} rows, more than the model's max_batch_size of {max_batch}",
            input.name
        )
        .into());
    }
    Ok(rows as usize)
}

/// The outputs a request asks for, checked as a codec reaches them.
pub(crate) struct Outputs<'c> {
    config: &'c ModelConfig,
    requested: Vec<RequestedOutput>,
}

impl<'c> Outputs<'c> {
    pub fn new(config: &'c ModelConfig) -> Self {
        Outputs { config, requested: Vec::new() }
    }

    pub fn add(&mut self, name: &str, binary: bool) -> Result<(), Invalid> {
        let config = self.config;
        let Some(index) = config.outputs.iter().position(|s| s.name == name) else {
            let names: Vec<&str> = config.outputs.iter().map(|s| s.name.as_str()).collect();
            return Err(format!("unknown output '{name}' (model '{}' has: {})", config.model, names.join(", ")).into());
        };
        // Each output is encoded once per request: a repeated name would multiply the
        // response without bound.
        if self.requested.iter().any(|r| r.index == index) {
            return Err(format!("output '{name}' is requested more than once").into());
        }
        self.requested.push(RequestedOutput { index, binary });
        Ok(())
    }

    /// What was asked for, or every output of the model when nothing was.
    pub fn finish(self, binary_default: bool) -> Vec<RequestedOutput> {
        if !self.requested.is_empty() {
            return self.requested;
        }
        (0..self.config.outputs.len()).map(|index| RequestedOutput { index, binary: binary_default }).collect()
    }
}

/// One requested output of a batch result, cut down to this request's rows.
pub(crate) struct OutputRows<'a> {
    pub spec: &'a TensorSpec,
    pub tensor: &'a BatchTensor,
    pub span: Span,
    pub shape: Vec<i64>,
}

pub(crate) fn output_rows<'a>(
    config: &'a ModelConfig,
    requested: RequestedOutput,
    result: &'a InferOutput,
) -> Result<OutputRows<'a>, EncodeError> {
    let spec = &config.outputs[requested.index];
    let tensor = result
        .outputs
        .get(requested.index)
        .ok_or_else(|| EncodeError(format!("output '{}' missing from the batch", spec.name)))?;
    let row = element_count(tensor.shape.get(1..).unwrap_or(&[])).unwrap_or(0);
    let span = Span { start: result.row_start * row, len: result.rows * row };
    if span.start + span.len > tensor.data.len() {
        return Err(EncodeError(format!("output '{}' is shorter than the batch", spec.name)));
    }
    let mut shape = tensor.shape.clone();
    shape[0] = result.rows as i64;
    Ok(OutputRows { spec, tensor, span, shape })
}
