//! Stopping a run gracefully. A runner told to stop (SIGTERM: its pod deleted or evicted, its
//! controller gone) interrupts the engine as a person would with Ctrl-C: OpenTofu then stops
//! starting work, writes the state it has and releases its lock, and the run ends with the
//! engine's own "interrupted" failure as its result. What still runs after the grace period
//! is killed.
//!
//! The runner leads its own process group (a local run: the controller starts it so; a pod:
//! its container's first process), so the group is everything the run started: the engine,
//! its providers and their commands.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// Whether this runner was told to stop: a run that then fails was interrupted, whatever the
/// engine's own message says.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::Relaxed)
}

/// Within this after SIGTERM, the engine has written its state.
pub const GRACE: Duration = crate::contract::STOP_GRACE;

/// Watches for SIGTERM in the background and interrupts the run's process group when it
/// comes. Does nothing for a runner that does not lead its group (started by hand, or by a
/// test harness whose group it must not signal).
pub fn on_terminate() {
    // SAFETY: getpgrp and getpid only read the process's own ids.
    let leader = unsafe { libc::getpgrp() == libc::getpid() };
    if !leader {
        return;
    }
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        return;
    };
    // The interrupt below reaches the runner too: it must not end it.
    let Ok(mut int) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
    else {
        return;
    };
    tokio::spawn(async move {
        term.recv().await;
        REQUESTED.store(true, Ordering::Relaxed);
        eprintln!("runner: stop requested; interrupting the engine");
        // SAFETY: kill(0, …) signals the caller's own process group, which holds only this
        // run (see the module's comment).
        unsafe {
            libc::kill(0, libc::SIGINT);
        }
        tokio::spawn(async move { while int.recv().await.is_some() {} });
        tokio::time::sleep(GRACE).await;
        eprintln!("runner: the engine did not stop within {GRACE:?}; killing the run");
        // SAFETY: as above.
        unsafe {
            libc::kill(0, libc::SIGKILL);
        }
    });
}
