//! `switchyard-policy`: the one reader of filter policies outside the filter. It validates
//! them with the rules the filter applies in Envoy, and renders everything that depends on
//! them (Envoy's bootstrap and ECDS filter config, Prometheus' and Alertmanager's
//! configuration). Scripts, tests and benchmarks consume what it writes and never parse the
//! policy themselves. Every problem is reported at once; exit status 1 on a bad input, 2 on
//! bad arguments.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::anyhow;
use clap::{Args, Parser, Subcommand};
use switchyard_deploy::apply::{absolute, apply_filter, start_epochs, wasm_file};
use switchyard_deploy::audit;
use switchyard_deploy::render::envoy::{self, BootstrapOptions, Fault};
use switchyard_deploy::render::k8s::{self, K8sOptions};
use switchyard_deploy::render::prometheus::{self, AlertmanagerOptions, Prices, PrometheusOptions};
use switchyard_deploy::render::{HostPort, Policy, json_text};
use switchyard_policy::Config;
use switchyard_runtime::write_atomic;

#[derive(Parser)]
#[command(
    name = "switchyard-policy",
    about = "Check Switchyard filter policies and render the configuration that depends on them"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate policies; lists every problem of every file.
    Check {
        #[arg(required = true)]
        policies: Vec<PathBuf>,
    },
    /// Print the cluster of every version, one per line (`MODEL VERSION CLUSTER`).
    Clusters { policy: PathBuf },
    /// Write a copy of a policy with new weights for one model's versions.
    Weights {
        policy: PathBuf,
        #[arg(long)]
        model: String,
        /// VERSION=WEIGHT, for every version whose weight changes.
        #[arg(required = true, value_name = "VERSION=WEIGHT")]
        weights: Vec<String>,
        #[arg(long)]
        out: PathBuf,
    },
    #[command(subcommand)]
    Render(Box<Render>),
    /// Say which versions the guard holds out of the split, since when and why, from the
    /// filter's gauges in Envoy's `/stats/prometheus` (or Prometheus' `/federate`) text.
    HeldOut {
        /// The exposition text; `-` reads standard input.
        #[arg(long, default_value = "-")]
        stats: PathBuf,
    },
    /// The audit trail of the policies put in force in the Envoy running BOOTSTRAP (its
    /// audit.jsonl): every change, who made it, through which tool and what changed, the
    /// trail's hash chain checked. With --check, also that the policy in force is the last one
    /// recorded: exit 1 when it was changed outside the tools, or the trail was edited.
    Audit {
        #[arg(long)]
        bootstrap: PathBuf,
        #[arg(long)]
        check: bool,
        /// The records as JSON lines, for tools.
        #[arg(long)]
        json: bool,
    },
    /// Print a client token for a policy with `identity`: its issuer, audience and tenant
    /// claim, signed with the key `render certs` writes (jwt-signing-key.pem).
    Token {
        #[arg(long)]
        policy: PathBuf,
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        tenant: String,
        /// How long the token is valid.
        #[arg(long, default_value = "24h")]
        ttl: String,
        /// The token's subject (`sub`): who holds it, for the audit trail.
        #[arg(long, default_value = "switchyard-local")]
        subject: String,
    },
    /// Write the contracts between processes (ports, flags, health paths, metrics, outcome
    /// classes) as JSON for everything not written in Rust: contract/contract.json.
    Contract {
        /// Compare with the committed file instead of writing it.
        #[arg(long)]
        check: bool,
        #[arg(long, default_value = switchyard_deploy::contract::PATH)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum Render {
    /// Envoy's bootstrap (OUT_DIR/envoy.yaml) and the filter's ECDS config (OUT_DIR/filter.yaml).
    Envoy(EnvoyArgs),
    /// Only the filter's ECDS config, for a running Envoy: the policy is checked against what
    /// its bootstrap was rendered with (headers, clusters, histogram bounds) and refused,
    /// naming each difference, when that Envoy could not serve it.
    Filter {
        #[arg(long)]
        policy: PathBuf,
        #[arg(long)]
        wasm: PathBuf,
        /// The running Envoy's bootstrap (as rendered by `render envoy`).
        #[arg(long)]
        bootstrap: PathBuf,
        /// Default: filter.yaml next to the bootstrap.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Prometheus: OUT_DIR/prometheus.yml and OUT_DIR/switchyard-config.rules.yml.
    Prometheus(PrometheusArgs),
    /// The Kubernetes objects of k8s/*/generated/ (Services, InferenceServices, Deployments,
    /// autoscalers, WasmPlugin, VirtualService, the Envoy gateway's ConfigMaps, PrometheusRule,
    /// monitors, dashboards); `--check` compares instead of writing.
    K8s(K8sArgs),
    /// Alertmanager: pages and tickets to WEBHOOK/page and WEBHOOK/ticket.
    Alertmanager {
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        webhook: String,
        #[arg(long, default_value = "30s")]
        group_wait: String,
        #[arg(long, default_value = "5m")]
        group_interval: String,
        /// How often the Watchdog reaches the pager's dead man's switch.
        #[arg(long, default_value = "1m")]
        watchdog_interval: String,
    },
    /// The local stack's certificates for mutual TLS (a CA, the backend's and the collector's
    /// server certificates, Envoy's client certificate), into OUT_DIR; a set that is complete
    /// and more than 30 days from expiry is kept (the CA's key is never written). Also the
    /// client tokens' signing key and the JWKS Envoy checks them with (kept once written).
    Certs {
        #[arg(long)]
        out_dir: PathBuf,
    },
}

#[derive(Args)]
struct EnvoyArgs {
    #[arg(long)]
    policy: PathBuf,
    /// The filter's .wasm (not with --no-filter).
    #[arg(long, required_unless_present = "no_filter")]
    wasm: Option<PathBuf>,
    #[arg(long)]
    out_dir: PathBuf,
    #[arg(long, default_value = "127.0.0.1:10000")]
    listen: HostPort,
    #[arg(long, default_value = "127.0.0.1:9901")]
    admin: HostPort,
    /// An address for each cluster the policy names.
    #[arg(long, value_name = "CLUSTER=HOST:PORT")]
    upstream: Vec<String>,
    /// The gRPC address of each cluster's backend (every cluster, or none): gRPC calls are
    /// then routed by the same policy, to the HTTP/2 cluster CLUSTER-grpc.
    #[arg(long, value_name = "CLUSTER=HOST:PORT")]
    grpc_upstream: Vec<String>,
    /// The largest gRPC call Envoy holds while the filter reads its model (larger: refused).
    #[arg(long, default_value_t = 64 << 20)]
    grpc_max_message_bytes: u64,
    /// The sample collector's address (needed when the policy has a collector).
    #[arg(long, value_name = "HOST:PORT")]
    collector: Option<HostPort>,
    /// Where requests go that the filter did not route; the first model's first version by default.
    #[arg(long)]
    default_cluster: Option<String>,
    /// Plain Envoy without the filter (the benchmarks' baseline).
    #[arg(long)]
    no_filter: bool,
    /// Abort PERCENT % of the requests routed to CLUSTER with STATUS (503 by default), or
    /// delay them MS milliseconds: a failing or slow canary for drills and tests. PERCENT may
    /// be 0 (armed): `POST /runtime_modify?switchyard.fault.CLUSTER.abort_percent=N` (or
    /// `delay_percent`) on Envoy's admin sets it at run time, N in whole percents.
    #[arg(long, value_name = "CLUSTER=PERCENT[:STATUS|:MSms]")]
    fault: Vec<Fault>,
    /// Mutual TLS to the backends and the collector with the certificates in DIR (`render
    /// certs`): Envoy presents envoy.pem and requires the name `backend` (`collector`) on a
    /// certificate ca.pem signed.
    #[arg(long, value_name = "DIR")]
    upstream_tls: Option<PathBuf>,
    /// The JWKS Envoy checks client tokens against, for a policy with `identity` (`render
    /// certs` writes jwks.json).
    #[arg(long, value_name = "FILE")]
    jwks: Option<PathBuf>,
}

#[derive(Args)]
struct PrometheusArgs {
    #[arg(long)]
    policy: PathBuf,
    #[arg(long)]
    out_dir: PathBuf,
    #[arg(long, default_value = "dashboards/prices.json")]
    prices: PathBuf,
    /// The checked-in recording and alerting rules.
    #[arg(long, default_value = "dashboards/prometheus")]
    rules_dir: PathBuf,
    /// Envoy's admin address.
    #[arg(long, value_name = "HOST:PORT")]
    envoy: HostPort,
    /// A backend's admin address (repeatable).
    #[arg(long, value_name = "HOST:PORT", required = true)]
    backend: Vec<HostPort>,
    /// A drift monitor's address (`switchyard-monitor watch --listen`; repeatable).
    #[arg(long, value_name = "HOST:PORT")]
    monitor: Vec<HostPort>,
    #[arg(long, value_name = "HOST:PORT")]
    alertmanager: Option<HostPort>,
    #[arg(long, default_value = "5s")]
    scrape_interval: String,
    #[arg(long, default_value = "5s")]
    evaluation_interval: String,
    /// Every rule's windows and `for:` divided by N (copies of the rule files in --out-dir),
    /// for drills: 60 makes five minutes five seconds. Use a 1s scrape interval with it.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=3600))]
    time_scale: u64,
}

#[derive(Args)]
struct K8sArgs {
    #[arg(long, default_value = "envoy/policy.json")]
    policy: PathBuf,
    /// The `k8s/` directory: its `*/generated/` directories are rewritten.
    #[arg(long, default_value = "k8s")]
    out_dir: PathBuf,
    #[arg(long, default_value = "switchyard")]
    namespace: String,
    /// The image with the Switchyard binaries; overlays retag it with kustomize `images:`.
    #[arg(long, default_value = "switchyard/switchyard:0.1.0")]
    image: String,
    /// The filter's `.wasm` for Istio's WasmPlugin.
    #[arg(long, default_value = "oci://switchyard/switchyard-filter:0.1.0")]
    filter_url: String,
    /// Prometheus' query URL, for the KEDA triggers.
    #[arg(long, default_value = "http://prometheus-operated.monitoring.svc:9090")]
    prometheus_url: String,
    #[arg(long, default_value = "dashboards/prices.json")]
    prices: PathBuf,
    #[arg(long, default_value = "dashboards/prometheus")]
    rules_dir: PathBuf,
    #[arg(long, default_value = "dashboards/grafana")]
    dashboards_dir: PathBuf,
    /// The drift monitor's configuration, for its ConfigMap.
    #[arg(long, default_value = "monitor/configs/demo.json")]
    monitor_config: PathBuf,
    /// In-flight target and replica ceiling per model, for the autoscalers.
    #[arg(long, default_value = "k8s/scaling.json")]
    scaling: PathBuf,
    /// Write nothing; fail, naming each file, when the committed objects differ from a fresh render.
    #[arg(long)]
    check: bool,
}

/// The rule files of `dashboards/prometheus/` that Prometheus loads.
const RULE_FILES: [&str; 2] = ["recording-rules.yml", "alerting-rules.yml"];

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check { policies } => check(&policies),
        Command::Clusters { policy } => read_policy(&policy).map(|p| {
            for (model, m) in &p.config().models {
                for v in &m.versions {
                    println!("{model} {} {}", v.name, v.cluster);
                }
            }
        }),
        Command::Weights { policy, model, weights, out } => set_weights(&policy, &model, &weights, &out),
        Command::Render(r) => render(*r),
        Command::HeldOut { stats } => held_out(&stats),
        Command::Contract { check, out } => contract(check, &out),
        Command::Token { policy, key, tenant, ttl, subject } => token(&policy, &key, &tenant, &ttl, &subject),
        Command::Audit { bootstrap, check, json } => audit_trail(&bootstrap, check, json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchyard-policy: {e}");
            ExitCode::FAILURE
        }
    }
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| anyhow!("cannot read {}: {e}", path.display()))
}

