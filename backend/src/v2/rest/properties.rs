//! Structure-aware property tests of the codec: requests built from random tensors of every
//! servable datatype, in JSON (flat or nested) and binary form, decode to exactly those tensors;
//! the same requests with one part broken are refused with a clean message; nothing panics.
//! The JSON `data` scanner accepts what serde_json accepts, with correctly rounded values, and
//! what the response encoder writes decodes back to the same bits.

use std::path::PathBuf;
use std::sync::Arc;

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::batcher::BatchTensor;
use crate::config::{BatchingPolicy, DeviceSpec};
use crate::tensor::Span;

const SERVABLE: [DataType; 10] = [
    DataType::Bool,
    DataType::Uint8,
    DataType::Int8,
    DataType::Int16,
    DataType::Int32,
    DataType::Int64,
    DataType::Fp16,
    DataType::Bf16,
    DataType::Fp32,
    DataType::Fp64,
];
const MAX_ROWS: usize = 4;

/// One input of every servable datatype, with rows of 3 or of 2×2 elements.
fn config() -> ModelConfig {
    let spec = |i: usize, d: DataType| TensorSpec {
        name: format!("in_{}", d.as_str().to_lowercase()),
        datatype: d,
        shape: if i.is_multiple_of(2) { vec![-1, 3] } else { vec![-1, 2, 2] },
    };
    let out = |name: &str, d: DataType| TensorSpec { name: name.into(), datatype: d, shape: vec![-1, 1] };
    ModelConfig {
        model: "p".into(),
        version: "v1".into(),
        model_file: PathBuf::from("model.pt"),
        inputs: SERVABLE.iter().enumerate().map(|(i, d)| spec(i, *d)).collect(),
        outputs: vec![out("a", DataType::Fp32), out("b", DataType::Int64), out("c", DataType::Bool)],
        batching: BatchingPolicy {
            max_batch_size: MAX_ROWS,
            max_queue_delay: Duration::from_millis(1),
            max_queue_size: 8,
            default_timeout: Duration::from_secs(1),
        },
        instances: 1,
        device: DeviceSpec::Cpu,
    }
}

fn values(d: DataType, n: usize) -> BoxedStrategy<TensorData> {
    use proptest::collection::vec;
    // JSON has no NaN or infinity; those become zero.
    let finite = |x: f64| if x.is_finite() { x } else { 0.0 };
    match d {
        DataType::Bool => vec(any::<bool>(), n).prop_map(TensorData::Bool).boxed(),
        DataType::Uint8 => vec(any::<u8>(), n).prop_map(TensorData::U8).boxed(),
        DataType::Int8 => vec(any::<i8>(), n).prop_map(TensorData::I8).boxed(),
        DataType::Int16 => vec(any::<i16>(), n).prop_map(TensorData::I16).boxed(),
        DataType::Int32 => vec(any::<i32>(), n).prop_map(TensorData::I32).boxed(),
        DataType::Int64 => vec(any::<i64>(), n).prop_map(TensorData::I64).boxed(),
        DataType::Fp16 => vec(any::<u16>(), n)
            .prop_map(move |v| {
                TensorData::F16(
                    v.into_iter().map(|b| half::f16::from_f64(finite(half::f16::from_bits(b).to_f64()))).collect(),
                )
            })
            .boxed(),
        DataType::Bf16 => vec(any::<u16>(), n)
            .prop_map(move |v| {
                TensorData::Bf16(
                    v.into_iter().map(|b| half::bf16::from_f64(finite(half::bf16::from_bits(b).to_f64()))).collect(),
                )
            })
            .boxed(),
        DataType::Fp32 => vec(any::<f32>(), n)
            .prop_map(move |v| TensorData::F32(v.into_iter().map(|x| finite(x.into()) as f32).collect()))
            .boxed(),
        DataType::Fp64 => {
            vec(any::<f64>(), n).prop_map(move |v| TensorData::F64(v.into_iter().map(finite).collect())).boxed()
        }
        _ => Just(TensorData::U8(Vec::new())).boxed(),
    }
}

