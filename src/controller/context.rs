//! What every reconciliation shares.

use std::sync::Arc;

use kube::Client;

use super::events::Recorder;
use super::metrics::Metrics;

/// Controller-wide settings taken from the command line.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    pub allow_cross_namespace_refs: bool,
    /// How soon an object waiting for a run slot looks again if no wake-up came: when a woken
    /// object never came for its slot (suspended meanwhile), the next in line learn of it so.
    pub slot_recheck: std::time::Duration,
    /// The Flux source kinds watched: a change to one wakes the objects that use it.
    pub watched_sources: Vec<crate::api::SourceKind>,
}

pub struct Context {
    pub client: Client,
    /// For HEAD requests to Flux artifact URLs (never downloads).
    pub http: reqwest::Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub runs: super::runs::Runs,
    pub settings: Settings,
    /// Whether this instance may act now (see [`super::leader::Leadership`]).
    pub leadership: Arc<super::leader::Leadership>,
    /// Which objects use each Flux source and depend on each object.
    pub refs: super::refs::Refs,
    /// Registry clients, kept per set of credentials.
    pub registries: crate::source::oci::Registries,
}
