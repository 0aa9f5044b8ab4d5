use std::path::PathBuf;
use std::sync::Arc;

use switchyard_oip::inference::model_infer_request::InferRequestedOutputTensor;

use super::*;
use crate::batcher::BatchTensor;
use crate::config::{BatchingPolicy, DeviceSpec};

fn config() -> ModelConfig {
    let spec = |name: &str, datatype, shape: &[i64]| TensorSpec { name: name.into(), datatype, shape: shape.to_vec() };
    ModelConfig {
        model: "m".into(),
        version: "v1".into(),
        model_file: PathBuf::from("model.pt"),
        inputs: vec![spec("x", DataType::Fp32, &[-1, 2]), spec("k", DataType::Int8, &[-1, 1])],
        outputs: vec![spec("y", DataType::Fp32, &[-1, 2]), spec("z", DataType::Fp16, &[-1, 1])],
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

fn input(name: &str, datatype: &str, shape: &[i64], contents: Option<InferTensorContents>) -> InferInputTensor {
    InferInputTensor {
        name: name.into(),
        datatype: datatype.into(),
        shape: shape.to_vec(),
        parameters: HashMap::new(),
        contents,
    }
}

fn fp32(v: &[f32]) -> Option<InferTensorContents> {
    Some(InferTensorContents { fp32_contents: v.to_vec(), ..Default::default() })
}

fn int(v: &[i32]) -> Option<InferTensorContents> {
    Some(InferTensorContents { int_contents: v.to_vec(), ..Default::default() })
}

fn request(inputs: Vec<InferInputTensor>) -> ModelInferRequest {
    ModelInferRequest { model_name: "m".into(), inputs, ..Default::default() }
}

fn le_f32(v: &[f32]) -> Bytes {
    v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>().into()
}

fn param(p: ParameterChoice) -> InferParameter {
    InferParameter { parameter_choice: Some(p) }
}

#[test]
fn typed_contents_decode_in_config_order_with_the_timeout() {
    let mut req =
        request(vec![input("k", "INT8", &[2, 1], int(&[-3, 7])), input("x", "FP32", &[2, 2], fp32(&[1., 2., 3., 4.]))]);
    req.id = "r1".into();
    req.parameters.insert("timeout".into(), param(ParameterChoice::Int64Param(2500)));
    req.parameters.insert("priority".into(), param(ParameterChoice::Uint64Param(1)));
    req.outputs.push(InferRequestedOutputTensor { name: "z".into(), parameters: HashMap::new() });
    let r = decode_request(&config(), req).unwrap();
    assert_eq!(r.id.as_deref(), Some("r1"));
    assert_eq!(r.rows, 2);
    assert_eq!(r.inputs, [TensorData::F32(vec![1., 2., 3., 4.]), TensorData::I8(vec![-3, 7])]);
    assert_eq!(r.outputs, [RequestedOutput { index: 1, binary: false }]);
    assert_eq!(r.timeout, Some(Duration::from_micros(2500)));
}

#[test]
fn raw_contents_decode_little_endian() {
    let mut req = request(vec![input("x", "FP32", &[1, 2], None), input("k", "INT8", &[1, 1], None)]);
    req.raw_input_contents = vec![le_f32(&[0.5, -2.0]), Bytes::from_static(&[0xfe])];
    req.parameters.insert("timeout".into(), param(ParameterChoice::Uint64Param(7)));
    let r = decode_request(&config(), req).unwrap();
    assert_eq!(r.inputs, [TensorData::F32(vec![0.5, -2.0]), TensorData::I8(vec![-2])]);
    assert_eq!(r.id, None);
    assert_eq!(r.outputs.len(), 2, "no outputs asked: all of them");
    assert_eq!(r.timeout, Some(Duration::from_micros(7)));
}

#[test]
fn each_malformed_part_is_refused_with_a_precise_message() {
    let x = || input("x", "FP32", &[1, 2], fp32(&[1., 2.]));
    let k = || input("k", "INT8", &[1, 1], int(&[1]));
    let with_raw = |raw: Vec<Bytes>| {
        let mut r = request(vec![input("x", "FP32", &[1, 2], None), input("k", "INT8", &[1, 1], None)]);
        r.raw_input_contents = raw;
        r
    };
    let with_param = |p: ParameterChoice| {
        let mut r = request(vec![x(), k()]);
        r.parameters.insert("timeout".into(), param(p));
        r
    };
    let with_output = |name: &str| {
        let mut r = request(vec![x(), k()]);
        let o = || InferRequestedOutputTensor { name: name.into(), parameters: HashMap::new() };
        r.outputs = vec![o(), o()];
        r
    };
    let cases = [
        (request(vec![x()]), "missing input 'k'"),
        (request(vec![x(), k(), k()]), "given more than once"),
        (request(vec![x(), k(), input("q", "FP32", &[1], fp32(&[1.]))]), "unknown input 'q'"),
        (request(vec![input("x", "FP64", &[1, 2], fp32(&[1., 2.])), k()]), "datatype FP64 but the model expects FP32"),
        (
            request(vec![input("x", "FP32", &[1, 3], fp32(&[1., 2., 3.])), k()]),
            "shape [1, 3] but the model expects [-1, 2]",
        ),
        (request(vec![input("x", "FP32", &[9, 2], fp32(&[1.; 18])), k()]), "more than the model's max_batch_size"),
        (request(vec![input("x", "FP32", &[1, 2], fp32(&[1.])), k()]), "has 1 element(s) but shape [1, 2] needs 2"),
        (request(vec![input("x", "FP32", &[1, 2], None), k()]), "has no contents"),
        (
            request(vec![
                input(
                    "x",
                    "FP32",
                    &[1, 2],
                    Some(InferTensorContents { fp64_contents: vec![1., 2.], ..Default::default() }),
                ),
                k(),
            ]),
            "whose data goes in fp32_contents, but fp64_contents is set",
        ),
        (request(vec![x(), input("k", "INT8", &[1, 1], int(&[300]))]), "300 is out of range for INT8"),
        (request(vec![x(), input("k", "INT8", &[2, 1], int(&[1, 2]))]), "every input needs the same batch dimension"),
        (request(vec![x(), input("k", "INT8", &[1; 33], int(&[1]))]), "more than 32 dimensions"),
        (with_raw(vec![le_f32(&[1., 2.])]), "raw_input_contents has 1 entries but the request has 2 inputs"),
        (with_raw(vec![le_f32(&[1., 2., 3.]), Bytes::from_static(&[1])]), "has 3 element(s) but shape [1, 2] needs 2"),
        (
            with_raw(vec![Bytes::from_static(&[1, 2, 3]), Bytes::from_static(&[1])]),
            "3 bytes is not a whole number of FP32",
        ),
        (with_param(ParameterChoice::StringParam("soon".into())), "parameter 'timeout' must be an int64 or uint64"),
        (with_output("nope"), "unknown output 'nope'"),
        (with_output("y"), "output 'y' is requested more than once"),
    ];
    for (req, want) in cases {
        let err = decode_request(&config(), req).expect_err(want);
        assert!(err.0.contains(want), "{err:?} should contain {want:?}");
    }
}

#[test]
fn typed_and_raw_data_for_one_input_is_refused() {
    let mut req = request(vec![input("x", "FP32", &[1, 2], fp32(&[1., 2.])), input("k", "INT8", &[1, 1], None)]);
    req.raw_input_contents = vec![le_f32(&[1., 2.]), Bytes::from_static(&[1])];
    let err = decode_request(&config(), req).unwrap_err();
    assert!(err.0.contains("both typed contents and raw_input_contents"), "{err}");
}

#[test]
fn half_precision_comes_raw_only() {
    let mut c = config();
    c.inputs[0].datatype = DataType::Fp16;
    let req = request(vec![input("x", "FP16", &[1, 2], fp32(&[1., 2.])), input("k", "INT8", &[1, 1], int(&[1]))]);
    let err = decode_request(&c, req).unwrap_err();
    assert!(err.0.contains("FP16, which has no typed contents: send it in raw_input_contents"), "{err}");
    let mut req = request(vec![input("x", "FP16", &[1, 2], None), input("k", "INT8", &[1, 1], None)]);
    req.raw_input_contents = vec![Bytes::from_static(&[0x00, 0x3c, 0x00, 0xc0]), Bytes::from_static(&[1])];
    let r = decode_request(&c, req).unwrap();
    assert_eq!(r.inputs[0], TensorData::F16(vec![half::f16::from_f32(1.0), half::f16::from_f32(-2.0)]));
}

#[test]
fn responses_carry_this_requests_rows_raw() {
    let out = InferOutput {
        outputs: Arc::from(vec![
            BatchTensor { shape: vec![3, 2], data: TensorData::F32(vec![0., 1., 2., 3., 4., 5.]) },
            BatchTensor { shape: vec![3, 1], data: TensorData::F16([7., 8., 9.].map(half::f16::from_f32).to_vec()) },
        ]),
        row_start: 1,
        rows: 2,
    };
    let requested = [RequestedOutput { index: 1, binary: false }, RequestedOutput { index: 0, binary: false }];
    let r = encode_response(&config(), Some("r1"), &requested, &out).unwrap();
    assert_eq!((r.model_name.as_str(), r.model_version.as_str(), r.id.as_str()), ("m", "v1", "r1"));
    let heads: Vec<_> = r.outputs.iter().map(|o| (o.name.as_str(), o.datatype.as_str(), o.shape.clone())).collect();
    assert_eq!(heads, [("z", "FP16", vec![2, 1]), ("y", "FP32", vec![2, 2])]);
    assert!(r.outputs.iter().all(|o| o.contents.is_none()));
    assert_eq!(
        r.raw_output_contents[0],
        Bytes::from_iter([8f32, 9.].iter().flat_map(|x| half::f16::from_f32(*x).to_le_bytes()))
    );
    assert_eq!(r.raw_output_contents[1], le_f32(&[2., 3., 4., 5.]));
}

#[test]
fn metadata_lists_tensors_and_versions() {
    let m = model_metadata(&config(), &["v1", "v2"]);
    assert_eq!(m.name, "m");
    assert_eq!(m.versions, ["v1", "v2"]);
    assert_eq!(m.platform, "pytorch_libtorch");
    assert_eq!(m.inputs[1].name, "k");
    assert_eq!(m.inputs[1].datatype, "INT8");
    assert_eq!(m.inputs[1].shape, [-1, 1]);
}
