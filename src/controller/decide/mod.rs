//! What the controller decides, free of I/O: no API client, no clock of its own (the time is an
//! argument), nothing awaited. Each module answers one question and is tested in memory:
//!
//! - [`validate`]: is the spec usable (what the schema cannot check), and its timing;
//! - [`due`]: what is due now: the gates (stalled, backing off, a fresh request), the next
//!   run (plan, apply under the approval policy, drift check) or a wait;
//! - [`dependencies`]: is a dependency met;
//! - [`collect`]: what a finished (or lost) run means for status and events;
//! - [`drift`]: a drift report taken into status;
//! - [`retention`]: which of a run's leftovers are kept;
//! - [`outcome`] and [`backoff`]: from how a reconciliation ended to the next status, event and
//!   requeue, with the per-object exponential backoff.
//!
//! The controller's other modules do the I/O these decisions ask for.

pub mod backoff;
pub mod collect;
pub mod dependencies;
pub mod drift;
pub mod due;
pub mod outcome;
pub mod retention;
pub mod validate;

#[cfg(test)]
mod purity {
    /// The decision modules stay free of I/O: a reader (and the compiler) can trust that
    /// nothing here talks to the API server or waits.
    #[test]
    fn decision_code_does_no_io() {
        let sources = [
            ("backoff.rs", include_str!("backoff.rs")),
            ("collect.rs", include_str!("collect.rs")),
            ("dependencies.rs", include_str!("dependencies.rs")),
            ("drift.rs", include_str!("drift.rs")),
            ("due.rs", include_str!("due.rs")),
            ("outcome.rs", include_str!("outcome.rs")),
            ("retention.rs", include_str!("retention.rs")),
            ("validate.rs", include_str!("validate.rs")),
        ];
        for (file, text) in sources {
            for banned in [
                "kube::Api",
                "kube::Client",
                "kube::api::",
                "Api<",
                "Client",
                ".await",
                "async fn",
                "Timestamp::now",
                "Context",
            ] {
                assert!(!text.contains(banned), "{file} uses {banned}");
            }
        }
    }
}
