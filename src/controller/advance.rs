//! Advances an object by one step once its source is resolved: collects the run in flight
//! (reads its result, watches its state lock, releases a lost run's lock), then starts the
//! run that is due, or says why it waits (approval, a dependency, a free run slot). What to do
//! is decided in [`super::decide`]; this file does the reads and writes those decisions need.
//!
//! A run to start is returned rather than started: the caller records it in status first, so
//! that a status write that fails can never lead to the same run being started twice.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::Api;

use super::context::Context;
use super::decide::collect::{self, Found, RunState};
use super::decide::dependencies::unmet;
use super::decide::due::{self, Facts, Next};
use super::decide::outcome::Outcome;
use super::decide::validate::Timing;
use super::kinds::{self, Kind};
use super::locks;
use super::metrics::RunLabels;
use super::prune;
use super::queue::Waiter;
use super::status::publish;
use crate::api::{ArtifactStatus, DependsOn, ObjectStatus, Operation, REQUESTED_AT, RunPhase};
use crate::contract::{RunResult, RunSpec, names};

/// Advances `status` (a working copy) by one step and says how the object stands.
pub async fn advance<K: Kind>(
    obj: &K,
    status: &mut ObjectStatus,
    artifact: &ArtifactStatus,
    timing: &Timing,
    ctx: &Context,
) -> (Outcome, Option<RunSpec>) {
    let ns = obj.namespace().unwrap_or_default();
    let inputs = kinds::inputs_hash(obj, &ns);
    if let Some(outcome) = collect_run(obj, status, &inputs, ctx).await {
        return (outcome, None);
    }
    let common = obj.common();
    let facts = Facts {
        approve: &common.approve_plan,
        mode: common.mode,
        interval: timing.interval,
        inputs: &inputs,
        drift_every: due::drift_every(common, timing),
        replan_requested: obj
            .annotations()
            .get(REQUESTED_AT)
            .is_some_and(|r| status.last_handled_reconcile_at.as_ref() != Some(r)),
    };
    let (operation, plan_id) = match due::decide(status, artifact, &facts, jiff::Timestamp::now()) {
        Next::Run { operation, plan_id } => (operation, plan_id),
        other => return (due::waiting(other, status, common.mode), None),
    };
    // Dependencies gate new runs only; a run in flight is always collected above.
    if let Some(why) = first_unmet::<K>(ctx, &ns, &common.depends_on).await {
        let outcome = Outcome::Progressing {
            reason: "DependencyNotReady",
            message: why,
            // The dependency's watch wakes it when the dependency changes.
            requeue: timing.interval,
        };
        return (outcome, None);
    }
    let run_artifact = due::run_artifact(operation, status, artifact);
    start(obj, status, operation, plan_id, &run_artifact, &inputs, ctx)
}

/// For a suspended object: takes the result of a run that was in flight when it was
/// suspended, so that its run slot is freed; starts nothing. `Some(outcome)` while it still
/// runs.
pub async fn collect_only<K: Kind>(
    obj: &K,
    status: &mut ObjectStatus,
    ctx: &Context,
) -> Option<Outcome> {
    let ns = obj.namespace().unwrap_or_default();
    let inputs = kinds::inputs_hash(obj, &ns);
    collect_run(obj, status, &inputs, ctx).await
}

/// On deletion with destroyOnDelete: destroy what was last applied, with exactly the artifact
/// that applied it. `(None, None)` once there is nothing (left) to destroy.
pub async fn teardown<K: Kind>(
    obj: &K,
    status: &mut ObjectStatus,
    ctx: &Context,
) -> (Option<Outcome>, Option<RunSpec>) {
    let ns = obj.namespace().unwrap_or_default();
    let inputs = kinds::inputs_hash(obj, &ns);
    if let Some(outcome) = collect_run(obj, status, &inputs, ctx).await {
        return (Some(outcome), None);
    }
    let Some(artifact) = due::destroy_artifact(status, K::DESTROY_NEEDS_ARTIFACT) else {
        return (None, None);
    };
    let (outcome, spec) = start(obj, status, Operation::Destroy, None, &artifact, "", ctx);
    (Some(outcome), spec)
}

/// Takes a run slot and records the run in `status`, or says that no slot is free.
fn start<K: Kind>(
    obj: &K,
    status: &mut ObjectStatus,
    operation: Operation,
    plan_id: Option<String>,
    artifact: &ArtifactStatus,
    inputs: &str,
    ctx: &Context,
) -> (Outcome, Option<RunSpec>) {
    let ns = obj.namespace().unwrap_or_default();
    let now = jiff::Timestamp::now();
    let spec = kinds::run_spec(obj, &ns, operation, plan_id, artifact, now);
    let waiter = Waiter {
        kind: K::KIND,
        namespace: ns.clone(),
        name: obj.name_any(),
    };
    if let Err(full) = ctx.runs.reserve(&ns, &spec.name, &waiter) {
        let (reason, message) = ("WaitingForRunSlot", full.to_string());
        // Woken when a slot is freed for it; this is only a fallback.
        let requeue = ctx.settings.slot_recheck.max(Duration::from_secs(1));
        let outcome = if due::routine(operation, status, artifact) {
            Outcome::Checking {
                reason,
                message,
                requeue,
            }
        } else {
            Outcome::Progressing {
                reason,
                message,
                requeue,
            }
        };
        return (outcome, None);
    }
    let outcome = due::starting(
        status,
        operation,
        &spec.name,
        spec.plan_id.as_deref(),
        artifact,
        inputs,
        Time(now),
    );
    (outcome, Some(spec))
}

