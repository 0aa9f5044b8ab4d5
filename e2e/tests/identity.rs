//! Clients have an identity: the local stack with `identity` in the policy, Envoy checking
//! tokens against the JWKS `switchyard-policy render certs` writes. A request without a valid
//! token — none, a forged signature, expired, another issuer or audience — is answered 401 by
//! Envoy and reaches no backend (Envoy's upstream counters stay put); the health paths stay
//! public; the tenant comes from the token, never from a header the client sends; a token
//! without the tenant claim is refused 403 by the filter; each tenant is held to its quota (429
//! with `Retry-After`, its own bucket, a named tenant's own quota), and every request is counted
//! for its tenant — named ones by name, the rest as `other`. gRPC gets the same check.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchyard_oip::GrpcInferenceServiceClient;
use switchyard_oip::inference::ServerLiveRequest;
use switchyard_policy::identity::{QUOTA_HEADER, TENANT_HEADER};
use switchyard_testkit::grpc::mlp_infer_request;
use switchyard_testkit::stack::{Stack, mlp_infer_body, mlp_policy, policy_tool};
use switchyard_testkit::*;
use switchyard_tls::jwt::{JWKS, SIGNING_KEY, mint};
use tonic::transport::Channel;

const ISSUER: &str = "switchyard-test";
const AUDIENCE: &str = "switchyard";

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// A token signed with the key in `keys`, with these claims over a valid default set.
fn token(keys: &Path, claims: &Value) -> String {
    let mut c = json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "e2e", "exp": now() + 3600});
    for (k, v) in claims.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    mint(&keys.join(SIGNING_KEY), &c).unwrap()
}

fn infer(stack: &Stack, headers: &[(&str, &str)]) -> Resp {
    let mut h = vec![("content-type", "application/json")];
    h.extend_from_slice(headers);
    stack.send("POST", "/v2/models/mlp/infer", &h, &mlp_infer_body(1))
}

/// Requests Envoy sent to the backends (both versions).
fn upstream_requests(stack: &Stack) -> f64 {
    stack.stat("cluster.mlp-v1.upstream_rq_total") + stack.stat("cluster.mlp-v2.upstream_rq_total")
}

