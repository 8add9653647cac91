//! The contract between the controller and the engine (`landform runner`): what a run is told
//! to do ([`spec`]), what it reports back ([`result`]), the names and labels of the Kubernetes
//! objects that carry both ([`names`]), the reasons a failed run may give ([`reasons`]), and
//! how a plan is identified ([`plan_id`]).
//!
//! Both processes depend on this module and on nothing of each other: the controller never
//! imports the engine, and the engine never imports the controller.

pub mod names;
pub mod plan_id;
pub mod reasons;
pub mod result;
pub mod spec;

pub use crate::api::Operation;

/// Within this after SIGTERM, a runner has interrupted its engine and the engine has written
/// its state and released its lock; what still runs then is killed. Runner pods get a
/// termination grace period longer than this.
pub const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(25);
pub use result::{DriftReport, RunResult};
pub use spec::{ArtifactRef, Backend, ModuleRun, Owner, RunSpec, StackRun, Work};
