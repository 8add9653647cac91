//! The reasons a failed run may give, one type per part of the engine that fails. The
//! catalogue the controller accepts is derived from these types, so a reason added to an
//! engine is known to the controller without a list kept by hand; anything else a runner
//! writes (a newer runner, a tampered result) is reported as `RunFailed`.

use std::str::FromStr;

use strum::VariantArray;

pub use crate::source::SourceReason;

/// Failures of the runner itself, whatever the engine.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, strum::IntoStaticStr, strum::EnumString, strum::VariantArray,
)]
pub enum RunnerReason {
    VarsSourceNotFound,
    InvalidInput,
    PlanNotFound,
    OutputsSecretNotOwned,
    RunnerFailed,
    /// Told to stop (its pod deleted or evicted, its controller stopping) while it ran.
    Interrupted,
}

/// Failures of the OpenTofu / Terraform engine.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, strum::IntoStaticStr, strum::EnumString, strum::VariantArray,
)]
pub enum TofuReason {
    EngineUnavailable,
    StateLocked,
    EngineFailed,
    InitFailed,
    PlanFailed,
    ApplyFailed,
    DestroyFailed,
}

/// Failures of the CloudFormation engine.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, strum::IntoStaticStr, strum::EnumString, strum::VariantArray,
)]
pub enum StackReason {
    StackRejected,
    AccessDenied,
    CredentialsInvalid,
    Throttled,
    CloudFormationError,
    CloudFormationUnavailable,
    InvalidTemplate,
    TemplateNotFound,
    TemplateTooLarge,
    StackNotOwned,
    StackStateBlocked,
    ChangeSetFailed,
    PlanNotFound,
}

/// What the controller reports for a reason it does not know.
pub const UNKNOWN: &str = "RunFailed";

/// The reason a run gave, as a static string for conditions and bounded metric labels, if it
/// is one a runner may give.
pub fn known(reason: &str) -> Option<&'static str> {
    fn find<R: FromStr + Into<&'static str>>(reason: &str) -> Option<&'static str> {
        R::from_str(reason).ok().map(Into::into)
    }
    find::<SourceReason>(reason)
        .or_else(|| find::<RunnerReason>(reason))
        .or_else(|| find::<TofuReason>(reason))
        .or_else(|| find::<StackReason>(reason))
}

/// Every reason a run may give.
pub fn catalogue() -> Vec<&'static str> {
    fn names<R: VariantArray + Copy + Into<&'static str>>() -> impl Iterator<Item = &'static str> {
        R::VARIANTS.iter().map(|r| (*r).into())
    }
    let mut all: Vec<&'static str> = names::<SourceReason>()
        .chain(names::<RunnerReason>())
        .chain(names::<TofuReason>())
        .chain(names::<StackReason>())
        .collect();
    all.sort_unstable();
    all.dedup();
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_of_every_engine_is_known_and_nothing_else() {
        let all = catalogue();
        assert!(all.len() > 30, "{all:?}");
        for reason in &all {
            assert_eq!(known(reason), Some(*reason));
        }
        assert_eq!(known("DigestMismatch"), Some("DigestMismatch"));
        assert_eq!(known("StackNotOwned"), Some("StackNotOwned"));
        assert_eq!(known("Whatever"), None);
        assert_eq!(known(""), None);
    }
}
