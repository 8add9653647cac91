//! Reading a stack and waiting on it: its state, its events, and moving it out of states it
//! cannot be planned from. Every wait polls with a growing delay (see [`states::poll_delay`]).

use std::collections::BTreeMap;

use aws_sdk_cloudformation::types::{Stack, TemplateStage};

use super::changes;
use super::error::CloudError;
use super::states::{self, BeforePlan, Progress};
use super::{Ctx, TAG_OWNER};
use crate::api::StackEvent;

pub(super) fn status_of(stack: &Stack) -> String {
    stack
        .stack_status()
        .map(|s| s.as_str().to_string())
        .unwrap_or_default()
}

pub(super) async fn pause(attempt: &mut u32) {
    tokio::time::sleep(states::poll_delay(*attempt)).await;
    *attempt += 1;
}

/// The newest event of the stack, to tell an operation's own events from older ones.
pub(super) async fn newest_event(ctx: &Ctx<'_>) -> Result<Option<String>, CloudError> {
    let out = ctx
        .aws
        .cfn
        .describe_stack_events()
        .stack_name(&ctx.stack.stack_name)
        .send()
        .await
        .map_err(|e| ctx.aws.error("DescribeStackEvents", e))?;
    Ok(out
        .stack_events()
        .first()
        .and_then(|e| e.event_id())
        .map(str::to_string))
}

/// Pages of stack events read at most to find where an operation began: a large stack's
/// rollback has many events, and its first failure (the cause) is the oldest of them.
const MAX_EVENT_PAGES: usize = 10;

/// The events after `since` (an event ID), oldest first; without `since`, the newest page.
/// `stack` may be the stack ID, which still names a deleted stack.
pub(super) async fn events_since(
    ctx: &Ctx<'_>,
    stack: &str,
    since: Option<&str>,
) -> Result<Vec<StackEvent>, CloudError> {
    let mut own = vec![];
    let mut next: Option<String> = None;
    for _ in 0..MAX_EVENT_PAGES {
        let out = ctx
            .aws
            .cfn
            .describe_stack_events()
            .stack_name(stack)
            .set_next_token(next.take())
            .send()
            .await
            .map_err(|e| ctx.aws.error("DescribeStackEvents", e))?;
        let page = out.stack_events();
        let before = own.len();
        own.extend(
            page.iter()
                .take_while(|e| since.is_none() || e.event_id() != since)
                .cloned(),
        );
        let reached = own.len() - before < page.len();
        next = out.next_token().map(str::to_string);
        if since.is_none() || reached || next.is_none() {
            break;
        }
    }
    Ok(changes::operation_events(&own))
}

/// Waits until the stack rests, and moves it out of states it cannot be planned from. Returns
/// the stack (None if there is none) and what was done to it.
pub(super) async fn settle(
    ctx: &Ctx<'_>,
    notes: &mut Vec<String>,
) -> Result<Option<Stack>, CloudError> {
    let name = &ctx.stack.stack_name;
    let mut attempt = 0;
    loop {
        let current = ctx.aws.stack(name).await?;
        let status = current.as_ref().map(status_of);
        match states::before_plan(status.as_deref()) {
            BeforePlan::Create | BeforePlan::Update => return Ok(current),
            BeforePlan::Wait => pause(&mut attempt).await,
            BeforePlan::Refuse(why) => return Err(CloudError::StackState(why)),
            BeforePlan::DeleteAndRecreate => {
                let stack = current.as_ref().ok_or_else(|| {
                    CloudError::StackState(format!("stack {name} vanished while being looked at"))
                })?;
                check_owner(ctx, stack)?;
                let was = status.unwrap_or_default();
                delete_and_wait(ctx, stack).await.map_err(|e| match e {
                    Waited::Failed(why) => CloudError::StackState(format!(
                        "stack {name} was in {was} and could not be deleted to create it again: {why}"
                    )),
                    Waited::Error(e) => e,
                })?;
                notes.push(format!(
                    "Deleted stack {name}, which was left in {was} by a failed create, to create it again"
                ));
            }
            BeforePlan::ContinueRollback => {
                let stack = current.as_ref().ok_or_else(|| {
                    CloudError::StackState(format!("stack {name} vanished while being looked at"))
                })?;
                check_owner(ctx, stack)?;
                let mut req = ctx.aws.cfn.continue_update_rollback().stack_name(name);
                if let Some(role) = &ctx.stack.role_arn {
                    req = req.role_arn(role);
                }
                req.send()
                    .await
                    .map_err(|e| ctx.aws.error("ContinueUpdateRollback", e))?;
                let end = wait_for(ctx, name, |s| {
                    states::rollback_progress(s.map(String::as_str).unwrap_or(""))
                })
                .await?;
                if end.1 != Progress::Succeeded {
                    let events = events_since(ctx, name, None).await?;
                    return Err(CloudError::StackState(format!(
                        "stack {name} is in {} after continuing its rollback: {}",
                        end.0.unwrap_or_default(),
                        crate::contract::result::failed_resources(&events).join("; ")
                    )));
                }
                notes.push(format!(
                    "Continued the rollback of stack {name}, which was in UPDATE_ROLLBACK_FAILED"
                ));
            }
        }
    }
}

