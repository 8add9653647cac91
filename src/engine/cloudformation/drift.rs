//! Drift of a stack, from two angles: CloudFormation's own drift detection (the resources
//! against their template, where the endpoint offers it), and always the deployed template and
//! parameters against the desired ones, which catches a stack updated behind Landform's back.

use std::collections::BTreeMap;

use aws_sdk_cloudformation::types::{
    StackDriftDetectionStatus, StackResourceDrift, StackResourceDriftStatus,
};

use super::compare;
use super::error::CloudError;
use super::stack::deployed;
use super::states;
use super::{Ctx, Desired};
use crate::api::ResourceChange;
use crate::contract::{DriftReport, RunResult};

/// Checks the stack for drift; read-only, and it needs no ownership of the stack, so that
/// Landform can watch stacks that something else deploys.
pub async fn check(ctx: &Ctx<'_>, d: &Desired<'_>) -> Result<RunResult, CloudError> {
    let name = &ctx.stack.stack_name;
    let mut result = RunResult {
        succeeded: true,
        engine_version: Some("CloudFormation".into()),
        ..Default::default()
    };
    let Some(stack) = ctx.aws.stack(name).await? else {
        result.drift = Some(report(vec![ResourceChange {
            address: name.clone(),
            resource_type: Some("AWS::CloudFormation::Stack".into()),
            action: "delete".into(),
            paths: vec![],
        }]));
        return Ok(result);
    };
    let (template, params) = deployed(ctx, &stack).await?;
    let mut found = compare::templates(&template, d.template);
    found.extend(compare::parameters(
        &params,
        &compare::with_defaults(d.template, d.params),
    ));
    let mut limits = None;
    match detect(&ctx.aws.cfn, name).await {
        Ok(Detection::Drifts(drifts)) => found.extend(drifts),
        Ok(Detection::Unsupported(why)) => {
            limits = Some(format!(
                "CloudFormation drift detection is not available here ({why}), so only the deployed template and parameters were compared"
            ))
        }
        Err(e) => return Err(ctx.aws.error_from(e)),
    }
    result.drift = Some(DriftReport {
        limits,
        ..report(merge(found))
    });
    Ok(result)
}

/// The plan of a DriftOnly object: what applying the desired template would change, worked out
/// from the deployed template and parameters. Read-only, like [`check`]: no change set is made
/// (CreateChangeSet on a missing stack would create one in REVIEW_IN_PROGRESS), no stack state
/// is repaired, and no ownership is needed.
pub async fn preview(ctx: &Ctx<'_>, d: &Desired<'_>) -> Result<RunResult, CloudError> {
    let found = match ctx.aws.stack(&ctx.stack.stack_name).await? {
        // Every resource would be created; the other template sections are no change.
        None => compare::templates(d.template, "Resources: {}")
            .into_iter()
            .filter(|c| c.resource_type.is_some())
            .collect(),
        Some(stack) => {
            let (template, params) = deployed(ctx, &stack).await?;
            // Desired first: a resource only in the desired template is one to create.
            let mut found = compare::templates(d.template, &template);
            found.extend(compare::parameters(
                &params,
                &compare::with_defaults(d.template, d.params),
            ));
            found
        }
    };
    let mut summary = crate::api::PlanSummary::default();
    for c in &found {
        match c.action.as_str() {
            "create" => summary.add += 1,
            "delete" => summary.destroy += 1,
            _ => summary.change += 1,
        }
    }
    Ok(RunResult {
        succeeded: true,
        has_changes: !found.is_empty(),
        plan_id: Some(super::operations::plan_id(&d.inputs_id, &found)),
        engine_version: Some("CloudFormation".into()),
        summary: Some(summary),
        resources: found.into_iter().take(super::changes::MAX_LISTED).collect(),
        ..Default::default()
    })
}

fn report(resources: Vec<ResourceChange>) -> DriftReport {
    DriftReport {
        total: u32::try_from(resources.len()).unwrap_or(u32::MAX),
        resources: resources
            .into_iter()
            .take(super::changes::MAX_LISTED)
            .collect(),
        limits: None,
    }
}

/// One entry per address, paths merged.
fn merge(found: Vec<ResourceChange>) -> Vec<ResourceChange> {
    let mut by_address: BTreeMap<String, ResourceChange> = BTreeMap::new();
    for r in found {
        match by_address.get_mut(&r.address) {
            Some(seen) => {
                seen.paths.extend(r.paths);
                seen.paths.sort();
                seen.paths.dedup();
                if seen.resource_type.is_none() {
                    seen.resource_type = r.resource_type;
                }
            }
            None => {
                by_address.insert(r.address.clone(), r);
            }
        }
    }
    by_address.into_values().collect()
}

/// What drift detection found.
#[derive(Debug, PartialEq)]
pub enum Detection {
    Drifts(Vec<ResourceChange>),
    /// The endpoint does not implement drift detection.
    Unsupported(String),
}

/// A failed drift-detection call: the operation and the SDK's words.
#[derive(Debug)]
pub struct DetectError {
    pub op: &'static str,
    pub code: Option<String>,
    pub message: String,
    /// The HTTP status of an error answer.
    pub status: Option<u16>,
    pub transport: bool,
}

