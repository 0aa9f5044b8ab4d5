//! The offline `batch` command end to end: the real binary, real libtorch, the demo MLP.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use switchyard_testkit::*;

/// Rows of the MLP's golden input, one JSON array per line, and the expected outputs per row.
fn golden_rows() -> (Vec<String>, Vec<Vec<f64>>) {
    let g = golden("mlp", "v1");
    let rows = floats(&g["inputs"][0]["data"]).chunks(64).map(|r| serde_json::to_string(r).unwrap()).collect();
    let want = floats(&g["outputs"][0]["data"]).chunks(2).map(<[f64]>::to_vec).collect();
    (rows, want)
}

/// Runs `batch` on mlp:`version`; returns whether it succeeded, and its stderr. One row per
/// batch, so that a resumed run computes every row exactly as a fresh one does (batched
/// matrix products may round differently).
fn batch(version: &str, input: &Path, output: &Path, extra: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(backend_bin())
        .args(["batch", "--model", "mlp", "--version", version, "--batch-size", "1", "--model-repository"])
        .arg(demo_repo())
        .arg("--input")
        .arg(input)
        .arg("--output")
        .arg(output)
        .args(extra)
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn ok(version: &str, input: &Path, output: &Path, extra: &[&str]) -> String {
    let (success, log) = batch(version, input, output, extra);
    assert!(success, "{log}");
    log
}

fn jsonl(lines: &[&str]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

#[test]
fn a_line_that_is_not_utf8_becomes_an_error_line_and_the_job_goes_on() {
    let dir = scratch("offline-utf8");
    let (rows, want) = golden_rows();
    let input = dir.join("in.jsonl");
    let mut bytes = format!("{}\n", rows[0]).into_bytes();
    bytes.extend_from_slice(b"[0.5, \xff\xfe]\n");
    bytes.extend_from_slice(format!("{}\n", rows[1]).as_bytes());
    std::fs::write(&input, bytes).unwrap();
    let output = dir.join("out.jsonl");

    let log = ok("v1", &input, &output, &[]);
    assert!(log.contains("3 lines (2 rows, 1 errors)"), "{log}");
    let first = std::fs::read_to_string(&output).unwrap();
    let got: Vec<serde_json::Value> = first.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(got.len(), 3);
    assert_eq!(got[1]["line"], 2);
    assert!(got[1]["error"].as_str().unwrap().contains("not UTF-8"), "{}", got[1]);
    for (line, row) in [(0, 0), (2, 1)] {
        assert!(max_abs_diff(&floats(&got[line]["outputs"][0]["data"]), &want[row]) < 1e-5, "line {line}");
    }

    // Resuming after the bad line's error does not stumble over it again.
    let keep: String = first.lines().take(2).map(|l| format!("{l}\n")).collect();
    std::fs::write(&output, keep).unwrap();
    let log = ok("v1", &input, &output, &[]);
    assert!(log.contains("resuming after 2 of 3 lines"), "{log}");
    assert_eq!(std::fs::read_to_string(&output).unwrap(), first);
}

#[test]
fn an_output_of_another_job_is_refused_and_restart_replaces_it() {
    let dir = scratch("offline-job");
    let (rows, _) = golden_rows();
    let input = dir.join("a.jsonl");
    std::fs::write(&input, jsonl(&[&rows[0], &rows[1], &rows[2]])).unwrap();
    let other = dir.join("b.jsonl");
    std::fs::write(&other, jsonl(&[&rows[3], &rows[2], &rows[1]])).unwrap();
    let output = dir.join("out.jsonl");
    ok("v1", &input, &output, &[]);
    let written = std::fs::read(&output).unwrap();
    assert!(dir.join("out.jsonl.job.json").exists());

    // Another input of as many lines: without the record it would "resume" with nothing left to
    // do, leaving a's results as b's.
    let (success, log) = batch("v1", &other, &output, &[]);
    assert!(!success && log.contains("holds results for another input"), "{log}");
    assert!(log.contains("a.jsonl") && log.contains("b.jsonl") && log.contains("--restart"), "{log}");
    // Another version of the model, same input.
    let (success, log) = batch("v2", &input, &output, &[]);
    assert!(!success && log.contains("holds results of mlp:v1, not mlp:v2"), "{log}");
    // Refused means untouched.
    assert_eq!(std::fs::read(&output).unwrap(), written);

    // An output with no record cannot be told apart from someone else's.
    let orphan = dir.join("orphan.jsonl");
    std::fs::write(&orphan, &written).unwrap();
    let (success, log) = batch("v1", &input, &orphan, &[]);
    assert!(!success && log.contains("no job record"), "{log}");

    // Lines appended to the same input are the rest of the job.
    std::fs::write(&input, jsonl(&[&rows[0], &rows[1], &rows[2], &rows[3], &rows[0]])).unwrap();
    let log = ok("v1", &input, &output, &[]);
    assert!(log.contains("resuming after 3 of 5 lines"), "{log}");
    let fresh = dir.join("fresh.jsonl");
    ok("v1", &input, &fresh, &[]);
    assert_eq!(std::fs::read(&output).unwrap(), std::fs::read(&fresh).unwrap());

    // --restart starts over for whichever job it is given.
    let log = ok("v1", &other, &output, &["--restart"]);
    assert!(!log.contains("resuming"), "{log}");
    let fresh_other = dir.join("fresh-b.jsonl");
    ok("v1", &other, &fresh_other, &[]);
    assert_eq!(std::fs::read(&output).unwrap(), std::fs::read(&fresh_other).unwrap());
    // And the record now names the new job: resuming it is fine.
    let log = ok("v1", &other, &output, &[]);
    assert!(log.contains("resuming after 3 of 3 lines"), "{log}");
}

#[test]
fn shards_split_the_input_resume_on_their_own_and_merge_into_the_whole_output() {
    let dir = scratch("offline-shards");
    let (rows, _) = golden_rows();
    // 7 lines over 3 shards (3, 2 and 2 lines), one of them bad.
    let mut lines: Vec<&str> = rows.iter().cycle().take(6).map(String::as_str).collect();
    lines.insert(4, "not json");
    let input = dir.join("in.jsonl");
    std::fs::write(&input, jsonl(&lines)).unwrap();
    let whole = dir.join("whole.jsonl");
    ok("v1", &input, &whole, &[]);
    let whole_text = std::fs::read_to_string(&whole).unwrap();

    let part = |i: usize| dir.join(format!("out/part-{i}-of-3.jsonl"));
    for i in 0..3 {
        let log = ok("v1", &input, &part(i), &["--shard", &format!("{i}/3")]);
        let want = [3, 2, 2][i];
        assert!(log.contains(&format!("{want} lines to go (shard {i}/3 of 7 input lines)")), "{log}");
    }
    // Shard 1 owns input lines 2 and 5: the bad line reports its place in the input.
    let p1 = std::fs::read_to_string(part(1)).unwrap();
    assert_eq!(
        p1.lines().nth(1).map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["line"].clone()),
        Some(5.into())
    );

    // Shard 0 killed after its first line, mid-write of the second: resumed on its own.
    let p0 = std::fs::read_to_string(part(0)).unwrap();
    let first_line = p0.lines().next().unwrap();
    std::fs::write(part(0), format!("{first_line}\n{{\"model_na")).unwrap();
    let merged = dir.join("merged.jsonl");
    let merge = |parts: &[std::path::PathBuf]| {
        let out = std::process::Command::new(backend_bin())
            .arg("merge-shards")
            .args(parts)
            .arg("--output")
            .arg(&merged)
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (success, log) = merge(&[part(2), part(0), part(1)]);
    assert!(!success && log.contains("(shard 0/3) has 1 of its 3 results: finish it first"), "{log}");
    assert!(!merged.exists(), "a refused merge left an output");
    let log = ok("v1", &input, &part(0), &["--shard", "0/3"]);
    assert!(log.contains("resuming after 1 of 3 lines"), "{log}");

    // The wrong shard does not resume another shard's output.
    let (success, log) = batch("v1", &input, &part(1), &["--shard", "2/3"]);
    assert!(!success && log.contains("holds the results of shard 1/3, not shard 2/3"), "{log}");

    let (success, log) = merge(&[part(0), part(2)]);
    assert!(!success && log.contains("need shards 0/3 to 2/3 once each; have 0/3, 2/3"), "{log}");
    let (success, log) = merge(&[part(2), part(0), part(1)]);
    assert!(success, "{log}");
    assert_eq!(std::fs::read_to_string(&merged).unwrap(), whole_text);
    // The merged output is the whole job's, done: a whole run over it has nothing left to do.
    let log = ok("v1", &input, &merged, &[]);
    assert!(log.contains("0 lines to go"), "{log}");
}
