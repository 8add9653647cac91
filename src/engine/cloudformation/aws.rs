//! The AWS side of a CloudFormation run: clients built from the run's region, endpoint and
//! credentials, and SDK errors turned into errors that say what to do.

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_credential_types::Credentials;
use aws_sdk_cloudformation::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_cloudformation::types::Stack;
use aws_smithy_http_client::tls;

use super::error::CloudError;
use crate::contract::StackRun;

/// CloudFormation and S3 clients for one run.
pub struct Aws {
    pub cfn: aws_sdk_cloudformation::Client,
    pub s3: aws_sdk_s3::Client,
    /// The endpoint override, if any (for error messages and template URLs).
    pub endpoint: Option<String>,
    pub region: Option<String>,
}

/// Access keys read from the Secret named in `credentialsSecretRef`.
pub struct AccessKeys {
    pub id: String,
    pub secret: String,
    pub session_token: Option<String>,
}

/// Builds the clients. Without access keys the SDK's default chain is used, which covers the
/// pod's service account (IRSA web identity, EKS Pod Identity) and the environment.
pub async fn connect(stack: &StackRun, keys: Option<AccessKeys>) -> Aws {
    crate::tls::init();
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    // The SDK's standard retry mode backs off exponentially, with jitter, on throttling and
    // transient errors; more attempts than its default of 3 ride out a busy account.
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .retry_config(RetryConfig::standard().with_max_attempts(8));
    if let Some(region) = &stack.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    if let Some(keys) = keys {
        loader = loader.credentials_provider(Credentials::new(
            keys.id,
            keys.secret,
            keys.session_token,
            None,
            "landform-credentials-secret",
        ));
    }
    if let Some(url) = &stack.endpoint_url {
        loader = loader.endpoint_url(url.clone());
    }
    let conf = loader.load().await;
    let region = conf.region().map(|r| r.to_string());
    // An endpoint override (an emulator, a private endpoint) serves buckets by path.
    let s3_conf = aws_sdk_s3::config::Builder::from(&conf)
        .force_path_style(stack.endpoint_url.is_some())
        .build();
    Aws {
        cfn: aws_sdk_cloudformation::Client::new(&conf),
        s3: aws_sdk_s3::Client::from_conf(s3_conf),
        endpoint: stack.endpoint_url.clone(),
        region,
    }
}

impl Aws {
    fn endpoint_name(&self) -> String {
        match (&self.endpoint, &self.region) {
            (Some(url), _) => url.clone(),
            (None, Some(region)) => format!("CloudFormation in {region}"),
            (None, None) => "CloudFormation".into(),
        }
    }

    /// Maps an SDK error of operation `op`.
    pub fn error<E, R>(&self, op: &'static str, err: SdkError<E, R>) -> CloudError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug,
    {
        match &err {
            SdkError::ServiceError(ctx) => {
                let e = ctx.err();
                let code = e.code().unwrap_or("Unknown").to_string();
                let message = e.message().unwrap_or("no message").to_string();
                classify(op, &code, message)
            }
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => CloudError::Unreachable {
                op,
                endpoint: self.endpoint_name(),
                detail: DisplayErrorContext(&err).to_string(),
            },
            _ => CloudError::Request {
                op,
                detail: DisplayErrorContext(&err).to_string(),
            },
        }
    }

    /// The stack, or `None` when there is none of that name.
    pub async fn stack(&self, name: &str) -> Result<Option<Stack>, CloudError> {
        match self.cfn.describe_stacks().stack_name(name).send().await {
            Ok(out) => Ok(out.stacks().first().cloned()),
            Err(SdkError::ServiceError(ctx)) if is_missing_stack(ctx.err()) => Ok(None),
            Err(e) => Err(self.error("DescribeStacks", e)),
        }
    }
}

/// DescribeStacks answers a name it does not know with a ValidationError.
fn is_missing_stack(e: &impl ProvideErrorMetadata) -> bool {
    e.code() == Some("ValidationError") && e.message().is_some_and(|m| m.contains("does not exist"))
}

/// An error code and message from the API, as a [`CloudError`].
pub fn classify(op: &'static str, code: &str, message: String) -> CloudError {
    match code {
        "AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation" => {
            CloudError::Denied { op, message }
        }
        "InvalidClientTokenId"
        | "SignatureDoesNotMatch"
        | "ExpiredToken"
        | "UnrecognizedClient" => CloudError::Credentials { op, message },
        "Throttling" | "ThrottlingException" | "RequestLimitExceeded" => {
            CloudError::Throttled { op, message }
        }
        "ValidationError" => CloudError::Rejected { op, message },
        _ => CloudError::Api {
            op,
            code: code.to_string(),
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified_by_code() {
        let reason =
            |code: &str| <&str>::from(classify("CreateChangeSet", code, "m".into()).reason());
        assert_eq!(reason("AccessDenied"), "AccessDenied");
        assert_eq!(reason("ExpiredToken"), "CredentialsInvalid");
        assert_eq!(reason("Throttling"), "Throttled");
        assert_eq!(reason("ValidationError"), "StackRejected");
        assert_eq!(
            reason("InsufficientCapabilitiesException"),
            "CloudFormationError"
        );
        let e = classify(
            "CreateChangeSet",
            "ValidationError",
            "Template format error".into(),
        );
        assert_eq!(
            e.to_string(),
            "CloudFormation rejected CreateChangeSet: Template format error"
        );
    }
}
