//! Child processes, for tests, benchmarks and drills alike: spawn, read the address line a
//! server prints when it binds port 0, wait until ready (failing at once, with its log, if it
//! exits), signal it, and stop it when dropped.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
pub use nix::sys::signal::Signal;
use nix::sys::signal::kill;
use nix::unistd::Pid;

/// Where a process's stderr goes (and its stdout, past the address line).
#[derive(Debug, Clone)]
pub enum Log {
    /// Kept in memory, for [`Process::log`].
    Memory,
    /// Appended to a file, for processes whose log is a product (and for Envoy's
    /// `--log-path`, which writes the file itself: pass [`Log::Discard`] then).
    File(PathBuf),
    /// This process's own stderr.
    Inherit,
    Discard,
}

/// What dropping a [`Process`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDrop {
    /// SIGKILL: a test's servers are state to throw away.
    Kill,
    /// SIGTERM, then SIGKILL after the grace period: servers that drain (the backend) and
    /// must leave their files complete.
    Terminate(Duration),
}

pub struct Process {
    name: String,
    child: Child,
    log: Log,
    memory: Arc<Mutex<String>>,
    /// The threads copying its output: done soon after it exits (unless a child of its own
    /// keeps the pipes open).
    drains: Vec<std::thread::JoinHandle<()>>,
    on_drop: OnDrop,
}

impl Process {
    /// Spawns `cmd` (stdin closed, output per `log`).
    pub fn spawn(name: &str, cmd: Command, log: Log) -> anyhow::Result<Process> {
        Process::start(name, cmd, log, false).map(|(p, _)| p)
    }

    /// Spawns a server that prints one line with its addresses on stdout once it listens,
    /// and returns that line (see [`address_after`]).
    pub fn spawn_reporting(name: &str, cmd: Command, log: Log) -> anyhow::Result<(Process, String)> {
        Process::start(name, cmd, log, true).map(|(p, line)| (p, line.unwrap_or_default()))
    }

    fn start(name: &str, mut cmd: Command, log: Log, reporting: bool) -> anyhow::Result<(Process, Option<String>)> {
        let memory = Arc::new(Mutex::new(String::new()));
        let sink = |log: &Log| -> anyhow::Result<Stdio> {
            Ok(match log {
                Log::Memory => Stdio::piped(),
                Log::File(p) => Stdio::from(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(p)
                        .with_context(|| format!("cannot open {}", p.display()))?,
                ),
                Log::Inherit => Stdio::inherit(),
                Log::Discard => Stdio::null(),
            })
        };
        cmd.stdin(Stdio::null()).stderr(sink(&log)?);
        cmd.stdout(if reporting { Stdio::piped() } else { sink(&log)? });
        let program = cmd.get_program().to_string_lossy().into_owned();
        let mut child = cmd.spawn().with_context(|| format!("cannot start {name} ({program})"))?;
        let mut drains = Vec::new();
        if let Some(stderr) = child.stderr.take() {
            drains.push(drain(stderr, Some(memory.clone())));
        }
        let mut first = String::new();
        let mut read_ok = true;
        if let Some(stdout) = child.stdout.take() {
            let mut out = BufReader::new(stdout);
            if reporting {
                read_ok = out.read_line(&mut first).is_ok_and(|n| n > 0);
            }
            // Keep reading what follows, so that the process never blocks on a full pipe.
            drains.push(drain(out, matches!(log, Log::Memory).then(|| memory.clone())));
        }
        let mut p = Process { name: name.to_owned(), child, log, memory, drains, on_drop: OnDrop::Kill };
        if !reporting {
            return Ok((p, None));
        }
        if !read_ok {
            let why = p.describe_exit();
            bail!("{name} printed no address line; {why}");
        }
        Ok((p, Some(first.trim().to_owned())))
    }

