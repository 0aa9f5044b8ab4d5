//! How each process is started: its listeners (flag, environment variable, default address,
//! the port a cluster gives it) and the other flags that other components set.

use serde::Serialize;

/// A listening address a process takes as `--FLAG HOST:PORT` (or from `env`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Listener {
    /// The port's name in a pod spec (`containerPort`'s `name`), and what it carries.
    pub name: &'static str,
    pub flag: &'static str,
    pub env: &'static str,
    /// The default: loopback, so that nothing is exposed unless asked for.
    pub default: &'static str,
    /// The container port in Kubernetes (listening on `0.0.0.0`).
    pub port: u16,
}

impl Listener {
    /// The default address's port (what the local stack and the scripts use).
    pub fn default_port(&self) -> u16 {
        self.default.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).unwrap_or(self.port)
    }

    /// The flag's name without its leading dashes, as clap's `long` takes it.
    pub const fn long(&self) -> &'static str {
        let (_, long) = self.flag.as_bytes().split_at(2);
        match std::str::from_utf8(long) {
            Ok(s) => s,
            Err(_) => self.flag,
        }
    }
}

/// A process: its binary and listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Process {
    pub binary: &'static str,
    pub listeners: &'static [Listener],
}

/// `switchyard-backend serve`: Open Inference Protocol over REST and gRPC, metrics and health
/// on the admin listener.
pub mod backend {
    use super::{Listener, Process};

    pub const HTTP: Listener = Listener {
        name: "http",
        flag: "--http-addr",
        env: "SWITCHYARD_HTTP_ADDR",
        default: "127.0.0.1:8000",
        port: 8000,
    };
    pub const GRPC: Listener = Listener {
        name: "grpc",
        flag: "--grpc-addr",
        env: "SWITCHYARD_GRPC_ADDR",
        default: "127.0.0.1:8001",
        port: 8001,
    };
    pub const ADMIN: Listener = Listener {
        name: "admin",
        flag: "--admin-addr",
        env: "SWITCHYARD_ADMIN_ADDR",
        default: "127.0.0.1:8002",
        port: 8002,
    };
    pub const PROCESS: Process = Process { binary: "switchyard-backend", listeners: &[HTTP, GRPC, ADMIN] };

    /// The subcommand that serves.
    pub const SERVE: &str = "serve";
    /// The model repository's root (`<repo>/<model>/<version>/`).
    pub const MODEL_REPOSITORY_FLAG: &str = "--model-repository";
    /// `MODEL:VERSION,…`: the versions this process serves.
    pub const MODELS_FLAG: &str = "--models";
    /// After SIGTERM, how long queued and in-flight requests have to finish.
    pub const SHUTDOWN_GRACE_FLAG: &str = "--shutdown-grace-seconds";
    pub const SHUTDOWN_GRACE_ENV: &str = "SWITCHYARD_SHUTDOWN_GRACE_SECONDS";
    pub const SHUTDOWN_GRACE_SECONDS: u64 = 30;
}

/// Mutual TLS on a listener only Envoy may reach (the backend's inference listeners, the
/// collector): its certificate, its key, and the CA a client's certificate must chain to.
pub mod tls {
    pub const CERT_FLAG: &str = "--tls-cert";
    pub const CERT_ENV: &str = "SWITCHYARD_TLS_CERT";
    pub const KEY_FLAG: &str = "--tls-key";
    pub const KEY_ENV: &str = "SWITCHYARD_TLS_KEY";
    pub const CLIENT_CA_FLAG: &str = "--tls-client-ca";
    pub const CLIENT_CA_ENV: &str = "SWITCHYARD_TLS_CLIENT_CA";
}

/// `switchyard-collector`: payload samples and shadow comparisons in.
pub mod collector {
    use super::{Listener, Process};

