//! Plan, apply and destroy of one stack, each waiting until CloudFormation is done.

use std::collections::BTreeMap;

use aws_sdk_cloudformation::types::{
    Capability as CfnCapability, Change, ChangeSetStatus, ChangeSetType, ExecutionStatus,
    Parameter, Tag,
};

use super::changes;
use super::error::{CloudError, INLINE_LIMIT};
use super::stack::{
    Waited, check_owner, delete_and_wait, events_since, newest_event, pause, settle, status_of,
    wait_for,
};
use super::states::{self, BeforeDestroy, Progress};
use super::{Ctx, Desired, TAG_OWNER, TAG_UID};
use crate::api::Capability;
use crate::api::ResourceChange;
use crate::contract::RunResult;
use crate::contract::plan_id;

/// Change sets Landform makes are named `landform-<the second half of the plan ID>`: the half
/// that the inputs decide, known before the change set exists.
const CHANGE_SET_PREFIX: &str = "landform-";

fn change_set_name(name: &str) -> String {
    format!("{CHANGE_SET_PREFIX}{name}")
}

/// The plan ID of a change set named `name` with these changes.
fn bound(name: &str, changes: &[ResourceChange]) -> String {
    plan_id::bind_named(name, &serde_json::to_value(changes).unwrap_or_default())
}

/// The plan ID of a change set made from inputs `inputs_id` with these changes.
pub fn plan_id(inputs_id: &str, changes: &[ResourceChange]) -> String {
    bound(&plan_id::name_part(inputs_id), changes)
}

/// Every change of a change set that is ready, across its pages.
async fn listed_changes(ctx: &Ctx<'_>, name: &str) -> Result<Vec<Change>, CloudError> {
    let mut listed = vec![];
    let mut next: Option<String> = None;
    loop {
        let out = ctx
            .aws
            .cfn
            .describe_change_set()
            .stack_name(&ctx.stack.stack_name)
            .change_set_name(name)
            .set_next_token(next.clone())
            .send()
            .await
            .map_err(|e| ctx.aws.error("DescribeChangeSet", e))?;
        listed.extend(out.changes().iter().cloned());
        next = out.next_token().map(str::to_string);
        if next.is_none() {
            return Ok(listed);
        }
    }
}