fn read_policy(path: &Path) -> anyhow::Result<Policy> {
    let text = String::from_utf8(read(path)?).map_err(|_| anyhow!("{}: not UTF-8", path.display()))?;
    Policy::parse(text).map_err(|e| anyhow!("{}: {e}", path.display()))
}

fn audit_trail(bootstrap: &Path, check: bool, json: bool) -> anyhow::Result<()> {
    let trail = bootstrap.with_file_name(audit::AUDIT_FILE);
    let records = audit::verify(&trail)?;
    for r in &records {
        if json {
            println!("{}", serde_json::to_string(r)?);
            continue;
        }
        let when = std::time::UNIX_EPOCH + std::time::Duration::from_millis(r.time_unix_ms);
        let what: Vec<&str> = r.after.as_object().into_iter().flat_map(|o| o.keys()).map(String::as_str).collect();
        let what = if r.before_sha256.is_none() {
            "the whole policy (none was readable in force before it: a start)".to_owned()
        } else {
            what.join(", ")
        };
        println!(
            "{} {} via {:?}: {} (filter config {})",
            humantime::format_rfc3339_seconds(when),
            r.who,
            r.via,
            if what.is_empty() { "no change" } else { &what },
            r.filter_config
        );
    }
    if !json {
        println!("audit: {} change(s) in {}, chain intact", records.len(), trail.display());
    }
    if check {
        let last = switchyard_deploy::apply::check_recorded(bootstrap)?;
        if !json {
            println!("audit: the policy in force is the last one recorded ({} via {:?})", last.who, last.via);
        }
    }
    Ok(())
}

