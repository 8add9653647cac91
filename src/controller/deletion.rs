//! Deleting an object: destroy what it applied when `destroyOnDelete` asks for it, clean up
//! Landform's own objects, and release the finalizer, or say in a condition why not yet.

use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams};
use kube::runtime::controller::Action;

use super::advance;
use super::context::Context;
use super::decide::collect::RunState;
use super::decide::outcome::{self, EventSpec, Outcome, RetryPolicy};
use super::kinds::Kind;
use super::runs::PodInputs;
use super::status::{self, Error, publish};
use crate::api::{Managed, Mode, RunPhase};
use crate::contract::{Operation, names::LABEL_OWNER};

/// The documented escape hatch: release the object without destroying anything.
pub const SKIP_DESTROY: &str = "landform.dev/skip-destroy";

fn skip_destroy<K: Managed>(obj: &K) -> bool {
    obj.annotations()
        .get(SKIP_DESTROY)
        .is_some_and(|v| v == "true")
}

/// Whether the finalizer may go now.
pub enum Release {
    /// Yes; `destroyed` tells whether this reconcile saw the destroy run succeed.
    Now { destroyed: bool },
    /// Not yet: work is under way or failed; look again as the action says.
    Later(Action),
}

/// Work that must happen before the finalizer goes.
pub async fn before_release<K: Kind>(obj: &K, ctx: &Context, ns: &str) -> Result<Release, Error> {
    let never = Release::Now { destroyed: false };
    let common = obj.common();
    // The escape hatch always works, whatever is under way or failing: nothing else may keep
    // an object whose owner said to let it go.
    if skip_destroy(obj) {
        return Ok(never);
    }
    let status = obj.object_status();
    let generation = obj.meta().generation;
    let policy = RetryPolicy::new(None, &obj.uid().unwrap_or_default());
    // A run in flight finishes first: releasing the object under it would leave its state
    // lock and its results behind. The object says so while it waits.
    let running = status
        .and_then(|s| s.run.as_ref())
        .filter(|r| r.phase == RunPhase::Running);
    if let Some(run) = running
        && ctx.runs.state(ns, &run.name).await == RunState::Running
    {
        let waiting = Outcome::Progressing {
            reason: "DeletionWaitsForRun",
            message: format!(
                "Deleting: waiting for run {} to finish; to release the object now, annotate it {SKIP_DESTROY}=true",
                run.name
            ),
            requeue: std::time::Duration::from_secs(2),
        };
        let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now());
        let settled = outcome::settle(status, generation, waiting, &policy, now);
        status::write(obj, ctx, ns, &settled).await?;
        return Ok(Release::Later(Action::requeue(
            std::time::Duration::from_secs(2),
        )));
    }
    if !common.destroy_on_delete || common.mode == Mode::DriftOnly {
        return Ok(never);
    }
    if let Some(wait) = outcome::backing_off(status, generation, &policy, jiff::Timestamp::now()) {
        return Ok(Release::Later(Action::requeue(wait)));
    }
    let mut work = status.cloned().unwrap_or_default();
    let (result, launch) = advance::teardown(obj, &mut work, ctx).await;
    let Some(result) = result else {
        let destroyed = work
            .run
            .as_ref()
            .is_some_and(|r| r.operation == Operation::Destroy && r.phase == RunPhase::Succeeded);
        return Ok(Release::Now { destroyed });
    };
    let result = match result {
        Outcome::Failed {
            reason,
            message,
            retryable,
        } => Outcome::Failed {
            reason,
            message: format!(
                "destroy on delete failed: {message}. The object stays until its infrastructure is destroyed; to release it without destroying, annotate it {SKIP_DESTROY}=true"
            ),
            retryable,
        },
        other => other,
    };
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now());
    let settled = outcome::settle(Some(&work), generation, result, &policy, now);
    if let Err(e) = status::write(obj, ctx, ns, &settled).await {
        if let Some(spec) = &launch {
            ctx.runs.cancel(&spec.namespace, &spec.name);
        }
        return Err(e);
    }
    // Only once the run is recorded in status is it started (see advance).
    ctx.runs.launch(launch, PodInputs::of(obj)).await;
    Ok(Release::Later(
        settled
            .requeue
            .map_or(Action::await_change(), Action::requeue),
    ))
}

/// The finalizer's cleanup: Landform's own objects go (saved plans, run results, outputs);
/// the state never does.
pub async fn cleanup<K: Managed>(obj: &K, ctx: &Context, destroyed: bool) -> Result<Action, Error> {
    let ns = obj.namespace().unwrap_or_default();
    ctx.runs.leave(&super::queue::Waiter {
        kind: K::KIND,
        namespace: ns.clone(),
        name: obj.name_any(),
    });
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let selector = format!("{LABEL_OWNER}={}", obj.name_any());
    let uid = obj.uid().unwrap_or_default();
    // The label narrows the list; only what this very object owns goes (a label is easily
    // put on someone else's Secret).
    let owned = |s: &k8s_openapi::api::core::v1::Secret| {
        s.metadata
            .owner_references
            .iter()
            .flatten()
            .any(|r| r.uid == uid)
    };
    match secrets.list(&ListParams::default().labels(&selector)).await {
        Ok(list) => {
            for s in list.items.into_iter().filter(owned) {
                let name = s.name_any();
                if let Err(e) = secrets.delete(&name, &DeleteParams::default()).await {
                    tracing::warn!(secret = %name, error = %e, "deleting an owned Secret failed; its owner reference lets garbage collection remove it");
                }
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "listing owned Secrets failed; their owner references let garbage collection remove them")
        }
    }
    let common = obj.common();
    let (warning, note) = if common.mode == Mode::DriftOnly {
        (
            false,
            "Deleted; drift-only objects never destroy anything".to_string(),
        )
    } else if !common.destroy_on_delete {
        (false, "Deleted; destroyOnDelete is false, so the infrastructure and its state are left in place".to_string())
    } else if skip_destroy(obj) {
        (
            true,
            format!(
                "Released without destroying ({SKIP_DESTROY}=true); the infrastructure and its state are left in place"
            ),
        )
    } else if destroyed {
        (
            false,
            "Deleted after destroying everything it had applied".to_string(),
        )
    } else {
        (
            false,
            "Deleted; nothing had been applied, so there was nothing to destroy".to_string(),
        )
    };
    ctx.metrics.forget(K::KIND, &ns, &obj.name_any());
    let event = if warning {
        EventSpec::warning("DestroySkipped", note)
    } else {
        EventSpec::normal("Finalized", note)
    };
    publish(ctx, obj, &event).await;
    Ok(Action::await_change())
}
