//! `bench-tls`: what mutual TLS from Envoy to the backend, and client authentication at Envoy,
//! cost. Two backends (the same model, batching off), one plain and one requiring client
//! certificates, behind three Envoys with the filter (sampling off): to the plain backend; to
//! the mTLS one, presenting Envoy's certificate; and to the plain one with `identity` in the
//! policy (Envoy's JWT filter checks an ES256 token on every request, the tenant header is set
//! from its claim, the local rate limit runs with a quota never reached, and the filter counts
//! per tenant). The same open-loop load goes to all three in alternating rounds, then each is
//! saturated closed-loop; the report gives the differences measured side by side. Envoy keeps
//! its upstream connections open, so a TLS handshake is paid per connection, not per request:
//! the figures are the steady-state cost (record encryption, the TLS layer in both processes).
//! Envoy keeps verified tokens (`jwt_cache_config`): a client's first request pays the
//! signature check, its next ones a cache lookup and the expiry check.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::Context;

use switchyard_load::metadata::model_inputs;
use switchyard_load::payload::build_body;
use switchyard_load::report::Report;
use switchyard_load::run;
use switchyard_testkit::stack::start_collector;
use switchyard_tls::jwt;

use crate::common::{Backend, Common, derived_repo, machine, machine_cpus, median, stdout_of, write_section};
use crate::filter::{EnvoyRun, FILTER_WASM, Launch, Row, Saturation, policy, start_envoy};

#[derive(clap::Args)]
pub struct TlsBenchArgs {
    #[command(flatten)]
    common: Common,
    /// Open-loop rate for the latency comparison (requests/s).
    #[arg(long, default_value_t = 400.0)]
    rate: f64,
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    #[arg(long, default_value_t = 12)]
    rounds: usize,
    /// Concurrent clients for the saturation runs.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// CPU list the Envoys are pinned to (one worker each); `none` leaves them unpinned.
    #[arg(long, default_value = "1")]
    envoy_cpus: String,
    #[arg(long, default_value = "scripts/bench.sh tls")]
    reproduce: String,
}