    pub const HTTP: Listener = Listener {
        name: "http",
        flag: "--listen",
        env: "SWITCHYARD_COLLECTOR_ADDR",
        default: "127.0.0.1:9411",
        port: 9411,
    };
    /// `/metrics` and `/health` apart from the samples: bound only when given (required with
    /// mutual TLS on the samples listener, which then answers `POST /v1/samples` only).
    pub const ADMIN: Listener = Listener {
        name: "admin",
        flag: "--admin-addr",
        env: "SWITCHYARD_COLLECTOR_ADMIN_ADDR",
        default: "127.0.0.1:9413",
        port: 9413,
    };
    pub const PROCESS: Process = Process { binary: "switchyard-collector", listeners: &[HTTP, ADMIN] };
}

/// `switchyard-monitor watch`: the streaming drift monitor.
pub mod monitor {
    use super::{Listener, Process};

    pub const HTTP: Listener = Listener {
        name: "http",
        flag: "--listen",
        env: "SWITCHYARD_MONITOR_ADDR",
        default: "127.0.0.1:9412",
        port: 9412,
    };
    pub const PROCESS: Process = Process { binary: "switchyard-monitor", listeners: &[HTTP] };
}

/// The Envoy gateway: the model listener and the admin listener (stats, runtime). Envoy reads
/// them from its bootstrap, so the flags are those of `switchyard-policy render envoy`.
pub mod envoy {
    use super::{Listener, Process};

    pub const LISTENER: Listener =
        Listener { name: "http", flag: "--listen", env: "", default: "127.0.0.1:10000", port: 10000 };
    pub const ADMIN: Listener =
        Listener { name: "admin", flag: "--admin", env: "", default: "127.0.0.1:9901", port: 9901 };
    pub const PROCESS: Process = Process { binary: "envoy", listeners: &[LISTENER, ADMIN] };
}

/// `switchyard-pager`: the local stand-in for an on-call pager. Alertmanager posts to
/// `/<receiver>`; the Watchdog's receiver is its dead man's switch.
pub mod pager {
    use super::{Listener, Process};

    pub const HTTP: Listener = Listener {
        name: "http",
        flag: "--listen",
        env: "SWITCHYARD_PAGER_ADDR",
        default: "127.0.0.1:9095",
        port: 9095,
    };
    pub const PROCESS: Process = Process { binary: "switchyard-pager", listeners: &[HTTP] };

    /// Alertmanager's receivers, each a path on the pager: pages wake someone, tickets wait.
    pub const PAGE: &str = "page";
    pub const TICKET: &str = "ticket";
    /// Where Alertmanager sends the always-firing Watchdog, as a heartbeat.
    pub const WATCHDOG: &str = "watchdog";
    /// The alerting rule that always fires: its absence at the pager is the alarm.
    pub const WATCHDOG_ALERT: &str = "Watchdog";
    /// The page the pager raises itself when the Watchdog stops arriving.
    pub const ALERTING_DOWN: &str = "SwitchyardAlertingDown";
}

/// `switchyard-operator run`: the Kubernetes operator. Its admin listener serves `/metrics` and
/// the probes' path, on every replica (a follower is healthy too).
pub mod operator {
    use super::{Listener, Process};

    pub const ADMIN: Listener = Listener {
        name: "metrics",
        flag: "--admin-addr",
        env: "SWITCHYARD_OPERATOR_ADMIN",
        default: "127.0.0.1:9400",
        port: 9400,
    };
    /// Liveness and readiness: answers 200 while the process serves.
    pub const HEALTH_PATH: &str = "/healthz";
    pub const PROCESS: Process = Process { binary: "switchyard-operator", listeners: &[ADMIN] };
}

/// Every process, for the export.
pub const ALL: &[Process] =
    &[backend::PROCESS, collector::PROCESS, monitor::PROCESS, envoy::PROCESS, pager::PROCESS, operator::PROCESS];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_long_options_and_ports_are_distinct() {
        let mut ports = std::collections::BTreeSet::new();
        for p in ALL {
            for l in p.listeners {
                assert!(l.flag.starts_with("--") && l.long() == &l.flag[2..], "{l:?}");
                assert_eq!(l.default_port(), l.port, "{}: local and cluster ports agree", p.binary);
                assert!(ports.insert(l.port), "port {} used twice", l.port);
            }
        }
    }
}