#[derive(Clone, Copy, Debug)]
enum Encoding {
    Flat,
    /// One JSON array per row.
    Nested,
    Binary,
}

#[derive(Clone, Debug)]
struct Case {
    rows: usize,
    /// (config index, values, encoding), in the order they are sent.
    inputs: Vec<(usize, TensorData, Encoding)>,
    /// (config index, `binary_data` parameter).
    outputs: Option<Vec<(usize, Option<bool>)>>,
    binary_output: Option<bool>,
    id: Option<String>,
    timeout: Option<u64>,
}

fn case() -> impl Strategy<Value = Case> {
    let c = config();
    (1..=MAX_ROWS).prop_flat_map(move |rows| {
        let inputs: Vec<_> = c
            .inputs
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let encoding = prop_oneof![Just(Encoding::Flat), Just(Encoding::Nested), Just(Encoding::Binary)];
                (Just(i), values(s.datatype, rows * s.row_elements()), encoding)
            })
            .collect();
        let outputs = proptest::option::of(
            Just((0..3).collect::<Vec<usize>>())
                .prop_shuffle()
                .prop_flat_map(|order| (0..=order.len()).prop_map(move |n| order[..n].to_vec()))
                .prop_flat_map(|picked| {
                    let n = picked.len();
                    (Just(picked), proptest::collection::vec(proptest::option::of(any::<bool>()), n))
                })
                .prop_map(|(picked, flags)| picked.into_iter().zip(flags).collect()),
        );
        (
            Just(rows),
            inputs.prop_shuffle(),
            outputs,
            proptest::option::of(any::<bool>()),
            proptest::option::of("[a-z0-9-]{0,12}"),
            proptest::option::of(0u64..10_000_000),
        )
            .prop_map(|(rows, inputs, outputs, binary_output, id, timeout)| Case {
                rows,
                inputs,
                outputs,
                binary_output,
                id,
                timeout,
            })
    })
}

fn json_values(data: &TensorData) -> Vec<Value> {
    match data {
        TensorData::Bool(v) => v.iter().map(|x| json!(x)).collect(),
        TensorData::U8(v) => v.iter().map(|x| json!(x)).collect(),
        TensorData::I8(v) => v.iter().map(|x| json!(x)).collect(),
        TensorData::I16(v) => v.iter().map(|x| json!(x)).collect(),
        TensorData::I32(v) => v.iter().map(|x| json!(x)).collect(),
        TensorData::I64(v) => v.iter().map(|x| json!(x)).collect(),
        TensorData::F16(v) => v.iter().map(|x| json!(x.to_f64())).collect(),
        TensorData::Bf16(v) => v.iter().map(|x| json!(x.to_f64())).collect(),
        // Through f64, whose JSON text round-trips exactly.
        TensorData::F32(v) => v.iter().map(|x| json!(f64::from(*x))).collect(),
        TensorData::F64(v) => v.iter().map(|x| json!(x)).collect(),
    }
}

/// Each element's bits, so that floats compare exactly and -0.0 differs from 0.0.
fn bits(d: &TensorData) -> Vec<u64> {
    match d {
        TensorData::Bool(v) => v.iter().map(|x| u64::from(*x)).collect(),
        TensorData::U8(v) => v.iter().map(|x| u64::from(*x)).collect(),
        TensorData::I8(v) => v.iter().map(|x| *x as u64).collect(),
        TensorData::I16(v) => v.iter().map(|x| *x as u64).collect(),
        TensorData::I32(v) => v.iter().map(|x| *x as u64).collect(),
        TensorData::I64(v) => v.iter().map(|x| *x as u64).collect(),
        TensorData::F16(v) => v.iter().map(|x| u64::from(x.to_bits())).collect(),
        TensorData::Bf16(v) => v.iter().map(|x| u64::from(x.to_bits())).collect(),
        TensorData::F32(v) => v.iter().map(|x| u64::from(x.to_bits())).collect(),
        TensorData::F64(v) => v.iter().map(|x| x.to_bits()).collect(),
    }
}