pub async fn run(a: TlsBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        std::path::Path::new(FILTER_WASM).exists(),
        "{FILTER_WASM} not found: scripts/bench.sh tls builds it"
    );
    let mut cpus = (a.envoy_cpus != "none").then_some(a.envoy_cpus.as_str());
    if cpus.is_some() && machine_cpus() < 2 {
        eprintln!("bench-tls: one CPU only; the Envoys run unpinned");
        cpus = None;
    }
    let bin_dir = std::env::current_exe()?.parent().context("no exe dir")?.to_path_buf();
    let dir = std::env::temp_dir().join(format!("switchyard-bench-tls-{}", std::process::id()));
    let certs = dir.join("certs");
    std::fs::create_dir_all(&dir)?;
    stdout_of(
        std::process::Command::new(bin_dir.join("switchyard-policy"))
            .args(["render", "certs", "--out-dir"])
            .arg(&certs),
        "switchyard-policy render certs",
    )?;
    derived_repo(&a.common.model_repository, &dir.join("repo"), "mlp", false, None)?;
    let bin = a.common.backend()?;
    let plain_backend = Backend::start(&bin, &dir.join("repo"))?;
    let f = switchyard_tls::generate::BACKEND.server_files(&certs);
    let tls_args: Vec<String> = [
        (switchyard_contract::process::tls::CERT_FLAG, &f.cert),
        (switchyard_contract::process::tls::KEY_FLAG, &f.key),
        (switchyard_contract::process::tls::CLIENT_CA_FLAG, &f.client_ca),
    ]
    .into_iter()
    .flat_map(|(flag, p)| [flag.to_owned(), p.display().to_string()])
    .collect();
    let tls_backend = Backend::start_with(&bin, &dir.join("repo"), None, &tls_args)?;
    let (_collector, collector) = start_collector(&bin_dir.join("switchyard-collector"), &dir.join("samples.jsonl"))?;
    let p0 = dir.join("policy.json");
    std::fs::write(&p0, serde_json::to_vec(&policy(0.0))?)?;
    let wasm = std::path::Path::new(FILTER_WASM);
    let plain_run = EnvoyRun {
        policy: &p0,
        backend: &plain_backend.http,
        collector: &collector,
        launch: Launch::Pinned(cpus),
        tls: None,
        jwks: None,
    };
    let plain = start_envoy(&dir, "plain", &plain_run, Some(wasm))?;
    // Sampling is off: the collector's cluster (TLS too) carries nothing; only the backend's hop
    // is compared.
    let tls_run = EnvoyRun { backend: &tls_backend.http, tls: Some(&certs), ..plain_run };
    let tls_envoy = start_envoy(&dir, "mtls", &tls_run, Some(wasm))?;
    // Identity: every request's token checked; a quota no run reaches (the bucket is still taken).
    let mut with_identity = policy(0.0);
    with_identity["identity"] = serde_json::json!({
        "issuer": "bench", "default_quota": {"requests_per_second": 1_000_000}, "tenants": {"bench": {}}
    });
    let p_id = dir.join("policy-identity.json");
    std::fs::write(&p_id, serde_json::to_vec(&with_identity)?)?;
    let jwks = certs.join(jwt::JWKS);
    let id_run = EnvoyRun { policy: &p_id, jwks: Some(&jwks), ..plain_run };
    let id_envoy = start_envoy(&dir, "identity", &id_run, Some(wasm))?;
    let claims = serde_json::json!({"iss": "bench", "tenant": "bench", "exp": 4_102_444_800_u64});
    let auth = format!("Bearer {}", jwt::mint(&certs.join(jwt::SIGNING_KEY), &claims)?);

    let inputs = model_inputs(&plain_backend.http, "mlp", Some("v1")).await?;
    let body = build_body(&inputs, 1, false, 3, None, None)?;
    let infer = "/v2/models/mlp/infer";
    let metadata = "/v2/models/mlp";
    let secs = Duration::from_secs_f64(a.seconds);
    let mut rows = vec![
        Row { name: "Envoy + filter → backend, plain", runs: vec![] },
        Row { name: "Envoy + filter → backend, mTLS", runs: vec![] },
        Row { name: "Envoy + JWT check + quota + filter → backend, plain", runs: vec![] },
    ];
    let targets = [(&plain.listen, None), (&tls_envoy.listen, None), (&id_envoy.listen, Some(auth.as_str()))];
    let open = |addr: &str, auth: Option<&str>, secs: Duration| {
        let load = switchyard_load::scenario::Load::Open(vec![switchyard_load::schedule::Segment::constant(
            a.rate,
            secs.as_secs_f64(),
        )]);
        let plan = run::Plan::simple(addr, infer, Some(body.clone()), load, secs);
        let plan = match auth {
            Some(v) => run::with_header(plan, "authorization", v),
            None => Ok(plan),
        };
        async move { run::execute(plan?).await }
    };
    for (addr, auth) in targets {
        open(addr, auth, Duration::from_secs(2)).await?;
    }
    for round in 0..a.rounds {
        eprintln!(
            "bench-tls: latency round {}/{} ({} req/s open loop, {}s per run)",
            round + 1,
            a.rounds,
            a.rate,
            a.seconds
        );
        for (row, (addr, auth)) in rows.iter_mut().zip(targets) {
            row.runs.push(open(addr, auth, secs).await?);
        }
    }
    let mut saturation: [Saturation; 3] = Default::default();
    for round in 0..a.rounds {
        eprintln!(
            "bench-tls: saturation round {}/{} ({} clients, {}s per run)",
            round + 1,
            a.rounds,
            a.clients,
            a.seconds
        );
        for (s, (envoy, auth)) in
            saturation.iter_mut().zip([(&plain, None), (&tls_envoy, None), (&id_envoy, Some(auth.as_str()))])
        {
            s.round(envoy, metadata, a.clients, secs, auth).await?;
        }
    }
    drop((plain, tls_envoy, id_envoy));
    let md = report(&a, cpus, &rows, &saturation)?;
    write_section(&a.common.out, "tls", &md)?;
    println!("{md}");
    eprintln!("bench-tls: wrote {}", a.common.out.display());
    drop((plain_backend, tls_backend));
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn report(a: &TlsBenchArgs, cpus: Option<&str>, rows: &[Row], saturation: &[Saturation; 3]) -> anyhow::Result<String> {
    let mut m = String::new();
    writeln!(m, "# Benchmarks: mutual TLS from Envoy to the backend, and client authentication\n")?;
    writeln!(m, "Generated by `{}` — do not edit by hand; re-run it.\n", a.reproduce)?;
    let placement = match cpus {
        Some(c) => {
            format!("Each Envoy runs one worker pinned to CPU {c}; the load generator and the backends share CPU 0")
        }
        None => "Nothing is pinned".to_owned(),
    };
    writeln!(
        m,
        "- Machine: {}. Envoy 1.40 with the Switchyard filter (sampling off) in both paths. {placement}.\n\
         - Two backends (`mlp`, batching off): one plain, one requiring a client certificate (rustls, ECDSA P-256 \
         certificates from `switchyard-policy render certs`, TLS 1.3); Envoy presents its certificate and checks the \
         backend's name. Envoy reuses its upstream connections, so these are steady-state costs: a handshake is \
         paid once per connection.\n\
         - Authentication: the policy's `identity` (Envoy's JWT filter checking an ES256 token against a local JWKS, \
         with its cache of verified tokens: one client token, so the signature is checked once and looked up after; \
         the tenant header from its claim, the local rate limit with a quota never reached, the filter's per-tenant \
         counters) in front of the plain backend.\n\
         - Latency: open loop at {} req/s, {}s per run, {} rounds alternating the two paths; medians of the rounds' \
         percentiles. Saturation: closed loop, {} clients, {}s per run, {} rounds; Envoy's CPU per request from the \
         kernel's per-thread accounting.\n",
        machine(),
        a.rate,
        a.seconds,
        a.rounds,
        a.clients,
        a.seconds,
        a.rounds
    )?;
    writeln!(m, "## Latency (MLP inference, 1 row, JSON)\n")?;
    writeln!(m, "| path | service p50 ms | service p99 ms | errors |\n|---|---:|---:|---:|")?;
    let pct = |r: &Row, f: fn(&Report) -> f64| median(r.runs.iter().map(f).collect());
    for r in rows {
        let errors: u64 = r.runs.iter().map(|x| x.total.errors).sum();
        writeln!(
            m,
            "| {} | {:.3} | {:.3} | {errors} |",
            r.name,
            pct(r, |x| x.total.service_ms.p50),
            pct(r, |x| x.total.service_ms.p99)
        )?;
    }
    let [plain, tls, auth] = rows else { anyhow::bail!("expected three latency rows") };
    let d = |with: &Row, f: fn(&Report) -> f64| {
        median(with.runs.iter().zip(&plain.runs).map(|(x, b)| (f(x) - f(b)) * 1000.0).collect())
    };
    let (p50, p99) = (d(tls, |x| x.total.service_ms.p50), d(tls, |x| x.total.service_ms.p99));
    let (a50, a99) = (d(auth, |x| x.total.service_ms.p50), d(auth, |x| x.total.service_ms.p99));
    writeln!(
        m,
        "\nmTLS adds **{p50:.0} µs** at p50 and **{p99:.0} µs** at p99; authentication (token, tenant, quota) adds \
         **{a50:.0} µs** at p50 and **{a99:.0} µs** at p99 (medians of the rounds' paired differences).\n"
    )?;
    let thr: Vec<f64> = saturation.iter().map(|s| median(s.throughput.clone())).collect();
    let cpu: Vec<f64> = saturation.iter().map(|s| median(s.cpu_us.clone())).collect();
    writeln!(
        m,
        "## Saturation throughput (`GET /v2/models/mlp` through Envoy to the backend)\n\n\
         | path | req/s (median) | Envoy CPU µs per request (median) |\n|---|---:|---:|"
    )?;
    for (r, (t, c)) in rows.iter().zip(thr.iter().zip(&cpu)) {
        writeln!(m, "| {} | {t:.0} | {c:.1} |", r.name)?;
    }
    writeln!(
        m,
        "\nmTLS costs **{:.1}%** of Envoy's saturation throughput ({:+.1} µs of Envoy CPU per request); \
         authentication **{:.1}%** ({:+.1} µs of Envoy CPU per request).\n",
        (1.0 - thr[1] / thr[0]) * 100.0,
        cpu[1] - cpu[0],
        (1.0 - thr[2] / thr[0]) * 100.0,
        cpu[2] - cpu[0]
    )?;
    Ok(m)
}
