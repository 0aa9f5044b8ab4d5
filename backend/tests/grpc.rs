//! End-to-end over gRPC: the real backend binary and libtorch, driven by a tonic client built
//! from the same proto, and by NVIDIA's unmodified `tritonclient[grpc]`.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;
use switchyard_contract::metrics as contract;
use switchyard_oip::GrpcInferenceServiceClient;
use switchyard_oip::inference::infer_parameter::ParameterChoice;
use switchyard_oip::inference::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use switchyard_oip::inference::{
    InferParameter, InferTensorContents, ModelInferRequest, ModelInferResponse, ModelMetadataRequest,
    ModelReadyRequest, ServerLiveRequest, ServerMetadataRequest, ServerReadyRequest,
};
use switchyard_testkit::*;
use tonic::Code;
use tonic::transport::Channel;

type Client = GrpcInferenceServiceClient<Channel>;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

async fn connect(addr: &str) -> Client {
    GrpcInferenceServiceClient::connect(format!("http://{addr}")).await.unwrap()
}

/// The golden input of `model:version` as (name, shape, values).
fn golden_input(model: &str, version: &str) -> (String, Vec<i64>, Vec<f32>) {
    let g = golden(model, version);
    let i = &g["inputs"][0];
    let shape = i["shape"].as_array().unwrap().iter().map(|d| d.as_i64().unwrap()).collect();
    let mut flat = Vec::new();
    flatten(&i["data"], &mut flat);
    (i["name"].as_str().unwrap().to_owned(), shape, flat)
}

fn flatten(v: &serde_json::Value, out: &mut Vec<f32>) {
    match v {
        serde_json::Value::Array(items) => items.iter().for_each(|x| flatten(x, out)),
        x => out.push(x.as_f64().unwrap() as f32),
    }
}

fn golden_output(model: &str, version: &str) -> Vec<f32> {
    let mut flat = Vec::new();
    flatten(&golden(model, version)["outputs"][0]["data"], &mut flat);
    flat
}

fn le(v: &[f32]) -> bytes::Bytes {
    v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>().into()
}

