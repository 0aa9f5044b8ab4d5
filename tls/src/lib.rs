//! Mutual TLS for the listeners only Envoy may reach: the backend's inference ports (REST and
//! gRPC) and the collector. A client must present a certificate signed by the given CA, so a
//! pod or process that is not the gateway cannot walk around the filter or write samples.
//!
//! [`ServerTls::load`] reads the PEM files the set-up writes ([`generate`], behind the
//! `generate` feature); [`TlsListener`] accepts on a bound socket, completes each handshake off
//! the accept loop (bounded, with a deadline, so a stalled or hostile client holds nothing
//! for long) and hands finished connections to `axum::serve` (it is an `axum::serve::Listener`)
//! or, through [`TlsListener::incoming`], to tonic.

#[cfg(feature = "generate")]
pub mod generate;
#[cfg(feature = "generate")]
pub mod jwt;

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use switchyard_contract::process::tls;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long a client may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; more connections wait in the kernel's backlog.
const MAX_HANDSHAKES: usize = 256;
/// Finished connections not yet taken by the server.
const READY: usize = 64;

/// The flags a server takes them by (`--tls-cert`, `--tls-key`, `--tls-client-ca`): all three
/// or none.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct TlsArgs {
    /// Mutual TLS on the listener(s) only Envoy may reach: this certificate (PEM chain)...
    #[arg(long = &tls::CERT_FLAG[2..], env = tls::CERT_ENV, requires_all = ["tls_key", "tls_client_ca"])]
    pub tls_cert: Option<PathBuf>,
    /// ...its key (PEM)...
    #[arg(long = &tls::KEY_FLAG[2..], env = tls::KEY_ENV, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// ...and the CA every client's certificate must chain to: a client without one is refused
    /// in the handshake.
    #[arg(long = &tls::CLIENT_CA_FLAG[2..], env = tls::CLIENT_CA_ENV, requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
}

impl TlsArgs {
    /// The files, when TLS was asked for.
    pub fn files(&self) -> Option<TlsFiles> {
        Some(TlsFiles {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
            client_ca: self.tls_client_ca.clone()?,
        })
    }
}

/// The three files a listener needs: its certificate chain, its key, and the CA its clients'
/// certificates must chain to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {why}")]
    Pem { path: PathBuf, why: String },
    #[error("{0}: no certificate in it")]
    NoCertificate(PathBuf),
    #[error("the client CA {path}: {source}")]
    Ca { path: PathBuf, source: rustls::Error },
    #[error("the client CA {path}: {why}")]
    Verifier { path: PathBuf, why: String },
    #[error("the certificate {cert} and key {key} do not make a TLS identity: {source}")]
    Identity { cert: PathBuf, key: PathBuf, source: rustls::Error },
}

fn pem(path: &Path, e: impl std::fmt::Display) -> TlsError {
    TlsError::Pem { path: path.to_owned(), why: e.to_string() }
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem(path, e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.to_owned()));
    }
    Ok(certs)
}

/// A server configuration that requires client certificates.
#[derive(Clone, Debug)]
pub struct ServerTls(Arc<rustls::ServerConfig>);

impl ServerTls {
    /// From `files`, offering `alpn` (`http/1.1` for REST, `h2` for gRPC).
    pub fn load(files: &TlsFiles, alpn: &[&[u8]]) -> Result<ServerTls, TlsError> {
        // ring, as kube's client already builds rustls: one crypto library in the tree (rustls
        // deprecates it for lacking post-quantum key exchange; aws-lc-rs has it, at the cost
        // of a C build). These hops are loopback or inside the cluster.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        for ca in certificates(&files.client_ca)? {
            roots.add(ca).map_err(|source| TlsError::Ca { path: files.client_ca.clone(), source })?;
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| TlsError::Verifier { path: files.client_ca.clone(), why: e.to_string() })?;
        let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| pem(&files.key, e))?;
        let identity = |source| TlsError::Identity { cert: files.cert.clone(), key: files.key.clone(), source };
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(identity)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certificates(&files.cert)?, key)
            .map_err(identity)?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(ServerTls(Arc::new(config)))
    }
}

/// Called once per refused handshake (no certificate, another CA's, not TLS at all, too slow):
/// the service counts it, so that a caller walking around Envoy shows on a dashboard and an
/// alert, not only in the log.
pub type OnRefused = Arc<dyn Fn() + Send + Sync>;

/// A TCP listener whose connections have completed a mutual TLS handshake.
pub struct TlsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

impl TlsListener {
    /// Accepts on `listener` in the background; `name` is the listener's, for the log;
    /// `refused` is called for every handshake refused.
    pub fn new(
        listener: TcpListener,
        tls: &ServerTls,
        name: &'static str,
        refused: OnRefused,
    ) -> io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(READY);
        let acceptor = TlsAcceptor::from(tls.0.clone());
        let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
        tokio::spawn(async move {
            loop {
                let Ok(permit) = slots.clone().acquire_owned().await else { return };
                // The server dropped the listener (it drains): stop accepting, so the port closes.
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    () = tx.closed() => return,
                };
                let (tcp, peer) = match accepted {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of file descriptors and the like: wait rather than spin.
                        tracing::warn!(listener = name, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let (acceptor, tx, refused) = (acceptor.clone(), tx.clone(), refused.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            // The server has gone: the connection is dropped with it.
                            let _ = tx.send((stream, peer)).await;
                        }
                        // The client was told (a TLS alert); nothing reached the service.
                        Ok(Err(e)) => {
                            refused();
                            tracing::info!(listener = name, %peer, error = %e, "TLS handshake refused");
                        }
                        Err(_) => {
                            refused();
                            tracing::info!(listener = name, %peer, "TLS handshake not finished in time");
                        }
                    }
                });
            }
        });
        Ok(TlsListener { local, ready })
    }

    /// The connections as a stream, for tonic's `serve_with_incoming`.
    pub fn incoming(self) -> impl futures::Stream<Item = io::Result<TlsStream<TcpStream>>> + Send + 'static {
        futures::stream::unfold(self.ready, |mut rx| async move { rx.recv().await.map(|(s, _)| (Ok(s), rx)) })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accept task ended (it cannot, while the listener lives): nothing more comes.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}
