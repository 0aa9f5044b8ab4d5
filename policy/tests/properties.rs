//! Structure-aware property tests of the three parsers that face the outside: the policy (from
//! whoever writes the ECDS file), request paths and captured payloads (from any client). Each
//! runs a few hundred cases (well under a second each) in `cargo test`; a failing case is saved
//! by proptest under `tests/properties.proptest-regressions` and replayed first from then on,
//! and any crash found is also kept below as a named regression test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use proptest::prelude::*;
use proptest::sample::{select, subsequence};
use serde_json::{Value, json};
use switchyard_policy::Config;
use switchyard_policy::capture::envelope_bound;
use switchyard_policy::config::{MAX_QUEUED_BYTES_CAP, MAX_QUEUED_CAP, Sampling};
use switchyard_policy::names::valid_name;
use switchyard_policy::paths::{self, PathError};
use switchyard_policy::sampling::{CREDENTIAL_HEADERS, Capture, Meta};
use switchyard_policy::slo::Outcome;

// ---------------------------------------------------------------------------------------------
// The policy

fn name() -> impl Strategy<Value = String> {
    // Starting with a letter keeps `.` and `..` (refused names) out of valid policies.
    "[a-z][a-z0-9_.-]{0,10}"
}

fn header_name() -> impl Strategy<Value = String> {
    "x-[a-z0-9_-]{1,12}"
}

/// One model's policy with `n` versions named v0..; weights leave the first positive.
fn model(n: usize) -> impl Strategy<Value = Value> {
    let versions = proptest::collection::vec((name(), 0u32..1000), n).prop_map(|vs| {
        vs.into_iter()
            .enumerate()
            .map(|(i, (cluster, w))| json!({"name": format!("v{i}"), "cluster": cluster, "weight": if i == 0 { w + 1 } else { w }}))
            .collect::<Vec<_>>()
    });
    let sticky = prop_oneof![
        Just(None),
        header_name().prop_map(|h| Some(json!({"header": h}))),
        "[a-z]{1,8}".prop_map(|c| Some(json!({"cookie": c}))),
    ];
    let allow = subsequence((0..n).collect::<Vec<_>>(), 0..=n);
    let over = proptest::option::of((header_name(), allow)).prop_map(|o| {
        o.map(|(h, a)| json!({"header": h, "allow": a.iter().map(|i| format!("v{i}")).collect::<Vec<_>>()}))
    });
    let shadow = proptest::option::of((0..n, 0.0f64..=100.0))
        .prop_map(|s| s.map(|(v, p)| json!({"version": format!("v{v}"), "percent": p})));
    let sampling = proptest::option::of((
        0.0f64..=1.0,
        0usize..=1024 * 1024,
        proptest::collection::vec(header_name(), 0..3),
        proptest::collection::vec("[a-z]{1,6}(\\.[a-z]{1,6})?", 0..3),
        proptest::option::of(proptest::collection::vec(prop_oneof![header_name(), Just(":path".to_owned())], 0..4)),
    ))
    .prop_map(|s| {
        s.map(|(rate, max, rh, rf, ch)| {
            let mut v = json!({"rate": rate, "max_body_bytes": max, "redact_headers": rh, "redact_fields": rf});
            if let Some(ch) = ch {
                v["capture_headers"] = json!(ch);
            }
            v
        })
    });
    let slo =
        proptest::option::of((0.5f64..0.99999, proptest::option::of(0.5f64..0.99999), 1u64..60_000)).prop_map(|s| {
            s.map(|(a, lo, ms)| {
                let mut v = json!({"availability": a, "latency_ms": ms});
                if let Some(lo) = lo {
                    v["latency_objective"] = json!(lo);
                }
                v
            })
        });
    (versions, sticky, over, shadow, sampling, slo).prop_map(|(versions, sticky, over, shadow, sampling, slo)| {
        let mut m = json!({"versions": versions});
        for (k, v) in [("sticky", sticky), ("override", over), ("shadow", shadow), ("sampling", sampling), ("slo", slo)]
        {
            if let Some(v) = v {
                m[k] = v;
            }
        }
        m
    })
}

/// Windows the generator picks from: whole multiples of 30 s, distinct in seconds; `10m` and
/// `600s` are kept out for the duplicate-window mutation.
const WINDOWS: [&str; 8] = ["30s", "5m", "1h", "90s", "7m", "6h", "1d", "30d"];

