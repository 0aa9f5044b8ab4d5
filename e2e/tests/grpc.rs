//! gRPC through real Envoy and the filter to real backends: the same policy splits,
//! overrides, samples and accounts gRPC calls, read from the first bytes of their messages;
//! a call the filter cannot place is refused with a gRPC status, never routed around it.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;
use switchyard_contract::metrics as contract;
use switchyard_oip::GrpcInferenceServiceClient;
use switchyard_oip::inference::{ModelInferRequest, ModelMetadataRequest, ServerLiveRequest};
use switchyard_testkit::grpc::mlp_infer_request;
use switchyard_testkit::stack::{Stack, mlp_policy};
use switchyard_testkit::*;
use tonic::Code;
use tonic::transport::Channel;

#[test]
fn grpc_calls_are_split_overridden_sampled_and_accounted_by_the_same_policy() {
    let policy = mlp_policy(&json!({
        "override": {"header": "x-switchyard-version", "allow": ["v2"]},
        "sampling": {"rate": 0.5},
        "slo": {"availability": 0.99, "latency_ms": 1000}
    }));
    let stack = Stack::start("grpc", &policy);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let n = 400;
    let (served, refused) = rt.block_on(async {
        let endpoint = Channel::from_shared(format!("http://{}", stack.listen)).unwrap();
        let channel = endpoint.timeout(Duration::from_secs(20)).connect().await.unwrap();
        let mut c = GrpcInferenceServiceClient::new(channel);
        assert!(c.server_live(ServerLiveRequest {}).await.unwrap().into_inner().live, "server-wide calls pass");
        let m = c.model_metadata(ModelMetadataRequest { name: "mlp".into(), version: String::new() }).await.unwrap();
        assert_eq!(m.into_inner().name, "mlp");

        // The split: about 10% to v2, whatever version the message asks for.
        let mut served: HashMap<String, usize> = HashMap::new();
        for i in 0..n {
            let version = if i % 2 == 0 { "" } else { "v1" };
            let r = c.model_infer(mlp_infer_request(version, i)).await.unwrap();
            let header = r.metadata().get("x-switchyard-version").unwrap().to_str().unwrap().to_owned();
            let answered = r.into_inner().model_version;
            assert_eq!(header, answered, "the filter's header and the answering backend agree");
            *served.entry(answered).or_default() += 1;
        }
        // The override, where the policy allows it (v2), in the header or the message.
        let mut asked = tonic::Request::new(mlp_infer_request("", 1));
        asked.metadata_mut().insert("x-switchyard-version", "v2".parse().unwrap());
        assert_eq!(c.model_infer(asked).await.unwrap().into_inner().model_version, "v2");
        assert_eq!(c.model_infer(mlp_infer_request("v2", 2)).await.unwrap().into_inner().model_version, "v2");
        // A client's copy of the routing header is dropped: it cannot pick a cluster.
        let mut forged = tonic::Request::new(mlp_infer_request("", 3));
        forged.metadata_mut().insert("x-switchyard-upstream", "mlp-v2-grpc".parse().unwrap());
        let forged_version = c.model_infer(forged).await.unwrap().into_inner().model_version;
        *served.entry(forged_version).or_default() += 1;

        // What the filter cannot place is refused with a gRPC status, before any backend.
        let mut refused = Vec::new();
        let valid = prost::Message::encode_to_vec(&mlp_infer_request("", 4));
        let smuggled = [&[0x2a, 1, 0][..], &valid].concat();
        for (message, want) in
            [(smuggled, Code::InvalidArgument), (vec![0x0a, 4, b'n', b'o', b'p', b'e'], Code::NotFound)]
        {
            let e = switchyard_testkit::grpc::raw_infer(&stack.listen, message).await.unwrap_err();
            assert_eq!(e.code(), want, "{e:?}");
            refused.push(e.message().to_owned());
        }
        let e = c
            .model_infer(ModelInferRequest { model_name: "nope".into(), ..mlp_infer_request("", 5) })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
        // A client that sends content-length (hyper's does) with a version the filter takes
        // out of the message: the length still holds (one tag byte changes, none move).
        let inputs = switchyard_load::metadata::inputs_of(&stack.listen, "mlp", Some("v1"), true).await.unwrap();
        assert_eq!(inputs[0].name, "features");
        (served, refused)
    });
    assert!(refused[0].contains("must start with the model name"), "{refused:?}");

    // NVIDIA's tritonclient[grpc], unchanged, through Envoy: the version its message asks for
    // (allowed by the policy), and a model the policy does not name refused by the filter.
    let script = r#"
import sys, numpy as np, tritonclient.grpc as g
from tritonclient.utils import InferenceServerException
c = g.InferenceServerClient(sys.argv[1])
x = g.InferInput("features", [1, 64], "FP32")
x.set_data_from_numpy(np.zeros((1, 64), np.float32))
print("version", c.infer("mlp", [x], model_version="v2").get_response().model_version)
try:
    c.infer("nope", [x])
except InferenceServerException as e:
    print("refused", e.status())
"#;
    let out = std::process::Command::new(root().join(".venv/bin/python"))
        .args(["-c", script, &stack.listen])
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    assert!(text.contains("version v2") && text.contains("refused StatusCode.NOT_FOUND"), "{text}");
    let v2 = *served.get("v2").unwrap_or(&0) as f64 / (n + 1) as f64;
    // 10% of 401: sd 0.015; 4 sd.
    assert!((v2 - 0.10).abs() < 0.06, "canary share {v2} ({served:?})");

    // Accounted like REST, from grpc-status; sampled with the message as protobuf.
    let total = (n + 5) as f64;
    let mut last = String::new();
    let counted = (0..500).any(|_| {
        last = stack.prometheus();
        std::thread::sleep(Duration::from_millis(20));
        metric_sum(&last, contract::REQUESTS_TOTAL.name, &[("model", "mlp"), ("outcome", "success")]) >= total
    });
    assert!(counted, "{}", last.lines().filter(|l| l.starts_with("switchyard_re")).collect::<Vec<_>>().join("\n"));
    assert_eq!(metric_sum(&last, contract::UNROUTED_REQUESTS_TOTAL.name, &[("reason", "invalid_grpc_message")]), 1.0);
    wait_until(Duration::from_secs(15), "samples shipped", || stack.sample_lines().len() >= 100);
    let samples = stack.sample_lines();
    let s = &samples[0];
    assert_eq!(s["request"]["encoding"], "protobuf", "{s}");
    assert_eq!(s["response"]["encoding"], "protobuf", "{s}");
    assert_eq!((s["status"].as_u64(), s["outcome"].as_str()), (Some(200), Some("success")));
}