/// Plans a change set; an empty one means no changes and is deleted.
pub async fn plan(ctx: &Ctx<'_>, d: &Desired<'_>) -> Result<RunResult, CloudError> {
    let mut notes = vec![];
    let current = settle(ctx, &mut notes).await?;
    if let Some(stack) = &current {
        check_owner(ctx, stack)?;
    }
    let kind = match current.as_ref().map(status_of).as_deref() {
        None | Some("REVIEW_IN_PROGRESS") => ChangeSetType::Create,
        Some(_) => ChangeSetType::Update,
    };
    let name = change_set_name(&plan_id::name_part(&d.inputs_id));
    // The ID of a plan without changes; a change set's own is known once it is described.
    let id = plan_id(&d.inputs_id, &[]);
    let cfn = &ctx.aws.cfn;
    let stack_name = &ctx.stack.stack_name;
    if current.is_some() {
        remove_change_sets(ctx).await?;
    }
    let template = pass_template(ctx, d.template).await?;
    let validate = match &template {
        TemplateArg::Body(b) => cfn.validate_template().template_body(b),
        TemplateArg::Url(u) => cfn.validate_template().template_url(u),
    };
    if let Err(e) = validate.send().await {
        return Err(match ctx.aws.error("ValidateTemplate", e) {
            CloudError::Rejected { message, .. } => CloudError::InvalidTemplate(message),
            other => other,
        });
    }
    let mut req = cfn
        .create_change_set()
        .stack_name(stack_name)
        .change_set_name(&name)
        .change_set_type(kind.clone())
        .description(format!("Landform plan {id}"))
        .set_parameters(Some(parameters(d.params)))
        .set_tags(Some(tags(ctx)))
        .set_capabilities(Some(
            ctx.stack.capabilities.iter().map(capability).collect(),
        ));
    req = match template {
        TemplateArg::Body(b) => req.template_body(b),
        TemplateArg::Url(u) => req.template_url(u),
    };
    if let Some(role) = &ctx.stack.role_arn {
        req = req.role_arn(role);
    }
    let mut result = RunResult {
        succeeded: true,
        plan_id: Some(id.clone()),
        engine_version: Some("CloudFormation".into()),
        notes,
        ..Default::default()
    };
    if let Err(e) = req.send().await {
        return match ctx.aws.error("CreateChangeSet", e) {
            CloudError::Rejected { message, .. } if states::means_no_changes(&message) => {
                Ok(result)
            }
            other => Err(other),
        };
    }
    let mut attempt = 0;
    let mut listed = vec![];
    let mut next: Option<String> = None;
    loop {
        let out = cfn
            .describe_change_set()
            .stack_name(stack_name)
            .change_set_name(&name)
            .set_next_token(next.clone())
            .send()
            .await
            .map_err(|e| ctx.aws.error("DescribeChangeSet", e))?;
        match out.status() {
            Some(ChangeSetStatus::CreateComplete) => {
                listed.extend(out.changes().iter().cloned());
                next = out.next_token().map(str::to_string);
                if next.is_none() {
                    break;
                }
            }
            Some(ChangeSetStatus::Failed) => {
                let why = out.status_reason().unwrap_or("no reason given").to_string();
                // The failed change set is of no use to anyone: remove it.
                let _ = cfn
                    .delete_change_set()
                    .stack_name(stack_name)
                    .change_set_name(&name)
                    .send()
                    .await;
                if states::means_no_changes(&why) {
                    return Ok(result);
                }
                return Err(CloudError::ChangeSetFailed(why));
            }
            _ => pause(&mut attempt).await,
        }
    }
    let (mut summary, mut resources) = changes::summarize(&listed);
    // Approving this ID approves exactly these changes (apply checks them again).
    result.plan_id = Some(plan_id(&d.inputs_id, &resources));
    result.has_changes = !listed.is_empty() || kind == ChangeSetType::Create;
    if let (false, Some(stack)) = (result.has_changes, &current) {
        // A change set that touches no resource may still change outputs, parameters or
        // other sections (CloudFormation reports true no-ops as a failed change set; some
        // endpoints do not). Only what differs from the deployed stack is worth executing.
        let (template, params) = super::stack::deployed(ctx, stack).await?;
        let mut differs = super::compare::templates(d.template, &template);
        differs.extend(super::compare::parameters(
            &params,
            &super::compare::with_defaults(d.template, d.params),
        ));
        if differs.is_empty() {
            remove_change_sets(ctx).await?;
        } else {
            summary.change = u32::try_from(differs.len()).unwrap_or(u32::MAX);
            resources = differs;
            result.has_changes = true;
        }
    }
    result.summary = Some(summary);
    result.resources = resources;
    Ok(result)
}

/// Deletes the change sets Landform made on the stack.
async fn remove_change_sets(ctx: &Ctx<'_>) -> Result<(), CloudError> {
    let cfn = &ctx.aws.cfn;
    let stack_name = &ctx.stack.stack_name;
    let mut doomed = vec![];
    let mut next: Option<String> = None;
    loop {
        let out = cfn
            .list_change_sets()
            .stack_name(stack_name)
            .set_next_token(next.take())
            .send()
            .await
            .map_err(|e| ctx.aws.error("ListChangeSets", e))?;
        doomed.extend(
            out.summaries()
                .iter()
                // Some endpoints list the change sets of every stack.
                .filter(|cs| cs.stack_name().is_none_or(|s| s == stack_name))
                .filter_map(|cs| cs.change_set_name())
                .filter(|name| name.starts_with(CHANGE_SET_PREFIX))
                .map(str::to_string),
        );
        next = out.next_token().map(str::to_string);
        if next.is_none() {
            break;
        }
    }
    for name in doomed {
        cfn.delete_change_set()
            .stack_name(stack_name)
            .change_set_name(&name)
            .send()
            .await
            .map_err(|e| ctx.aws.error("DeleteChangeSet", e))?;
    }
    Ok(())
}

/// Polls after an execution that shows no events of its own yet before trusting the stack's
/// state (0.5 s growing to about 4 s each).
const STALE_READS: u32 = 6;