/// A valid policy.
fn policy() -> impl Strategy<Value = Value> {
    let models = proptest::collection::btree_map(name(), (1usize..4).prop_flat_map(model), 1..4);
    let collector =
        proptest::option::of((name(), 1u64..10_000, 1usize..100, 1usize..=MAX_QUEUED_CAP, 0usize..8 * 1024 * 1024));
    let windows = proptest::option::of(subsequence(WINDOWS.to_vec(), 0..4));
    let renames = proptest::option::of(("x-[a-z]{1,8}", "x-[a-z]{1,8}", "x-[a-z]{1,8}"));
    (models, collector, windows, renames).prop_map(|(models, collector, windows, renames)| {
        let sampled = models.values().any(|m| m["sampling"]["rate"].as_f64().is_some_and(|r| r > 0.0));
        let mut p = json!({"models": models});
        if let Some((cluster, timeout, in_flight, queued, extra)) = collector {
            // Large enough for one sample of every model, as validation demands.
            let need = models
                .values()
                .filter_map(|m| m["sampling"]["max_body_bytes"].as_u64())
                .map(|b| envelope_bound(b as usize))
                .max()
                .unwrap_or(1);
            let bytes = need.saturating_add(extra).min(MAX_QUEUED_BYTES_CAP);
            p["collector"] = json!({"cluster": cluster, "timeout_ms": timeout, "max_in_flight": in_flight, "max_queued": queued, "max_queued_bytes": bytes});
        } else if sampled {
            p["collector"] = json!({"cluster": "collector"});
        }
        if let Some(w) = windows {
            p["slo_windows"] = json!(w);
        }
        if let Some((a, b, c)) = renames {
            p["upstream_header"] = json!(a);
            p["shadow_header"] = json!(b);
            p["version_header"] = json!(c);
        }
        p
    })
}

fn first_model(p: &mut Value) -> &mut Value {
    let obj = p["models"].as_object_mut().unwrap();
    obj.values_mut().next().unwrap()
}

/// Mutations that each break one rule, and the message that must then be among the problems.
/// They touch different fields, so any set of them must be reported in full.
fn mutate(p: &mut Value, which: usize) -> &'static str {
    match which {
        0 => {
            p["upstream_header"] = json!("Bad Header");
            "upstream_header 'Bad Header' must be a lowercase header name"
        }
        1 => {
            first_model(p)["versions"][0]["name"] = json!("bad name");
            "version name 'bad name' must be"
        }
        2 => {
            for v in first_model(p)["versions"].as_array_mut().unwrap() {
                v["weight"] = json!(0);
            }
            "at least one version needs a positive weight"
        }
        3 => {
            let m = first_model(p);
            let v = m["versions"][0]["name"].clone();
            m["shadow"] = json!({"version": v, "percent": 150.0});
            "shadow.percent must be 0-100"
        }
        4 => {
            first_model(p)["sampling"] = json!({"rate": 2.0});
            "sampling.rate must be 0-1"
        }
        5 => {
            first_model(p)["slo"] = json!({"availability": 1.0, "latency_ms": 10});
            "slo.availability must be strictly between 0 and 1"
        }
        6 => {
            let mut w = p["slo_windows"].as_array().cloned().unwrap_or_default();
            w.push(json!("45s"));
            p["slo_windows"] = json!(w);
            "slo_windows: '45s' (45s) must be a multiple of 30s"
        }
        7 => {
            if p.get("collector").is_none() {
                p["collector"] = json!({"cluster": "collector"});
            }
            p["collector"]["max_queued"] = json!(MAX_QUEUED_CAP + 1);
            "collector.max_queued must be at most"
        }
        8 => {
            first_model(p)["override"] = json!({"header": "x-o", "allow": ["nope"]});
            "override.allow names unknown version 'nope'"
        }
        9 => {
            let m = first_model(p);
            let dup = m["versions"][0].clone();
            m["versions"].as_array_mut().unwrap().push(dup);
            "is listed twice"
        }
        10 => {
            let m = first_model(p);
            if m.get("slo").is_none() {
                m["slo"] = json!({"availability": 0.9, "latency_ms": 0});
            }
            m["slo"]["latency_ms"] = json!(0);
            "slo.latency_ms must be positive"
        }
        11 => {
            let m = first_model(p);
            if m.get("sampling").is_none() {
                m["sampling"] = json!({"rate": 0.0});
            }
            m["sampling"]["capture_headers"] = json!(["Bad"]);
            "sampling.capture_headers: 'Bad' must be a lowercase header name"
        }
        12 => {
            if p.get("collector").is_none() {
                p["collector"] = json!({"cluster": "collector"});
            }
            p["collector"]["max_queued_bytes"] = json!(0);
            "collector.max_queued_bytes must be 1-"
        }
        _ => {
            let mut w = p["slo_windows"].as_array().cloned().unwrap_or_default();
            w.extend([json!("10m"), json!("600s")]);
            p["slo_windows"] = json!(w);
            "slo_windows: '600s' is listed twice"
        }
    }
}

