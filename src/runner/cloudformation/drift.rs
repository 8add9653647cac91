//! Drift of a stack, from two angles: CloudFormation's own drift detection (the resources
//! against their template, where the endpoint offers it), and always the deployed template and
//! parameters against the desired ones, which catches a stack updated behind Landform's back.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_cloudformation::types::{
    StackDriftDetectionStatus, StackResourceDrift, StackResourceDriftStatus, TemplateStage,
};
use serde_yaml::Value;

use super::CloudError;
use super::operations::{Ctx, Desired};
use super::states;
use crate::api::ResourceChange;
use crate::runner::spec::{DriftReport, RunResult};

/// The value DescribeStacks shows for NoEcho parameters: they cannot be compared.
const MASKED: &str = "****";

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
    let mut found = compare_templates(&template, d.template);
    found.extend(compare_parameters(
        &params,
        &with_defaults(d.template, d.params),
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
        None => compare_templates(d.template, "Resources: {}")
            .into_iter()
            .filter(|c| c.resource_type.is_some())
            .collect(),
        Some(stack) => {
            let (template, params) = deployed(ctx, &stack).await?;
            // Desired first: a resource only in the desired template is one to create.
            let mut found = compare_templates(d.template, &template);
            found.extend(compare_parameters(
                &params,
                &with_defaults(d.template, d.params),
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
        plan_id: Some(super::operations::plan_id(ctx, d)),
        engine_version: Some("CloudFormation".into()),
        summary: Some(summary),
        resources: found.into_iter().take(super::changes::MAX_LISTED).collect(),
        ..Default::default()
    })
}

/// The stack's template as deployed (its original text) and its parameters.
async fn deployed(
    ctx: &Ctx<'_>,
    stack: &aws_sdk_cloudformation::types::Stack,
) -> Result<(String, BTreeMap<String, String>), CloudError> {
    let out = ctx
        .aws
        .cfn
        .get_template()
        .stack_name(&ctx.stack.stack_name)
        .template_stage(TemplateStage::Original)
        .send()
        .await
        .map_err(|e| ctx.aws.error("GetTemplate", e))?;
    let params = stack
        .parameters()
        .iter()
        .filter_map(|p| Some((p.parameter_key()?.into(), p.parameter_value()?.into())))
        .collect();
    Ok((out.template_body().unwrap_or_default().to_string(), params))
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
    // One attempt: an endpoint without drift detection fails every retry the same way.
    let once = aws_sdk_cloudformation::config::Builder::default()
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(1));
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

/// How the deployed template differs from the desired one, resource by resource. Both are
/// read as YAML (JSON is YAML), so formatting and key order do not count as drift.
pub fn compare_templates(deployed: &str, desired: &str) -> Vec<ResourceChange> {
    let (Ok(old), Ok(new)) = (
        serde_yaml::from_str::<Value>(deployed).map(long_form),
        serde_yaml::from_str::<Value>(desired).map(long_form),
    ) else {
        return if deployed.trim() == desired.trim() {
            vec![]
        } else {
            vec![template_change(vec!["(unparsable)".into()])]
        };
    };
    let mut out = vec![];
    let old_resources = section(&old, "Resources");
    let new_resources = section(&new, "Resources");
    let ids: BTreeSet<&String> = old_resources.keys().chain(new_resources.keys()).collect();
    for id in ids {
        let resource_type = new_resources
            .get(id)
            .or_else(|| old_resources.get(id))
            .and_then(|r| r.get("Type"))
            .and_then(Value::as_str)
            .map(str::to_string);
        let (action, paths) = match (old_resources.get(id), new_resources.get(id)) {
            // In the stack, not in the desired template: added behind Landform's back.
            (Some(_), None) => ("create", vec![]),
            // Desired, and missing from the stack: removed behind Landform's back.
            (None, Some(_)) => ("delete", vec![]),
            (Some(a), Some(b)) if a != b => ("update", differing_paths(a, b)),
            _ => continue,
        };
        out.push(ResourceChange {
            address: id.clone(),
            resource_type,
            action: action.into(),
            paths,
        });
    }
    let mut sections: BTreeSet<String> = BTreeSet::new();
    for map in [&old, &new] {
        if let Value::Mapping(m) = map {
            sections.extend(m.keys().filter_map(Value::as_str).map(str::to_string));
        }
    }
    let changed: Vec<String> = sections
        .into_iter()
        .filter(|s| s != "Resources" && old.get(s.as_str()) != new.get(s.as_str()))
        .collect();
    if !changed.is_empty() {
        out.push(template_change(changed));
    }
    out
}

/// YAML short forms (`!Ref X`, `!GetAtt A.B`, `!Sub …`) as the JSON forms they stand for, so a
/// template means the same in either notation.
fn long_form(v: Value) -> Value {
    match v {
        Value::Tagged(t) => {
            let tag = t.tag.to_string();
            let name = tag.trim_start_matches('!');
            let key = if name == "Ref" || name == "Condition" {
                name.to_string()
            } else {
                format!("Fn::{name}")
            };
            let inner = match (name, long_form(t.value)) {
                ("GetAtt", Value::String(s)) => match s.split_once('.') {
                    Some((a, b)) => Value::Sequence(vec![a.into(), b.into()]),
                    None => Value::String(s),
                },
                (_, other) => other,
            };
            let mut m = serde_yaml::Mapping::new();
            m.insert(Value::String(key), inner);
            Value::Mapping(m)
        }
        Value::Mapping(m) => Value::Mapping(
            m.into_iter()
                .map(|(k, v)| (long_form(k), long_form(v)))
                .collect(),
        ),
        Value::Sequence(s) => Value::Sequence(s.into_iter().map(long_form).collect()),
        other => other,
    }
}

fn template_change(paths: Vec<String>) -> ResourceChange {
    ResourceChange {
        address: "(template)".into(),
        resource_type: None,
        action: "update".into(),
        paths,
    }
}

fn section(template: &Value, name: &str) -> BTreeMap<String, Value> {
    match template.get(name) {
        Some(Value::Mapping(m)) => m
            .iter()
            .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.clone())))
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// Keys of a resource that differ, one level into `Properties`: `Properties.Value`, `Type`.
fn differing_paths(a: &Value, b: &Value) -> Vec<String> {
    let keys = |v: &Value| -> BTreeSet<String> {
        match v {
            Value::Mapping(m) => m
                .keys()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            _ => BTreeSet::new(),
        }
    };
    let mut paths = vec![];
    for key in keys(a).union(&keys(b)) {
        let (x, y) = (a.get(key.as_str()), b.get(key.as_str()));
        if x == y {
            continue;
        }
        if key == "Properties" {
            let empty = Value::Mapping(Default::default());
            let (x, y) = (x.unwrap_or(&empty), y.unwrap_or(&empty));
            for prop in keys(x).union(&keys(y)) {
                if x.get(prop.as_str()) != y.get(prop.as_str()) {
                    paths.push(format!("Properties.{prop}"));
                }
            }
        } else {
            paths.push(key.clone());
        }
    }
    paths
}

/// Parameters whose deployed value differs from the desired one (names only). NoEcho values
/// are masked by CloudFormation and cannot be compared.
/// The desired parameter values: the spec's, and for the others the template's `Default`, which
/// is what CloudFormation uses when a parameter is left out.
pub fn with_defaults(
    template: &str,
    params: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let parsed = serde_yaml::from_str::<Value>(template).unwrap_or(Value::Null);
    let mut all: BTreeMap<String, String> = section(&parsed, "Parameters")
        .into_iter()
        .filter_map(|(name, p)| {
            let value = match p.get("Default")? {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                // A list parameter's default as CloudFormation shows it: comma-separated.
                Value::Sequence(items) => items
                    .iter()
                    .filter_map(|i| match i {
                        Value::String(s) => Some(s.clone()),
                        Value::Number(n) => Some(n.to_string()),
                        _ => None,
                    })
                    .collect::<Vec<_>>()
                    .join(","),
                _ => return None,
            };
            Some((name, value))
        })
        .collect();
    all.extend(params.iter().map(|(k, v)| (k.clone(), v.clone())));
    all
}

pub fn compare_parameters(
    deployed: &BTreeMap<String, String>,
    desired: &BTreeMap<String, String>,
) -> Option<ResourceChange> {
    let keys: BTreeSet<&String> = deployed.keys().chain(desired.keys()).collect();
    let paths: Vec<String> = keys
        .into_iter()
        .filter(|k| match (deployed.get(*k), desired.get(*k)) {
            (Some(old), _) if old == MASKED => false,
            // Parameters left out of the spec take their template default: not comparable.
            (Some(_), None) => false,
            (old, new) => old != new,
        })
        .map(|k| format!("Parameters.{k}"))
        .collect();
    (!paths.is_empty()).then(|| ResourceChange {
        address: "(parameters)".into(),
        resource_type: None,
        action: "update".into(),
        paths,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEPLOYED: &str = r#"
AWSTemplateFormatVersion: "2010-09-09"
Parameters:
  Greeting: {Type: String}
Resources:
  Param:
    Type: AWS::SSM::Parameter
    Properties:
      Type: String
      Value: !Ref Greeting
  Extra:
    Type: AWS::SNS::Topic
Outputs:
  Name: {Value: !Ref Param}
"#;

    #[test]
    fn the_same_template_in_other_clothes_is_no_drift() {
        let json = r#"{"AWSTemplateFormatVersion": "2010-09-09",
          "Parameters": {"Greeting": {"Type": "String"}},
          "Resources": {"Extra": {"Type": "AWS::SNS::Topic"},
            "Param": {"Type": "AWS::SSM::Parameter", "Properties": {"Value": {"Ref": "Greeting"}, "Type": "String"}}},
          "Outputs": {"Name": {"Value": {"Ref": "Param"}}}}"#;
        assert_eq!(compare_templates(DEPLOYED, json), vec![]);
    }

    #[test]
    fn changed_added_and_removed_resources_are_named() {
        let desired = r#"
AWSTemplateFormatVersion: "2010-09-09"
Parameters:
  Greeting: {Type: String}
Resources:
  Param:
    Type: AWS::SSM::Parameter
    Properties:
      Type: StringList
      Value: !Ref Greeting
  Queue:
    Type: AWS::SQS::Queue
Outputs:
  Name: {Value: !GetAtt Param.Value}
"#;
        let found = compare_templates(DEPLOYED, desired);
        let got: Vec<_> = found
            .iter()
            .map(|r| (r.address.as_str(), r.action.as_str(), r.paths.clone()))
            .collect();
        assert_eq!(
            got,
            [
                ("Extra", "create", vec![]),
                ("Param", "update", vec!["Properties.Type".to_string()]),
                ("Queue", "delete", vec![]),
                ("(template)", "update", vec!["Outputs".to_string()]),
            ]
        );
        assert_eq!(
            found[1].resource_type.as_deref(),
            Some("AWS::SSM::Parameter")
        );
    }

    #[test]
    fn parameters_are_compared_by_name_only() {
        let deployed = BTreeMap::from([
            ("Greeting".to_string(), "hello".to_string()),
            ("Password".to_string(), MASKED.to_string()),
            ("Defaulted".to_string(), "x".to_string()),
        ]);
        let mut desired = BTreeMap::from([
            ("Greeting".to_string(), "hello".to_string()),
            ("Password".to_string(), "hunter2".to_string()),
        ]);
        assert_eq!(compare_parameters(&deployed, &desired), None);
        desired.insert("Greeting".into(), "bye".into());
        let change = compare_parameters(&deployed, &desired).unwrap();
        assert_eq!(change.paths, ["Parameters.Greeting"]);
        let json = serde_json::to_string(&change).unwrap();
        assert!(!json.contains("bye") && !json.contains("hello"), "{json}");
    }

    #[test]
    fn parameters_left_out_are_compared_with_their_defaults() {
        let template = "Parameters:\n  Greeting: {Type: String, Default: hello}\n  Size: {Type: Number, Default: 3}\n  Names: {Type: CommaDelimitedList, Default: [a, b]}\n  Required: {Type: String}\n";
        let desired = with_defaults(
            template,
            &BTreeMap::from([("Greeting".to_string(), "hi".to_string())]),
        );
        assert_eq!(
            desired,
            BTreeMap::from([
                ("Greeting".to_string(), "hi".to_string()),
                ("Names".to_string(), "a,b".to_string()),
                ("Size".to_string(), "3".to_string()),
            ])
        );
        let deployed = BTreeMap::from([
            ("Greeting".to_string(), "hi".to_string()),
            ("Names".to_string(), "a,b".to_string()),
            ("Size".to_string(), "4".to_string()),
            ("Required".to_string(), "x".to_string()),
        ]);
        assert_eq!(
            compare_parameters(&deployed, &desired).unwrap().paths,
            ["Parameters.Size"]
        );
    }

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