/// Bit for bit equal: numbers are parsed correctly rounded (FP32 straight to f32), so the
/// shortest text of a value, which serde_json writes, always comes back as that value.
fn same(got: &TensorData, want: &TensorData) -> bool {
    got.datatype() == want.datatype() && bits(got) == bits(want)
}

/// A request as its JSON header and its binary part.
struct Built {
    header: Value,
    binary: Vec<u8>,
    has_binary: bool,
}

impl Built {
    fn body(&self) -> (Vec<u8>, Option<usize>) {
        let mut body = serde_json::to_vec(&self.header).unwrap_or_default();
        let header_len = self.has_binary.then_some(body.len());
        body.extend_from_slice(&self.binary);
        (body, header_len)
    }
}

fn build(c: &Case) -> Built {
    let config = config();
    let mut binary = Vec::new();
    let mut has_binary = false;
    let inputs: Vec<Value> = c
        .inputs
        .iter()
        .map(|(i, data, encoding)| {
            let spec = &config.inputs[*i];
            let mut shape = spec.shape.clone();
            shape[0] = c.rows as i64;
            let mut input = json!({"name": spec.name, "shape": shape, "datatype": spec.datatype.as_str()});
            match encoding {
                Encoding::Flat => input["data"] = Value::Array(json_values(data)),
                Encoding::Nested => {
                    let flat = json_values(data);
                    let rows = flat.chunks(spec.row_elements()).map(|r| Value::Array(r.to_vec())).collect();
                    input["data"] = Value::Array(rows);
                }
                Encoding::Binary => {
                    let before = binary.len();
                    write_le_bytes(data, Span { start: 0, len: data.len() }, &mut binary);
                    input["parameters"] = json!({"binary_data_size": binary.len() - before});
                    has_binary = true;
                }
            }
            input
        })
        .collect();
    let mut header = json!({"inputs": inputs});
    if let Some(outputs) = &c.outputs {
        let list: Vec<Value> = outputs
            .iter()
            .map(|(i, binary)| match binary {
                Some(b) => json!({"name": config.outputs[*i].name, "parameters": {"binary_data": b}}),
                None => json!({"name": config.outputs[*i].name}),
            })
            .collect();
        header["outputs"] = Value::Array(list);
    }
    let mut params = serde_json::Map::new();
    if let Some(b) = c.binary_output {
        params.insert("binary_data_output".into(), json!(b));
    }
    if let Some(t) = c.timeout {
        params.insert("timeout".into(), json!(t));
    }
    if !params.is_empty() {
        header["parameters"] = Value::Object(params);
    }
    if let Some(id) = &c.id {
        header["id"] = json!(id);
    }
    Built { header, binary, has_binary }
}

/// A refusal the server can send as it is: a short message (names it echoes are JSON-escaped
/// in the response).
fn assert_clean(e: &str) -> Result<(), TestCaseError> {
    prop_assert!(!e.is_empty() && e.len() < 400 && !e.contains("panicked"), "unclean error: {e:?}");
    Ok(())
}

#[derive(Clone, Debug)]
enum Break {
    DropInput(usize),
    RepeatInput(usize),
    /// A dimension of an input's shape set to another value.
    Dim(usize, usize, i64),
    Datatype(usize, DataType),
    ExtraElement(usize),
    MissingElement(usize),
    RepeatOutput(usize),
    UnknownOutput(String),
    Truncate(usize),
}