/// Some JSON to put where a value was.
fn junk() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Value::String),
        Just(json!([])),
        Just(json!({})),
        Just(json!({"unknown": 1})),
    ]
}

/// Replaces the `n`th value (depth-first, modulo their number) of `v` with `with`.
fn replace_nth(v: &mut Value, n: usize, with: Value) {
    fn count(v: &Value) -> usize {
        1 + match v {
            Value::Array(a) => a.iter().map(count).sum(),
            Value::Object(o) => o.values().map(count).sum(),
            _ => 0,
        }
    }
    fn go(v: &mut Value, n: &mut usize, with: &mut Option<Value>) {
        if *n == 0 {
            if let Some(w) = with.take() {
                *v = w;
            }
            return;
        }
        *n -= 1;
        match v {
            Value::Array(a) => a.iter_mut().for_each(|x| go(x, n, with)),
            Value::Object(o) => o.values_mut().for_each(|x| go(x, n, with)),
            _ => {}
        }
    }
    let mut n = n % count(v);
    go(v, &mut n, &mut Some(with));
}

/// Whatever the parser accepts is a fixed point of serialise-then-parse.
fn round_trips(cfg: &Config) -> Result<(), TestCaseError> {
    let bytes = serde_json::to_vec(cfg).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let again =
        Config::parse(&bytes).map_err(|e| TestCaseError::fail(format!("{e}: {}", String::from_utf8_lossy(&bytes))))?;
    prop_assert_eq!(&again, cfg);
    Ok(())
}

proptest! {
    #[test]
    fn a_valid_policy_is_accepted_and_round_trips(p in policy()) {
        let cfg = Config::parse(p.to_string().as_bytes()).map_err(|e| TestCaseError::fail(format!("{e}\n{p}")))?;
        round_trips(&cfg)?;
    }

    #[test]
    fn every_problem_is_reported(p in policy(), which in subsequence((0..14).collect::<Vec<usize>>(), 1..6)) {
        let mut p = p;
        let needles: Vec<&str> = which.iter().map(|w| mutate(&mut p, *w)).collect();
        let e = Config::parse(p.to_string().as_bytes()).expect_err("a broken policy was accepted").to_string();
        for n in needles {
            prop_assert!(e.contains(n), "missing {:?} in {}\n{}", n, e, p);
        }
    }

    #[test]
    fn any_policy_text_parses_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(cfg) = Config::parse(&bytes) {
            round_trips(&cfg)?;
        }
    }

    #[test]
    fn a_mangled_policy_is_refused_or_accepted_consistently(p in policy(), at in any::<usize>(), with in junk()) {
        let mut p = p;
        replace_nth(&mut p, at, with);
        if let Ok(cfg) = Config::parse(p.to_string().as_bytes()) {
            round_trips(&cfg)?;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Paths

fn valid_segment() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_.-]{1,24}".prop_filter("dot segments are not names", |s| valid_name(s))
}

/// `s` with the characters where `mask` is set percent-encoded, in upper or lower case hex.
fn encode(s: &str, mask: &[(bool, bool)]) -> String {
    s.bytes()
        .zip(mask.iter().cycle())
        .map(|(b, (enc, upper))| match (enc, upper) {
            (true, true) => format!("%{b:02X}"),
            (true, false) => format!("%{b:02x}"),
            _ => char::from(b).to_string(),
        })
        .collect()
}

fn mask() -> impl Strategy<Value = Vec<(bool, bool)>> {
    proptest::collection::vec(any::<(bool, bool)>(), 1..8)
}

