//! Refusals reach the client through Envoy too: many large bodies at once, real clients
//! (`http.client`, `urllib3`, `tritonclient`), the backends' budget admitting two at a time.
//! Each client must read the backend's 429 (through Envoy) or its own answer, never a reset
//! connection or a broken pipe.
#![allow(clippy::unwrap_used)]

use switchyard_testkit::stack::{Layout, Stack, mlp_policy, wasm_path};
use switchyard_testkit::*;

#[test]
fn refusals_of_large_bodies_reach_every_client_through_envoy() {
    let repo = demo_repo();
    let mut layout = Layout::scratch("refusals", &repo, &wasm_path(), &[]);
    // 40 MiB a body, 80 MiB in flight per backend.
    layout.backend_args =
        ["--max-body-bytes", "41943040", "--max-inflight-bytes", "83886080"].map(str::to_owned).to_vec();
    let policy = mlp_policy(&serde_json::json!({
        "versions": [{"name": "v1", "cluster": "mlp-v1", "weight": 100}, {"name": "v2", "cluster": "mlp-v2", "weight": 0}]
    }));
    let stack = Stack::launch(&layout, &policy);
    println!("{}", refusals_reach(&stack.listen));
}
