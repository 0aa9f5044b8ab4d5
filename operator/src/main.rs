//! `switchyard-operator`: the Kubernetes operator. `run` holds the Lease and reconciles
//! ModelRollouts and TrafficPolicies in its namespace; `crds` prints the CustomResourceDefinitions
//! and `role` the Role, both generated from the code (checked in under k8s/).

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use futures::StreamExt;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{self, Store, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use switchyard_contract::process::operator::ADMIN;
use switchyard_operator::MANAGER;
use switchyard_operator::console::Console;
use switchyard_operator::crd::{ModelRollout, TrafficPolicy};
use switchyard_operator::lead::{LeaseArgs, acquire};
use switchyard_operator::metrics::{Metrics, serve};
use switchyard_operator::rbac::{CarrierRef, role_yaml};
use switchyard_operator::reconcile::{Context, FromMetrics, error_policy, reconcile_policy, reconcile_rollout};
use switchyard_rollout::store::Target;

#[derive(Parser)]
#[command(name = "switchyard-operator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Reconciles ModelRollouts and TrafficPolicies in NAMESPACE while holding the Lease.
    Run(Box<RunArgs>),
    /// Prints the CustomResourceDefinitions (YAML), generated from the Rust types; with
    /// `--out DIR` writes one file each, with `--check DIR` fails naming each file that differs.
    Crds {
        #[arg(long, conflicts_with = "check")]
        out: Option<std::path::PathBuf>,
        #[arg(long)]
        check: Option<std::path::PathBuf>,
    },
    /// Prints the operator's Role for a gateway's carrier (YAML).
    Role {
        #[arg(long, default_value = "switchyard-operator")]
        name: String,
        /// The Envoy gateway's ECDS ConfigMap.
        #[arg(long, group = "carrier")]
        config_map: Option<String>,
        /// Istio's WasmPlugin.
        #[arg(long, group = "carrier")]
        wasm_plugin: Option<String>,
        /// Envoy Gateway's EnvoyExtensionPolicy.
        #[arg(long, group = "carrier")]
        envoy_extension_policy: Option<String>,
        #[arg(long, default_value = "switchyard-operator")]
        lease: String,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    #[arg(long, env = "POD_NAMESPACE")]
    namespace: String,
    /// This replica, in the Lease (the pod's name).
    #[arg(long, env = "POD_NAME")]
    identity: String,
    #[arg(long, default_value = "switchyard-operator")]
    lease: String,
    /// Seconds a leader that stopped renewing keeps the Lease.
    #[arg(long, default_value_t = 15)]
    lease_seconds: u64,
    /// Prometheus, HOST:PORT: the filter's metrics of every gateway pod.
    #[arg(long, env = "SWITCHYARD_PROMETHEUS")]
    prometheus: String,
    /// The path read there: `/federate` with a URL-encoded `match[]` for the gateway's job.
    #[arg(long, env = "SWITCHYARD_METRICS_PATH")]
    metrics_path: String,
    /// The collector, HOST:PORT, for steps that judge shadow comparisons.
    #[arg(long, env = "SWITCHYARD_COLLECTOR")]
    collector: Option<String>,
    /// How often a running rollout is judged.
    #[arg(long, default_value = "5s")]
    interval: String,
    /// `/metrics`, the probes' `/healthz` and the read-only console (`/`), on every replica.
    #[arg(long = ADMIN.long(), env = ADMIN.env, default_value = ADMIN.default)]
    admin_addr: std::net::SocketAddr,
    /// The console's built files (scripts/build-console.sh; /usr/lib/switchyard/console in the image).
    #[arg(long, env = "SWITCHYARD_CONSOLE_DIR", default_value = "target/console")]
    console_dir: std::path::PathBuf,
    /// The drift monitor, HOST:PORT: the console's drift per column.
    #[arg(long, env = "SWITCHYARD_MONITOR")]
    monitor: Option<String>,
}

fn failed(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("switchyard-operator: {e}");
    ExitCode::FAILURE
}

/// A reconcile's outcome as `switchyard_operator_reconciles_total` labels it.
fn outcome<T, E: std::fmt::Display>(
    r: &Result<T, kube::runtime::controller::Error<switchyard_operator::Error, E>>,
) -> &'static str {
    use kube::runtime::controller::Error as Failed;
    match r {
        Ok(_) => "ok",
        Err(Failed::ReconcilerFailed(e, _)) => e.kind(),
        Err(e) => {
            tracing::debug!(error = %e, "controller");
            "controller"
        }
    }
}

fn crds(out: Option<&Path>, check: Option<&Path>) -> Result<(), Box<dyn std::error::Error>> {
    let files = switchyard_operator::crd::files()?;
    if let Some(dir) = check {
        let stale: Vec<String> = files
            .iter()
            .filter(|(name, text)| std::fs::read_to_string(dir.join(name)).ok().as_deref() != Some(text.as_str()))
            .map(|(name, _)| dir.join(name).display().to_string())
            .collect();
        if !stale.is_empty() {
            return Err(format!(
                "{} differ from the types in operator/src/crd.rs: run `switchyard-operator crds --out {}`",
                stale.join(", "),
                dir.display()
            )
            .into());
        }
        println!("{} CRDs in {} are current", files.len(), dir.display());
        return Ok(());
    }
    for (name, text) in files {
        match out {
            Some(dir) => {
                switchyard_runtime::write_atomic(&dir.join(&name), &text)?;
                println!("wrote {}", dir.join(name).display());
            }
            None => print!("---\n{text}"),
        }
    }
    Ok(())
}