fn rest() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), Just("/infer".to_owned()), Just("/ready".to_owned()), "(/[a-z0-9]{1,6}){1,3}/?"]
}

fn query() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), "\\?[a-z=&%0-9/]{0,12}"]
}

/// What a backend that decodes, merges slashes and resolves dot segments before routing would
/// take `path` for: the model and version it names (no such backend may disagree with the
/// filter).
fn backend_view(path: &str) -> Option<(String, Option<String>)> {
    let path = path.split('?').next()?;
    // A lenient decoder, as such a backend has: the well-kept crate, not the filter's own.
    let decoded = percent_encoding::percent_decode_str(path).decode_utf8_lossy().into_owned();
    let mut segs: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segs.pop();
            }
            s => segs.push(s),
        }
    }
    match segs.as_slice() {
        ["v2", "models", m, "versions", v, ..] => Some(((*m).to_owned(), Some((*v).to_owned()))),
        ["v2", "models", m, ..] => Some(((*m).to_owned(), None)),
        _ => None,
    }
}

/// Whatever is accepted names a valid model; the filter decides on what a decoding backend
/// would read, and its canonical form (what the backend gets) names the same model, with no
/// version and nothing left to decode in the names.
fn canonical_is_stable(path: &str) -> Result<(), TestCaseError> {
    if let Ok(Some(p)) = paths::parse(path) {
        prop_assert!(valid_name(&p.model));
        let decided = Some((p.model.to_string(), p.version.as_deref().map(str::to_owned)));
        prop_assert_eq!(backend_view(path), decided, "{}", path);
        let canonical = paths::canonical(&p);
        prop_assert_eq!(backend_view(&canonical), Some((p.model.to_string(), None)), "{} -> {}", path, canonical);
        let canonical = paths::canonical(&p);
        let again = paths::parse(&canonical)
            .map_err(|e| TestCaseError::fail(format!("{path} -> {canonical}: {e}")))?
            .ok_or_else(|| TestCaseError::fail(format!("{path} -> {canonical}: not a model path")))?;
        prop_assert_eq!(&again.model, &p.model, "{} -> {}", path, canonical);
        prop_assert!(!again.encoded && again.version.is_none(), "{} -> {}", path, canonical);
        prop_assert_eq!(paths::canonical(&again), canonical);
    }
    Ok(())
}

/// Path segments that mean something to a parser, or nearly do.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        valid_segment(),
        Just("versions".to_owned()),
        Just("%76ersions".to_owned()),
        Just("VERSIONS".to_owned()),
        Just("infer".to_owned()),
        Just(".".to_owned()),
        Just("..".to_owned()),
        Just("%2e%2E".to_owned()),
        Just("%2F".to_owned()),
        Just(String::new()),
        "[a-z%0-9.]{1,6}",
    ]
}

proptest! {
    #[test]
    fn any_path_parses_without_panicking(path in any::<String>()) {
        canonical_is_stable(&path)?;
    }
}

proptest! {
    // Cheap (well under a second) and the richest in shapes: more cases.
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn model_path_shapes_have_a_stable_canonical_form(
        segments in proptest::collection::vec(segment(), 1..7),
        query in query(),
    ) {
        canonical_is_stable(&format!("/v2/models/{}{query}", segments.join("/")))?;
    }
}