fn breakage() -> impl Strategy<Value = Break> {
    let n = SERVABLE.len();
    prop_oneof![
        (0..n).prop_map(Break::DropInput),
        (0..n).prop_map(Break::RepeatInput),
        (0..n, 0usize..3, any::<i64>()).prop_map(|(i, d, v)| Break::Dim(i, d, v)),
        (0..n, proptest::sample::select(SERVABLE.to_vec())).prop_map(|(i, d)| Break::Datatype(i, d)),
        (0..n).prop_map(Break::ExtraElement),
        (0..n).prop_map(Break::MissingElement),
        (0usize..3).prop_map(Break::RepeatOutput),
        "[a-z]{1,8}".prop_map(Break::UnknownOutput),
        any::<usize>().prop_map(Break::Truncate),
    ]
}

/// Applies `b` to the request of `c`; the body and header length, or `None` when this
/// breakage changes nothing here (e.g. a dimension set to its own value).
fn broken(c: &Case, b: &Break) -> Option<(Vec<u8>, Option<usize>)> {
    let config = config();
    let mut built = build(c);
    let position = |i: usize| c.inputs.iter().position(|(j, ..)| *j == i);
    let inputs = |built: &mut Built| built.header["inputs"].as_array_mut().map(std::mem::take).unwrap_or_default();
    match b {
        Break::DropInput(i) => {
            let mut list = inputs(&mut built);
            list.remove(position(*i)?);
            built.header["inputs"] = Value::Array(list);
        }
        Break::RepeatInput(i) => {
            let mut list = inputs(&mut built);
            list.push(list[position(*i)?].clone());
            built.header["inputs"] = Value::Array(list);
        }
        Break::Dim(i, d, v) => {
            let at = position(*i)?;
            let shape = built.header["inputs"][at]["shape"].as_array_mut()?;
            let d = d % shape.len();
            if shape[d] == json!(v) {
                return None;
            }
            shape[d] = json!(v);
        }
        Break::Datatype(i, d) => {
            if config.inputs[*i].datatype == *d {
                return None;
            }
            built.header["inputs"][position(*i)?]["datatype"] = json!(d.as_str());
        }
        Break::ExtraElement(i) | Break::MissingElement(i) => {
            let at = position(*i)?;
            let extra = matches!(b, Break::ExtraElement(_));
            let input = &mut built.header["inputs"][at];
            match input["data"].as_array_mut() {
                Some(data) if extra => data.push(json!(0)),
                Some(data) => {
                    let last = data.pop()?;
                    // A nested row loses one element, not the whole row.
                    if let Value::Array(mut row) = last {
                        row.pop();
                        data.push(Value::Array(row));
                    }
                }
                None => {
                    let size = input["parameters"]["binary_data_size"].as_u64()?;
                    let element = config.inputs[*i].datatype.byte_size() as u64;
                    let new = if extra { size + element } else { size.checked_sub(element)? };
                    input["parameters"]["binary_data_size"] = json!(new);
                }
            }
        }
        Break::RepeatOutput(k) => {
            let name = &config.outputs[k % 3].name;
            built.header["outputs"] = json!([{"name": name}, {"name": name}]);
        }
        Break::UnknownOutput(name) => {
            if config.outputs.iter().any(|o| &o.name == name) {
                return None;
            }
            built.header["outputs"] = json!([{"name": name}]);
        }
        Break::Truncate(at) => {
            let (mut body, header_len) = built.body();
            body.truncate(at % body.len());
            return Some((body, header_len));
        }
    }
    Some(built.body())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Valid requests, JSON or binary, decode to exactly the tensors that were sent.
    #[test]
    fn valid_requests_round_trip_their_values(c in case()) {
        let (body, header_len) = build(&c).body();
        let r = decode_request(&config(), &body, header_len);
        prop_assert!(r.is_ok(), "{:?}", r.err());
        let Ok(r) = r else { return Ok(()) };
        prop_assert_eq!(r.rows, c.rows);
        for (i, data, _) in &c.inputs {
            prop_assert!(same(&r.inputs[*i], data), "{:?} != {:?}", r.inputs[*i], data);
        }
        let default = c.binary_output.unwrap_or(false);
        let want: Vec<RequestedOutput> = match &c.outputs {
            Some(list) if !list.is_empty() => list
                .iter()
                .map(|(index, b)| RequestedOutput { index: *index, binary: b.unwrap_or(default) })
                .collect(),
            _ => (0..3).map(|index| RequestedOutput { index, binary: default }).collect(),
        };
        prop_assert_eq!(r.outputs, want);
        prop_assert_eq!(r.id, c.id);
        prop_assert_eq!(r.timeout, c.timeout.filter(|t| *t > 0).map(Duration::from_micros));
    }

    /// The same requests with one part broken are refused, each with one clean line.
    #[test]
    fn broken_requests_are_refused_cleanly(c in case(), b in breakage()) {
        if let Some((body, header_len)) = broken(&c, &b) {
            match decode_request(&config(), &body, header_len) {
                Ok(_) => prop_assert!(false, "{b:?} was accepted"),
                Err(e) => assert_clean(&e.0)?,
            }
        }
    }

    /// Any byte of a valid request changed, or its header length moved: an error or a
    /// request, never a panic, and errors stay clean.
    #[test]
    fn mutated_requests_never_panic(c in case(), at in any::<usize>(), byte in any::<u8>(), shift in -3isize..=3) {
        let (mut body, header_len) = build(&c).body();
        let at = at % body.len();
        body[at] = byte;
        let header_len = header_len.map(|n| n.saturating_add_signed(shift));
        if let Err(e) = decode_request(&config(), &body, header_len) {
            assert_clean(&e.0)?;
        }
    }

    /// Binary tensors of every servable type decode to what was written, and any other size
    /// is refused.
    #[test]
    fn binary_tensors_round_trip(i in 0..SERVABLE.len(), rows in 1..=MAX_ROWS, cut in 0usize..16) {
        let d = SERVABLE[i];
        let n = rows * config().inputs[i].row_elements();
        let data = TensorData::zeros(d, n).unwrap_or(TensorData::U8(Vec::new()));
        let mut bytes = Vec::new();
        write_le_bytes(&data, Span { start: 0, len: n }, &mut bytes);
        prop_assert_eq!(TensorData::from_le_bytes(d, &bytes), Ok(data));
        bytes.truncate(bytes.len().saturating_sub(cut));
        if let Ok(short) = TensorData::from_le_bytes(d, &bytes) {
            prop_assert_eq!(short.len() * d.byte_size(), bytes.len());
        }
    }

    /// However many elements `data` holds, the parsed vector never exceeds the declared count.
    #[test]
    fn data_never_grows_past_the_declared_count(limit in 0usize..64, n in 0usize..128, nested in any::<bool>()) {
        let text = if nested { format!("[{}]", vec!["[1]"; n].join(",")) } else { format!("[{}]", vec!["1"; n].join(",")) };
        match parse_flat::<i32>(&text, limit) {
            Ok(v) => {
                prop_assert!(n <= limit);
                prop_assert_eq!(v.len(), n);
                prop_assert!(v.capacity() <= limit.max(1));
            }
            Err(e) => {
                prop_assert!(n > limit);
                prop_assert_eq!(e, DataError::TooMany);
            }
        }
    }
}

