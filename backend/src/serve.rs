//! `serve`: every model of a repository behind three listeners — REST ([`crate::server`]),
//! gRPC ([`crate::grpc`]) and admin — over one service core ([`crate::service`]), stopped
//! together by one drain.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use switchyard_tls::{ServerTls, TlsFiles};

use crate::admission::{self, Limits};
use crate::config::{DeviceSpec, Repository};
use crate::metrics::Metrics;
use crate::models::Models;
use crate::service::{self, AppState};
use crate::{gpu, grpc, server, torch};

/// What `serve` runs, validated.
pub struct ServeOptions {
    pub repo: Repository,
    pub limits: Limits,
    pub http_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    /// After SIGTERM, how long queued and in-flight requests have to finish.
    pub shutdown_grace: Duration,
    /// Every served version runs on this device, whatever its config says.
    pub device: Option<DeviceSpec>,
    /// Mutual TLS on both inference listeners (the admin listener stays plain: no inference).
    pub tls: Option<TlsFiles>,
}

/// Binds the listeners, loads the models and serves until a shutdown signal and its drain.
/// An error when a listener cannot be bound or the drain ran out of time.
pub fn run(opts: ServeOptions) -> anyhow::Result<()> {
    let ServeOptions { mut repo, limits, http_addr, grpc_addr, admin_addr, shutdown_grace, device, tls } = opts;
    // Read before anything is bound: a missing or mismatched file is a start-up error.
    let tls = tls
        .map(|f| -> anyhow::Result<_> {
            let load = |alpn: &[&[u8]]| ServerTls::load(&f, alpn).context("the inference listeners' TLS");
            Ok(Tls { http: load(&[b"http/1.1"])?, grpc: load(&[b"h2"])? })
        })
        .transpose()?;
    if let Some(device) = device {
        repo.models.values_mut().flatten().for_each(|c| c.device = device);
    }
    let factor = admission::memory_factor(repo.versions());
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let http = tokio::net::TcpListener::bind(http_addr)
            .await
            .with_context(|| format!("cannot bind the inference listener {http_addr}"))?;
        let grpc = tokio::net::TcpListener::bind(grpc_addr)
            .await
            .with_context(|| format!("cannot bind the gRPC listener {grpc_addr}"))?;
        let admin = tokio::net::TcpListener::bind(admin_addr)
            .await
            .with_context(|| format!("cannot bind the admin listener {admin_addr}"))?;
        let metrics = Arc::new(Metrics::new());
        tracing::info!(cuda_available = torch::cuda_available(), "loading models");
        let models = Models::start(repo, &metrics, &torch::TorchEngine::factory());
        // What admission bounds (README, "Admission and memory"): request data on top of the RSS at readiness.
        tracing::info!(
            pid = std::process::id(),
            max_body_bytes = limits.max_body_bytes,
            max_inflight_bytes = limits.max_inflight_bytes,
            max_inflight_requests = limits.max_inflight_requests,
            request_memory_bound_bytes = admission::request_memory_bound(&limits, factor),
            "admission limits"
        );
        let st = AppState::new(models.clone(), metrics.clone(), limits);
        // Tests and scripts read this line to find the ports (either may be 0 = any).
        let scheme = if tls.is_some() { "https" } else { "http" };
        println!(
            "switchyard-backend listening: inference {scheme}://{} grpc {scheme}://{} admin http://{}",
            http.local_addr()?,
            grpc.local_addr()?,
            admin.local_addr()?
        );
        tokio::spawn(gpu::poll(models, metrics, Duration::from_secs(5)));
        let listeners = Listeners { http, grpc, admin, tls };
        let drained = listen(st, listeners, shutdown_grace).await?;
        anyhow::ensure!(drained, "shutdown grace period of {}s ran out", shutdown_grace.as_secs());
        tracing::info!("stopped cleanly");
        Ok(())
    })
}

/// The listeners the server answers on.
pub struct Listeners {
    pub http: tokio::net::TcpListener,
    pub grpc: tokio::net::TcpListener,
    pub admin: tokio::net::TcpListener,
    /// Mutual TLS on the inference listeners.
    pub tls: Option<Tls>,
}

/// The inference listeners' TLS: REST offers HTTP/1.1, gRPC HTTP/2.
pub struct Tls {
    pub http: ServerTls,
    pub grpc: ServerTls,
}

/// Serves until SIGTERM or Ctrl-C, then drains within `grace`: stop accepting on both
/// protocols, finish every accepted request (queued ones included), stop the engines.
/// Returns false when the grace period ran out first.
pub async fn listen(st: Arc<AppState>, listeners: Listeners, grace: Duration) -> std::io::Result<bool> {
    let Listeners { http, grpc, admin, tls } = listeners;
    // Metrics stay scrapable while draining; the admin listener goes last.
    let admin_task = tokio::spawn(server::serve_admin(st.clone(), admin));
    let signal = switchyard_runtime::shutdown_signal();
    let stopped = service::serve_and_drain(st.clone(), signal, grace, |draining| async move {
        let (rest_tls, grpc_tls) = tls.map(|t| (t.http, t.grpc)).unzip();
        let rest = server::serve(st.clone(), http, rest_tls, draining.clone().started());
        let grpc = grpc::serve(st, grpc, grpc_tls, draining.started());
        let (rest, grpc) = tokio::join!(rest, grpc);
        rest?;
        grpc
    })
    .await?;
    admin_task.abort();
    Ok(stopped)
}