fn from_le(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// An FP32 request with one input, raw or typed.
fn fp32_request(model: &str, version: &str, name: &str, shape: &[i64], data: &[f32], raw: bool) -> ModelInferRequest {
    let contents = (!raw).then(|| InferTensorContents { fp32_contents: data.to_vec(), ..Default::default() });
    ModelInferRequest {
        model_name: model.into(),
        model_version: version.into(),
        inputs: vec![InferInputTensor {
            name: name.into(),
            datatype: "FP32".into(),
            shape: shape.to_vec(),
            parameters: HashMap::new(),
            contents,
        }],
        raw_input_contents: if raw { vec![le(data)] } else { Vec::new() },
        ..Default::default()
    }
}

fn golden_request(model: &str, version: &str, raw: bool) -> ModelInferRequest {
    let (name, shape, data) = golden_input(model, version);
    fp32_request(model, version, &name, &shape, &data, raw)
}

fn image_request(model_version: &str, params: &[(&str, ParameterChoice)]) -> ModelInferRequest {
    let image: Vec<f32> = (0..3 * 224 * 224).map(|i| (i % 97) as f32 / 97.0).collect();
    let mut r = fp32_request("resnet18", model_version, "image", &[1, 3, 224, 224], &image, true);
    for (k, v) in params {
        r.parameters.insert((*k).into(), InferParameter { parameter_choice: Some(v.clone()) });
    }
    r
}

fn first_output(r: &ModelInferResponse) -> Vec<f32> {
    from_le(&r.raw_output_contents[0])
}

#[test]
fn every_rpc_golden_outputs_and_every_error_code() {
    let s = Server::start_ready(&demo_repo(), &["--max-body-bytes", "4000000"]);
    let rt = runtime();
    rt.block_on(async {
        let mut c = connect(&s.grpc).await;
        assert!(c.server_live(ServerLiveRequest {}).await.unwrap().into_inner().live);
        assert!(c.server_ready(ServerReadyRequest {}).await.unwrap().into_inner().ready);
        let meta = c.server_metadata(ServerMetadataRequest {}).await.unwrap().into_inner();
        assert_eq!((meta.name.as_str(), meta.version.as_str()), ("switchyard", env!("CARGO_PKG_VERSION")));

        let m = c.model_metadata(ModelMetadataRequest { name: "mlp".into(), version: String::new() }).await.unwrap();
        let m = m.into_inner();
        assert_eq!(
            (m.name.as_str(), m.versions.clone(), m.platform.as_str()),
            ("mlp", vec!["v1".into(), "v2".into()], "pytorch_libtorch")
        );
        let i = &m.inputs[0];
        assert_eq!((i.name.as_str(), i.datatype.as_str(), i.shape.clone()), ("features", "FP32", vec![-1, 64]));
        let ready = |name: &str, version: &str| ModelReadyRequest { name: name.into(), version: version.into() };
        assert!(c.model_ready(ready("resnet18", "v2")).await.unwrap().into_inner().ready);

        // Golden outputs for every model version, raw and typed inputs alike.
        for (model, version) in [("mlp", "v1"), ("mlp", "v2"), ("resnet18", "v1"), ("resnet18", "v2")] {
            let want = golden_output(model, version);
            for raw in [true, false] {
                let mut req = golden_request(model, version, raw);
                req.id = "gold-1".into();
                let r = c.model_infer(req).await.unwrap_or_else(|e| panic!("{model}:{version}: {e}")).into_inner();
                assert_eq!(
                    (r.model_name.as_str(), r.model_version.as_str(), r.id.as_str()),
                    (model, version, "gold-1")
                );
                let g = golden(model, version);
                let o = &r.outputs[0];
                assert_eq!(o.name, g["outputs"][0]["name"].as_str().unwrap());
                assert_eq!(json!(o.shape), g["outputs"][0]["shape"]);
                assert!(o.contents.is_none(), "outputs travel raw");
                let got: Vec<f64> = first_output(&r).iter().map(|x| f64::from(*x)).collect();
                let want: Vec<f64> = want.iter().map(|x| f64::from(*x)).collect();
                let err = max_abs_diff(&got, &want);
                assert!(err < 1e-4, "{model}:{version} raw={raw} differs from golden by {err}");
            }
        }

        // REST and gRPC are two codecs over one request: the same input, the same bits out.
        let (name, shape, data) = golden_input("mlp", "v1");
        let grpc_out = first_output(&c.model_infer(golden_request("mlp", "v1", true)).await.unwrap().into_inner());
        let rest = s.post_json(
            "/v2/models/mlp/versions/v1/infer",
            &json!({"inputs": [{"name": name, "shape": shape, "datatype": "FP32", "data": data}]}),
        );
        let rest_out: Vec<f32> = floats(&rest.json()["outputs"][0]["data"]).iter().map(|x| *x as f32).collect();
        assert_eq!(grpc_out, rest_out);

        // No version: the newest; output selection by name.
        let mut req = golden_request("mlp", "v2", true);
        req.model_version = String::new();
        req.outputs = vec![InferRequestedOutputTensor { name: "probabilities".into(), parameters: HashMap::new() }];
        let r = c.model_infer(req).await.unwrap().into_inner();
        assert_eq!((r.model_version.as_str(), r.outputs.len()), ("v2", 1));

        // Each error with its code and a message that names the problem.
        let row = vec![0.5f32; 64];
        let cases = [
            (fp32_request("nope", "", "features", &[1, 64], &row, true), Code::NotFound, "model 'nope' not found"),
            (
                fp32_request("mlp", "v9", "features", &[1, 64], &row, true),
                Code::NotFound,
                "model 'mlp' has no version 'v9'",
            ),
            (
                fp32_request("mlp", "v1", "features", &[1, 63], &row[..63], true),
                Code::InvalidArgument,
                "has shape [1, 63] but the model expects [-1, 64]",
            ),
            (
                fp32_request("mlp", "v1", "features", &[2, 64], &row, false),
                Code::InvalidArgument,
                "has 64 element(s) but shape [2, 64] needs 128",
            ),
            (fp32_request("mlp", "v1", "wrong", &[1, 64], &row, false), Code::InvalidArgument, "unknown input 'wrong'"),
            // Over --max-body-bytes: refused from the frame header, before the message is read.
            (
                fp32_request("mlp", "v1", "features", &[1, 64], &vec![0.5; 1_000_000], true),
                Code::ResourceExhausted,
                "larger than the limit of 4000000 bytes",
            ),
        ];
        for (req, code, needle) in cases {
            let e = c.model_infer(req).await.unwrap_err();
            assert_eq!(e.code(), code, "{e:?}");
            assert!(e.message().contains(needle), "{:?} lacks {needle:?}", e.message());
        }
        // A model name anywhere but first would reach another model than the one a proxy
        // read at the start of the message: refused, as is a message that does not parse.
        let valid = prost::Message::encode_to_vec(&golden_request("mlp", "v1", true));
        assert!(switchyard_testkit::grpc::raw_infer(&s.grpc, valid.clone()).await.is_ok());
        let smuggled = [valid.as_slice(), &[0x0a, 8], b"resnet18"].concat();
        let e = switchyard_testkit::grpc::raw_infer(&s.grpc, smuggled).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains("must be the message's first field"), "{e:?}");
        let e = switchyard_testkit::grpc::raw_infer(&s.grpc, vec![0x0a, 0xff, 0xff]).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains("malformed message"), "{e:?}");

        let e =
            c.model_metadata(ModelMetadataRequest { name: "nope".into(), version: String::new() }).await.unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
        let e = c.model_ready(ready("mlp", "v9")).await.unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
    });

    // NVIDIA's Triton gRPC client, unmodified; and our proto's fields against Triton's.
    let descriptors = scratch("grpc-descriptors").join("inference.pb");
    let protoc = std::process::Command::new("protoc")
        .arg(format!("--descriptor_set_out={}", descriptors.display()))
        .arg("-I")
        .arg(root().join("oip/proto"))
        .arg("inference.proto")
        .status()
        .expect("protoc missing: run scripts/setup.sh");
    assert!(protoc.success());
    let py = root().join(".venv/bin/python");
    assert!(py.exists(), "{} missing: run scripts/setup.sh", py.display());
    let out = std::process::Command::new(py)
        .arg(root().join("backend/tests/py/tritonclient_grpc_check.py"))
        .arg(&s.grpc)
        .arg(root().join("models/golden"))
        .arg(&descriptors)
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "tritonclient[grpc] check failed:\n{text}");
    assert!(text.contains("tritonclient grpc: all checks passed"), "{text}");

    // Same metrics as REST: the protocol is not a label the engine knows.
    let ok = s.metric(contract::INFERENCE_REQUESTS_TOTAL.name, &[("outcome", "success")]);
    assert!(ok >= 11.0, "success count {ok}");
    assert!(s.metric(contract::INFERENCE_REQUESTS_TOTAL.name, &[("outcome", "bad_request")]) >= 3.0);
}

