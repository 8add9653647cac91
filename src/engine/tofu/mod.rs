//! The OpenTofu / Terraform engine: `init` with the backend, then a plan kept in Secrets, an
//! apply of exactly the saved plan, a destroy, or a refresh-only drift check.
//!
//! - [`run`]: one run of a module, from the run spec to its result;
//! - [`cli`]: the OpenTofu (or Terraform) command line, as a child process;
//! - [`plan`]: what a JSON plan says (summary, drift report, outputs), pure;
//! - [`saved`]: saved plans, compressed and chunked into Secrets.
//!
//! This file holds what they share: the engine's error type.

pub mod cli;
pub mod plan;
pub mod run;
pub mod saved;

use crate::contract::reasons::TofuReason;

/// Why an engine command failed. `reason()` is the condition reason.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot run {bin}: {source}")]
    Spawn {
        bin: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{stage} failed: {diagnostics}")]
    Failed {
        stage: &'static str,
        diagnostics: String,
    },
    #[error("the state is locked by another run (lock ID {lock_id}): {diagnostics}")]
    Locked {
        lock_id: String,
        diagnostics: String,
    },
    #[error("{stage} printed output that is not the JSON expected: {detail}")]
    BadOutput { stage: &'static str, detail: String },
}

impl EngineError {
    pub fn reason(&self) -> TofuReason {
        match self {
            Self::Spawn { .. } => TofuReason::EngineUnavailable,
            Self::Locked { .. } => TofuReason::StateLocked,
            Self::BadOutput { .. } => TofuReason::EngineFailed,
            Self::Failed { stage, .. } => match *stage {
                "init" => TofuReason::InitFailed,
                "plan" => TofuReason::PlanFailed,
                "apply" => TofuReason::ApplyFailed,
                "destroy" => TofuReason::DestroyFailed,
                _ => TofuReason::EngineFailed,
            },
        }
    }
}