/// If a run is in flight: its outcome while it runs or when it failed, or `None` once its
/// result has been taken into `status` (and the next step may be decided).
async fn collect_run<K: Kind>(
    obj: &K,
    status: &mut ObjectStatus,
    inputs: &str,
    ctx: &Context,
) -> Option<Outcome> {
    let run = status
        .run
        .clone()
        .filter(|r| r.phase == RunPhase::Running)?;
    let ns = obj.namespace().unwrap_or_default();
    let state = ctx.runs.state(&ns, &run.name).await;
    // A result counts once its run has ended: until then the runner (or whatever holds its
    // service account's rights) may still write it.
    let result = match state {
        RunState::Running => Ok(None),
        _ => read_result(ctx, &ns, &run.name).await,
    };
    let has_result = matches!(result, Ok(Some(_)));
    let lease = obj.state_lease();
    // A run that ended without a result may have left the state locked. Whose lock it is is
    // read only then (OpenTofu's lock info says which run took it): reading it all along
    // would cost a request per look at every run, for the rare run that is lost.
    if let (Some(lease), RunState::Ended(_) | RunState::Unknown, false) =
        (&lease, &state, has_result)
        && let Some(lock) =
            locks::observe(ctx, &ns, lease, &run.name, run.started_at.as_ref()).await
    {
        status.lock = Some(lock);
    }
    let lock = status.lock.clone();
    let released = match (&lease, collect::lock_to_release(status, &state, has_result)) {
        (Some(lease), Some(id)) => Some(
            locks::release(ctx, &ns, lease, id)
                .await
                .map_err(|e| e.to_string()),
        ),
        _ => None,
    };
    let found = Found {
        state,
        result,
        lock,
        released,
    };
    let now = Time(jiff::Timestamp::now());
    let collected = collect::collect(status, obj.common(), &K::WORDING, inputs, found, now);
    if let Some(succeeded) = collected.taken {
        ctx.runs
            .finished(&ns, &obj.name_any(), &run.name, succeeded)
            .await;
        let plan = status.plan.as_ref().map(|p| p.id.as_str());
        prune::prune(obj, ctx, &ns, &run.name, plan).await;
    }
    if let Some((operation, result)) = collected.ended {
        let labels = RunLabels {
            kind: K::KIND,
            namespace: ns.clone(),
            operation: operation.as_str(),
            result,
        };
        ctx.metrics.runs.get_or_create(&labels).inc();
    }
    if let Some((total, drifted)) = collected.drift {
        ctx.metrics
            .record_drift(K::KIND, &ns, &obj.name_any(), total, drifted);
    }
    for event in &collected.events {
        publish(ctx, obj, event).await;
    }
    collected.outcome
}

/// The run's result, once it wrote one.
async fn read_result(ctx: &Context, ns: &str, run: &str) -> Result<Option<RunResult>, String> {
    let name = names::result_secret(run);
    let secret = Api::<Secret>::namespaced(ctx.client.clone(), ns)
        .get_opt(&name)
        .await
        .map_err(|e| format!("reading Secret {ns}/{name}: {e}"))?;
    let Some(data) = secret
        .and_then(|s| s.data)
        .and_then(|mut d| d.remove(names::RESULT_KEY))
    else {
        return Ok(None);
    };
    crate::contract::result::parse(&data.0)
        .map(Some)
        .map_err(|e| format!("Secret {ns}/{name} holds no valid result: {e}"))
}

/// The first unmet dependency of an object in `namespace`, in words. Dependencies are objects
/// of the object's own kind.
async fn first_unmet<K: Kind>(
    ctx: &Context,
    namespace: &str,
    deps: &[DependsOn],
) -> Option<String> {
    for d in deps {
        let ns = d.namespace.as_deref().unwrap_or(namespace);
        let shown = format!("{} {ns}/{}", K::SHORT_NAME, d.name);
        match Api::<K>::namespaced(ctx.client.clone(), ns)
            .get_opt(&d.name)
            .await
        {
            Ok(Some(dep)) => {
                if let Some(why) = unmet(&shown, dep.object_status()) {
                    return Some(why);
                }
            }
            Ok(None) => return Some(format!("waiting for {shown}, which does not exist")),
            Err(e) => return Some(format!("cannot read {shown}: {e}")),
        }
    }
    None
}