proptest! {
    #[test]
    fn near_model_paths_parse_without_panicking(tail in "[a-zA-Z0-9%/._?=-]{0,40}") {
        let _ = paths::parse(&format!("/v2/models/{tail}"));
    }

    #[test]
    fn percent_encoded_names_decode_to_themselves(
        model in valid_segment(),
        version in proptest::option::of(valid_segment()),
        (m_mask, v_mask, k_mask) in (mask(), mask(), mask()),
        rest in rest(),
        query in query(),
    ) {
        let mut path = format!("/v2/models/{}", encode(&model, &m_mask));
        if let Some(v) = &version {
            path.push_str(&format!("/{}/{}", encode("versions", &k_mask), encode(v, &v_mask)));
        }
        path.push_str(&rest);
        path.push_str(&query);
        // A rest that starts with a `versions` segment of its own is another path (refused).
        prop_assume!(!rest.starts_with("/versions/"));
        let p = paths::parse(&path).map_err(|e| TestCaseError::fail(format!("{path}: {e}")))?.unwrap();
        prop_assert_eq!(&*p.model, model.as_str());
        prop_assert_eq!(p.version.as_deref(), version.as_deref());
        prop_assert_eq!((p.rest, p.query), (rest.as_str(), query.as_str()));
        let encoded = |s: &str, m: &[(bool, bool)]| encode(s, m) != s;
        let any_encoded = encoded(&model, &m_mask)
            || version.as_ref().is_some_and(|v| encoded(v, &v_mask) || encoded("versions", &k_mask));
        prop_assert_eq!(p.encoded, any_encoded);
        prop_assert_eq!(paths::canonical(&p), format!("/v2/models/{model}{rest}{query}"));
    }

    #[test]
    fn bad_escapes_and_encoded_slashes_are_refused(
        model in valid_segment(),
        m_mask in mask(),
        bad in select(vec![("%", PathError::MalformedEscape), ("%4", PathError::MalformedEscape),
            ("%g0", PathError::MalformedEscape), ("%0G", PathError::MalformedEscape), ("%2F", PathError::EncodedSlash),
            ("%2f", PathError::EncodedSlash)]),
        in_version in any::<bool>(),
        rest in rest(),
    ) {
        // The bad escape ends its segment, so what follows cannot complete it.
        let (bad, error) = bad;
        let encoded = encode(&model, &m_mask);
        let path = if in_version {
            format!("/v2/models/{model}/versions/{encoded}{bad}{rest}")
        } else {
            format!("/v2/models/{encoded}{bad}{rest}")
        };
        prop_assert_eq!(paths::parse(&path), Err(error), "{}", path);
    }

    #[test]
    fn decoding_inverts_encoding(bytes in proptest::collection::vec(any::<u8>().prop_filter("not '/'", |b| *b != b'/'), 0..40)) {
        let encoded: String = bytes.iter().map(|b| format!("%{b:02x}")).collect();
        prop_assert_eq!(paths::decode(&encoded), Ok(bytes));
    }

    #[test]
    fn decoding_any_text_never_panics(s in any::<String>()) {
        let _ = paths::decode(&s);
    }
}

// ---------------------------------------------------------------------------------------------
// The sample envelope

const SECRET: &str = "CRED-";

/// Request or response headers: some credential headers (any case) with recognisable values,
/// some ordinary ones, sometimes one huge one.
fn headers() -> impl Strategy<Value = Vec<(String, String)>> {
    let cred = (select(CREDENTIAL_HEADERS.to_vec()), any::<bool>(), "[A-Za-z0-9]{1,16}").prop_map(|(n, upper, v)| {
        let name = if upper { n.to_ascii_uppercase() } else { n.to_owned() };
        (name, format!("{SECRET}{v}"))
    });
    let plain = ("x-[a-z]{1,8}|content-type|:path|:status", "[a-z0-9 ;=/]{0,20}");
    let huge = prop_oneof![9 => Just(None), 1 => (60_000usize..140_000).prop_map(Some)];
    (proptest::collection::vec(prop_oneof![cred, plain], 0..8), huge).prop_map(|(mut h, huge)| {
        if let Some(n) = huge {
            h.push(("x-huge".to_owned(), "h".repeat(n)));
        }
        h
    })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..400),
        // JSON, sometimes a V2 request.
        (any::<i64>(), "[a-z]{0,10}").prop_map(|(n, s)| format!(
            r#"{{"id": "{s}", "inputs": [{{"name": "x", "data": [{n}]}}], "parameters": {{"user": "{s}"}}}}"#
        )
        .into_bytes()),
        proptest::collection::vec(prop_oneof![Just(0u8), Just(b'"'), Just(b'\\'), Just(0x1f)], 0..400),
    ]
}

/// Feeds `body` to `side` in chunks of `chunk` bytes, as the filter does.
fn feed(side: &mut switchyard_policy::sampling::Side, body: &[u8], chunk: usize) {
    for part in body.chunks(chunk.max(1)) {
        side.take(part.len(), |n| part[..n].to_vec());
    }
    side.take(0, |_| Vec::new());
}

