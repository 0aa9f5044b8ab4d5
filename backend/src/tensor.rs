//! Tensor element types of the Open Inference Protocol and the typed buffers that carry them.
//!
//! Buffers are plain vectors so that the codec and the batcher know nothing about libtorch;
//! the engine turns them into `tch::Tensor`s in one copy.

use std::fmt;

use half::{bf16, f16};

use crate::error::Invalid;

/// Every datatype named by the Open Inference Protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DataType {
    Bool,
    Uint8,
    Uint16,
    Uint32,
    Uint64,
    Int8,
    Int16,
    Int32,
    Int64,
    Fp16,
    Fp32,
    Fp64,
    Bf16,
    Bytes,
}

impl DataType {
    pub const ALL: [DataType; 14] = [
        DataType::Bool,
        DataType::Uint8,
        DataType::Uint16,
        DataType::Uint32,
        DataType::Uint64,
        DataType::Int8,
        DataType::Int16,
        DataType::Int32,
        DataType::Int64,
        DataType::Fp16,
        DataType::Fp32,
        DataType::Fp64,
        DataType::Bf16,
        DataType::Bytes,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DataType::Bool => "BOOL",
            DataType::Uint8 => "UINT8",
            DataType::Uint16 => "UINT16",
            DataType::Uint32 => "UINT32",
            DataType::Uint64 => "UINT64",
            DataType::Int8 => "INT8",
            DataType::Int16 => "INT16",
            DataType::Int32 => "INT32",
            DataType::Int64 => "INT64",
            DataType::Fp16 => "FP16",
            DataType::Fp32 => "FP32",
            DataType::Fp64 => "FP64",
            DataType::Bf16 => "BF16",
            DataType::Bytes => "BYTES",
        }
    }

    /// Parses a protocol datatype name; the error lists the valid names.
    pub fn parse(name: &str) -> Result<Self, Invalid> {
        Self::ALL.into_iter().find(|d| d.as_str() == name).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|d| d.as_str()).collect();
            Invalid(format!("unknown datatype '{name}' (expected one of {})", names.join(", ")))
        })
    }

    /// libtorch has no unsigned types wider than 8 bits and this server has no string
    /// tensors, so these are refused when a model config is validated.
    pub fn is_servable(self) -> bool {
        !matches!(self, DataType::Uint16 | DataType::Uint32 | DataType::Uint64 | DataType::Bytes)
    }

    /// Size of one element in the binary tensor data extension.
    pub fn byte_size(self) -> usize {
        match self {
            DataType::Bool | DataType::Uint8 | DataType::Int8 | DataType::Bytes => 1,
            DataType::Uint16 | DataType::Int16 | DataType::Fp16 | DataType::Bf16 => 2,
            DataType::Uint32 | DataType::Int32 | DataType::Fp32 => 4,
            DataType::Uint64 | DataType::Int64 | DataType::Fp64 => 8,
        }
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for DataType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for DataType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        DataType::parse(&name).map_err(serde::de::Error::custom)
    }
}

/// The elements of a tensor, row-major, in one of the servable types.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    Bool(Vec<bool>),
    U8(Vec<u8>),
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    F16(Vec<f16>),
    Bf16(Vec<bf16>),
    F32(Vec<f32>),
    F64(Vec<f64>),
}

/// Expands `$body` once per variant with `$v` bound to the inner vector.
macro_rules! each_variant {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            TensorData::Bool($v) => $body,
            TensorData::U8($v) => $body,
            TensorData::I8($v) => $body,
            TensorData::I16($v) => $body,
            TensorData::I32($v) => $body,
            TensorData::I64($v) => $body,
            TensorData::F16($v) => $body,
            TensorData::Bf16($v) => $body,
            TensorData::F32($v) => $body,
            TensorData::F64($v) => $body,
        }
    };
}
pub(crate) use each_variant;