/// Executes the change set of plan `id` and waits for the stack.
pub async fn apply(ctx: &Ctx<'_>, id: &str) -> Result<RunResult, CloudError> {
    let cfn = &ctx.aws.cfn;
    let stack_name = &ctx.stack.stack_name;
    let named = plan_id::named_by(id);
    let name = change_set_name(&named);
    let gone = || {
        CloudError::PlanGone(format!(
            "the change set {name} of plan {id} is gone from stack {stack_name}; plan again"
        ))
    };
    let current = ctx.aws.stack(stack_name).await?.ok_or_else(gone)?;
    check_owner(ctx, &current)?;
    let cs = match cfn
        .describe_change_set()
        .stack_name(stack_name)
        .change_set_name(&name)
        .send()
        .await
    {
        Ok(cs) => cs,
        Err(e) => {
            return Err(match ctx.aws.error("DescribeChangeSet", e) {
                CloudError::Api { code, .. } if code == "ChangeSetNotFound" => gone(),
                other => other,
            });
        }
    };
    let mut since = None;
    match (cs.status(), cs.execution_status()) {
        (Some(ChangeSetStatus::CreateComplete), Some(ExecutionStatus::Available)) => {
            // The change set must still hold the changes that were approved: one made again
            // under the same name (by hand, or by another plan) is not what was approved.
            let (_, resources) = changes::summarize(&listed_changes(ctx, &name).await?);
            if bound(&named, &resources) != id {
                return Err(CloudError::PlanGone(format!(
                    "the change set {name} no longer holds the changes of plan {id}; plan again"
                )));
            }
            since = newest_event(ctx).await?;
            cfn.execute_change_set()
                .stack_name(stack_name)
                .change_set_name(&name)
                .send()
                .await
                .map_err(|e| ctx.aws.error("ExecuteChangeSet", e))?;
        }
        // Executed by an earlier run that did not live to see the end (a lost pod, a
        // deadline): follow the stack from where it is instead of failing.
        (
            _,
            Some(
                ExecutionStatus::ExecuteInProgress
                | ExecutionStatus::ExecuteComplete
                | ExecutionStatus::ExecuteFailed,
            ),
        ) => {}
        (_, Some(ExecutionStatus::Obsolete)) => {
            return Err(CloudError::PlanGone(format!(
                "stack {stack_name} changed after plan {id} was made; plan again"
            )));
        }
        (status, exec) => {
            return Err(CloudError::ChangeSetFailed(format!(
                "change set {name} cannot be executed (status {}, execution status {})",
                status.map(|s| s.as_str()).unwrap_or("?"),
                exec.map(|s| s.as_str()).unwrap_or("?")
            )));
        }
    }
    // A read right after ExecuteChangeSet may still show the stack's previous resting state
    // (UPDATE_COMPLETE of the last update): a verdict counts once the operation has events.
    let mut attempt = 0;
    let (status, verdict, events) = loop {
        let (status, verdict) = wait_for(ctx, stack_name, |s| {
            states::apply_progress(s.map(String::as_str).unwrap_or(""))
        })
        .await?;
        let events = events_since(ctx, stack_name, since.as_deref()).await?;
        if !events.is_empty() || since.is_none() || attempt >= STALE_READS {
            break (status, verdict, events);
        }
        pause(&mut attempt).await;
    };
    let mut result = RunResult {
        succeeded: verdict == Progress::Succeeded,
        plan_id: Some(id.to_string()),
        engine_version: Some("CloudFormation".into()),
        events,
        ..Default::default()
    };
    if !result.succeeded {
        let failed = crate::contract::result::failed_resources(&result.events);
        result.reason = Some("ApplyFailed".into());
        result.message = Some(format!(
            "stack {stack_name} is in {} after executing change set {name}{}",
            status.unwrap_or_default(),
            if failed.is_empty() {
                String::new()
            } else {
                format!(": {}", failed.join("; "))
            }
        ));
    }
    Ok(result)
}

