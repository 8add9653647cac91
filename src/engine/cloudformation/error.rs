//! Why a CloudFormation operation failed, in words a user can act on, with a reason per case.

use crate::contract::reasons::StackReason;

/// Templates larger than this must be passed by URL (CloudFormation's inline limit).
pub const INLINE_LIMIT: usize = 51_200;

#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    #[error("CloudFormation rejected {op}: {message}")]
    Rejected { op: &'static str, message: String },
    #[error("{op} is not permitted for these credentials: {message}")]
    Denied { op: &'static str, message: String },
    #[error(
        "the AWS credentials were not accepted ({op}): {message}; check spec.credentialsSecretRef or the runner's service account"
    )]
    Credentials { op: &'static str, message: String },
    #[error("{op} was throttled, also after backing off: {message}")]
    Throttled { op: &'static str, message: String },
    #[error("{op} failed ({code}): {message}")]
    Api {
        op: &'static str,
        code: String,
        message: String,
    },
    #[error("cannot reach {endpoint} ({op}): {detail}")]
    Unreachable {
        op: &'static str,
        endpoint: String,
        detail: String,
    },
    #[error("{op} could not be sent: {detail}")]
    Request { op: &'static str, detail: String },
    #[error("the template is invalid: {0}")]
    InvalidTemplate(String),
    #[error("the artifact has no template at {path:?} (set spec.templatePath)")]
    TemplateNotFound { path: String },
    #[error(
        "the template is {size} bytes, over CloudFormation's {INLINE_LIMIT}-byte limit for inline templates; set spec.templateBucket to pass it through S3"
    )]
    TemplateTooLarge { size: usize },
    #[error("{0}")]
    NotOwned(String),
    #[error("{0}")]
    StackState(String),
    #[error("the change set failed: {0}")]
    ChangeSetFailed(String),
    #[error("{0}")]
    PlanGone(String),
}

impl CloudError {
    pub fn reason(&self) -> StackReason {
        use StackReason as R;
        match self {
            Self::Rejected { .. } => R::StackRejected,
            Self::Denied { .. } => R::AccessDenied,
            Self::Credentials { .. } => R::CredentialsInvalid,
            Self::Throttled { .. } => R::Throttled,
            Self::Api { .. } | Self::Request { .. } => R::CloudFormationError,
            Self::Unreachable { .. } => R::CloudFormationUnavailable,
            Self::InvalidTemplate(_) => R::InvalidTemplate,
            Self::TemplateNotFound { .. } => R::TemplateNotFound,
            Self::TemplateTooLarge { .. } => R::TemplateTooLarge,
            Self::NotOwned(_) => R::StackNotOwned,
            Self::StackState(_) => R::StackStateBlocked,
            Self::ChangeSetFailed(_) => R::ChangeSetFailed,
            Self::PlanGone(_) => R::PlanNotFound,
        }
    }
}