/// Values of type `d` from any bits: NaN, infinities, -0.0 and subnormals included.
fn raw_values(d: DataType, n: usize) -> BoxedStrategy<TensorData> {
    use proptest::collection::vec;
    use proptest::sample::select;
    let special32 = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -0.0, 0.0, f32::MIN_POSITIVE, 1e-45, f32::MAX];
    let special64 = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0, 0.0, f64::MIN_POSITIVE, 5e-324, f64::MAX];
    let half16 = prop_oneof![4 => any::<u16>(), 1 => select(vec![0x7e00u16, 0x7c00, 0xfc00, 0x8000, 0x0001, 0x7bff])];
    match d {
        DataType::Fp16 => {
            vec(half16, n).prop_map(|v| TensorData::F16(v.into_iter().map(half::f16::from_bits).collect())).boxed()
        }
        DataType::Bf16 => vec(any::<u16>(), n)
            .prop_map(|v| TensorData::Bf16(v.into_iter().map(half::bf16::from_bits).collect()))
            .boxed(),
        DataType::Fp32 => {
            vec(prop_oneof![4 => any::<u32>().prop_map(f32::from_bits), 1 => select(special32.to_vec())], n)
                .prop_map(TensorData::F32)
                .boxed()
        }
        DataType::Fp64 => {
            vec(prop_oneof![4 => any::<u64>().prop_map(f64::from_bits), 1 => select(special64.to_vec())], n)
                .prop_map(TensorData::F64)
                .boxed()
        }
        _ => values(d, n),
    }
}

