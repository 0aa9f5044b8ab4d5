//! `k8s/`: the committed generated objects are what `render k8s` makes from the committed
//! policy, rules and dashboards, and every overlay renders with `kubectl kustomize`.

use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root")
}

#[test]
fn committed_generated_objects_equal_a_fresh_render() {
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard-policy"))
        .args(["render", "k8s", "--check"])
        .current_dir(root())
        .output()
        .expect("run switchyard-policy");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn every_overlay_renders_with_kubectl_kustomize() {
    let overlays = std::fs::read_dir(root().join("k8s/overlays")).expect("k8s/overlays");
    let mut rendered = 0;
    for o in overlays {
        let dir = o.expect("overlay").path();
        let out = Command::new("kubectl").arg("kustomize").arg(&dir).output().expect("kubectl (scripts/setup.sh)");
        assert!(out.status.success(), "{}: {}", dir.display(), String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        // Every overlay serves each of the demo policy's four versions.
        for c in ["mlp-v1", "mlp-v2", "resnet18-v1", "resnet18-v2"] {
            assert!(text.contains(&format!("name: {c}-predictor")) || text.contains(&format!("name: {c}\n")), "{c}");
        }
        rendered += 1;
    }
    assert_eq!(rendered, 3);
}