/// The sum of a Prometheus metric's series whose labels include every `labels` pair.
fn series(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn only_clients_with_a_valid_token_reach_a_model_and_each_tenant_is_counted_and_held_to_its_quota() {
    let dir = scratch("identity-keys");
    let (keys, other_keys) = (dir.join("keys"), dir.join("other-keys"));
    for d in [&keys, &other_keys] {
        policy_tool(&["render", "certs", "--out-dir", d.to_str().unwrap()]).unwrap();
    }
    let mut policy = mlp_policy(&json!({}));
    policy["identity"] = json!({
        "issuer": ISSUER,
        "audiences": [AUDIENCE],
        "default_quota": {"requests_per_second": 2, "burst": 4},
        "tenants": {"team-a": {"quota": {"requests_per_second": 1000}}, "team-b": {}},
    });
    let jwks = keys.join(JWKS);
    let stack = Stack::start_with("identity", &policy, &["--jwks", jwks.to_str().unwrap()]);

    // Public: the orchestrators' health checks need no token.
    for path in ["/v2/health/ready", "/v2/health/live"] {
        assert_eq!(stack.send("GET", path, &[], b"").status, 200, "{path}");
    }

    // No valid token: 401 from Envoy, and no backend sees the request.
    let before = upstream_requests(&stack);
    let bearer = |t: &str| format!("Bearer {t}");
    let forged = token(&other_keys, &json!({"tenant": "team-a"}));
    let expired = token(&keys, &json!({"tenant": "team-a", "exp": now() - 3600}));
    let issuer = token(&keys, &json!({"tenant": "team-a", "iss": "someone-else"}));
    let audience = token(&keys, &json!({"tenant": "team-a", "aud": "another-service"}));
    let mut tampered = token(&keys, &json!({"tenant": "team-b"}));
    // team-b's token with team-a's payload: the signature no longer matches.
    let a_payload = token(&keys, &json!({"tenant": "team-a"})).split('.').nth(1).unwrap().to_owned();
    let parts: Vec<String> = tampered.split('.').map(str::to_owned).collect();
    tampered = format!("{}.{a_payload}.{}", parts[0], parts[2]);
    // (Envoy answers a valid token for another audience 403: it is authentic, not for us.)
    let refused: [(&str, Option<String>, u16, &str); 6] = [
        ("no token", None, 401, "Jwt is missing"),
        ("another key's signature", Some(forged), 401, "Jwks doesn't have key to match kid"),
        ("a payload changed after signing", Some(tampered), 401, "Jwt verification fails"),
        ("expired", Some(expired), 401, "Jwt is expired"),
        ("another issuer", Some(issuer), 401, "Jwt issuer is not configured"),
        ("another audience", Some(audience), 403, "Audiences in Jwt are not allowed"),
    ];
    for (what, t, status, says) in &refused {
        let auth = t.as_deref().map(bearer);
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
        let r = infer(&stack, &headers);
        assert_eq!(r.status, *status, "{what}: {}", String::from_utf8_lossy(&r.body));
        assert!(String::from_utf8_lossy(&r.body).contains(says), "{what}: {}", String::from_utf8_lossy(&r.body));
        assert!(r.header("www-authenticate").is_some_and(|v| v.starts_with("Bearer")), "{what}");
    }
    assert_eq!(upstream_requests(&stack), before, "a refused request reached a backend");

    // A valid token: served, counted for its tenant, whatever tenant header the client sends.
    let a = bearer(&token(&keys, &json!({"tenant": "team-a"})));
    for _ in 0..12 {
        let r = infer(&stack, &[("authorization", &a), (TENANT_HEADER, "team-b")]);
        assert_eq!(r.status, 200, "team-a is far from its quota: {}", String::from_utf8_lossy(&r.body));
    }
    assert_eq!(upstream_requests(&stack), before + 12.0);

    // A token without the tenant claim: refused by the filter, before routing.
    let r = infer(&stack, &[("authorization", &bearer(&token(&keys, &json!({"tenant": null}))))]);
    assert_eq!(r.status, 403, "{}", String::from_utf8_lossy(&r.body));
    assert!(String::from_utf8_lossy(&r.body).contains("no 'tenant' claim"));
    assert_eq!(upstream_requests(&stack), before + 12.0);

    // team-b runs under the default quota (2/s, burst 4): a burst of 12 is cut, with Retry-After.
    let b = bearer(&token(&keys, &json!({"tenant": "team-b"})));
    let started = Instant::now();
    let (mut served, mut limited) = (0, 0);
    for _ in 0..12 {
        let r = infer(&stack, &[("authorization", &b)]);
        match r.status {
            200 => served += 1,
            429 => {
                limited += 1;
                assert_eq!(r.header("retry-after"), Some("1"));
                assert_eq!(r.header(QUOTA_HEADER), Some("exceeded"));
                assert_eq!(r.header("x-switchyard-version"), None, "no version answered it");
            }
            s => panic!("team-b: {s} {}", String::from_utf8_lossy(&r.body)),
        }
    }
    let allowed = 4 + 2 * started.elapsed().as_secs_f64().ceil() as i32;
    assert!(limited > 0 && served <= allowed, "served {served} (at most {allowed}), limited {limited}");
    // Two tenants the policy does not name: each its own bucket of the default quota.
    for tenant in ["zeta", "omega"] {
        let t = bearer(&token(&keys, &json!({"tenant": tenant})));
        assert_eq!(infer(&stack, &[("authorization", &t)]).status, 200, "{tenant} has a bucket of its own");
    }

    // gRPC: the same check on the HTTP/2 listener.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let channel = Channel::from_shared(format!("http://{}", stack.listen)).unwrap();
        let mut c = GrpcInferenceServiceClient::new(channel.timeout(Duration::from_secs(20)).connect().await.unwrap());
        assert!(c.server_live(ServerLiveRequest {}).await.unwrap().into_inner().live, "public");
        let e = c.model_infer(mlp_infer_request("", 0)).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
        let mut req = tonic::Request::new(mlp_infer_request("", 0));
        req.metadata_mut().insert("authorization", a.parse().unwrap());
        assert_eq!(c.model_infer(req).await.unwrap().into_inner().model_name, "mlp");
    });

    // Every request counted for its tenant; the 401s are Envoy's.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = stack.prometheus();
        let count = |tenant: &str, outcome: &str| {
            series(&text, "switchyard_tenant_requests_total", &[("tenant", tenant), ("outcome", outcome)])
        };
        let denied = series(&text, "envoy_http_jwt_authn_denied", &[("envoy_http_conn_manager_prefix", "ingress")]);
        // (Histograms reach /stats/prometheus at Envoy's next flush.)
        let timed = series(&text, "switchyard_tenant_request_duration_ms_count", &[("tenant", "team-a")]);
        let got = (
            timed,
            count("team-a", "success"),
            count("team-b", "success"),
            count("team-b", "quota"),
            count("other", "success"),
            denied,
        );
        let want = (13.0, 13.0, f64::from(served), f64::from(limited), 2.0, refused.len() as f64 + 1.0);
        if got == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "(team-a timed, team-a, team-b, team-b quota, other, denied): {got:?}, want {want:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let text = stack.prometheus();
    assert_eq!(series(&text, "switchyard_unrouted_requests_total", &[("reason", "no_tenant")]), 1.0);
}