impl TensorData {
    /// An empty buffer for `dtype` with room for `capacity` elements.
    pub fn with_capacity(dtype: DataType, capacity: usize) -> Option<Self> {
        Some(match dtype {
            DataType::Bool => TensorData::Bool(Vec::with_capacity(capacity)),
            DataType::Uint8 => TensorData::U8(Vec::with_capacity(capacity)),
            DataType::Int8 => TensorData::I8(Vec::with_capacity(capacity)),
            DataType::Int16 => TensorData::I16(Vec::with_capacity(capacity)),
            DataType::Int32 => TensorData::I32(Vec::with_capacity(capacity)),
            DataType::Int64 => TensorData::I64(Vec::with_capacity(capacity)),
            DataType::Fp16 => TensorData::F16(Vec::with_capacity(capacity)),
            DataType::Bf16 => TensorData::Bf16(Vec::with_capacity(capacity)),
            DataType::Fp32 => TensorData::F32(Vec::with_capacity(capacity)),
            DataType::Fp64 => TensorData::F64(Vec::with_capacity(capacity)),
            DataType::Uint16 | DataType::Uint32 | DataType::Uint64 | DataType::Bytes => {
                return None;
            }
        })
    }

    /// Zero-filled buffer, used for warm-up batches.
    pub fn zeros(dtype: DataType, len: usize) -> Option<Self> {
        let mut data = Self::with_capacity(dtype, len)?;
        each_variant!(&mut data, v => v.resize(len, Default::default()));
        Some(data)
    }

    pub fn datatype(&self) -> DataType {
        match self {
            TensorData::Bool(_) => DataType::Bool,
            TensorData::U8(_) => DataType::Uint8,
            TensorData::I8(_) => DataType::Int8,
            TensorData::I16(_) => DataType::Int16,
            TensorData::I32(_) => DataType::Int32,
            TensorData::I64(_) => DataType::Int64,
            TensorData::F16(_) => DataType::Fp16,
            TensorData::Bf16(_) => DataType::Bf16,
            TensorData::F32(_) => DataType::Fp32,
            TensorData::F64(_) => DataType::Fp64,
        }
    }