/// DetectStackDrift, waiting for it, then DescribeStackResourceDrifts (every page) for the
/// resources that are MODIFIED or DELETED.
pub async fn detect(
    cfn: &aws_sdk_cloudformation::Client,
    stack: &str,
) -> Result<Detection, DetectError> {
    use aws_sdk_cloudformation::config::http::HttpResponse;
    use aws_sdk_cloudformation::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
    fn fail<E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static>(
        op: &'static str,
    ) -> impl FnOnce(SdkError<E, HttpResponse>) -> DetectError {
        move |e| match &e {
            SdkError::ServiceError(ctx) => DetectError {
                op,
                code: ctx.err().code().map(str::to_string),
                message: ctx.err().message().unwrap_or("no message").to_string(),
                status: Some(ctx.raw().status().as_u16()),
                transport: false,
            },
            _ => DetectError {
                op,
                code: None,
                message: DisplayErrorContext(&e).to_string(),
                status: None,
                transport: matches!(e, SdkError::DispatchFailure(_) | SdkError::TimeoutError(_)),
            },
        }
    }
    // Few attempts: an endpoint without drift detection fails every retry the same way, but
    // throttling (likely with many stacks checked) deserves a retry.
    let once = aws_sdk_cloudformation::config::Builder::default()
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(3));
    let started = match cfn
        .detect_stack_drift()
        .stack_name(stack)
        .customize()
        .config_override(once)
        .send()
        .await
    {
        Ok(out) => out,
        Err(e) => {
            let e = fail("DetectStackDrift")(e);
            return match unsupported(&e) {
                Some(why) => Ok(Detection::Unsupported(why)),
                None => Err(e),
            };
        }
    };
    let id = started
        .stack_drift_detection_id()
        .unwrap_or_default()
        .to_string();
    let mut attempt = 0;
    loop {
        let status = cfn
            .describe_stack_drift_detection_status()
            .stack_drift_detection_id(&id)
            .send()
            .await
            .map_err(fail("DescribeStackDriftDetectionStatus"))?;
        match status.detection_status() {
            Some(StackDriftDetectionStatus::DetectionInProgress) | None => {
                tokio::time::sleep(states::poll_delay(attempt)).await;
                attempt += 1;
            }
            // DETECTION_FAILED still reports the resources it could check.
            Some(_) => break,
        }
    }
    let mut drifts = vec![];
    let mut next = None;
    loop {
        let page = cfn
            .describe_stack_resource_drifts()
            .stack_name(stack)
            .stack_resource_drift_status_filters(StackResourceDriftStatus::Modified)
            .stack_resource_drift_status_filters(StackResourceDriftStatus::Deleted)
            .set_next_token(next)
            .send()
            .await
            .map_err(fail("DescribeStackResourceDrifts"))?;
        drifts.extend(
            page.stack_resource_drifts()
                .iter()
                .filter_map(resource_drift),
        );
        next = page.next_token().map(str::to_string);
        if next.is_none() {
            break;
        }
    }
    Ok(Detection::Drifts(drifts))
}

/// Endpoints without drift detection (emulators, some partitions) answer with a code for an
/// unknown action, or with a bare HTTP error that carries no AWS error code at all.
fn unsupported(e: &DetectError) -> Option<String> {
    let known = [
        "InvalidAction",
        "NotImplemented",
        "UnknownOperationException",
    ];
    match (e.code.as_deref(), e.status) {
        (Some(code), _) if known.contains(&code) => Some(format!("{}: {}", e.op, e.message)),
        (None, Some(status)) => Some(format!(
            "{} answered with HTTP {status} and no AWS error",
            e.op
        )),
        _ => None,
    }
}

impl super::aws::Aws {
    /// A [`DetectError`] as a [`CloudError`].
    pub fn error_from(&self, e: DetectError) -> CloudError {
        if e.transport {
            return CloudError::Unreachable {
                op: e.op,
                endpoint: self
                    .endpoint
                    .clone()
                    .unwrap_or_else(|| "CloudFormation".into()),
                detail: e.message,
            };
        }
        match e.code {
            Some(code) => super::aws::classify(e.op, &code, e.message),
            None => CloudError::Request {
                op: e.op,
                detail: e.message,
            },
        }
    }
}

/// A drifted resource, with the property paths that differ (never their values).
pub fn resource_drift(d: &StackResourceDrift) -> Option<ResourceChange> {
    let action = match d.stack_resource_drift_status() {
        Some(StackResourceDriftStatus::Modified) => "update",
        Some(StackResourceDriftStatus::Deleted) => "delete",
        _ => return None,
    };
    let mut paths: Vec<String> = d
        .property_differences()
        .iter()
        .filter_map(|p| p.property_path())
        .map(|p| format!("Properties{}", p.replace('/', ".")))
        .collect();
    paths.sort();
    paths.dedup();
    Some(ResourceChange {
        address: d.logical_resource_id().unwrap_or("?").to_string(),
        resource_type: d.resource_type().map(str::to_string),
        action: action.into(),
        paths,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection_errors_of_missing_apis_are_not_failures() {
        let e = |code: Option<&str>, status: Option<u16>| DetectError {
            op: "DetectStackDrift",
            code: code.map(str::to_string),
            message: "m".into(),
            status,
            transport: false,
        };
        assert!(unsupported(&e(Some("InvalidAction"), Some(400))).is_some());
        assert!(unsupported(&e(None, Some(500))).is_some());
        assert!(unsupported(&e(Some("AccessDenied"), Some(403))).is_none());
        assert!(unsupported(&e(Some("InternalFailure"), Some(500))).is_none());
        // No answer at all is an outage, not a missing API.
        assert!(unsupported(&e(None, None)).is_none());
    }
}