fn token(policy: &Path, key: &Path, tenant: &str, ttl: &str, subject: &str) -> anyhow::Result<()> {
    let policy = read_policy(policy)?;
    let Some(id) = &policy.config().identity else {
        anyhow::bail!("the policy has no identity: its clients need no token");
    };
    let ttl = humantime::parse_duration(ttl).map_err(|e| anyhow!("--ttl {ttl}: {e}"))?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let mut claims = serde_json::json!({"iss": id.issuer, "sub": subject, "iat": now, "exp": now + ttl.as_secs()});
    claims[&id.tenant_claim] = tenant.into();
    if let Some(aud) = id.audiences.first() {
        claims["aud"] = aud.as_str().into();
    }
    println!("{}", switchyard_tls::jwt::mint(key, &claims)?);
    Ok(())
}

fn held_out(stats: &Path) -> anyhow::Result<()> {
    let text = if stats == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).map_err(|e| anyhow!("cannot read standard input: {e}"))?
    } else {
        String::from_utf8_lossy(&read(stats)?).into_owned()
    };
    let out = switchyard_deploy::held_out::held_out(&switchyard_runtime::exposition::parse(&text));
    if out.is_empty() {
        println!("guard: no version is held out of the split");
    }
    for h in out {
        println!("guard: {}", h.describe(std::time::SystemTime::now()));
    }
    Ok(())
}