    pub fn len(&self) -> usize {
        each_variant!(self, v => v.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends `other`'s elements; both must hold the same type (checked at validation, so a
    /// mismatch here is a bug and reported as such rather than a panic).
    pub fn extend_from(&mut self, other: &TensorData) -> Result<(), Invalid> {
        macro_rules! ext {
            ($($var:ident),*) => {
                match (self, other) {
                    $((TensorData::$var(a), TensorData::$var(b)) => { a.extend_from_slice(b); Ok(()) })*
                    (a, b) => Err(format!("cannot append {} to {}", b.datatype(), a.datatype()).into()),
                }
            };
        }
        ext!(Bool, U8, I8, I16, I32, I64, F16, Bf16, F32, F64)
    }

    /// Decodes little-endian bytes of the binary tensor data extension.
    pub fn from_le_bytes(dtype: DataType, bytes: &[u8]) -> Result<Self, Invalid> {
        let size = dtype.byte_size();
        if !bytes.len().is_multiple_of(size) {
            return Err(
                format!("{} bytes is not a whole number of {dtype} elements ({size} bytes each)", bytes.len()).into()
            );
        }
        macro_rules! decode {
            ($t:ty, $n:literal, $ctor:expr) => {{
                bytes
                    .chunks_exact($n)
                    .map(|c| {
                        let mut a = [0u8; $n];
                        a.copy_from_slice(c);
                        $ctor(<$t>::from_le_bytes(a))
                    })
                    .collect()
            }};
        }
        Ok(match dtype {
            DataType::Bool => TensorData::Bool(bytes.iter().map(|b| *b != 0).collect()),
            DataType::Uint8 => TensorData::U8(bytes.to_vec()),
            DataType::Int8 => TensorData::I8(decode!(i8, 1, |x| x)),
            DataType::Int16 => TensorData::I16(decode!(i16, 2, |x| x)),
            DataType::Int32 => TensorData::I32(decode!(i32, 4, |x| x)),
            DataType::Int64 => TensorData::I64(decode!(i64, 8, |x| x)),
            DataType::Fp16 => TensorData::F16(decode!(u16, 2, f16::from_bits)),
            DataType::Bf16 => TensorData::Bf16(decode!(u16, 2, bf16::from_bits)),
            DataType::Fp32 => TensorData::F32(decode!(f32, 4, |x| x)),
            DataType::Fp64 => TensorData::F64(decode!(f64, 8, |x| x)),
            DataType::Uint16 | DataType::Uint32 | DataType::Uint64 | DataType::Bytes => {
                return Err(format!("datatype {dtype} is not supported by this server").into());
            }
        })
    }
}

/// A contiguous run of elements `[start, start + len)` of a tensor buffer: how one request's
/// rows of a batched output are handed back without copying them out of the batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub len: usize,
}

/// Writes elements `span` of `data` as little-endian bytes (binary tensor data extension).
pub fn write_le_bytes(data: &TensorData, span: Span, out: &mut Vec<u8>) {
    let range = span.start..span.start + span.len;
    match data {
        TensorData::Bool(v) => out.extend(v[range].iter().map(|b| u8::from(*b))),
        TensorData::U8(v) => out.extend_from_slice(&v[range]),
        TensorData::I8(v) => out.extend(v[range].iter().flat_map(|x| x.to_le_bytes())),
        TensorData::I16(v) => out.extend(v[range].iter().flat_map(|x| x.to_le_bytes())),
        TensorData::I32(v) => out.extend(v[range].iter().flat_map(|x| x.to_le_bytes())),
        TensorData::I64(v) => out.extend(v[range].iter().flat_map(|x| x.to_le_bytes())),
        TensorData::F16(v) => out.extend(v[range].iter().flat_map(|x| x.to_bits().to_le_bytes())),
        TensorData::Bf16(v) => out.extend(v[range].iter().flat_map(|x| x.to_bits().to_le_bytes())),
        TensorData::F32(v) => out.extend(v[range].iter().flat_map(|x| x.to_le_bytes())),
        TensorData::F64(v) => out.extend(v[range].iter().flat_map(|x| x.to_le_bytes())),
    }
}

/// Number of elements of a shape; `None` on a negative dimension or overflow.
pub fn element_count(shape: &[i64]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| usize::try_from(d).ok().and_then(|d| acc.checked_mul(d)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datatype_names_round_trip() {
        for d in DataType::ALL {
            assert_eq!(DataType::parse(d.as_str()), Ok(d));
        }
        let err = DataType::parse("FLOAT").unwrap_err();
        assert!(err.0.contains("unknown datatype 'FLOAT'") && err.0.contains("FP32"), "{err}");
    }

    #[test]
    fn binary_round_trip_every_servable_type() {
        for d in DataType::ALL.into_iter().filter(|d| d.is_servable()) {
            let data = TensorData::zeros(d, 3).unwrap();
            let mut bytes = Vec::new();
            write_le_bytes(&data, Span { start: 0, len: 3 }, &mut bytes);
            assert_eq!(bytes.len(), 3 * d.byte_size());
            assert_eq!(TensorData::from_le_bytes(d, &bytes).unwrap(), data);
        }
        let f = TensorData::F32(vec![1.5, -2.0]);
        let mut bytes = Vec::new();
        write_le_bytes(&f, Span { start: 1, len: 1 }, &mut bytes);
        assert_eq!(TensorData::from_le_bytes(DataType::Fp32, &bytes).unwrap(), TensorData::F32(vec![-2.0]));
    }

    #[test]
    fn binary_rejects_partial_elements_and_unsupported_types() {
        assert!(TensorData::from_le_bytes(DataType::Fp32, &[0; 6]).unwrap_err().0.contains("whole number"));
        assert!(TensorData::from_le_bytes(DataType::Bytes, &[0; 4]).unwrap_err().0.contains("not supported"));
    }

    #[test]
    fn extend_checks_types() {
        let mut a = TensorData::F32(vec![1.0]);
        a.extend_from(&TensorData::F32(vec![2.0])).unwrap();
        assert_eq!(a, TensorData::F32(vec![1.0, 2.0]));
        assert!(a.extend_from(&TensorData::I64(vec![1])).is_err());
    }

    #[test]
    fn element_count_guards_overflow_and_negatives() {
        assert_eq!(element_count(&[2, 3, 4]), Some(24));
        assert_eq!(element_count(&[]), Some(1));
        assert_eq!(element_count(&[-1, 3]), None);
        assert_eq!(element_count(&[i64::MAX, i64::MAX]), None);
    }
}
