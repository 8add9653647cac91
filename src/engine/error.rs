//! Why a run failed: one error type for every engine, whose reason (see
//! [`crate::contract::reasons`]) is the condition reason the controller shows.

use super::cloudformation::error::CloudError;
use super::tofu::EngineError;
use crate::api::ValuesFromKind;
use crate::contract::reasons::RunnerReason;
use crate::source::fetch::FetchError;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Cloud(#[from] CloudError),
    #[error(
        "{kind:?} {namespace}/{name} named in {field} does not exist (mark it optional: true if that is expected)"
    )]
    ValuesSourceNotFound {
        field: &'static str,
        kind: ValuesFromKind,
        namespace: String,
        name: String,
    },
    #[error("{0}")]
    Input(String),
    #[error("the plan {plan_id} to apply is gone (its Secrets were deleted); plan again")]
    PlanNotFound { plan_id: String },
    #[error(
        "Secret {name} (spec.writeOutputsToSecret) exists and belongs to something else; Landform writes outputs only to a Secret it creates for this object: name another one, or delete that one"
    )]
    OutputsSecretNotOwned { name: String },
    #[error("{what}: {source}")]
    Kube {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl RunError {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Fetch(e) => e.reason().into(),
            Self::Engine(e) => e.reason().into(),
            Self::Cloud(e) => e.reason().into(),
            Self::ValuesSourceNotFound { .. } => RunnerReason::VarsSourceNotFound.into(),
            Self::Input(_) => RunnerReason::InvalidInput.into(),
            Self::PlanNotFound { .. } => RunnerReason::PlanNotFound.into(),
            Self::OutputsSecretNotOwned { .. } => RunnerReason::OutputsSecretNotOwned.into(),
            Self::Kube { .. } | Self::Io { .. } => RunnerReason::RunnerFailed.into(),
        }
    }
}

pub fn kube_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> RunError {
    let what = what.into();
    move |source| RunError::Kube { what, source }
}

pub fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RunError {
    let what = what.into();
    move |source| RunError::Io { what, source }
}