async fn run(args: RunArgs) -> Result<(), Box<dyn std::error::Error>> {
    let interval = switchyard_rollout::spec::duration(&args.interval)?;
    let metrics = Metrics::new();
    let client = Client::try_default().await.map_err(|e| {
        format!("no Kubernetes API to reach (in a pod: its service account; elsewhere: KUBECONFIG): {e}")
    })?;
    let rollouts: Api<ModelRollout> = Api::namespaced(client.clone(), &args.namespace);
    let policies: Api<TrafficPolicy> = Api::namespaced(client.clone(), &args.namespace);
    // The console's own watches, on every replica: a follower answers as the leader does.
    let console = Console {
        namespace: args.namespace.clone(),
        dir: args.console_dir,
        rollouts: watched(rollouts.clone()),
        policies: watched(policies.clone()),
        prometheus: args.prometheus.clone(),
        metrics_path: args.metrics_path.clone(),
        collector: args.collector.clone(),
        monitor: args.monitor,
    };
    serve(args.admin_addr, metrics.clone(), switchyard_operator::console::routes(console)).await?;
    let lease = LeaseArgs {
        name: args.lease.clone(),
        namespace: args.namespace.clone(),
        identity: args.identity.clone(),
        duration: Duration::from_secs(args.lease_seconds),
        // Renewed halfway: a renewal late by less than half the lease (a busy node) keeps it.
        grace: Duration::from_secs((args.lease_seconds / 2).max(1)),
    };
    tracing::info!(lease = %lease.name, identity = %lease.identity, "waiting for the lease");
    let mut leadership = acquire(client.clone(), &lease).await?;
    tracing::info!(identity = %lease.identity, "leading");
    metrics.leading(true);
    let rollout_controller = Controller::new(rollouts.clone(), watcher::Config::default())
        .with_config(ControllerConfig::default().concurrency(4));
    let store = rollout_controller.store();
    let target = Target {
        policy: None,
        bootstrap: None,
        wasm: Default::default(),
        envoy_admin: args.prometheus,
        metrics_path: args.metrics_path,
        collector: args.collector,
    };
    let reporter = Reporter { controller: MANAGER.into(), instance: Some(args.identity) };
    let ctx = Arc::new(Context {
        client: client.clone(),
        observer: Arc::new(FromMetrics(target)),
        rollouts: store.clone(),
        reporter,
        interval,
        clock: Arc::new(switchyard_runtime::now_ms),
        carriers: Default::default(),
    });
    // A rollout is looked at again when the policy it names changes.
    let by_policy = store.clone();
    let counted = store.clone();
    let (m1, m2) = (metrics.clone(), metrics.clone());
    let rollout_loop = rollout_controller
        .watches(policies.clone(), watcher::Config::default(), move |tp: TrafficPolicy| {
            by_policy
                .state()
                .into_iter()
                .filter(|r| r.namespace() == tp.namespace() && r.spec.traffic_policy == tp.name_any())
                .map(|r| kube::runtime::reflector::ObjectRef::from_obj(&*r))
                .collect::<Vec<_>>()
        })
        .shutdown_on_signal()
        .run(reconcile_rollout, error_policy, ctx.clone())
        .for_each(move |r| {
            m1.reconciled("modelrollout", outcome(&r));
            m1.rollouts(
                counted
                    .state()
                    .iter()
                    .map(|r| r.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Pending"))
                    .collect::<Vec<_>>(),
            );
            async {}
        });
    let policy_loop = Controller::new(policies, watcher::Config::default())
        .shutdown_on_signal()
        .run(reconcile_policy, error_policy, ctx)
        .for_each(move |r| {
            m2.reconciled("trafficpolicy", outcome(&r));
            async {}
        });
    tokio::select! {
        _ = futures::future::join(rollout_loop, policy_loop) => Ok(()),
        () = leadership.lost() => Err("lost the lease: exiting so that only the new leader acts".into()),
    }
}

/// A store kept current by a watch of `api`, in the background (retried with backoff).
fn watched<K>(api: Api<K>) -> Store<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    let (store, writer) = reflector::store();
    let stream = reflector(writer, watcher(api, watcher::Config::default())).default_backoff().touched_objects();
    tokio::spawn(stream.for_each(|_| async {}));
    store
}

#[tokio::main]
async fn main() -> ExitCode {
    switchyard_runtime::init_tracing();
    let cli = Cli::parse();
    let result: Result<(), Box<dyn std::error::Error>> = match cli.command {
        Command::Run(args) => run(*args).await,
        Command::Crds { out, check } => crds(out.as_deref(), check.as_deref()),
        Command::Role { name, config_map, wasm_plugin, envoy_extension_policy, lease } => {
            let carrier = match (config_map, wasm_plugin, envoy_extension_policy) {
                (Some(c), _, _) => CarrierRef::ConfigMap(c),
                (_, Some(w), _) => CarrierRef::WasmPlugin(w),
                (_, _, Some(e)) => CarrierRef::EnvoyExtensionPolicy(e),
                (None, None, None) => {
                    return failed("role needs --config-map, --wasm-plugin or --envoy-extension-policy");
                }
            };
            role_yaml(&name, &carrier, &lease).map(|y| print!("{y}")).map_err(Into::into)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => failed(e),
    }
}
