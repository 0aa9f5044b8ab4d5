//! The soak's short version (`scripts/soak.sh` runs it for half an hour): a minute of steady
//! load while policies churn (swaps, guard epochs, a version added and removed), the collector
//! and the monitor restarted and the canary crashed and replaced. The shared-data keys stay
//! flat, no request goes unanswered and every sample is accounted for; memory is judged only
//! by the long run (a minute is warm-up).
#![allow(clippy::unwrap_used)]

use switchyard_testkit::{root, workspace_bin};

#[test]
fn a_minute_of_churn_leaves_the_keys_flat_and_loses_nothing() {
    let out = std::process::Command::new(workspace_bin("switchyard-bench"))
        .args(["soak", "--minutes", "1", "--baseline-minutes", "0.4", "--rate", "30", "--no-report"])
        .args(["--restart-every-seconds", "30", "--crash-every-seconds", "60"])
        .current_dir(root())
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("{text}");
    assert!(out.status.success() && text.contains("soak: passed"), "{text}");
    assert!(text.contains("restarted 2 times") && text.contains("crashed and replaced 1 times"), "{text}");
}