fn check(policies: &[PathBuf]) -> anyhow::Result<()> {
    let mut failed = 0;
    for p in policies {
        match read_policy(p) {
            Ok(policy) => println!("ok  {}: {} model(s)", p.display(), policy.config().models.len()),
            Err(e) => {
                failed += 1;
                eprintln!("{e}");
            }
        }
    }
    if failed == 0 { Ok(()) } else { Err(anyhow!("{failed} of {} policies invalid", policies.len())) }
}

fn set_weights(path: &Path, model: &str, weights: &[String], out: &Path) -> anyhow::Result<()> {
    let policy = read_policy(path)?;
    let mut cfg: Config = policy.config().clone();
    let m = cfg.models.get_mut(model).ok_or_else(|| anyhow!("{}: no model '{model}'", path.display()))?;
    let mut problems = Vec::new();
    for w in weights {
        let parsed = w.split_once('=').and_then(|(v, n)| n.parse::<u32>().ok().map(|n| (v, n)));
        match parsed {
            Some((v, n)) => match m.versions.iter_mut().find(|x| x.name == v) {
                Some(x) => x.weight = n,
                None => problems.push(format!("model '{model}' has no version '{v}'")),
            },
            None => problems.push(format!("'{w}' is not VERSION=WEIGHT")),
        }
    }
    if !problems.is_empty() {
        return Err(anyhow!(problems.join("; ")));
    }
    let text = serde_json::to_string_pretty(&cfg)? + "\n";
    // The result must pass the same validation (e.g. not every weight 0).
    Policy::parse(text.clone()).map_err(|e| anyhow!("the new weights make an invalid policy: {e}"))?;
    write_atomic(out, &text)?;
    println!("wrote {}", out.display());
    Ok(())
}