/// Deletes the stack (if there is one) and waits until it is gone.
pub async fn destroy(ctx: &Ctx<'_>) -> Result<RunResult, CloudError> {
    let mut result = RunResult {
        succeeded: true,
        engine_version: Some("CloudFormation".into()),
        ..Default::default()
    };
    let mut attempt = 0;
    loop {
        let current = ctx.aws.stack(&ctx.stack.stack_name).await?;
        let status = current.as_ref().map(status_of);
        match (states::before_destroy(status.as_deref()), current) {
            (BeforeDestroy::Wait, _) => pause(&mut attempt).await,
            (BeforeDestroy::Delete, Some(stack)) => {
                check_owner(ctx, &stack)?;
                match delete_and_wait(ctx, &stack).await {
                    Ok(events) => result.events = events,
                    Err(Waited::Error(e)) => return Err(e),
                    Err(Waited::Failed(why)) => {
                        result.succeeded = false;
                        result.reason = Some("DestroyFailed".into());
                        result.message = Some(format!("{why}; the delete is retried"));
                    }
                }
                return Ok(result);
            }
            _ => return Ok(result),
        }
    }
}

/// The stack's outputs (name, value), all or the selected ones.
pub async fn outputs(
    ctx: &Ctx<'_>,
    only: Option<&[String]>,
) -> Result<Vec<(String, String)>, CloudError> {
    let Some(stack) = ctx.aws.stack(&ctx.stack.stack_name).await? else {
        return Ok(vec![]);
    };
    Ok(stack
        .outputs()
        .iter()
        .filter_map(|o| Some((o.output_key()?.to_string(), o.output_value()?.to_string())))
        .filter(|(k, _)| only.is_none_or(|only| only.contains(k)))
        .collect())
}

enum TemplateArg {
    Body(String),
    Url(String),
}

/// Inline when the template fits; otherwise uploaded to the template bucket (named by its
/// digest, so an unchanged template is uploaded once) and passed by URL.
async fn pass_template(ctx: &Ctx<'_>, body: &str) -> Result<TemplateArg, CloudError> {
    if body.len() <= INLINE_LIMIT {
        return Ok(TemplateArg::Body(body.to_string()));
    }
    let Some(bucket) = &ctx.stack.template_bucket else {
        return Err(CloudError::TemplateTooLarge { size: body.len() });
    };
    let digest = crate::source::digest::sha256(body.as_bytes());
    let key = format!("landform/{}/{}.template", ctx.owner, digest.hex);
    ctx.aws
        .s3
        .put_object()
        .bucket(bucket)
        .key(&key)
        .body(body.as_bytes().to_vec().into())
        .send()
        .await
        .map_err(|e| ctx.aws.error("PutObject (spec.templateBucket)", e))?;
    Ok(TemplateArg::Url(template_url(
        ctx.aws.endpoint.as_deref(),
        ctx.aws.region.as_deref(),
        bucket,
        &key,
    )))
}

/// The URL CloudFormation reads an uploaded template from.
pub fn template_url(
    endpoint: Option<&str>,
    region: Option<&str>,
    bucket: &str,
    key: &str,
) -> String {
    match (endpoint, region) {
        (Some(url), _) => format!("{}/{bucket}/{key}", url.trim_end_matches('/')),
        (None, Some(region)) => format!("https://{bucket}.s3.{region}.amazonaws.com/{key}"),
        (None, None) => format!("https://{bucket}.s3.amazonaws.com/{key}"),
    }
}

fn parameters(params: &BTreeMap<String, String>) -> Vec<Parameter> {
    params
        .iter()
        .map(|(k, v)| {
            Parameter::builder()
                .parameter_key(k)
                .parameter_value(v)
                .build()
        })
        .collect()
}

fn tags(ctx: &Ctx<'_>) -> Vec<Tag> {
    let mut all: BTreeMap<&str, &str> = ctx
        .stack
        .tags
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    all.insert(TAG_OWNER, ctx.owner);
    all.insert(TAG_UID, ctx.uid);
    all.into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

fn capability(c: &Capability) -> CfnCapability {
    match c {
        Capability::Iam => CfnCapability::CapabilityIam,
        Capability::NamedIam => CfnCapability::CapabilityNamedIam,
        Capability::AutoExpand => CfnCapability::CapabilityAutoExpand,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_urls_follow_the_endpoint() {
        assert_eq!(
            template_url(
                Some("http://localhost:5000/"),
                Some("eu-west-1"),
                "b",
                "k/t"
            ),
            "http://localhost:5000/b/k/t"
        );
        assert_eq!(
            template_url(None, Some("eu-west-1"), "b", "k/t"),
            "https://b.s3.eu-west-1.amazonaws.com/k/t"
        );
    }
}