proptest! {
    #[test]
    fn an_envelope_is_valid_json_within_its_bound_and_never_carries_credentials(
        cap in 0usize..512,
        (req_h, resp_h) in (headers(), headers()),
        (req_b, resp_b) in (body(), body()),
        chunk in 1usize..200,
        json_len in proptest::option::of(0usize..600),
        redact_fields in proptest::collection::vec(select(vec!["id".to_owned(), "parameters.user".to_owned(), "inputs.x".to_owned()]), 0..3),
        capture_headers in proptest::option::of(proptest::collection::vec(select(vec!["authorization".to_owned(), "COOKIE".to_owned(), ":path".to_owned(), "x-a".to_owned(), "content-type".to_owned()]), 0..4)),
        request_id in ".{0,300}",
        outcome in select(Outcome::ALL.to_vec()),
        status in proptest::option::of(100u16..600),
    ) {
        let secret_in = |b: &[u8]| b.windows(SECRET.len()).any(|w| w == SECRET.as_bytes());
        prop_assume!(!secret_in(&req_b) && !secret_in(&resp_b) && !request_id.contains(SECRET));
        let s = Sampling { rate: 1.0, max_body_bytes: cap, redact_headers: vec![], redact_fields, capture_headers };
        let mut req_h = req_h;
        if let Some(n) = json_len {
            req_h.push(("inference-header-content-length".to_owned(), n.to_string()));
        }
        let mut c = Capture::new(cap, req_h);
        feed(&mut c.request, &req_b, chunk);
        c.response.set_headers(resp_h);
        feed(&mut c.response, &resp_b, chunk);
        let meta =
            Meta { model: "mlp", version: "v1", request_id: &request_id, start_unix_ms: 1, duration_ms: 2, status, outcome, tenant: None };
        let out = c.envelope(&meta, &s).expect("a sample with valid names always fits");
        prop_assert!(out.len() <= envelope_bound(cap), "{} > {}", out.len(), envelope_bound(cap));
        let v: Value = serde_json::from_slice(&out).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(v["schema"].as_u64(), Some(1));
        prop_assert_eq!(v["outcome"].as_str(), Some(outcome.as_str()));
        prop_assert!(!secret_in(&out), "a credential leaked: {}", String::from_utf8_lossy(&out));
    }
}

// ---------------------------------------------------------------------------------------------
// Regressions found by the properties above (kept by name).

/// `model_path_shapes_have_a_stable_canonical_form`, shrunk: with the first `/versions/{v}`
/// stripped, the canonical path named version `a` to the backend while the filter had decided
/// on `_`.
#[test]
fn regression_a_second_versions_segment_is_refused() {
    assert_eq!(paths::parse("/v2/models/0/versions/_/versions/a"), Err(PathError::RepeatedVersion));
}

/// The same property, shrunk, with dot segments let through: a resolving backend reads
/// `/v2/models/_/..` as no model at all (and `/v2/models/a/../b/infer` as model `b`).
#[test]
fn regression_a_dot_segment_is_refused() {
    assert_eq!(paths::parse("/v2/models/_/.."), Err(PathError::DotSegment));
}

/// The same property, shrunk, with empty segments let through: a backend merging slashes reads
/// version `A` where the filter saw none.
#[test]
fn regression_an_empty_segment_is_refused() {
    assert_eq!(paths::parse("/v2/models/0//versions/A"), Err(PathError::EmptySegment));
}

/// A latency-only SLO event (`total` 0) looked empty and would never have been merged.
#[test]
fn regression_client_ended_slow_request_is_an_event() {
    use switchyard_policy::slo::Counts;
    assert!(!Counts::event(Outcome::ClientGone, 1_000, 10).is_empty());
}

/// `a_mangled_policy_is_refused_or_accepted_consistently`, shrunk: without serde_json's exact
/// float parser an availability of 9.09624224126255e-31 came back one ULP off after a rewrite.
#[test]
fn regression_a_rewritten_policy_keeps_its_numbers_exactly() {
    let text = br#"{"models": {"a": {"versions": [{"name": "v0", "cluster": "a", "weight": 1}],
        "slo": {"availability": 9.09624224126255e-31, "latency_ms": 1, "latency_objective": 0.5}}}}"#;
    let cfg = Config::parse(text).expect("valid");
    let again = Config::parse(&serde_json::to_vec(&cfg).expect("serialises")).expect("valid");
    assert_eq!(again, cfg);
}