fn all_finite(d: &TensorData) -> bool {
    match d {
        TensorData::F16(v) => v.iter().all(|x| x.is_finite()),
        TensorData::Bf16(v) => v.iter().all(|x| x.is_finite()),
        TensorData::F32(v) => v.iter().all(|x| x.is_finite()),
        TensorData::F64(v) => v.iter().all(|x| x.is_finite()),
        _ => true,
    }
}

#[derive(Clone, Debug)]
struct ResponseCase {
    /// The batch's first output, of any servable type, rows of `row` elements (0 included).
    data: TensorData,
    row: usize,
    batch_rows: usize,
    row_start: usize,
    rows: usize,
    binary: bool,
    /// Names and ids with characters JSON escapes.
    name: String,
    id: Option<String>,
}

fn response_case() -> impl Strategy<Value = ResponseCase> {
    let names = "[a-z\"\\/\u{1}\u{7f}é\u{2028}]{1,6}";
    (proptest::sample::select(SERVABLE.to_vec()), 1..=MAX_ROWS, 0usize..4)
        .prop_flat_map(|(d, batch_rows, row)| {
            (raw_values(d, batch_rows * row), Just(row), Just(batch_rows), 0..batch_rows)
        })
        .prop_flat_map(move |(data, row, batch_rows, row_start)| {
            (
                Just((data, row, batch_rows, row_start)),
                1..=batch_rows - row_start,
                any::<bool>(),
                names,
                proptest::option::of(names),
            )
        })
        .prop_map(|((data, row, batch_rows, row_start), rows, binary, name, id)| ResponseCase {
            data,
            row,
            batch_rows,
            row_start,
            rows,
            binary,
            name,
            id,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// What the encoder writes decodes back to the same bits, any slice of the batch, every
    /// servable type, -0.0 and subnormals included, in JSON as in binary. NaN and infinities
    /// are written as `null` in JSON (as serde_json writes them), which a request may not send
    /// (as before): they come back refused, not changed. Binary keeps every bit.
    #[test]
    fn encoded_outputs_decode_to_the_same_bits(c in response_case()) {
        #[derive(serde::Deserialize)]
        struct Head<'a> {
            #[serde(borrow)]
            outputs: Vec<Out<'a>>,
        }
        #[derive(serde::Deserialize)]
        struct Out<'a> {
            shape: Vec<i64>,
            #[serde(borrow)]
            data: Option<&'a RawValue>,
        }
        let mut config = config();
        config.model = format!("m{}", c.name);
        config.outputs = vec![TensorSpec { name: c.name.clone(), datatype: c.data.datatype(), shape: vec![-1, c.row as i64] }];
        let result = InferOutput {
            outputs: Arc::from(vec![BatchTensor { shape: vec![c.batch_rows as i64, c.row as i64], data: c.data.clone() }]),
            row_start: c.row_start,
            rows: c.rows,
        };
        let span = Span { start: c.row_start * c.row, len: c.rows * c.row };
        let mut want = Vec::new();
        write_le_bytes(&c.data, span, &mut want);
        let want = TensorData::from_le_bytes(c.data.datatype(), &want).unwrap_or(TensorData::U8(Vec::new()));
        let requested = [RequestedOutput { index: 0, binary: c.binary }];
        let enc = encode_response(&config, c.id.as_deref(), &requested, &result);
        prop_assert!(enc.is_ok(), "{:?}", enc.err());
        let Ok(enc) = enc else { return Ok(()) };
        let json = &enc.body[..enc.header_len.unwrap_or(enc.body.len())];
        let head: Result<Head<'_>, _> = serde_json::from_slice(json);
        prop_assert!(head.is_ok(), "{:?}: {}", head.err(), String::from_utf8_lossy(json));
        let Ok(head) = head else { return Ok(()) };
        prop_assert_eq!(&head.outputs[0].shape, &vec![c.rows as i64, c.row as i64]);
        let back = match head.outputs[0].data {
            Some(raw) => parse_json_data(want.datatype(), raw.get(), want.len()),
            None => Ok(TensorData::from_le_bytes(want.datatype(), &enc.body[json.len()..]).unwrap_or(TensorData::U8(Vec::new()))),
        };
        match back {
            Ok(back) => {
                prop_assert!(c.binary || all_finite(&want), "non-finite values were accepted");
                prop_assert!(same(&back, &want), "{:?} != {:?}", back, want);
            }
            Err(e) => {
                prop_assert!(!c.binary && !all_finite(&want), "{e:?}");
                prop_assert!(matches!(&e, DataError::Invalid(m) if m.contains("null")), "{e:?}");
            }
        }
    }

    /// A number is accepted exactly when serde_json accepts it (RFC 8259's grammar, within
    /// f64's range), and its value is the correctly rounded one that `str::parse` gives.
    #[test]
    fn numbers_follow_json_and_round_correctly(
        s in prop_oneof![
            "-?(0|[1-9][0-9]{0,24})(\\.[0-9]{1,24})?([eE][+-]?[0-9]{1,3})?",
            "[-+0-9.eEinfatyN]{1,12}",
        ]
    ) {
        let json_ok = serde_json::from_str::<Value>(&format!("[{s}]")).is_ok_and(|v| v[0].is_number());
        let f64s = parse_flat::<f64>(&format!("[{s}]"), 1);
        let f32s = parse_flat::<f32>(&format!("[{s}]"), 1);
        prop_assert_eq!(f64s.is_ok(), json_ok, "{}: {:?}", s, f64s);
        if let (Ok(a), Ok(b)) = (f64s, f32s) {
            prop_assert_eq!(a[0].to_bits(), s.parse::<f64>().map(f64::to_bits).unwrap_or_default(), "{}", s);
            prop_assert_eq!(b[0].to_bits(), s.parse::<f32>().map(f32::to_bits).unwrap_or_default(), "{}", s);
        }
    }

    /// Arrays of any nesting and spacing are accepted exactly when serde_json accepts them as
    /// arrays of numbers, flattened row-major to the same count.
    #[test]
    fn arrays_are_accepted_as_serde_json_accepts_them(s in "\\[[\\[\\], 0-9.\n-]{0,16}") {
        fn leaves(v: &Value, n: &mut usize) -> bool {
            match v {
                Value::Number(_) => {
                    *n += 1;
                    true
                }
                Value::Array(items) => items.iter().all(|i| leaves(i, n)),
                _ => false,
            }
        }
        let mut n = 0;
        let want = serde_json::from_str::<Value>(&s).ok().filter(|v| v.is_array() && leaves(v, &mut n)).map(|_| n);
        let got = parse_flat::<f64>(&s, 64).map(|v| v.len());
        prop_assert_eq!(got.as_ref().ok().copied(), want, "{:?}: {:?}", s, got);
    }
}