fn contract(check: bool, out: &Path) -> anyhow::Result<()> {
    let text = switchyard_deploy::contract::export();
    if check {
        if std::fs::read_to_string(out).ok().as_deref() != Some(text.as_str()) {
            return Err(anyhow!(
                "{} differs from the contract (re-export with `switchyard-policy contract`)",
                out.display()
            ));
        }
        println!("contract: {} up to date", out.display());
    } else {
        write_atomic(out, text)?;
        println!("contract -> {}", out.display());
    }
    Ok(())
}

fn render(r: Render) -> anyhow::Result<()> {
    match r {
        Render::Envoy(a) => render_envoy(a),
        Render::Filter { policy, wasm, bootstrap, out } => {
            let actor = audit::Actor::cli();
            let applied = apply_filter(&read_policy(&policy)?, &wasm, &bootstrap, out.as_deref(), &actor)?;
            for m in &applied.moves {
                println!("guard: {m}");
            }
            println!("filter config {} -> {}", applied.version, applied.out.display());
            Ok(())
        }
        Render::Prometheus(a) => render_prometheus(a),
        Render::K8s(a) => render_k8s(a),
        Render::Certs { out_dir } => {
            let wrote = switchyard_tls::generate::ensure(&out_dir)?;
            let what = if wrote { "wrote a new set" } else { "kept the current set" };
            println!(
                "certs: {what} in {} (valid {} days; renewed within {} of expiry)",
                out_dir.display(),
                switchyard_tls::generate::VALID_DAYS,
                switchyard_tls::generate::RENEW_BEFORE_DAYS
            );
            let wrote = switchyard_tls::jwt::ensure(&out_dir)?;
            println!(
                "tokens: {} the signing key {} and {} (switchyard-policy token signs with it)",
                if wrote { "wrote" } else { "kept" },
                switchyard_tls::jwt::SIGNING_KEY,
                switchyard_tls::jwt::JWKS
            );
            Ok(())
        }
        Render::Alertmanager { out, webhook, group_wait, group_interval, watchdog_interval } => {
            let options = AlertmanagerOptions { webhook, group_wait, group_interval, watchdog_interval };
            let text = prometheus::alertmanager_config(&options)?;
            write_atomic(&out, &text)?;
            println!("alertmanager config -> {}", out.display());
            Ok(())
        }
    }
}

/// `CLUSTER=HOST:PORT` flags as a map; each bad one is a problem.
fn cluster_addresses(flag: &str, specs: &[String], problems: &mut Vec<String>) -> BTreeMap<String, HostPort> {
    let mut out = BTreeMap::new();
    for spec in specs {
        match spec.split_once('=').map(|(c, hp)| (c, hp.parse::<HostPort>())) {
            Some((c, Ok(hp))) if !c.is_empty() => {
                out.insert(c.to_owned(), hp);
            }
            Some((_, Err(e))) => problems.push(format!("{flag} {spec}: {e}")),
            _ => problems.push(format!("{flag} '{spec}' is not CLUSTER=HOST:PORT")),
        }
    }
    out
}

/// Envoy's client side of mutual TLS from a `render certs` directory (absolute paths: Envoy
/// may run elsewhere than here).
fn upstream_tls(dir: &Path) -> anyhow::Result<envoy::UpstreamTls> {
    use switchyard_tls::generate::{BACKEND, CA, COLLECTOR, ENVOY};
    if !dir.join(CA).is_file() {
        anyhow::bail!(
            "{}: no {CA} (switchyard-policy render certs --out-dir {} writes the set)",
            dir.display(),
            dir.display()
        );
    }
    let (cert, key) = ENVOY.files(dir);
    Ok(envoy::UpstreamTls {
        ca: absolute(&dir.join(CA))?,
        cert: absolute(&cert)?,
        key: absolute(&key)?,
        backend_name: BACKEND.name.to_owned(),
        collector_name: COLLECTOR.name.to_owned(),
    })
}