    pub fn on_drop(mut self, on_drop: OnDrop) -> Process {
        self.on_drop = on_drop;
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its output so far (memory or file logs).
    pub fn log(&self) -> String {
        match &self.log {
            Log::File(p) => std::fs::read_to_string(p).unwrap_or_default(),
            _ => self.memory.lock().map(|m| m.clone()).unwrap_or_default(),
        }
    }

    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// "still running" or how it ended, with the end of its log.
    fn describe_exit(&mut self) -> String {
        let status = match self.exited() {
            Some(s) => {
                // Its last words are what explains the exit: let them reach the log first.
                let start = Instant::now();
                while !self.drains.iter().all(std::thread::JoinHandle::is_finished)
                    && start.elapsed() < Duration::from_millis(500)
                {
                    std::thread::sleep(Duration::from_millis(5));
                }
                format!("it exited ({s})")
            }
            None => "it is still running".to_owned(),
        };
        let log = self.log();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        match &self.log {
            Log::File(p) => format!("{status}; the end of its log {}:\n{}", p.display(), tail.join("\n")),
            Log::Memory => format!("{status}; the end of its log:\n{}", tail.join("\n")),
            Log::Inherit | Log::Discard => status,
        }
    }

    /// Polls `ready` every 20 ms until it holds; fails at once if the process exits, and
    /// after `within`, either way with its log.
    pub fn wait_ready(&mut self, within: Duration, what: &str, mut ready: impl FnMut() -> bool) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            if ready() {
                return Ok(());
            }
            if self.exited().is_some() {
                let why = self.describe_exit();
                bail!("{} exited before {what}; {}", self.name, why);
            }
            if start.elapsed() > within {
                let why = self.describe_exit();
                bail!("{}: no {what} after {within:?}; {}", self.name, why);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, signal: Signal) -> anyhow::Result<()> {
        let pid = i32::try_from(self.child.id()).context("pid out of range")?;
        kill(Pid::from_raw(pid), signal).with_context(|| format!("cannot send {signal} to {}", self.name))
    }

    pub fn sigterm(&self) -> anyhow::Result<()> {
        self.signal(Signal::SIGTERM)
    }

    /// Waits for it to exit on its own.
    pub fn wait_exit(&mut self, within: Duration) -> anyhow::Result<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(s) = self.exited() {
                return Ok(s);
            }
            if start.elapsed() > within {
                let why = self.describe_exit();
                bail!("{} still running after {within:?}; {}", self.name, why);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A field of `/proc/PID/status` in MiB (`VmRSS:` now, `VmHWM:` at the peak).
    pub fn memory_mib(&self, field: &str) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let kb: f64 = status.lines().find(|l| l.starts_with(field))?.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb / 1024.0)
    }

    /// CPU time of all its threads so far, in µs: the scheduler's own accounting (ns, in
    /// `/proc/PID/task/*/schedstat`), finer than the 10 ms ticks of `/proc/PID/stat`.
    pub fn cpu_us(&self) -> u64 {
        let tasks = std::fs::read_dir(format!("/proc/{}/task", self.child.id())).into_iter().flatten().flatten();
        tasks
            .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
            .filter_map(|s| s.split_whitespace().next().and_then(|ns| ns.parse::<u64>().ok()))
            .sum::<u64>()
            / 1000
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let OnDrop::Terminate(grace) = self.on_drop
            && self.exited().is_none()
            && self.sigterm().is_ok()
            && self.wait_exit(grace).is_ok()
        {
            return;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads `from` to its end on a thread, into `into` when given.
fn drain(from: impl Read + Send + 'static, into: Option<Arc<Mutex<String>>>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            if let Some(m) = &into
                && let Ok(mut m) = m.lock()
            {
                m.push_str(&line);
                m.push('\n');
            }
        }
    })
}

/// The `host:port` of the first `http://` URL after the word `key` in an address line
/// (`inference http://127.0.0.1:8000 admin http://127.0.0.1:8002`), or of the first URL at all
/// when `key` is empty.
pub fn address_after(line: &str, key: &str) -> Option<String> {
    let words = line.split_whitespace();
    let mut after = words.skip_while(|w| !key.is_empty() && *w != key);
    after
        .find_map(|w| w.strip_prefix("http://").or_else(|| w.strip_prefix("https://")))
        .map(|a| a.trim_end_matches('/').to_owned())
}

/// `Command` for `program` with `args`, for callers that build one inline.
pub fn command(program: impl AsRef<Path>, args: &[&str]) -> Command {
    let mut c = Command::new(program.as_ref());
    c.args(args);
    c
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn address_lines() {
        let line = "switchyard-backend: inference http://127.0.0.1:8000 admin http://127.0.0.1:8002/";
        assert_eq!(address_after(line, "inference").as_deref(), Some("127.0.0.1:8000"));
        assert_eq!(address_after(line, "admin").as_deref(), Some("127.0.0.1:8002"));
        assert_eq!(address_after(line, "").as_deref(), Some("127.0.0.1:8000"));
        assert_eq!(address_after(line, "nope"), None);
    }

    #[test]
    fn a_process_that_dies_is_reported_with_its_log() {
        let mut p = Process::spawn("sh", command("sh", &["-c", "echo boom >&2; exit 3"]), Log::Memory).unwrap();
        let e = p.wait_ready(Duration::from_secs(5), "readiness", || false).unwrap_err().to_string();
        assert!(e.contains("exited") && e.contains("boom"), "{e}");
    }

    #[test]
    fn sigterm_reaches_the_process_and_a_reporting_server_gives_its_line() {
        let script =
            "trap 'echo got-term >&2; exit 0' TERM; echo 'up http://127.0.0.1:1'; while :; do sleep 0.05; done";
        let (mut p, line) = Process::spawn_reporting("sh", command("sh", &["-c", script]), Log::Memory).unwrap();
        assert_eq!(address_after(&line, "up").as_deref(), Some("127.0.0.1:1"));
        p.sigterm().unwrap();
        assert!(p.wait_exit(Duration::from_secs(5)).unwrap().success());
        std::thread::sleep(Duration::from_millis(50));
        assert!(p.log().contains("got-term"), "{}", p.log());
    }
}
