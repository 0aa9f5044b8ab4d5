//! GPU tests: ignored by default (CI has no GPU); `scripts/gpu-tests.sh` runs them with
//! `--ignored` on a machine with an NVIDIA GPU, where they fail loudly if CUDA is unusable.
#![allow(clippy::unwrap_used)]

use serde_json::json;
use switchyard_contract::metrics as contract;
use switchyard_testkit::*;

#[test]
#[ignore = "needs an NVIDIA GPU: run scripts/gpu-tests.sh on a GPU machine"]
fn serves_on_cuda_with_golden_outputs_batching_and_gpu_metrics() {
    let repo = derived_repo("gpu", &[("mlp", "v1"), ("resnet18", "v1")], |_, c| {
        c["device"] = json!("cuda:0");
        c["batching"]["max_queue_delay_us"] = json!(20_000);
    });
    let s = Server::start_ready(&repo, &[]);
    assert_eq!(s.get("/v2/health/ready").status, 200, "{}", s.log());
    for model in ["mlp", "resnet18"] {
        let meta = s.get(&format!("/v2/models/{model}")).json();
        assert_eq!(meta["parameters"]["device"], "cuda:0", "{meta}");
        let g = golden(model, "v1");
        let r = s.post_json(&format!("/v2/models/{model}/versions/v1/infer"), &json!({"inputs": g["inputs"]}));
        assert_eq!(r.status, 200);
        let got = floats(&r.json()["outputs"][0]["data"]);
        let want = floats(&g["outputs"][0]["data"]);
        // cuDNN may use TF32 for convolutions: compare relative to the output's scale.
        let scale = want.iter().fold(1.0f64, |m, x| m.max(x.abs()));
        let err = max_abs_diff(&got, &want) / scale;
        assert!(err < 1e-2, "{model}: relative error {err} against the CPU golden");
    }
    // Batched on the GPU equals one-by-one on the GPU.
    let rows: Vec<Vec<f64>> = (0..16).map(|i| (0..64).map(|j| ((i * 64 + j) as f64).cos()).collect()).collect();
    let one = |r: &[f64]| {
        let body = json!({"inputs": [{"name": "features", "shape": [1, 64], "datatype": "FP32", "data": r}]});
        floats(&s.post_json("/v2/models/mlp/versions/v1/infer", &body).json()["outputs"][0]["data"])
    };
    let alone: Vec<Vec<f64>> = rows.iter().map(|r| one(r)).collect();
    let together: Vec<Vec<f64>> = std::thread::scope(|sc| {
        let hs: Vec<_> = rows.iter().map(|r| sc.spawn(|| one(r))).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (a, b) in alone.iter().zip(&together) {
        assert!(max_abs_diff(a, b) < 1e-4);
    }
    assert!(s.metric(contract::DEVICE_SECONDS_TOTAL.name, &[("device", "cuda:0")]) > 0.0);
    std::thread::sleep(std::time::Duration::from_secs(6));
    assert!(s.metric(contract::GPU_MEMORY_USED_BYTES.name, &[]) > 0.0, "no GPU metrics:\n{}", s.metrics());
}
