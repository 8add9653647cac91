//! Why getting an artifact failed: the condition reason of a failed resolve or fetch, in the
//! controller and in a run alike.

/// One reason per kind of failure; its name is the condition reason and metric label.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, strum::IntoStaticStr, strum::EnumString, strum::VariantArray,
)]
pub enum SourceReason {
    InvalidSource,
    SourceUnavailable,
    SourceUnauthorized,
    ArtifactNotFound,
    NoMatchingVersion,
    InvalidArtifact,
    DigestMismatch,
    ArtifactTooLarge,
    UnsafeArtifact,
    ExtractionFailed,
    FetchFailed,
}

impl SourceReason {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}