/// Polls the stack `stack` (a name or ID) until `progress` says it is done; returns the last
/// status and the verdict.
pub(super) async fn wait_for(
    ctx: &Ctx<'_>,
    stack: &str,
    progress: impl Fn(Option<&String>) -> Progress,
) -> Result<(Option<String>, Progress), CloudError> {
    let mut attempt = 0;
    loop {
        let status = ctx.aws.stack(stack).await?.as_ref().map(status_of);
        match progress(status.as_ref()) {
            Progress::InProgress => pause(&mut attempt).await,
            done => return Ok((status, done)),
        }
    }
}

pub(super) enum Waited {
    Failed(String),
    Error(CloudError),
}

impl From<CloudError> for Waited {
    fn from(e: CloudError) -> Self {
        Waited::Error(e)
    }
}

/// DeleteStack, then waits until the stack is gone; on DELETE_FAILED the failed resources.
pub(super) async fn delete_and_wait(
    ctx: &Ctx<'_>,
    stack: &Stack,
) -> Result<Vec<StackEvent>, Waited> {
    // The ID names the stack also once it is deleted, so its last events can be read.
    let id = stack
        .stack_id()
        .unwrap_or(&ctx.stack.stack_name)
        .to_string();
    let since = newest_event(ctx).await?;
    let mut req = ctx.aws.cfn.delete_stack().stack_name(&ctx.stack.stack_name);
    if let Some(role) = &ctx.stack.role_arn {
        req = req.role_arn(role);
    }
    req.send()
        .await
        .map_err(|e| ctx.aws.error("DeleteStack", e))?;
    let (status, verdict) = wait_for(ctx, &ctx.stack.stack_name, |s| {
        states::delete_progress(s.map(String::as_str))
    })
    .await?;
    let events = events_since(ctx, &id, since.as_deref())
        .await
        .unwrap_or_default();
    match verdict {
        Progress::Succeeded => Ok(events),
        _ => {
            let failed = crate::contract::result::failed_resources(&events);
            Err(Waited::Failed(format!(
                "stack {} is in {}{}",
                ctx.stack.stack_name,
                status.unwrap_or_default(),
                if failed.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; these resources could not be deleted: {}",
                        failed.join("; ")
                    )
                }
            )))
        }
    }
}

/// Refuses a stack that carries no ownership tag of this object, unless adopting is allowed.
pub fn check_owner(ctx: &Ctx<'_>, stack: &Stack) -> Result<(), CloudError> {
    let owner = stack
        .tags()
        .iter()
        .find(|t| t.key() == Some(TAG_OWNER))
        .and_then(|t| t.value());
    match owner {
        Some(o) if o == ctx.owner => Ok(()),
        _ if ctx.stack.adopt_existing => Ok(()),
        Some(other) => Err(CloudError::NotOwned(format!(
            "stack {} belongs to {other} (tag {TAG_OWNER}), not to this object; set spec.adoptExisting: true to take it over",
            ctx.stack.stack_name
        ))),
        None => Err(CloudError::NotOwned(format!(
            "stack {} exists and was not created by Landform (no {TAG_OWNER} tag); set spec.adoptExisting: true to manage it",
            ctx.stack.stack_name
        ))),
    }
}

/// The stack's template as deployed (its original text) and its parameters.
pub async fn deployed(
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