fn render_envoy(a: EnvoyArgs) -> anyhow::Result<()> {
    let policy = read_policy(&a.policy)?;
    let mut problems = Vec::new();
    let upstreams = cluster_addresses("--upstream", &a.upstream, &mut problems);
    let grpc_upstreams = cluster_addresses("--grpc-upstream", &a.grpc_upstream, &mut problems);
    let wasm = match (&a.wasm, a.no_filter) {
        (Some(w), false) => wasm_file(w)?,
        _ => String::new(),
    };
    let ecds = a.out_dir.join("filter.yaml");
    let options = BootstrapOptions {
        listen: a.listen,
        admin: a.admin,
        ecds_path: absolute(&ecds)?,
        ecds_watched_directory: None,
        upstreams,
        grpc_upstreams,
        grpc_max_message_bytes: a.grpc_max_message_bytes,
        collector: a.collector,
        default_cluster: a.default_cluster,
        no_filter: a.no_filter,
        faults: a.fault,
        upstream_tls: a.upstream_tls.as_deref().map(upstream_tls).transpose()?,
        jwks: a.jwks.as_deref().map(absolute).transpose()?,
    };
    let bootstrap = envoy::bootstrap(policy.config(), &options);
    match bootstrap {
        Ok(_) if !problems.is_empty() => Err(anyhow!(problems.join("; "))),
        Err(e) => {
            problems.extend(e.0);
            Err(anyhow!(problems.join("; ")))
        }
        Ok(doc) => {
            let path = a.out_dir.join("envoy.yaml");
            if !a.no_filter {
                let ecds_doc = envoy::filter_config(&policy, &wasm);
                write_atomic(&ecds, json_text(&ecds_doc))?;
                // The policy a new Envoy starts with is the trail's first change (or the next).
                let version = ecds_doc.get("version_info").and_then(serde_json::Value::as_str).unwrap_or_default();
                let trail = a.out_dir.join(audit::AUDIT_FILE);
                audit::append(&trail, &audit::Actor::cli(), None, &policy, version, switchyard_runtime::now_ms())?;
            }
            write_atomic(&path, json_text(&doc))?;
            start_epochs(&path, policy.config())?;
            println!(
                "envoy bootstrap -> {}{}",
                path.display(),
                if a.no_filter { "" } else { " (filter config: filter.yaml)" }
            );
            Ok(())
        }
    }
}

fn render_prometheus(a: PrometheusArgs) -> anyhow::Result<()> {
    let policy = read_policy(&a.policy)?;
    let prices = Prices::parse(&read(&a.prices)?).map_err(|e| anyhow!("{}: {e}", a.prices.display()))?;
    let config_rules = a.out_dir.join(prometheus::CONFIG_RULES);
    let mut rule_files = Vec::new();
    for f in RULE_FILES {
        let p = a.rules_dir.join(f);
        if !p.is_file() {
            return Err(anyhow!("rule file {} not found (--rules-dir)", p.display()));
        }
        if a.time_scale == 1 {
            rule_files.push(absolute(&p)?);
            continue;
        }
        // Ranges keep four scrapes (a rate needs two), `for:` one evaluation.
        let ms = |d: &str| switchyard_policy::duration::parse_ms(d).ok_or_else(|| anyhow!("'{d}' is not a duration"));
        let (scrape, eval) = (ms(&a.scrape_interval)?, ms(&a.evaluation_interval)?);
        let scaled = prometheus::scale_rule_durations(&read_text(&p)?, a.time_scale, 4 * scrape, eval);
        let out = a.out_dir.join(format!("drill-{f}"));
        write_atomic(&out, &scaled)?;
        rule_files.push(absolute(&out)?);
    }
    rule_files.push(absolute(&config_rules)?);
    let options = PrometheusOptions {
        rule_files,
        envoy: a.envoy,
        backends: a.backend,
        monitors: a.monitor,
        alertmanager: a.alertmanager,
        scrape_interval: a.scrape_interval,
        evaluation_interval: a.evaluation_interval,
    };
    let text = prometheus::prometheus_config(&options)?;
    write_atomic(&config_rules, prometheus::config_rules(policy.config(), &prices))?;
    let path = a.out_dir.join("prometheus.yml");
    write_atomic(&path, &text)?;
    println!("prometheus config -> {}", path.display());
    Ok(())
}

