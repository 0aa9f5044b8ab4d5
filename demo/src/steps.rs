//! Step names as `scripts/lib.sh` prints them (`==> what`), the step a failure is blamed on,
//! and interruption: SIGINT or SIGTERM ends the demo at its next wait, through the same path
//! as a failure, so that everything it started is stopped.

use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

static STEP: Mutex<String> = Mutex::new(String::new());
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Names the work that follows; a failure inside it is reported with that name.
pub fn step(name: impl Into<String>) -> anyhow::Result<()> {
    check()?;
    let name = name.into();
    println!("==> {name}");
    *STEP.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = name;
    Ok(())
}

/// After the last step: later failures are not blamed on it.
pub fn steps_done() {
    STEP.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

/// Err once the demo has been told to stop.
pub fn check() -> anyhow::Result<()> {
    anyhow::ensure!(!interrupted(), "interrupted");
    Ok(())
}

/// Sleeps `d`, or less when interrupted (then Err).
pub fn sleep(d: Duration) -> anyhow::Result<()> {
    let end = Instant::now() + d;
    while let Some(left) = end.checked_duration_since(Instant::now()).filter(|l| !l.is_zero()) {
        check()?;
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
    check()
}

/// The first SIGINT or SIGTERM interrupts the demo (it stops what it started on its way
/// out); a second one exits at once.
pub fn watch_signals() {
    std::thread::spawn(|| {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        rt.block_on(switchyard_runtime::shutdown_signal());
        INTERRUPTED.store(true, Ordering::Relaxed);
        eprintln!("==> interrupted: stopping what the demo started (again to exit at once)");
        rt.block_on(switchyard_runtime::shutdown_signal());
        std::process::exit(130);
    });
}

/// The exit status of the demo's run, with the failed step named.
pub fn report(result: std::thread::Result<anyhow::Result<()>>) -> ExitCode {
    let step = STEP.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    let at = if step.is_empty() { String::new() } else { format!(" at step \"{step}\"") };
    let why = match result {
        Ok(Ok(())) => return ExitCode::SUCCESS,
        _ if interrupted() => {
            eprintln!("switchyard-demo: interrupted{at}; everything it started is stopped");
            return ExitCode::from(130);
        }
        Ok(Err(e)) => format!("{e:#}"),
        // The panic's message and place are printed just above by the panic hook.
        Err(_) => "a panic (its message is just above)".to_owned(),
    };
    eprintln!();
    eprintln!("switchyard-demo: FAILED{at}: {why}");
    eprintln!("switchyard-demo: what it started is stopped; the logs are in .demo/");
    ExitCode::FAILURE
}