#[test]
fn a_full_queue_is_resource_exhausted_with_pushback_and_a_client_deadline_is_marked() {
    let repo = derived_repo("grpc-overload", &[("resnet18", "v1")], |_, c| {
        c["batching"] = json!({"max_batch_size": 1, "max_queue_delay_us": 0, "max_queue_size": 2, "default_timeout_us": 60_000_000});
    });
    let s = Server::start_ready(&repo, &[]);
    let rt = runtime();
    rt.block_on(async {
        let c = connect(&s.grpc).await;
        let calls: Vec<_> = (0..12)
            .map(|_| {
                let mut c = c.clone();
                tokio::spawn(async move { c.model_infer(image_request("", &[])).await })
            })
            .collect();
        let mut ok = 0;
        let mut refused = 0;
        for call in calls {
            match call.await.unwrap() {
                Ok(_) => ok += 1,
                Err(e) => {
                    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
                    assert!(e.message().contains("overloaded"), "{e:?}");
                    assert_eq!(e.metadata().get("grpc-retry-pushback-ms").unwrap(), "1000");
                    refused += 1;
                }
            }
        }
        assert!(ok >= 1 && refused >= 1, "{ok} served, {refused} refused");
        let dropped = s.metric(contract::REQUESTS_DROPPED_TOTAL.name, &[("reason", "queue_full")]);
        assert_eq!(dropped, f64::from(refused));

        // Triton's timeout parameter (µs, int64 as tritonclient sends it): 1 µs cannot be met.
        let mut c = c.clone();
        let e = c.model_infer(image_request("v1", &[("timeout", ParameterChoice::Int64Param(1))])).await.unwrap_err();
        assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
        assert_eq!(e.metadata().get("x-switchyard-deadline").unwrap(), "client");
        // `priority` as uint64 is accepted (and, like Triton without priority levels, ignored).
        let r = c.model_infer(image_request("v1", &[("priority", ParameterChoice::Uint64Param(2))])).await;
        assert!(r.is_ok(), "{r:?}");
    });
}

#[test]
fn sigterm_answers_every_accepted_grpc_call_then_exits_zero() {
    let repo = derived_repo("grpc-shutdown", &[("resnet18", "v1")], |_, c| {
        c["batching"] = json!({"max_batch_size": 1, "max_queue_delay_us": 0, "max_queue_size": 64, "default_timeout_us": 120_000_000});
    });
    let mut s = Server::start_ready(&repo, &["--shutdown-grace-seconds", "60"]);
    let rt = runtime();
    let n = 16;
    let c = rt.block_on(connect(&s.grpc));
    let calls: Vec<_> = (0..n)
        .map(|_| {
            let mut c = c.clone();
            rt.spawn(async move { c.model_infer(image_request("v1", &[])).await.map(|_| ()).map_err(|e| e.code()) })
        })
        .collect();
    // Signal once every call has been accepted, while some still wait in the queue.
    let start = std::time::Instant::now();
    let queued = loop {
        let m = s.metrics();
        let in_flight = metric_sum(&m, contract::IN_FLIGHT_REQUESTS.name, &[]);
        if in_flight + metric_sum(&m, contract::INFERENCE_REQUESTS_TOTAL.name, &[]) >= n as f64 {
            break in_flight;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "calls not accepted");
        std::thread::sleep(Duration::from_millis(2));
    };
    assert!(queued >= 2.0, "only {queued} call(s) left when the signal went: the test proves nothing");
    s.sigterm();
    let results: Vec<Result<(), Code>> = rt.block_on(async {
        let mut out = Vec::new();
        for call in calls {
            out.push(call.await.unwrap());
        }
        out
    });
    assert_eq!(results, vec![Ok(()); n], "every accepted call must be answered");
    let status = s.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "exit {status}:\n{}", s.log());
    assert!(s.log().contains("stopped cleanly"));
}