fn read_text(path: &Path) -> anyhow::Result<String> {
    String::from_utf8(read(path)?).map_err(|_| anyhow!("{}: not UTF-8", path.display()))
}

/// The files of `dir` whose names end in `ext`, sorted: (name without `ext`, text).
fn files_in(dir: &Path, ext: &str) -> anyhow::Result<Vec<(String, String)>> {
    let entries = std::fs::read_dir(dir).map_err(|e| anyhow!("cannot read {}: {e}", dir.display()))?;
    let mut names: Vec<String> =
        entries.filter_map(|e| e.ok()?.file_name().into_string().ok()).filter(|n| n.ends_with(ext)).collect();
    names.sort();
    names.into_iter().map(|n| Ok((n.trim_end_matches(ext).to_owned(), read_text(&dir.join(&n))?))).collect()
}

fn render_k8s(a: K8sArgs) -> anyhow::Result<()> {
    let policy = read_policy(&a.policy)?;
    let prices = Prices::parse(&read(&a.prices)?).map_err(|e| anyhow!("{}: {e}", a.prices.display()))?;
    let mut rule_files = Vec::new();
    for f in RULE_FILES {
        rule_files.push((f.to_owned(), read_text(&a.rules_dir.join(f))?));
    }
    let options = K8sOptions {
        namespace: a.namespace,
        image: a.image,
        filter_url: a.filter_url,
        prometheus_url: a.prometheus_url,
        rule_files,
        prices,
        dashboards: files_in(&a.dashboards_dir, ".json")?,
        monitor_config: read_text(&a.monitor_config)?,
        scaling: k8s::Scaling::parse(&read(&a.scaling)?).map_err(|e| anyhow!("{}: {e}", a.scaling.display()))?,
    };
    let files = k8s::render(&policy, &options)?;
    // Generated files that the render no longer makes (a version left the policy).
    let dirs: std::collections::BTreeSet<&str> =
        files.iter().filter_map(|f| f.path.rsplit_once('/').map(|(d, _)| d)).collect();
    let mut stale = Vec::new();
    for d in &dirs {
        for (name, _) in files_in(&a.out_dir.join(d), ".yaml").unwrap_or_default() {
            let path = format!("{d}/{name}.yaml");
            if !files.iter().any(|f| f.path == path) {
                stale.push(path);
            }
        }
    }
    if a.check {
        let mut differ: Vec<String> = files
            .iter()
            .filter(|f| std::fs::read_to_string(a.out_dir.join(&f.path)).ok().as_deref() != Some(f.text.as_str()))
            .map(|f| format!("{} differs from a fresh render", f.path))
            .collect();
        differ.extend(stale.iter().map(|p| format!("{p} is no longer rendered")));
        if !differ.is_empty() {
            return Err(anyhow!(
                "{} (re-render with `switchyard-policy render k8s`)",
                differ.iter().map(|d| format!("{}/{d}", a.out_dir.display())).collect::<Vec<_>>().join("; ")
            ));
        }
        println!("k8s: {} generated files up to date in {}", files.len(), a.out_dir.display());
        return Ok(());
    }
    for d in &dirs {
        let dir = a.out_dir.join(d);
        std::fs::create_dir_all(&dir).map_err(|e| anyhow!("cannot create {}: {e}", dir.display()))?;
    }
    for f in &files {
        write_atomic(&a.out_dir.join(&f.path), &f.text)?;
    }
    for p in &stale {
        let path = a.out_dir.join(p);
        std::fs::remove_file(&path).map_err(|e| anyhow!("cannot remove {}: {e}", path.display()))?;
    }
    println!("k8s: {} generated files in {} ({} stale removed)", files.len(), a.out_dir.display(), stale.len());
    Ok(())
}
